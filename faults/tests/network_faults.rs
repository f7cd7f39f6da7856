//! Network faults between a worker and the shared broker, injected by the fault proxy: a black
//! hole, resets, connections cut mid-frame, and latency. The engine and the producer run in this
//! process and reach RabbitMQ only through the proxy; a [`Ledger`] counts every job.
//!
//! Each scenario has its own job, exchange and queues (purged first), so they run in parallel.
//! `JOBS_FAULTS_FULL=1` makes the runs longer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::topology::Topology;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{
    Enqueue, Error, Job, JobContext, JobError, MessageId, Producer, ProducerOptions, job,
};
use jobs_faults::Ledger;
use jobs_faults::proxy::{FaultProxy, Mode, target_of, url_through};
use jobs_faults::scenario::{drain, full, until};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One job of a scenario: its ledger id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tick {
    /// The ledger id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// The negotiated heartbeat, in seconds: short, so a black hole is noticed within seconds.
const HEARTBEAT: u64 = 2;
/// Each job's prefetch and concurrency (the `concurrency` of the jobs below): the deliveries a
/// lost consumer connection can leave handled but unacked, to be delivered again.
const PREFETCH: u64 = 16;
/// How long a handler works: long enough that deliveries are in flight when a fault hits.
const WORK: Duration = Duration::from_millis(2);
/// The producer's confirm timeout: a publish into a black hole fails after this long.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);
/// What a failing publish may take beyond its timeout before it counts as hung.
const SLACK: Duration = Duration::from_secs(2);
/// The longest wait for any recovery.
const RECOVERY: Duration = Duration::from_secs(60);

async fn tick(tick: Tick, ctx: &JobContext) -> Result<(), JobError> {
    tokio::time::sleep(WORK).await;
    ctx.state::<Ledger>()?.handled(tick.id);
    Ok(())
}

#[job(
    exchange = "faults.net.blackhole",
    routing_key = "tick",
    queue = "faults.net.blackhole",
    concurrency = 16
)]
async fn net_blackhole(t: Tick, ctx: JobContext) -> Result<(), JobError> {
    tick(t, &ctx).await
}

#[job(
    exchange = "faults.net.reset",
    routing_key = "tick",
    queue = "faults.net.reset",
    concurrency = 16
)]
async fn net_reset(t: Tick, ctx: JobContext) -> Result<(), JobError> {
    tick(t, &ctx).await
}

#[job(
    exchange = "faults.net.cut",
    routing_key = "tick",
    queue = "faults.net.cut",
    concurrency = 16
)]
async fn net_cut(t: Tick, ctx: JobContext) -> Result<(), JobError> {
    tick(t, &ctx).await
}

/// Two handlers at once, behind a prefetch of [`PREFETCH`]: most deliveries wait for a slot.
#[job(
    exchange = "faults.net.prefetch",
    routing_key = "tick",
    queue = "faults.net.prefetch",
    concurrency = 2
)]
async fn net_prefetch(t: Tick, ctx: JobContext) -> Result<(), JobError> {
    // Ten times the others' work: most of the prefetch is waiting when a fault hits.
    tokio::time::sleep(WORK * 9).await;
    tick(t, &ctx).await
}

#[job(
    exchange = "faults.net.latency",
    routing_key = "tick",
    queue = "faults.net.latency",
    concurrency = 16
)]
async fn net_latency(t: Tick, ctx: JobContext) -> Result<(), JobError> {
    tick(t, &ctx).await
}

