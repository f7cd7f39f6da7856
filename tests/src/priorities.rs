//! The priority scenario, written once and run on every transport: high-priority jobs enqueued
//! behind a backlog of low ones overtake it, and a priority the job does not have is refused.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::transport::Transport;
use jobs_core::{Error, JobError, State, job};
use tokio::sync::{Semaphore, watch};

/// A job of the scenario: its number, and whether it was sent with a high priority.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ranked {
    /// Its number within its priority.
    #[prost(uint32, tag = "1")]
    pub n: u32,
    /// Sent with priority [`HIGH`].
    #[prost(bool, tag = "2")]
    pub high: bool,
}

/// The priority the high jobs are sent with.
pub const HIGH: u8 = 9;
/// Low jobs in the backlog.
pub const LOW_JOBS: u32 = 500;
/// High jobs sent behind them.
pub const HIGH_JOBS: u32 = 10;

/// What the handler saw, in order; the first job to start holds the worker until `gate` opens.
#[derive(Debug)]
pub struct Order {
    seen: Mutex<Vec<Ranked>>,
    count: watch::Sender<usize>,
    gate: Semaphore,
}

impl Default for Order {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            count: watch::channel(0).0,
            gate: Semaphore::new(0),
        }
    }
}

impl Order {
    /// Waits until `n` jobs have started, `within` at most.
    async fn until_started(&self, n: usize, within: Duration) {
        let mut count = self.count.subscribe();
        tokio::time::timeout(within, count.wait_for(|seen| *seen >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} jobs did not start within {within:?}"))
            .expect("the sender lives in `self`");
    }
}

/// One worker slot and one delivery at a time, on a queue with ten priority levels.
#[job(
    exchange = "tests.priorities",
    routing_key = "ranked",
    queue = "tests.priorities.ranked",
    priorities = 10,
    concurrency = 1,
    retries = 0
)]
pub async fn ranked(job: Ranked, order: State<Arc<Order>>) -> Result<(), JobError> {
    let first = {
        let mut seen = order.seen.lock().map_err(|_| JobError::fatal("poisoned"))?;
        seen.push(job);
        order.count.send_replace(seen.len());
        seen.len() == 1
    };
    if first {
        let _pass = order.gate.acquire().await.map_err(JobError::fatal)?;
    }
    Ok(())
}

/// With 500 low-priority jobs queued behind a running one, 10 high-priority jobs enqueued next
/// run before the next 5 low ones; a priority above the job's levels is refused at enqueue.
pub async fn high_priority_jobs_overtake_the_backlog(transport: Arc<dyn Transport>) {
    let within = Duration::from_secs(60);
    let order = Arc::new(Order::default());
    let engine = Engine::builder(Arc::clone(&transport))
        .job(&ranked::JOB)
        .state(Arc::clone(&order))
        .start()
        .await
        .expect("the engine starts");
    transport.purge(ranked::QUEUE).await.expect("purged");

    for n in 0..LOW_JOBS {
        ranked::enqueue(&engine, Ranked { n, high: false })
            .await
            .expect("enqueued");
    }
    // The first low job holds the only slot: the rest wait in the queue.
    order.until_started(1, within).await;
    for n in 0..HIGH_JOBS {
        ranked::with(Ranked { n, high: true })
            .priority(HIGH)
            .enqueue(&engine)
            .await
            .expect("enqueued");
    }
    let refused = ranked::with(Ranked::default())
        .priority(11)
        .enqueue(&engine)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Priority {
                priority: 11,
                levels: Some(10),
                ..
            })
        ),
        "{refused:?}"
    );
    order.gate.add_permits(1);
    let all = usize::try_from(LOW_JOBS + HIGH_JOBS).expect("small");
    order.until_started(all, within).await;

    let seen = order.seen.lock().expect("not poisoned").clone();
    // After the job that held the slot: every high job before the fifth low one.
    let after: Vec<bool> = seen[1..].iter().map(|job| job.high).collect();
    let fifth_low = after
        .iter()
        .enumerate()
        .filter(|(_, high)| !**high)
        .nth(4)
        .map(|(at, _)| at)
        .expect("five low jobs");
    let highs_before = after[..fifth_low].iter().filter(|high| **high).count();
    assert_eq!(
        highs_before,
        usize::try_from(HIGH_JOBS).expect("small"),
        "the order after the first job (true: high): {after:?}"
    );
    // Within a priority, first in first out.
    for high in [false, true] {
        let numbers: Vec<u32> = seen
            .iter()
            .filter(|job| job.high == high)
            .map(|job| job.n)
            .collect();
        assert!(numbers.is_sorted(), "high {high}: {numbers:?}");
    }
    engine.shutdown(Duration::from_secs(5)).await;
}
