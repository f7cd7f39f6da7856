//! What delays and retries cost: the framework's jobs straight to their queue against through
//! the broker's shared delay cascade (see `jobs_core::delay`).
//!
//! * **Delayed publish**: the same jobs from the same producers, `enqueue` against
//!   `.delay(1 s).enqueue` (or another delay): client jobs/s and CPU per job, and how fast the
//!   jobs become ready in their queue, less the delay.
//! * **Retry path**: jobs whose first attempt fails and second succeeds, retried after 1 s
//!   through the job's own retry queue (`#[job(retries = 1, backoff = "1s")]`,
//!   `JobError::retry`) or through the cascade (`JobError::retry_after(_, 1 s)`): the wall time
//!   from the first enqueue to the last success, the retry path's jobs/s, client CPU per job,
//!   and how late each second attempt started against 1 s after its failure.
//! * **Delay spread**: jobs with many distinct delays, each one's start against its enqueue
//!   plus its delay.
//!
//! These measures run the framework only, on quorum work queues (the framework's default)
//! except the delayed publish, which runs on each queue kind of the plan.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};
use jobs_core::transport::Transport;
use jobs_core::{JobContext, JobError, job};
use tokio::time::Instant;

use crate::framework::{Delays, Framework};
use crate::measure::{Lateness, as_f64, timed};
use crate::message::BenchJob;
use crate::plan::stall_limit;
use crate::report::{Path, Samples};
use crate::tracker::Tracker;

/// The wait of both retry paths.
pub const DELAY: Duration = Duration::from_secs(1);

/// How late a delayed job may start and still count as on time.
pub const TOLERANCE: Duration = Duration::from_millis(1500);

/// Fails its first attempt, to be retried through its own retry queue 1 s later.
#[job(
    exchange = "jobs_bench",
    routing_key = "retry_backoff",
    queue = "jobs_bench.retry_backoff",
    queue_type = "quorum",
    retries = 1,
    backoff = "1s",
    concurrency = 100
)]
async fn bench_retry_backoff(job: BenchJob, ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        TRACKER.fail(job.seq);
        return Err(JobError::retry("the first attempt fails"));
    }
    TRACKER.start(job.seq);
    Ok(())
}

/// Fails its first attempt, to be retried through the delay cascade 1 s later.
#[job(
    exchange = "jobs_bench",
    routing_key = "retry_after",
    queue = "jobs_bench.retry_after",
    queue_type = "quorum",
    retries = 1,
    backoff = "1s",
    concurrency = 100
)]
async fn bench_retry_after(job: BenchJob, ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        TRACKER.fail(job.seq);
        return Err(JobError::retry_after("the first attempt fails", DELAY));
    }
    TRACKER.start(job.seq);
    Ok(())
}

/// Records when a delayed job starts.
#[job(
    exchange = "jobs_bench",
    routing_key = "delayed",
    queue = "jobs_bench.delayed",
    queue_type = "quorum",
    concurrency = 100
)]
async fn bench_delayed(job: BenchJob) -> Result<(), JobError> {
    TRACKER.sent(job.seq, job.sent_nanos);
    TRACKER.start(job.seq);
    Ok(())
}

/// The jobs of these measures, whose queues each run deletes and declares anew.
#[must_use]
pub fn jobs() -> [&'static jobs_core::Job; 3] {
    [
        &bench_retry_backoff::JOB,
        &bench_retry_after::JOB,
        &bench_delayed::JOB,
    ]
}

/// Where the handlers of these measures report: per job, when it was due from (its enqueue,
/// or its failed first attempt) and when it first started after that.
pub static TRACKER: Tracker = Tracker::new();

