//! The measurement plan: which measures run, on which client and queue, in which order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use jobs_core::engine::Engine;
use jobs_core::testing::DEFAULT_BROKER_URL;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_url};
use jobs_outbox::testing::DEFAULT_POSTGRES_URL;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::bare::Bare;
use crate::framework::Framework;
use crate::growth::report::{BacklogRow, GrowthSamples, TypesRow};
use crate::measure::{Latency, Throughput, as_f64, timed};
use crate::pace::Pacer;
use crate::raw::Raw;
use crate::report::{
    CallRow, CascadeRow, OutboxRow, Report, Row, Samples, ScaleRow, ScaleSample, Side,
};
use crate::rounds::{Round, RoundsRow};
use crate::scale_out::ScaleSetup;
use crate::sink::SINK;
use crate::{QueueKind, calls, delays, outbox};

/// The benchmark's command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "jobs-bench",
    about = "The framework against raw lapin, in one run"
)]
pub struct Options {
    /// Jobs per throughput measurement.
    #[arg(long, default_value_t = 50_000)]
    pub n: u64,
    /// Runs; the table shows the median of each figure.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The broker.
    #[arg(long, env = "JOBS_AMQP_URL", default_value = DEFAULT_BROKER_URL)]
    pub url: String,
    /// Queue kinds to measure.
    #[arg(long, value_delimiter = ',', default_values = ["classic", "quorum"])]
    pub queues: Vec<QueueKind>,
    /// Paced rates, in jobs/s, at which to measure latency.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000])]
    pub rates: Vec<u32>,
    /// How long each paced latency measurement lasts, in seconds.
    #[arg(long, default_value_t = 2)]
    pub latency_secs: u64,
    /// Paced latency rounds per rate, queue and run, raw lapin and the framework one right
    /// after the other in each ([`crate::rounds`]).
    #[arg(long, default_value_t = 5)]
    pub latency_rounds: usize,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "jobs-bench.json")]
    pub json: PathBuf,
    /// Producer tasks of each client, sharing the 1,000 publishes in flight: 1,000 is one
    /// publish per task awaiting its confirm in line, as request handlers would each enqueue
    /// one job; 1 is one task pipelining them all. Raw lapin and the framework run in the same
    /// shape, so that their CPU per job compares the clients, not the shapes.
    #[arg(long, default_value_t = 1_000)]
    pub producers: usize,
    /// Leaves out the in-memory transport.
    #[arg(long)]
    pub no_memory: bool,
    /// Measures to run (all but `delay-spread` by default); fewer make a profile easier to
    /// read.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = [
            "publish",
            "batch-publish",
            "consume",
            "end-to-end",
            "latency",
            "delayed-publish",
            "retry",
        ]
    )]
    pub measures: Vec<Measure>,
    /// The delay of the delayed enqueues (`delayed-publish`), in seconds: 1 has the cascade
    /// dead-letter during the enqueues, a delay longer than they last has it wait until after.
    #[arg(long, default_value_t = 1)]
    pub publish_delay: u64,
    /// Jobs per retry measurement (`retry`), each failing once and retried after 1 s.
    #[arg(long, default_value_t = 5_000)]
    pub retry_n: u64,
    /// Jobs of the delay spread (`delay-spread`).
    #[arg(long, default_value_t = 2_000)]
    pub spread_jobs: u64,
    /// Distinct delays of the delay spread, evenly from 0 to `--max-delay`.
    #[arg(long, default_value_t = 200)]
    pub spread_delays: u64,
    /// The longest delay of the delay spread, in seconds: it lasts this long, and more.
    #[arg(long, default_value_t = 600)]
    pub max_delay: u64,
    /// Clients to run (all by default; `grpc` only runs in `calls`).
    #[arg(long, value_delimiter = ',', default_values = ["raw", "framework", "grpc"])]
    pub clients: Vec<ClientKind>,
    /// Calls per `calls` measurement with more than one caller.
    #[arg(long, default_value_t = 20_000)]
    pub calls: u64,
    /// Calls per `calls` measurement with a single caller, which makes one call at a time.
    #[arg(long, default_value_t = 5_000)]
    pub serial_calls: u64,
    /// Concurrent callers of the `calls` measure, sharing one client.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    pub callers: Vec<usize>,
    /// Worker processes of the `scale-out` rows, each draining `--n` jobs from one queue.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    pub scale_workers: Vec<usize>,
    /// Brokers of the `scale-out` rows: `single` (`--url`) and `cluster` (a private
    /// three-node cluster, which needs the rabbitmq-server package).
    #[arg(long, value_delimiter = ',', default_values = ["single", "cluster"])]
    pub scale_setups: Vec<ScaleSetup>,
    /// How long the `scale-out` job's handler sleeps, in milliseconds (0: it does nothing).
    #[arg(long, default_value_t = 0)]
    pub scale_sleep_ms: u64,
    /// The worker binary of the `scale-out` rows [default: `jobs-bench-worker` beside this
    /// program].
    #[arg(long)]
    pub worker_binary: Option<PathBuf>,
    /// The PostgreSQL of the `outbox` measure; its tables go in a schema of their own,
    /// `jobs_bench`, set as each connection's `search_path`.
    #[arg(long, env = "JOBS_POSTGRES_URL", default_value = DEFAULT_POSTGRES_URL)]
    pub postgres_url: String,
    /// Concurrent transactions of the `outbox` measure's unpaced writes, each on a connection
    /// of its own.
    #[arg(long, default_value_t = 32)]
    pub outbox_writers: usize,
    /// Jobs per transaction of the `outbox` measure's batched rows (1 leaves them out).
    #[arg(long, default_value_t = 100)]
    pub outbox_batch: u64,
    /// Rows the `outbox` measure's relay publishes per pass (its default: 200).
    #[arg(long, default_value_t = 200)]
    pub outbox_relay_batch: u32,
    /// Whether the `outbox` measure's trigger notifies the relay at each commit (`true`, the
    /// default), or the relay polls every 100 ms (`false`, `jobs_outbox::set_notify`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_notify: bool,
    /// Paced rates, in jobs/s, at which the `outbox` measure takes latency (each for
    /// `--latency-secs`).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000])]
    pub outbox_rates: Vec<u32>,
    /// Checks the figures against the performance floors ([`crate::floors`]) and fails when
    /// one is not kept.
    #[arg(long)]
    pub check_floors: bool,
    /// Job types of the `growth` measure's rows: a worker process serving the first K of its
    /// hundred generated job types.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100])]
    pub growth_types: Vec<usize>,
    /// Backlogs of the `growth` measure's rows: jobs waiting in one queue before a worker
    /// process starts draining it.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000, 1_000_000])]
    pub growth_backlogs: Vec<u64>,
    /// How long the `growth` measure's workers idle while their CPU is taken, in seconds.
    #[arg(long, default_value_t = 5)]
    pub idle_secs: u64,
    /// The pid of `--url`'s broker VM (`beam.smp`), for its CPU in the `scale-out` rows
    /// [default: the one `beam.smp` that is not a private node, if there is exactly one].
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// A measure of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Measure {
    /// Publish-only throughput.
    Publish,
    /// Publish-only throughput of one batch of `--n` jobs: the framework's `enqueue_all`
    /// against raw lapin's publisher, which always pipelines its confirms.
    BatchPublish,
    /// Consume-only throughput, from the queue the publish filled (so it needs `publish`).
    Consume,
    /// Producer and consumer at the same time.
    EndToEnd,
    /// Paced send-to-handle latency.
    Latency,
    /// Plain against delayed enqueues of the framework (1 s, or `--publish-delay`), on each
    /// queue kind.
    DelayedPublish,
    /// Jobs failing once and retried 1 s later, through their own retry queue and through the
    /// delay cascade.
    Retry,
    /// How late jobs with many distinct delays start (as long as `--max-delay`: not run by
    /// default).
    DelaySpread,
    /// Request/reply calls from 1, 10 and 100 callers (`--callers`): the framework's
    /// `my_job::call` against raw lapin over direct reply-to, and tonic gRPC on loopback (not
    /// run by default).
    Calls,
    /// 1, 2 and 4 worker processes (`--scale-workers`) draining one pre-filled quorum queue,
    /// on `--url` and on a private three-node cluster (`--scale-setups`; not run by default).
    ScaleOut,
    /// Plain enqueues against jobs written in PostgreSQL transactions and published by the
    /// outbox relay: throughput and latency (`--postgres-url`; not run by default, as it needs
    /// a PostgreSQL).
    Outbox,
    /// One worker process serving 1, 10 and 100 job types (`--growth-types`: startup, idle
    /// CPU and memory, throughput) and draining backlogs of 10,000 to 1,000,000 jobs
    /// (`--growth-backlogs`: peak memory, drain rate); not run by default.
    Growth,
}

