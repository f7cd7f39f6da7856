//! The outbox's relay, running in this process for a whole run of the measure, as a worker
//! started with `--outbox-url` runs it beside its jobs.

use anyhow::Context as _;
use jobs_outbox::{OutboxEnqueue as _, Relay};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::database::Database;
use super::job::bench_outbox;
use crate::message::BenchJob;
use crate::plan::stall_limit;

/// A [`Relay::run`] in a task of its own: woken by LISTEN/NOTIFY (the default), polling every
/// 5 s at the latest.
#[derive(Debug)]
pub(super) struct RunningRelay {
    stop: oneshot::Sender<()>,
    task: JoinHandle<jobs_outbox::Result<()>>,
}

impl RunningRelay {
    /// Starts `relay` and waits until it has published one job, numbered past any measurement's
    /// (the caller purges it): it is then listening, and its producer has declared the job's
    /// topology, which no measurement should wait for.
    pub(super) async fn start(relay: Relay, database: &Database) -> anyhow::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    // A dropped sender stops the relay as well.
                    let _ = stopped.await;
                })
                .await
        });
        let mut tx = database.writers().begin().await?;
        bench_outbox::with(BenchJob::new(u64::MAX))
            .enqueue_in(&mut tx)
            .await?;
        tx.commit().await?;
        database
            .until_empty(Instant::now() + stall_limit(1))
            .await
            .context("the relay's first job")?;
        Ok(Self { stop, task })
    }

    /// Stops the relay, its pass under way finished first.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}
