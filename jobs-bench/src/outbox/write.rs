//! The producers of the outbox measure: transactions writing into the outbox, and plain
//! enqueues, unpaced or paced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jobs_core::Producer;
use jobs_outbox::OutboxEnqueue as _;
use sqlx::PgPool;
use tokio::task::JoinSet;

use super::job::{OUTBOX, bench_outbox};
use crate::message::{BenchJob, now_nanos};
use crate::pace::Pacer;

/// Writes jobs `0..n` into the outbox from `writers` tasks, each running one transaction at a
/// time (begin, `per_tx` × `enqueue_in`, commit), and returns once every commit returned.
///
/// # Errors
///
/// The first database error.
pub(super) async fn unpaced(
    pool: &PgPool,
    writers: usize,
    n: u64,
    per_tx: u64,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        let (pool, next) = (pool.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let first = next.fetch_add(per_tx, Ordering::Relaxed);
                if first >= n {
                    return anyhow::Ok(());
                }
                let mut tx = pool.begin().await?;
                for seq in first..first.saturating_add(per_tx).min(n) {
                    bench_outbox::with(BenchJob::new(seq))
                        .enqueue_in(&mut tx)
                        .await?;
                }
                tx.commit().await?;
            }
        });
    }
    join(tasks).await
}

/// Writes jobs `0..count` into the outbox at `pacer`'s rate, each in a transaction of its own
/// started when it is due, and stamps each one's hand-over just before its commit: the relay
/// cannot see the row before the commit, and the latency counts from there.
///
/// # Errors
///
/// The first database error.
pub(super) async fn paced_outbox(pool: &PgPool, count: u64, pacer: Pacer) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for seq in 0..count {
        pacer.until_due(seq).await;
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut tx = pool.begin().await?;
            bench_outbox::with(BenchJob::new(seq))
                .enqueue_in(&mut tx)
                .await?;
            OUTBOX.sent(seq, now_nanos());
            tx.commit().await?;
            anyhow::Ok(())
        });
    }
    join(tasks).await
}

/// Enqueues jobs `0..count` with `producer` at `pacer`'s rate, one task per job as the first
/// table's paced framework does, and stamps each one's hand-over just before the `enqueue`
/// call, as that table's latency counts.
///
/// # Errors
///
/// The first enqueue error.
pub(super) async fn paced_enqueue(
    producer: &Producer,
    count: u64,
    pacer: Pacer,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for seq in 0..count {
        pacer.until_due(seq).await;
        let producer = producer.clone();
        tasks.spawn(async move {
            OUTBOX.sent(seq, now_nanos());
            bench_outbox::with(BenchJob::new(seq))
                .enqueue(&producer)
                .await?;
            anyhow::Ok(())
        });
    }
    join(tasks).await
}

/// Waits for every task; the first error (or panic) is the result.
async fn join(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