/// A client the plan can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// Raw lapin.
    Raw,
    /// The framework.
    Framework,
    /// tonic gRPC, the reference of the `calls` measure.
    Grpc,
}

/// What the JSON file holds.
#[derive(Debug, Serialize)]
struct Results<'a> {
    n: u64,
    runs: usize,
    latency_secs: u64,
    publish_delay: u64,
    retry_n: u64,
    spread_jobs: u64,
    spread_delays: u64,
    max_delay: u64,
    calls: u64,
    serial_calls: u64,
    callers: &'a [usize],
    scale_workers: &'a [usize],
    scale_sleep_ms: u64,
    outbox_writers: usize,
    outbox_batch: u64,
    outbox_relay_batch: u32,
    outbox_notify: bool,
    outbox_rates: &'a [u32],
    growth_types: &'a [usize],
    growth_backlogs: &'a [u64],
    idle_secs: u64,
    url: String,
    postgres_url: String,
    cpus: usize,
    cpu_model: String,
    rows: &'a [Row],
    cascade_rows: &'a [CascadeRow],
    call_rows: &'a [CallRow],
    scale_rows: &'a [ScaleRow],
    scale_samples: &'a [ScaleSample],
    outbox_rows: &'a [OutboxRow],
    latency_rounds: usize,
    round_rows: &'a [RoundsRow],
    growth_types_rows: &'a [TypesRow],
    growth_backlog_rows: &'a [BacklogRow],
    growth_samples: &'a GrowthSamples,
}