/// Polls `condition` every 50 ms until it holds, failing once `progress` (a count) has not
/// moved for [`RECOVERY`]: a slow run passes, a stuck one fails.
async fn while_progressing(
    what: &str,
    mut condition: impl FnMut() -> bool,
    mut progress: impl FnMut() -> usize,
) {
    let mut last = (progress(), Instant::now());
    while !condition() {
        let now = progress();
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < RECOVERY,
            "{what}: stuck at {now} for {RECOVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scenario's engine behind the proxy, and a direct line to the broker for setup and drain.
struct Net {
    job: &'static Job,
    proxy: FaultProxy,
    engine: Engine,
    ledger: Ledger,
    direct: AmqpTransport,
    topology: Topology,
}

impl Net {
    /// Declares and purges the job's queues, then starts its engine through a new proxy;
    /// `None` (the test skips) when no broker answers.
    async fn start(job: &'static Job) -> Option<Self> {
        Self::start_with(job, None).await
    }

    /// As [`Net::start`], with the engine's prefetch set apart from the job's concurrency.
    async fn start_with(job: &'static Job, prefetch: Option<u16>) -> Option<Self> {
        let url = jobs_core::testing::broker_url()?;
        let proxy = FaultProxy::start(target_of(&url))
            .await
            .expect("the proxy starts");
        let through = url_through(&url, proxy.addr());
        let separator = if through.contains('?') { '&' } else { '?' };
        let through = format!("{through}{separator}heartbeat={HEARTBEAT}");
        let name = format!("jobs-faults-{}-{}", job.name(), MessageId::generate());
        let direct = AmqpTransport::builder(url)
            .connection_name(format!("{name}-direct"))
            .connect()
            .await
            .expect("connected to the broker");
        let transport = AmqpTransport::builder(through)
            .connection_name(name)
            .connect()
            .await
            .expect("connected through the proxy");
        let ledger = Ledger::new();
        let mut builder = Engine::builder(Arc::new(transport))
            .job(job)
            .state(ledger.clone())
            .producer_options(ProducerOptions {
                confirm_timeout: CONFIRM_TIMEOUT,
                ..ProducerOptions::default()
            });
        if let Some(prefetch) = prefetch {
            builder = builder.prefetch(prefetch);
        }
        let topology = Topology::for_jobs(&builder.settings()).expect("a topology");
        direct
            .declare(&topology, Declare::Create)
            .await
            .expect("declared");
        for queue in topology.job_queues() {
            direct.purge(&queue.name).await.expect("purged");
        }
        let engine = builder.start().await.expect("the engine starts");
        Some(Self {
            job,
            proxy,
            engine,
            ledger,
            direct,
            topology,
        })
    }

    /// Waits until `more` jobs beyond the ones settled now are settled.
    async fn progress(&self, more: usize) {
        let target = self.ledger.settled() + more;
        until("progress", RECOVERY, || self.ledger.settled() >= target).await;
    }

    /// Waits until the engine's consumer is attached again and jobs flow.
    async fn recovered(&self) {
        until("the consumer is attached again", RECOVERY, || {
            self.engine.is_ready()
        })
        .await;
        self.progress(100).await;
    }

    /// Waits until every confirmed job is settled, stops the engine, drains the error queue
    /// into the ledger and checks the report against `duplicate_bound`.
    async fn finish(self, scenario: &str, duplicate_bound: u64) {
        while_progressing(
            "every confirmed job settled",
            || self.ledger.report().lost.is_empty(),
            || self.ledger.settled(),
        )
        .await;
        self.engine.shutdown(Duration::from_secs(5)).await;
        let error_queue = &self
            .topology
            .queues
            .iter()
            .find(|q| q.name.ends_with(".err"))
            .expect("an error queue")
            .name;
        let waiting = self
            .direct
            .message_count(error_queue)
            .await
            .expect("counted");
        let waiting = usize::try_from(waiting).expect("a count that fits memory");
        for delivery in drain(&self.direct, error_queue, waiting, RECOVERY).await {
            let id = Tick::decode(delivery.envelope.body.clone()).map_or(u64::MAX, |t| t.id);
            self.ledger.failed(id);
        }
        // Its queues go: the suite must not leave every job's queues on the shared broker.
        for queue in self.topology.job_queues() {
            self.direct
                .delete_queue(&queue.name)
                .await
                .expect("deleted");
        }
        self.direct.close().await;
        let report = self.ledger.report();
        report.check(scenario, duplicate_bound);
        assert_eq!(report.failed, 0, "no job of {} failed", self.job.name());
    }
}

/// Publishers running while the faults hit: each lane enqueues new jobs one after another until
/// stopped or out of jobs, retrying a job until its enqueue is confirmed. Every publish attempt
/// carries an id of its own, so a copy that arrived although its confirm was lost is counted as
/// itself, never standing in for a later copy that was confirmed.
struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    lanes: Vec<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Stats {
    /// Failed enqueues, each followed by a new attempt under a new id.
    failures: AtomicU64,
    timeouts: AtomicU64,
    /// Jobs confirmed, whatever attempt it took.
    confirmed_jobs: AtomicU64,
}

impl Load {
    fn start(net: &Net, lanes: u64, limit: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let next_job = Arc::new(AtomicU64::new(0));
        let next_id = Arc::new(AtomicU64::new(0));
        let lanes = (0..lanes)
            .map(|_| {
                let producer = net.engine.producer().clone();
                let (job, ledger) = (net.job, net.ledger.clone());
                let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
                let (next_job, next_id) = (Arc::clone(&next_job), Arc::clone(&next_id));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Acquire) {
                        if next_job.fetch_add(1, Ordering::AcqRel) >= limit {
                            return;
                        }
                        enqueue_until_confirmed(&producer, job, &ledger, &next_id, &stats).await;
                        stats.confirmed_jobs.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        Self { stop, stats, lanes }
    }

    /// Stops the publishers (each finishes the job it is on); the enqueues that failed.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        for lane in self.lanes {
            lane.await.expect("a publisher lane ends without panicking");
        }
        self.stats.failures.load(Ordering::Acquire)
    }

    async fn failed_at_least(&self, n: u64, within: Duration) -> Duration {
        until("a publish fails", within, || {
            self.stats.failures.load(Ordering::Acquire) >= n
        })
        .await
    }
}

/// Enqueues one job until the broker confirms it, each attempt under a new id from `next_id`,
/// recorded in the ledger as attempted, and as confirmed for the attempt that was. Every
/// failure must be a typed, transient error that comes within the confirm timeout: a publish
/// never hangs.
async fn enqueue_until_confirmed(
    producer: &Producer,
    job: &'static Job,
    ledger: &Ledger,
    next_id: &AtomicU64,
    stats: &Stats,
) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let id = next_id.fetch_add(1, Ordering::AcqRel);
        ledger.attempted(id);
        let started = Instant::now();
        let result = Enqueue::new(job, Tick { id }).enqueue(producer).await;
        let took = started.elapsed();
        let Err(error) = result else {
            ledger.confirmed(id);
            return;
        };
        assert!(
            took <= CONFIRM_TIMEOUT + SLACK,
            "a failing enqueue took {took:?}, over the {CONFIRM_TIMEOUT:?} timeout: {error:?}"
        );
        assert!(error.is_transient(), "a typed, transient error: {error:?}");
        stats.failures.fetch_add(1, Ordering::AcqRel);
        if matches!(error, Error::Timeout { .. }) {
            stats.timeouts.fetch_add(1, Ordering::AcqRel);
        }
        assert!(
            Instant::now() < deadline,
            "a job was not confirmed within {RECOVERY:?}: {error:?}"
        );
        // The transport fails fast while it backs off from a failed reconnect; a caller that
        // retries waits a little too, rather than spinning.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_is_detected_by_heartbeats_and_the_run_recovers() {
    let Some(net) = Net::start(&net_blackhole::JOB).await else {
        return;
    };
    let load = Load::start(&net, 8, u64::MAX);
    net.progress(if full() { 20_000 } else { 500 }).await;

    net.proxy.set_mode(Mode::Freeze);
    // lapin closes a connection after two heartbeat intervals without a byte from the broker;
    // give it three, and a second for its heartbeat timer's tick.
    let detection = Duration::from_secs(3 * HEARTBEAT + 1);
    let detected = until("the consumer notices the black hole", detection, || {
        !net.engine.is_ready()
    })
    .await;
    eprintln!("black hole noticed after {detected:?}");
    // Not sooner than a heartbeat interval: nothing but the missing heartbeats can tell.
    assert!(detected >= Duration::from_secs(HEARTBEAT), "{detected:?}");
    // The publishers caught in the black hole got their errors within the confirm timeout
    // (each lane asserts that); at least one did.
    load.failed_at_least(1, CONFIRM_TIMEOUT + SLACK).await;
    let failed_in_freeze = load.stats.failures.load(Ordering::Acquire);
    net.proxy.set_mode(Mode::Pass);

    net.recovered().await;
    net.progress(if full() { 20_000 } else { 500 }).await;
    let timeouts = load.stats.timeouts.load(Ordering::Acquire);
    let failures = load.stop().await;
    eprintln!(
        "black hole: {failed_in_freeze} enqueues failed in it ({timeouts} timeouts), {failures} in all"
    );
    // Duplicates: the deliveries in flight on the consumer connection the black hole took
    // (handled, their acks lost). A failed enqueue is retried under a new id: never a duplicate.
    net.finish("black hole (heartbeat 2 s)", PREFETCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_several_times_lose_nothing() {
    let Some(net) = Net::start(&net_reset::JOB).await else {
        return;
    };
    let rounds = if full() { 10 } else { 3 };
    let load = Load::start(&net, 8, u64::MAX);
    for _ in 0..rounds {
        net.progress(if full() { 5_000 } else { 300 }).await;
        net.proxy.set_mode(Mode::Reset);
        until("the consumer notices the reset", RECOVERY, || {
            !net.engine.is_ready()
        })
        .await;
        net.proxy.set_mode(Mode::Pass);
        net.recovered().await;
    }
    let failures = load.stop().await;
    eprintln!("TCP reset: {failures} enqueues failed and were sent again under new ids");
    // Each reset can leave a prefetch of handled, unacked deliveries to be redelivered.
    net.finish(&format!("TCP reset ×{rounds}"), PREFETCH * rounds)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_waiting_for_a_slot_never_run_after_their_connection_is_reset() {
    let prefetch = u16::try_from(PREFETCH).expect("a prefetch");
    let Some(net) = Net::start_with(&net_prefetch::JOB, Some(prefetch)).await else {
        return;
    };
    let rounds = if full() { 10 } else { 3 };
    // Handlers take 20 ms, two at a time: a bounded load, which the handlers catch up with.
    let per_round = if full() { 500 } else { 150 };
    let load = Load::start(&net, 4, per_round * (rounds + 1) * 2);
    for _ in 0..rounds {
        net.progress(per_round as usize).await;
        net.proxy.set_mode(Mode::Reset);
        until("the consumer notices the reset", RECOVERY, || {
            !net.engine.is_ready()
        })
        .await;
        net.proxy.set_mode(Mode::Pass);
        net.recovered().await;
    }
    load.stop().await;
    // Each reset requeues a prefetch of deliveries, of which only the two running handlers and
    // the handled ones whose acks were on their way had started: those still waiting for a
    // slot are dropped unrun, so a reset repeats at most twice the concurrency, not the
    // prefetch.
    net.finish(
        &format!("TCP reset ×{rounds}, prefetch {PREFETCH} over concurrency 2"),
        2 * 2 * rounds,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_frame_lose_nothing() {
    let Some(net) = Net::start(&net_cut::JOB).await else {
        return;
    };
    let load = Load::start(&net, 8, u64::MAX);
    // Budgets below the handshake, inside it, and a few frames past it: connections die while
    // opening, and mid-frame once open.
    let budgets: &[u64] = if full() {
        &[200, 700, 1_500, 4_000, 10_000, 50_000, 3_000, 20_000]
    } else {
        &[700, 4_000, 20_000]
    };
    for &budget in budgets {
        net.progress(if full() { 3_000 } else { 200 }).await;
        let accepted = net.proxy.accepted();
        net.proxy.set_mode(Mode::CutAfter(budget));
        // Both connections (consume and publish) die; reconnects die again after `budget`
        // bytes. Wait for a few of them.
        until("connections cut and reopened", RECOVERY, || {
            net.proxy.accepted() >= accepted + 4
        })
        .await;
        net.proxy.set_mode(Mode::Pass);
        net.recovered().await;
    }
    let failures = load.stop().await;
    eprintln!("TCP cut: {failures} enqueues failed and were sent again under new ids");
    // Every consuming connection that got past its handshake may have died with a prefetch of
    // handled, unacked deliveries; publishing connections hold no deliveries.
    let consuming = net.proxy.opened_with(b".consume") as u64;
    eprintln!(
        "TCP cut: {consuming} consuming connections of {} in all",
        net.proxy.accepted()
    );
    net.finish(
        &format!("TCP cut mid-frame ×{}", budgets.len()),
        PREFETCH * consuming,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_a_run_but_keeps_it_correct() {
    let Some(net) = Net::start(&net_latency::JOB).await else {
        return;
    };
    net.proxy.set_mode(Mode::Latency(Duration::from_millis(20)));
    let jobs = if full() { 10_000 } else { 1_000 };
    let load = Load::start(&net, 32, jobs);
    while_progressing(
        "every job confirmed",
        || load.stats.confirmed_jobs.load(Ordering::Acquire) >= jobs,
        || net.ledger.confirmed_count(),
    )
    .await;
    let failures = load.stop().await;
    assert_eq!(failures, 0, "latency alone fails no publish");
    // No connection is lost, so nothing is delivered twice.
    net.finish("latency 20 ms", 0).await;
}
