//! The jobs of the test worker (`jobs-test-worker`), shared with the tests that enqueue them.
//!
//! Each test scenario has its own job, so its own queue, and the tests run in parallel. A
//! handler sleeps for the message's `millis`, then prints `handled <job> <seq>` on stdout, which
//! the tests count.

use std::time::Duration;

use jobs_core::{JobContext, JobError, job};

/// How long to sleep, and a number the test recognises the message by.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sleep {
    /// How long the handler sleeps.
    #[prost(uint64, tag = "1")]
    pub(crate) millis: u64,
    /// The message's number.
    #[prost(uint32, tag = "2")]
    pub(crate) seq: u32,
}

async fn sleep_then_report(name: &str, sleep: Sleep) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(sleep.millis)).await;
    tracing::info!(seq = sleep.seq, "slept");
    #[allow(clippy::print_stdout, reason = "the tests read this")]
    {
        println!("handled {name} {}", sleep.seq);
    }
    Ok(())
}

/// The graceful-shutdown scenario's job.
#[job(
    exchange = "jobs_worker_test",
    routing_key = "term",
    queue = "jobs_worker_test.term",
    timeout = "60s",
    concurrency = 3
)]
pub(crate) async fn term_job(sleep: Sleep, _ctx: JobContext) -> Result<(), JobError> {
    sleep_then_report("term_job", sleep).await
}

/// The SIGKILL scenario's job.
#[job(
    exchange = "jobs_worker_test",
    routing_key = "kill",
    queue = "jobs_worker_test.kill",
    timeout = "60s",
    concurrency = 3
)]
pub(crate) async fn kill_job(sleep: Sleep, _ctx: JobContext) -> Result<(), JobError> {
    sleep_then_report("kill_job", sleep).await
}

/// The readiness scenario's job.
#[job(
    exchange = "jobs_worker_test",
    routing_key = "ready",
    queue = "jobs_worker_test.ready",
    timeout = "60s",
    concurrency = 3
)]
pub(crate) async fn ready_job(sleep: Sleep, _ctx: JobContext) -> Result<(), JobError> {
    sleep_then_report("ready_job", sleep).await
}