/// One client under measurement: raw lapin or the framework.
pub(crate) trait Client {
    /// A consumer while it runs.
    type Running;
    /// Publishes jobs `0..count` and returns once all are confirmed.
    async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()>;
    /// Publishes jobs `0..count` as one batch and returns once all are confirmed.
    async fn publish_batch(&self, count: u64) -> anyhow::Result<()>;
    /// Starts consuming; each handled job reaches the [`SINK`].
    async fn start(&self, count: u64) -> anyhow::Result<Self::Running>;
    /// Stops the consumer once the sink has seen every job.
    async fn stop(&self, running: Self::Running) -> anyhow::Result<()>;
    /// Messages still ready in the queue.
    async fn ready(&self) -> anyhow::Result<u64>;
    /// Empties the queue.
    async fn purge(&self) -> anyhow::Result<()>;
}

impl Client for Raw {
    type Running = JoinHandle<anyhow::Result<()>>;

    async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()> {
        Raw::publish(self, count, pacer).await
    }

    async fn publish_batch(&self, count: u64) -> anyhow::Result<()> {
        Raw::publish(self, count, None).await
    }

    async fn start(&self, count: u64) -> anyhow::Result<Self::Running> {
        self.consume(count).await
    }

    async fn stop(&self, running: Self::Running) -> anyhow::Result<()> {
        running.await?
    }

    async fn ready(&self) -> anyhow::Result<u64> {
        Raw::ready(self).await
    }

    async fn purge(&self) -> anyhow::Result<()> {
        Raw::purge(self).await
    }
}

impl Client for Framework {
    type Running = Engine;

    async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()> {
        Framework::publish(self, count, pacer).await
    }

    async fn publish_batch(&self, count: u64) -> anyhow::Result<()> {
        Framework::publish_batch(self, count).await
    }

    async fn start(&self, _count: u64) -> anyhow::Result<Self::Running> {
        self.consume().await
    }

    async fn stop(&self, running: Self::Running) -> anyhow::Result<()> {
        Framework::stop(running).await;
        Ok(())
    }

    async fn ready(&self) -> anyhow::Result<u64> {
        Framework::ready(self).await
    }

    async fn purge(&self) -> anyhow::Result<()> {
        Framework::purge(self).await
    }
}