/// Plain enqueues of `n` jobs against enqueues delayed by `delay`, from the same producer, then
/// until they are all ready in the job's queue, which is emptied after each.
///
/// # Errors
///
/// An enqueue error, or jobs not all ready within the stall limit.
pub(crate) async fn delayed_publish(
    framework: &Framework,
    queue: &str,
    n: u64,
    delay: Duration,
    delayed_first: bool,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    framework.warm_up().await?;
    framework.purge().await?;
    let secs = delay.as_secs();
    let mut order = [Path::Direct, Path::Cascade];
    if delayed_first {
        order.reverse();
    }
    for path in order {
        let (delays, wait) = match path {
            Path::Direct => (Delays::None, Duration::ZERO),
            Path::Cascade => (Delays::Fixed(delay), delay),
        };
        let start = Instant::now();
        let (published, ()) = timed(n, framework.publish_delayed(n, delays)).await?;
        let deadline = Instant::now() + wait + stall_limit(n);
        let ready = loop {
            let ready = framework.ready().await?;
            if ready >= n {
                break start.elapsed();
            }
            ensure!(
                Instant::now() < deadline,
                "only {ready} of {n} jobs ready in {} after {:?}",
                framework.job().queue(),
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        framework.purge().await?;
        let net = ready.saturating_sub(wait).max(Duration::from_millis(1));
        let label = |what: &str| format!("{what} (delay {secs} s)");
        samples.add_path(
            queue,
            &label("enqueue rate"),
            "jobs/s",
            path,
            published.jobs_per_sec,
        );
        samples.add_path(
            queue,
            &label("enqueue CPU"),
            "µs/job",
            path,
            published.cpu_us_per_job,
        );
        samples.add_path(
            queue,
            &label("ready rate, less the delay"),
            "jobs/s",
            path,
            as_f64(n) / net.as_secs_f64(),
        );
    }
    Ok(())
}

/// `n` jobs failing their first attempt, retried 1 s later through the job's retry queue and
/// through the cascade, in the order `backoff_first` says.
///
/// # Errors
///
/// When a job is not retried within the stall limit, or lands in the error queue.
pub(crate) async fn retries(
    transport: &Arc<dyn Transport>,
    producers: usize,
    n: u64,
    backoff_first: bool,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let mut order = [Path::Direct, Path::Cascade];
    if !backoff_first {
        order.reverse();
    }
    for path in order {
        let (job, error_queue) = match path {
            Path::Direct => (&bench_retry_backoff::JOB, bench_retry_backoff::ERROR_QUEUE),
            Path::Cascade => (&bench_retry_after::JOB, bench_retry_after::ERROR_QUEUE),
        };
        let framework = Framework::for_job(Arc::clone(transport), job, producers).await?;
        framework.warm_up().await?;
        framework.purge().await?;
        TRACKER.reset(n);
        let engine = framework.consume().await?;
        let start = Instant::now();
        let (retried, ()) = timed(n, async {
            framework.publish(n, None).await?;
            let deadline = Instant::now() + DELAY + stall_limit(n);
            if !TRACKER.wait_until(deadline).await {
                bail!(
                    "only {} of {n} jobs of {} succeeded on their retry after {:?}",
                    TRACKER.started(),
                    job.queue(),
                    start.elapsed()
                );
            }
            Ok(())
        })
        .await?;
        let wall = start.elapsed();
        Framework::stop(engine).await;
        let left = framework.ready().await? + framework.ready_in(error_queue).await?;
        ensure!(
            left == 0,
            "{left} messages left in {} and its error queue",
            job.queue()
        );
        let (lateness, _) = TRACKER.lateness(|_| DELAY);
        let lateness = Lateness::of(lateness, TOLERANCE);
        let net = TRACKER
            .span()
            .saturating_sub(DELAY)
            .max(Duration::from_millis(1));
        let queue = "quorum";
        samples.add_path(queue, "retry wall", "s", path, wall.as_secs_f64());
        samples.add_path(
            queue,
            "retry rate, less the delay",
            "jobs/s",
            path,
            as_f64(n) / net.as_secs_f64(),
        );
        samples.add_path(queue, "retry CPU", "µs/job", path, retried.cpu_us_per_job);
        samples.add_path(queue, "retry p50 lateness", "ms", path, lateness.p50_ms);
        samples.add_path(queue, "retry p99 lateness", "ms", path, lateness.p99_ms);
        samples.add_path(queue, "retry max lateness", "ms", path, lateness.max_ms);
    }
    Ok(())
}

/// `n` jobs with `distinct` delays from 0 to `max_secs`, enqueued at once: each one's start
/// against its enqueue plus its delay.
///
/// # Errors
///
/// An enqueue error.
pub(crate) async fn spread(
    transport: &Arc<dyn Transport>,
    producers: usize,
    n: u64,
    distinct: u64,
    max_secs: u64,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let framework =
        Framework::for_job(Arc::clone(transport), &bench_delayed::JOB, producers).await?;
    let delays = Delays::Spread { max_secs, distinct };
    framework.warm_up().await?;
    framework.purge().await?;
    TRACKER.reset(n);
    let engine = framework.consume().await?;
    let start = Instant::now();
    framework.publish_delayed(n, delays).await?;
    let deadline = start + Duration::from_secs(max_secs) + stall_limit(n);
    let progress = Duration::from_secs(30);
    while !TRACKER
        .wait_until(deadline.min(Instant::now() + progress))
        .await
    {
        if Instant::now() >= deadline {
            break;
        }
        eprintln!(
            "jobs-bench: delay spread: {} of {n} jobs started after {} s of {max_secs} s",
            TRACKER.started(),
            start.elapsed().as_secs()
        );
    }
    Framework::stop(engine).await;
    let failed = framework.ready_in(bench_delayed::ERROR_QUEUE).await?;
    framework.purge().await?;
    let (lateness, missing) = TRACKER.lateness(|seq| delays.of(seq).unwrap_or_default());
    let duplicates = TRACKER.duplicates();
    let latest: Vec<_> = {
        let mut indexed: Vec<(i64, u64)> = lateness.iter().copied().zip(0..).collect();
        indexed.sort_unstable_by_key(|&(late, _)| std::cmp::Reverse(late));
        indexed
            .into_iter()
            .take(3)
            .map(|(late, seq)| {
                let delay = delays.of(seq).unwrap_or_default().as_secs();
                format!("{} ms late on {delay} s", late / 1_000_000)
            })
            .collect()
    };
    eprintln!(
        "jobs-bench: delay spread: {missing} of {n} never started, {duplicates} started twice, \
         {failed} in the error queue; latest: {}",
        latest.join(", ")
    );
    let lateness = Lateness::of(lateness, TOLERANCE);
    let queue = "quorum";
    let label = |what: &str| format!("{n} jobs, {distinct} delays 0–{max_secs} s: {what}");
    let path = Path::Cascade;
    samples.add_path(queue, &label("min lateness"), "ms", path, lateness.min_ms);
    samples.add_path(queue, &label("p50 lateness"), "ms", path, lateness.p50_ms);
    samples.add_path(queue, &label("p99 lateness"), "ms", path, lateness.p99_ms);
    samples.add_path(queue, &label("max lateness"), "ms", path, lateness.max_ms);
    samples.add_path(
        queue,
        &label("started outside [d, d + 1.5 s]"),
        "jobs",
        path,
        as_f64(lateness.outside),
    );
    samples.add_path(
        queue,
        &label("never started"),
        "jobs",
        path,
        as_f64(missing),
    );
    Ok(())
}
