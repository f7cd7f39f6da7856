//! The transactional outbox (`jobs-outbox`) against plain enqueues, on the same broker, job
//! and queue, in one run.
//!
//! One job ([`BenchJob`](crate::message::BenchJob), on its own quorum queue, handled by an
//! engine in this process) reaches the broker two ways:
//!
//! * **enqueue**: `enqueue` from the framework's producer, publisher-confirmed: the framework
//!   column of the first table.
//! * **outbox**: `enqueue_in` an application's PostgreSQL transaction, then its commit; a
//!   [`Relay`] running in this process for the whole run with its defaults (woken by
//!   LISTEN/NOTIFY, 200 rows a pass or `--outbox-relay-batch`, a pool of two connections, as
//!   the worker runs it) publishes the rows with confirms and deletes them.
//!
//! Figures, with the two routes taking turns going first from run to run:
//!
//! * **Throughput** over `--n` jobs: the enqueue rate (until every `enqueue` call, or every
//!   commit, returned), the handled rate (until the last handler started, so for the outbox
//!   until the relay published every row), and this process's CPU per job (producers, relay
//!   and worker; not PostgreSQL's nor the broker's). The outbox writes from
//!   `--outbox-writers` concurrent transactions on as many connections, first one job per
//!   transaction, then `--outbox-batch` jobs per transaction. Plain enqueues have no
//!   transaction: their one measurement of the run fills the enqueue column of both.
//! * **Latency** at each of `--outbox-rates` jobs/s for `--latency-secs`, paced one job per
//!   task: from the `enqueue` call, or from the commit call (the relay cannot see a row
//!   before), to the handler's start; p50 and p99.
//!
//! The tables live in the schema [`SCHEMA`] of `--postgres-url`, emptied at
//! the start of each run. LISTEN/NOTIFY channels are per database rather than per schema: an
//! outbox test committing in the same database at the same time wakes the relay for nothing,
//! which costs it one empty pass.

mod database;
mod job;
mod relay;
mod write;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use jobs_core::Producer;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::redact_url;
use jobs_outbox::Relay;
use tokio::time::Instant;

use self::database::Database;
use self::job::{OUTBOX, bench_outbox};
use self::relay::RunningRelay;
use crate::framework::Framework;
use crate::measure::{Latency, as_f64, timed};
use crate::pace::Pacer;
use crate::plan::{Options, stall_limit};
use crate::raw::Raw;
use crate::report::{Route, Samples};

pub use self::database::SCHEMA;

/// The queues of the measure's job, which a run deletes before it and after.
///
/// # Errors
///
/// When the job's topology is invalid.
pub fn queues() -> anyhow::Result<Vec<String>> {
    Framework::job_queues(&bench_outbox::JOB)
}

/// The queue column of the outbox table: the job's queue type.
const QUEUE: &str = "quorum";

/// One run of the measure: both routes' throughput, then their latency at each rate, added to
/// `samples`.
///
/// # Errors
///
/// When PostgreSQL or the broker cannot be reached, a write or an enqueue fails, jobs are not
/// all handled within the stall limit, or a measurement leaves rows or messages behind.
pub(crate) async fn measure(
    options: &Options,
    run: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    ensure!(
        options.outbox_writers > 0 && options.outbox_batch > 0,
        "--outbox-writers and --outbox-batch must be at least 1"
    );
    let writers = u32::try_from(options.outbox_writers).context("--outbox-writers")?;
    let job = &bench_outbox::JOB;
    Raw::delete(&options.url, &Framework::job_queues(job)?)
        .await
        .context("raw lapin")?;
    let database = Database::connect(&options.postgres_url, writers)
        .await
        .with_context(|| format!("PostgreSQL at {}", redact_url(&options.postgres_url)))?;
    let transport = AmqpTransport::builder(options.url.as_str())
        .connection_name("jobs-bench outbox")
        .connect()
        .await?;
    let transport = Arc::new(transport);
    let framework = Framework::for_job(transport.clone(), job, options.producers).await?;
    framework.warm_up().await?;
    // The relay publishes over the same connection as the plain producer, each with a
    // producer of its own, as the worker's relay and its jobs share the worker's connection.
    jobs_outbox::set_notify(&database.relay(), options.outbox_notify).await?;
    let relay = Relay::new(database.relay(), Producer::new(transport.clone()))
        .batch(options.outbox_relay_batch);
    let relay = RunningRelay::start(relay, &database).await?;
    framework.purge().await?;
    let bench = Bench {
        framework: &framework,
        database: &database,
        writers: options.outbox_writers,
    };
    let measured = rows(&bench, options, run, samples).await;
    relay.stop().await?;
    database.close().await;
    transport.close().await;
    measured
}