/// Runs the benchmark, writes the JSON and returns the rows of both tables.
///
/// # Errors
///
/// When the broker (or, for `outbox`, PostgreSQL) cannot be reached, a run fails or stalls, or
/// the JSON cannot be written.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    ensure!(
        options.n > 0
            && options.runs > 0
            && options.retry_n > 0
            && options.spread_jobs > 0
            && options.calls > 0
            && options.serial_calls > 0,
        "--n, --runs, --retry-n, --spread-jobs, --calls and --serial-calls must be at least 1"
    );
    let runs = |measure| options.measures.contains(&measure);
    let framework_runs = options.clients.contains(&ClientKind::Framework);
    // The measures of the first table, and the delayed publish, which shares their clients.
    let main_measures = [
        Measure::Publish,
        Measure::BatchPublish,
        Measure::Consume,
        Measure::EndToEnd,
        Measure::Latency,
        Measure::DelayedPublish,
    ]
    .into_iter()
    .any(runs);
    eprintln!(
        "jobs-bench: {} jobs, {} runs, latency for {} s at {:?} jobs/s, on {}",
        options.n,
        options.runs,
        options.latency_secs,
        options.rates,
        redact_url(&options.url)
    );
    if runs(Measure::Outbox) {
        eprintln!(
            "jobs-bench: outbox on {}, {} writers, {} jobs per batched transaction, relay batch \
             {}, {}, latency at {:?} jobs/s",
            redact_url(&options.postgres_url),
            options.outbox_writers,
            options.outbox_batch,
            options.outbox_relay_batch,
            if options.outbox_notify {
                "woken by NOTIFY"
            } else {
                "polling every 100 ms"
            },
            options.outbox_rates
        );
    }
    let mut samples = Samples::default();
    for run in 0..options.runs {
        let queues = if main_measures {
            options.queues.as_slice()
        } else {
            &[]
        };
        for &kind in queues {
            let raw = Raw::connect(&options.url, kind)
                .await
                .context("raw lapin")?
                .with_producers(options.producers);
            let transport = AmqpTransport::builder(options.url.as_str())
                .connection_name("jobs-bench framework")
                .connect()
                .await?;
            let transport = Arc::new(transport);
            Raw::delete(&options.url, &Framework::queues(kind)?).await?;
            let framework = Framework::new(transport.clone(), kind, options.producers).await?;
            // Alternate which client goes first, so neither always meets a warmer broker.
            let mut order = [ClientKind::Raw, ClientKind::Framework];
            if run % 2 == 1 {
                order.reverse();
            }
            for client in order.into_iter().filter(|c| options.clients.contains(c)) {
                match client {
                    ClientKind::Raw => {
                        measure(&raw, kind.name(), Side::Raw, options, &mut samples).await?;
                    }
                    ClientKind::Framework => {
                        let side = Side::Framework;
                        measure(&framework, kind.name(), side, options, &mut samples).await?;
                    }
                    ClientKind::Grpc => {}
                }
            }
            if runs(Measure::Latency) {
                latency_rounds(&raw, &framework, kind.name(), run, options, &mut samples).await?;
            }
            if framework_runs && runs(Measure::DelayedPublish) {
                let delayed_first = run % 2 == 1;
                let (queue, n) = (kind.name(), options.n);
                let delay = Duration::from_secs(options.publish_delay);
                delays::delayed_publish(&framework, queue, n, delay, delayed_first, &mut samples)
                    .await?;
            }
            raw.close().await;
            transport.close().await;
        }
        if main_measures && !options.no_memory && framework_runs {
            let memory = Framework::new(
                Arc::new(MemoryTransport::new()),
                QueueKind::Classic,
                options.producers,
            )
            .await?;
            // The bare baseline stands in the raw column: the ratio is memory/baseline. They
            // take turns going first, as the broker's clients do.
            let bare = Bare::new(options.producers);
            if run % 2 == 0 {
                measure(&bare, "memory", Side::Raw, options, &mut samples).await?;
            }
            measure(&memory, "memory", Side::Framework, options, &mut samples).await?;
            if run % 2 == 1 {
                measure(&bare, "memory", Side::Raw, options, &mut samples).await?;
            }
            if runs(Measure::Latency) {
                for &rate in &options.rates {
                    let latency = paced(&memory, rate, options.latency_secs).await?;
                    add_latency(&mut samples, "memory", rate, Side::Framework, latency);
                }
            }
        }
        if framework_runs && (runs(Measure::Retry) || runs(Measure::DelaySpread)) {
            cascade_measures(options, run, &mut samples).await?;
        }
        if runs(Measure::Calls) {
            calls::measure(options, run, &mut samples).await?;
        }
        if framework_runs && runs(Measure::Outbox) {
            outbox::measure(options, run, &mut samples).await?;
        }
        eprintln!("jobs-bench: run {} of {} done", run + 1, options.runs);
    }
    if framework_runs {
        leave_no_queues(options).await?;
    }
    if runs(Measure::ScaleOut) {
        // Its own runs, so that each setup's broker starts once.
        crate::scale_out::measure(options, &mut samples).await?;
    }
    if runs(Measure::Growth) {
        // Its own runs, each row a worker process of its own.
        crate::growth::measure(options, samples.growth_mut()).await?;
    }
    let report = Report {
        rows: samples.rows(),
        cascade: samples.cascade_rows(),
        calls: samples.call_rows(),
        scale: samples.scale_rows(),
        outbox: samples.outbox_rows(),
        rounds: samples.round_rows(),
        growth_types: samples.growth().types_rows(),
        growth_backlogs: samples.growth().backlog_rows(),
    };
    let results = Results {
        n: options.n,
        runs: options.runs,
        latency_secs: options.latency_secs,
        publish_delay: options.publish_delay,
        retry_n: options.retry_n,
        spread_jobs: options.spread_jobs,
        spread_delays: options.spread_delays,
        max_delay: options.max_delay,
        calls: options.calls,
        serial_calls: options.serial_calls,
        callers: &options.callers,
        scale_workers: &options.scale_workers,
        scale_sleep_ms: options.scale_sleep_ms,
        outbox_writers: options.outbox_writers,
        outbox_batch: options.outbox_batch,
        outbox_relay_batch: options.outbox_relay_batch,
        outbox_notify: options.outbox_notify,
        outbox_rates: &options.outbox_rates,
        growth_types: &options.growth_types,
        growth_backlogs: &options.growth_backlogs,
        idle_secs: options.idle_secs,
        url: redact_url(&options.url),
        postgres_url: redact_url(&options.postgres_url),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpu_model(),
        rows: &report.rows,
        cascade_rows: &report.cascade,
        call_rows: &report.calls,
        scale_rows: &report.scale,
        scale_samples: samples.scale_samples(),
        outbox_rows: &report.outbox,
        latency_rounds: options.latency_rounds,
        round_rows: &report.rounds,
        growth_types_rows: &report.growth_types,
        growth_backlog_rows: &report.growth_backlogs,
        growth_samples: samples.growth(),
    };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(&options.json, json)
        .with_context(|| format!("writing {}", options.json.display()))?;
    eprintln!("jobs-bench: wrote {}", options.json.display());
    Ok(report)
}

