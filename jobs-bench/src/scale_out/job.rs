//! The job of the scale-out measure, shared by the benchmark (which enqueues it) and
//! `jobs-bench-worker` (which serves it).
//!
//! Not a module the worker binary reaches through the library: a `#[job]` registers itself in
//! every binary that links it, so the worker includes this file by path, as the fault worker
//! does with its jobs.

use std::sync::OnceLock;
use std::time::Duration;

use jobs_core::{JobError, job};

use crate::message::BenchJob;

/// The variable that sets how long each handler sleeps, in milliseconds (default 0: no work).
pub(crate) const SLEEP_VAR: &str = "JOBS_BENCH_SLEEP_MS";

/// How long each handler sleeps, read once from [`SLEEP_VAR`].
fn work() -> Duration {
    static SLEEP: OnceLock<Duration> = OnceLock::new();
    *SLEEP.get_or_init(|| {
        std::env::var(SLEEP_VAR)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis)
    })
}

/// The job of the scale-out measure: on its own quorum queue, at the concurrency (and so
/// prefetch) of the benchmark's other jobs, doing nothing unless [`SLEEP_VAR`] asks for a sleep.
#[job(
    exchange = "jobs_bench",
    routing_key = "scale_out",
    queue = "jobs_bench.scale_out",
    queue_type = "quorum",
    concurrency = 100
)]
pub(crate) async fn bench_scale_out(job: BenchJob) -> Result<(), JobError> {
    let sleep = work();
    if !sleep.is_zero() {
        tokio::time::sleep(sleep).await;
    }
    drop(job);
    Ok(())
}
