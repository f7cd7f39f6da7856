//! Cost as work grows: one worker process serving 1, 10 and 100 job types, and one draining
//! backlogs of 10,000, 100,000 and 1,000,000 jobs.
//!
//! Both kinds of row start `jobs-bench-worker` (the scale-out measure's binary, which serves
//! these jobs too) as a process of its own, so that the benchmark's memory and CPU stay out of
//! the figures, which come from `/proc/PID/stat` and `/proc/PID/status`.
//!
//! * **Job types** (`--growth-types`): the worker serves the first K of the 100 generated jobs (`job::TYPES`), each a
//!   no-op on a classic queue of its own, their queues deleted before it starts. Startup is from
//!   spawning the process to `/readyz` answering 200 (every job's topology declared and its
//!   consumer attached). The worker then idles for 2 s (`SETTLE`) plus `--idle-secs`; idle CPU is
//!   over the latter (from its threads' `schedstat`, to the nanosecond), and idle RSS is
//!   `VmRSS` at its end. Last, the benchmark enqueues `--n`
//!   jobs spread evenly over the K types with one `enqueue_all`, and the rate is from its first
//!   enqueue to the worker's summed `jobs_succeeded_total` reaching `--n`.
//! * **Backlogs** (`--growth-backlogs`): the benchmark fills the queue of
//!   `job::growth_backlog` (classic, prefetch 100), then starts the worker and samples its
//!   `VmHWM` until the queue is drained. The drain rate counts only the jobs handled once the
//!   worker was ready. A worker that holds what it has prefetched, and nothing per job it has
//!   settled, has the same peak however long the backlog.
//!
//! Every queue the rows declare is deleted at the end (the exchange, shared by all of them,
//! stays, as the other measures' do).

pub(crate) mod job;
pub mod report;
mod worker;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use jobs_core::{Enqueue, Job, Producer};

use crate::framework::Framework;
use crate::measure::as_f64;
use crate::message::BenchJob;
use crate::plan::Options;
use crate::raw::Raw;
use crate::scale_out::cpu_seconds;
use report::{BacklogSample, GrowthSamples, TypesSample, mib};
use worker::Worker;

/// How long a fresh worker idles before its idle CPU is taken: its first seconds still hold
/// the end of its startup (the readiness supervisor's first rounds, lazily built state).
const SETTLE: Duration = Duration::from_secs(2);

/// Jobs per `enqueue_all` of a fill: the ids it returns are kept until it ends.
const FILL_BATCH: u64 = 100_000;

/// Every row of the growth measure, `--runs` times, adding each run's figures to `samples`.
///
/// # Errors
///
/// When the worker binary is missing, the broker cannot be reached, a worker does not get
/// ready or stalls, or jobs are left behind.
pub async fn measure(options: &Options, samples: &mut GrowthSamples) -> anyhow::Result<()> {
    ensure!(
        options
            .growth_types
            .iter()
            .all(|&k| (1..=job::TYPES.len()).contains(&k)),
        "--growth-types must list numbers from 1 to {}",
        job::TYPES.len()
    );
    ensure!(
        options.growth_backlogs.iter().all(|&n| n > 0),
        "--growth-backlogs must list numbers of at least 1"
    );
    let binary = crate::scale_out::worker_binary(options)?;
    let queues = queues()?;
    Raw::delete(&options.url, &queues)
        .await
        .context("raw lapin")?;
    let result = async {
        for run in 0..options.runs {
            let mut types = options.growth_types.clone();
            let mut backlogs = options.growth_backlogs.clone();
            // Alternate the order, so that neither end always meets a fresher broker.
            if run % 2 == 1 {
                types.reverse();
                backlogs.reverse();
            }
            for &k in &types {
                let sample = types_row(options, &binary, k).await?;
                eprintln!(
                    "jobs-bench: growth: {k} job types, run {}: ready in {:.2} s, idle {:.2} % \
                     CPU, {:.1} MiB; {:.0} jobs/s, {:.1} µs/job, peak {:.1} MiB",
                    run + 1,
                    sample.startup_secs,
                    sample.idle_cpu_percent,
                    sample.idle_rss_mib,
                    sample.jobs_per_sec,
                    sample.worker_cpu_us_per_job,
                    sample.peak_rss_mib,
                );
                samples.types.push(sample);
            }
            for &n in &backlogs {
                let sample = backlog_row(options, &binary, n).await?;
                eprintln!(
                    "jobs-bench: growth: backlog of {n}, run {}: {:.0} jobs/s, {:.1} µs/job, \
                     peak {:.1} MiB, {:.1} MiB drained",
                    run + 1,
                    sample.jobs_per_sec,
                    sample.worker_cpu_us_per_job,
                    sample.peak_rss_mib,
                    sample.end_rss_mib,
                );
                samples.backlogs.push(sample);
            }
        }
        anyhow::Ok(())
    }
    .await;
    Raw::delete(&options.url, &queues)
        .await
        .context("deleting the growth measure's queues")?;
    result
}

/// The queues of every job the growth measure declares.
///
/// # Errors
///
/// Never for these jobs, whose topology is valid.
pub fn queues() -> anyhow::Result<Vec<String>> {
    let mut queues = Vec::new();
    for job in job::TYPES
        .iter()
        .copied()
        .chain([&job::growth_backlog::JOB])
    {
        queues.extend(Framework::job_queues(job)?);
    }
    Ok(queues)
}