/// Deletes the queues the runs declared (the framework's jobs and raw lapin's): a broker holds
/// only so many queues (each quorum queue reserves a few of its file descriptors), and the
/// benchmark shares it with test suites.
async fn leave_no_queues(options: &Options) -> anyhow::Result<()> {
    let mut queues = Vec::new();
    for kind in [QueueKind::Classic, QueueKind::Quorum] {
        queues.extend(Framework::queues(kind)?);
        queues.push(crate::raw::queue(kind));
    }
    for job in delays::jobs() {
        queues.extend(Framework::job_queues(job)?);
    }
    queues.extend(outbox::queues()?);
    queues.extend(calls::queues()?);
    Raw::delete(&options.url, &queues)
        .await
        .context("deleting the benchmark's queues")
}

/// The retry paths and the delay spread, on a connection of their own, their jobs' queues
/// deleted and declared anew.
async fn cascade_measures(
    options: &Options,
    run: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let mut queues = Vec::new();
    for job in delays::jobs() {
        queues.extend(Framework::job_queues(job)?);
    }
    Raw::delete(&options.url, &queues)
        .await
        .context("raw lapin")?;
    let transport = AmqpTransport::builder(options.url.as_str())
        .connection_name("jobs-bench delays")
        .connect()
        .await?;
    let transport = Arc::new(transport);
    let shared: Arc<dyn Transport> = transport.clone();
    let producers = options.producers;
    if options.measures.contains(&Measure::Retry) {
        let (n, backoff_first) = (options.retry_n, run.is_multiple_of(2));
        delays::retries(&shared, producers, n, backoff_first, samples).await?;
    }
    if options.measures.contains(&Measure::DelaySpread) {
        let (n, distinct, max) = (
            options.spread_jobs,
            options.spread_delays,
            options.max_delay,
        );
        delays::spread(&shared, producers, n, distinct, max, samples).await?;
    }
    transport.close().await;
    Ok(())
}

