//! Where both consumers report each handled job: a count to wait on, and latencies when paced.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use tokio::sync::Notify;

use crate::message::{BenchJob, now_nanos};

/// The process-wide sink: the framework's handler is a plain `fn` with no state of its own, so
/// the raw consumer reports here too, at the same cost.
pub static SINK: Sink = Sink::new();

/// Counts handled jobs and, while latencies are on, keeps each one's send-to-handle time.
#[derive(Debug)]
pub struct Sink {
    handled: AtomicU64,
    target: AtomicU64,
    reached: Notify,
    record_latency: AtomicBool,
    latencies: Mutex<Vec<u64>>,
}

impl Sink {
    const fn new() -> Self {
        Self {
            handled: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::const_new(),
            record_latency: AtomicBool::new(false),
            latencies: Mutex::new(Vec::new()),
        }
    }

    /// Starts a measurement that ends when `target` jobs are handled.
    pub fn reset(&self, target: u64, record_latency: bool) {
        self.handled.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
        self.record_latency.store(record_latency, Ordering::SeqCst);
        self.latencies_mut().clear();
    }

    /// One job handled.
    pub fn record(&self, job: &BenchJob) {
        if self.record_latency.load(Ordering::Relaxed) {
            let latency = now_nanos().saturating_sub(job.sent_nanos);
            self.latencies_mut().push(latency);
        }
        let handled = self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        if handled == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Waits until the target is handled, at most `limit`.
    ///
    /// # Errors
    ///
    /// When the limit passes first: a stuck run fails instead of hanging the benchmark.
    pub async fn wait(&self, limit: Duration) -> anyhow::Result<()> {
        let target = self.target.load(Ordering::Acquire);
        let reached = async {
            while self.handled.load(Ordering::Acquire) < target {
                self.reached.notified().await;
            }
        };
        if tokio::time::timeout(limit, reached).await.is_err() {
            bail!(
                "only {} of {target} jobs handled after {limit:?}",
                self.handled.load(Ordering::Acquire)
            );
        }
        Ok(())
    }

    /// The latencies recorded since the last reset, in nanoseconds.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut *self.latencies_mut())
    }

    fn latencies_mut(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