/// One job-types row once: start a worker serving `k` types, time its startup, watch it idle,
/// then time `--n` jobs through it.
async fn types_row(
    options: &Options,
    binary: &std::path::Path,
    k: usize,
) -> anyhow::Result<TypesSample> {
    let jobs = &job::TYPES[..k];
    let mut queues = Vec::new();
    for &job in jobs {
        queues.extend(Framework::job_queues(job)?);
    }
    // Gone before the worker starts, so that its startup declares every one of them.
    Raw::delete(&options.url, &queues)
        .await
        .context("raw lapin")?;
    let started = Instant::now();
    let mut worker = Worker::start(binary, &options.url, jobs)?;
    tokio::task::block_in_place(|| worker.wait_ready())?;
    let startup_secs = started.elapsed().as_secs_f64();

    tokio::time::sleep(SETTLE).await;
    let idle = Duration::from_secs(options.idle_secs);
    let cpu_before = worker.thread_cpu_seconds()?;
    tokio::time::sleep(idle).await;
    let idle_cpu = worker.thread_cpu_seconds()? - cpu_before;
    let idle_rss_mib = mib(worker.rss_kib()?);

    let n = options.n;
    let transport = crate::scale_out::connect(&options.url).await?;
    let producer = Producer::new(transport.clone());
    let cpu_before = cpu_seconds(&[worker.pid()])?;
    let timed = Instant::now();
    let handled = worker.handled()?;
    fill(&producer, jobs, n).await?;
    tokio::task::block_in_place(|| worker.wait_handled(handled + n))?;
    let seconds = timed.elapsed().as_secs_f64();
    let worker_cpu = cpu_seconds(&[worker.pid()])? - cpu_before;
    let peak_rss_mib = mib(worker.peak_rss_kib()?);
    transport.close().await;
    worker.stop()?;
    // Not left for the next rows: the broker is shared, and a hundred jobs hold 200 queues.
    Raw::delete(&options.url, &queues)
        .await
        .context("raw lapin")?;
    Ok(TypesSample {
        types: k,
        startup_secs,
        idle_cpu_percent: idle_cpu * 100.0 / idle.as_secs_f64().max(f64::EPSILON),
        idle_rss_mib,
        jobs: n,
        jobs_per_sec: as_f64(n) / seconds,
        worker_cpu_us_per_job: worker_cpu * 1e6 / as_f64(n),
        peak_rss_mib,
    })
}

/// One backlog row once: fill the backlog queue with `n` jobs, then time a worker draining
/// it, sampling its resident set.
async fn backlog_row(
    options: &Options,
    binary: &std::path::Path,
    n: u64,
) -> anyhow::Result<BacklogSample> {
    let job = &job::growth_backlog::JOB;
    let transport = crate::scale_out::connect(&options.url).await?;
    // Declares the job's topology and empties its queue.
    let framework = Framework::for_job(transport.clone(), job, options.producers).await?;
    let producer = Producer::new(transport.clone());
    let filling = Instant::now();
    fill(&producer, &[job], n).await?;
    let ready = framework.ready().await?;
    ensure!(
        ready == n,
        "{ready} of {n} jobs in the queue after the fill"
    );
    eprintln!(
        "jobs-bench: growth: {n} jobs waiting, filled in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let mut worker = Worker::start(binary, &options.url, &[job])?;
    let drained = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        // Timed from the first job handled rather than from readiness: the consumer may drain
        // a small backlog before the worker reports itself ready.
        let before = worker.wait_first_handled()?;
        let cpu_before = cpu_seconds(&[worker.pid()])?;
        let timed = Instant::now();
        worker.wait_handled(n)?;
        let seconds = timed.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&[worker.pid()])? - cpu_before;
        Ok((before, seconds, cpu))
    });
    let rss = drained
        .as_ref()
        .ok()
        .map(|_| (worker.peak_rss_kib(), worker.rss_kib()));
    worker.stop()?;
    let (before, seconds, cpu) = drained?;
    let left = framework.ready().await?;
    transport.close().await;
    ensure!(left == 0, "{left} jobs left in the queue after the drain");
    let (peak, end) = rss.map_or((Ok(0), Ok(0)), |rss| rss);
    let timed_jobs = n.saturating_sub(before);
    ensure!(
        timed_jobs > 0,
        "all {n} jobs were handled before the drain could be timed"
    );
    Ok(BacklogSample {
        backlog: n,
        timed_jobs,
        seconds,
        jobs_per_sec: as_f64(timed_jobs) / seconds,
        worker_cpu_us_per_job: cpu * 1e6 / as_f64(timed_jobs),
        peak_rss_mib: mib(peak?),
        end_rss_mib: mib(end?),
    })
}

/// Enqueues jobs `0..n`, job `i` of type `jobs[i mod len]`, in batches of [`FILL_BATCH`]
/// with `enqueue_all`'s window of publishes in flight.
async fn fill(producer: &Producer, jobs: &[&'static Job], n: u64) -> anyhow::Result<()> {
    let mut start = 0;
    let types = u64::try_from(jobs.len())?;
    while start < n {
        let end = (start + FILL_BATCH).min(n);
        jobs_core::enqueue_all(
            producer,
            (start..end).map(|seq| {
                let job = jobs[usize::try_from(seq % types).unwrap_or(0)];
                Enqueue::new(job, BenchJob::new(seq))
            }),
        )
        .await?;
        start = end;
    }
    Ok(())
}