/// The rows of one run, once everything is set up.
async fn rows(
    bench: &Bench<'_>,
    options: &Options,
    run: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let mut order = [Route::Enqueue, Route::Outbox];
    if run % 2 == 1 {
        order.reverse();
    }
    let mut sizes = vec![1, options.outbox_batch];
    sizes.dedup();
    let n = options.n;
    for route in order {
        match route {
            Route::Enqueue => {
                let figures = bench.throughput(route, n, 1).await?;
                for &per_tx in &sizes {
                    figures.add(samples, route, per_tx);
                }
            }
            Route::Outbox => {
                for &per_tx in &sizes {
                    bench
                        .throughput(route, n, per_tx)
                        .await?
                        .add(samples, route, per_tx);
                }
            }
        }
    }
    for &rate in &options.outbox_rates {
        for route in order {
            let latency = bench.paced(route, rate, options.latency_secs).await?;
            let label = |what: &str| format!("{what} latency at {rate}/s");
            samples.add_outbox(QUEUE, &label("p50"), "µs", route, latency.p50_us);
            samples.add_outbox(QUEUE, &label("p99"), "µs", route, latency.p99_us);
        }
    }
    Ok(())
}

/// What the measurements of a run share.
#[derive(Debug)]
struct Bench<'a> {
    framework: &'a Framework,
    database: &'a Database,
    /// Concurrent transactions of the unpaced outbox writes.
    writers: usize,
}

/// One throughput measurement's figures.
#[derive(Clone, Copy, Debug)]
struct Figures {
    /// Jobs/s until every `enqueue` or commit returned.
    enqueued: f64,
    /// Jobs/s until the last handler started.
    handled: f64,
    /// This process's CPU per job, in microseconds, over the whole measurement.
    cpu_us_per_job: f64,
}

impl Figures {
    /// Adds the figures to the lines of `per_tx` jobs per transaction.
    fn add(self, samples: &mut Samples, route: Route, per_tx: u64) {
        let plural = if per_tx == 1 { "" } else { "s" };
        let label = |what: &str| format!("{what}, outbox {per_tx} job{plural}/transaction");
        let mut add = |what: &str, unit, value| {
            samples.add_outbox(QUEUE, &label(what), unit, route, value);
        };
        add("enqueue rate", "jobs/s", self.enqueued);
        add("handled rate", "jobs/s", self.handled);
        add("CPU", "µs/job", self.cpu_us_per_job);
    }
}

impl Bench<'_> {
    /// Jobs `0..n` through `route` (`per_tx` per transaction for the outbox), unpaced, with
    /// the worker consuming from the start.
    async fn throughput(&self, route: Route, n: u64, per_tx: u64) -> anyhow::Result<Figures> {
        OUTBOX.reset(n);
        let engine = self.framework.consume().await?;
        let measured = timed(n, async {
            let start = Instant::now();
            match route {
                Route::Enqueue => self.framework.publish(n, None).await?,
                Route::Outbox => {
                    write::unpaced(self.database.writers(), self.writers, n, per_tx).await?;
                }
            }
            let enqueued = start.elapsed();
            handled(n).await?;
            Ok(enqueued)
        })
        .await;
        Framework::stop(engine).await;
        let (throughput, enqueued) = measured?;
        self.drained(n).await?;
        Ok(Figures {
            enqueued: as_f64(n) / enqueued.as_secs_f64(),
            handled: throughput.jobs_per_sec,
            cpu_us_per_job: throughput.cpu_us_per_job,
        })
    }

    /// Hand-over-to-handler latency of jobs sent through `route` at `rate` for `secs`
    /// seconds.
    async fn paced(&self, route: Route, rate: u32, secs: u64) -> anyhow::Result<Latency> {
        let count = u64::from(rate) * secs;
        OUTBOX.reset(count);
        let engine = self.framework.consume().await?;
        let pacer = Pacer::new(rate);
        let sent = match route {
            Route::Enqueue => write::paced_enqueue(self.framework.producer(), count, pacer).await,
            Route::Outbox => write::paced_outbox(self.database.writers(), count, pacer).await,
        };
        let done = match sent {
            Ok(()) => handled(count).await,
            Err(error) => Err(error),
        };
        Framework::stop(engine).await;
        done?;
        self.drained(count).await?;
        let (nanos, missing) = OUTBOX.lateness(|_| Duration::ZERO);
        ensure!(missing == 0, "{missing} of {count} jobs have no latency");
        // A handler cannot start before its hand-over; a negative difference would be a bug
        // of the stamps, not a fast job.
        let nanos = nanos
            .into_iter()
            .map(|late| u64::try_from(late).context("a handler started before its hand-over"))
            .collect::<anyhow::Result<_>>()?;
        Ok(Latency::of(nanos))
    }

    /// Checks that a measurement of `n` jobs left nothing behind: no message in the queue,
    /// no row in the outbox (waiting for the relay's last deletion), and no job handled
    /// twice.
    async fn drained(&self, n: u64) -> anyhow::Result<()> {
        self.database
            .until_empty(Instant::now() + stall_limit(n))
            .await?;
        let ready = self.framework.ready().await?;
        ensure!(ready == 0, "{ready} messages left in the queue");
        let twice = OUTBOX.duplicates();
        if twice > 0 {
            // At least once, by design: a pass whose deletion failed publishes again.
            eprintln!("jobs-bench: outbox: {twice} of {n} jobs were handled twice");
        }
        Ok(())
    }
}

/// Waits until `n` jobs of the measurement have started, within the stall limit.
async fn handled(n: u64) -> anyhow::Result<()> {
    if !OUTBOX.wait_until(Instant::now() + stall_limit(n)).await {
        bail!("only {} of {n} jobs handled", OUTBOX.started());
    }
    Ok(())
}