/// Every measure of one run on one client.
async fn measure(
    client: &impl Client,
    queue: &str,
    side: Side,
    options: &Options,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let n = options.n;
    let mut add_throughput = |what: &str, throughput: Throughput| {
        samples.add(
            queue,
            &format!("{what} rate"),
            "jobs/s",
            side,
            throughput.jobs_per_sec,
        );
        samples.add(
            queue,
            &format!("{what} CPU"),
            "µs/job",
            side,
            throughput.cpu_us_per_job,
        );
    };

    let runs = |measure| options.measures.contains(&measure);
    if runs(Measure::Publish) || runs(Measure::Consume) {
        let (published, ()) = timed(n, client.publish(n, None)).await?;
        add_throughput("publish", published);
    }
    if runs(Measure::Consume) {
        // Consume-only drains the queue the publish filled. The clock stops at the last job
        // handled; stopping the consumer (its last acks, closing its channel) is not timed.
        SINK.reset(n, false);
        let (consumed, running) = timed(n, async {
            let running = client.start(n).await?;
            SINK.wait(stall_limit(n)).await?;
            Ok(running)
        })
        .await?;
        client.stop(running).await?;
        add_throughput("consume", consumed);
        drained(client).await?;
    } else {
        client.purge().await?;
    }
    if runs(Measure::BatchPublish) {
        let (published, ()) = timed(n, client.publish_batch(n)).await?;
        add_throughput("batch publish", published);
        client.purge().await?;
    }
    if runs(Measure::EndToEnd) {
        end_to_end(client, n, &mut add_throughput).await?;
    }
    Ok(())
}

/// `--latency-rounds` rounds of paced latency at each rate, each round raw lapin and the
/// framework one right after the other, which goes first alternating; with both clients, each
/// round's p99s are paired.
async fn latency_rounds(
    raw: &Raw,
    framework: &Framework,
    queue: &str,
    run: usize,
    options: &Options,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    for &rate in &options.rates {
        for round in 0..options.latency_rounds {
            let mut order = [ClientKind::Raw, ClientKind::Framework];
            if (run + round) % 2 == 1 {
                order.reverse();
            }
            let (mut raw_p99, mut framework_p99) = (None, None);
            for client in order.into_iter().filter(|c| options.clients.contains(c)) {
                match client {
                    ClientKind::Raw => {
                        let latency = paced(raw, rate, options.latency_secs).await?;
                        raw_p99 = Some(latency.p99_us);
                        add_latency(samples, queue, rate, Side::Raw, latency);
                    }
                    ClientKind::Framework => {
                        let latency = paced(framework, rate, options.latency_secs).await?;
                        framework_p99 = Some(latency.p99_us);
                        add_latency(samples, queue, rate, Side::Framework, latency);
                    }
                    ClientKind::Grpc => {}
                }
            }
            if let (Some(raw_p99_us), Some(framework_p99_us)) = (raw_p99, framework_p99) {
                samples.add_round(Round {
                    queue: queue.to_owned(),
                    rate,
                    raw_p99_us,
                    framework_p99_us,
                });
            }
        }
    }
    Ok(())
}

/// One paced measurement's p50 and p99, as rows of the first table.
fn add_latency(samples: &mut Samples, queue: &str, rate: u32, side: Side, latency: Latency) {
    let label = format!("{rate}/s");
    let p50 = format!("p50 latency at {label}");
    samples.add(queue, &p50, "µs", side, latency.p50_us);
    let p99 = format!("p99 latency at {label}");
    samples.add(queue, &p99, "µs", side, latency.p99_us);
}

async fn end_to_end(
    client: &impl Client,
    n: u64,
    add_throughput: &mut impl FnMut(&str, Throughput),
) -> anyhow::Result<()> {
    SINK.reset(n, false);
    let (end_to_end, running) = timed(n, async {
        let running = client.start(n).await?;
        client.publish(n, None).await?;
        SINK.wait(stall_limit(n)).await?;
        Ok(running)
    })
    .await?;
    client.stop(running).await?;
    add_throughput("end-to-end", end_to_end);
    drained(client).await
}

/// Send-to-handle latency of jobs published at `rate` for `secs` seconds.
async fn paced(client: &impl Client, rate: u32, secs: u64) -> anyhow::Result<Latency> {
    let count = u64::from(rate) * secs;
    SINK.reset(count, true);
    let running = client.start(count).await?;
    client.publish(count, Some(Pacer::new(rate))).await?;
    SINK.wait(stall_limit(count)).await?;
    client.stop(running).await?;
    drained(client).await?;
    Ok(Latency::of(SINK.take_latencies()))
}

/// Checks that a measure left nothing behind in the queue.
async fn drained(client: &impl Client) -> anyhow::Result<()> {
    let ready = client.ready().await?;
    ensure!(
        ready == 0,
        "{ready} messages left in the queue after a measure"
    );
    Ok(())
}

/// How long a measure of `jobs` may take before it counts as stalled: far beyond any real run.
pub(crate) fn stall_limit(jobs: u64) -> Duration {
    Duration::from_secs(60).max(Duration::from_secs_f64(as_f64(jobs) / 500.0))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default()
}
