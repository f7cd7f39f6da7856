//! The job of the outbox measure, and where its handler reports.

use jobs_core::{JobError, job};

use crate::message::BenchJob;
use crate::tracker::Tracker;

/// Per job of the measurement under way: when it was handed over (the enqueue call, or the
/// commit of its transaction) and when its handler first started.
pub(super) static OUTBOX: Tracker = Tracker::new();

/// The job both routes deliver: on a quorum queue of its own (the framework's default type, and
/// the one an application that wants the outbox's guarantee would choose), at the concurrency
/// (and so prefetch) of the benchmark's other jobs. Its handler only records its start.
#[job(
    exchange = "jobs_bench",
    routing_key = "outbox",
    queue = "jobs_bench.outbox",
    queue_type = "quorum",
    concurrency = 100
)]
pub(super) async fn bench_outbox(job: BenchJob) -> Result<(), JobError> {
    OUTBOX.start(job.seq);
    Ok(())
}
