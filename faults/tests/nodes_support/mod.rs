//! What the broker-fault scenarios share: the tracked job, concurrent producers that record
//! every enqueue in a [`Ledger`], an engine whose handler records every handling, and bounded
//! polling.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses its own part of the shared support"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobs_core::engine::Engine;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{Error, HeaderValue, JobContext, JobError, Producer, ProducerOptions, job};
use jobs_faults::Ledger;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A job the ledger follows.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tracked {
    /// Its ledger id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// How many attempts fail (retryably) before one succeeds.
    #[prost(uint32, tag = "2")]
    pub fail_first: u32,
}

/// The handler both tracked jobs run: fail the first attempts when asked, then record the
/// handling. Recording before the ack is what makes a redelivery after a fault a duplicate, never
/// a loss.
async fn handle(job: &Tracked, ctx: &JobContext) -> Result<(), JobError> {
    if let Some(due_ms) = ctx.headers().get(DUE_HEADER).and_then(HeaderValue::as_i64)
        && let Ok(starts) = ctx.state::<Starts>()
    {
        starts.started(job.id, due_ms);
    }
    if let Ok(gate) = ctx.state::<Gate>() {
        gate.passed().await;
    }
    if ctx.attempt() <= job.fail_first {
        return Err(JobError::retry(format!("attempt {} fails", ctx.attempt())));
    }
    ctx.state::<Ledger>()?.handled(job.id);
    Ok(())
}

/// The header of a delayed tracked job that carries when it is due, Unix milliseconds: its
/// handler records how long after that it started, when the engine has [`Starts`].
pub const DUE_HEADER: &str = "x-faults-due-ms";

/// When each delayed job's handler started, relative to its due time: an engine given one as
/// state records every start of a job that carries [`DUE_HEADER`], duplicates included.
#[derive(Clone, Debug, Default)]
pub struct Starts(Arc<Mutex<Vec<(u64, i64)>>>);

impl Starts {
    /// Job `id`, due at `due_ms`, starts now.
    fn started(&self, id: u64, due_ms: i64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, now_ms - due_ms));
    }

    /// Every start so far: the job's id and how many milliseconds after its due time it
    /// started (negative: early).
    pub fn all(&self) -> Vec<(u64, i64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Holds handlers until opened, when an engine is given one as state: the jobs behind the
/// prefetch then wait in the queue, for a fault to hit while they do.
#[derive(Clone, Debug)]
pub struct Gate(watch::Sender<bool>);

impl Gate {
    /// A closed gate.
    pub fn closed() -> Self {
        Self(watch::Sender::new(false))
    }

    /// Lets every handler through, now and from now on.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in the state as long as the engine: the wait ends only when opened.
        let _ = open.wait_for(|open| *open).await;
    }
}

/// The tracked job on a quorum queue: 4 attempts, short backoff, 32 deliveries at once.
#[job(
    exchange = "faults.nodes",
    routing_key = "quorum",
    queue = "faults.nodes.quorum",
    retries = 3,
    backoff = "300ms, 600ms, 1s",
    concurrency = 32,
    queue_type = "quorum"
)]
pub async fn tracked_quorum(job: Tracked, ctx: JobContext) -> Result<(), JobError> {
    handle(&job, &ctx).await
}

/// The tracked job on a classic queue, otherwise as [`tracked_quorum()`].
#[job(
    exchange = "faults.nodes",
    routing_key = "classic",
    queue = "faults.nodes.classic",
    retries = 3,
    backoff = "300ms, 600ms, 1s",
    concurrency = 32,
    queue_type = "classic"
)]
pub async fn tracked_classic(job: Tracked, ctx: JobContext) -> Result<(), JobError> {
    handle(&job, &ctx).await
}

/// Deliveries one engine has in flight per job: the prefetch, which is the concurrency.
pub const IN_FLIGHT: u64 = 32;

/// Dead-letterings one quorum queue has in flight with `at-least-once`: RabbitMQ's
/// `dead_letter_worker_consumer_prefetch` (32 on 3.10). A hop whose confirm a restart loses is
/// made again, so each quorum retry queue can repeat up to this many per fault.
pub const DEAD_LETTER_IN_FLIGHT: u64 = 32;

/// The retry queues of each tracked job (its `retries`).
pub const RETRY_QUEUES: u64 = 3;

/// Which of the two tracked jobs a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// [`tracked_quorum()`].
    Quorum,
    /// [`tracked_classic()`].
    Classic,
}

impl Queue {
    /// The job's work, retry and error queues.
    pub fn queues(self) -> Vec<String> {
        let settings = match self {
            Self::Quorum => &tracked_quorum::JOB,
            Self::Classic => &tracked_classic::JOB,
        };
        let work = settings.queue().to_owned();
        let mut queues: Vec<String> = (1..=3).map(|n| format!("{work}.retry.{n}")).collect();
        queues.push(format!("{work}.err"));
        queues.push(work);
        queues
    }

    /// Enqueues `job` on this queue's job.
    pub async fn enqueue(self, producer: &Producer, job: Tracked) -> Result<(), Error> {
        match self {
            Self::Quorum => tracked_quorum::enqueue(producer, job).await.map(drop),
            Self::Classic => tracked_classic::enqueue(producer, job).await.map(drop),
        }
    }
}

/// A unique connection name, so the broker's connection list tells runs apart.
pub fn connection_name(scenario: &str) -> String {
    format!("jobs-faults-{scenario}-{}", std::process::id())
}

/// Starts an engine serving both tracked jobs on `url`, its handler recording in `ledger`, its
/// producer waiting at most `confirm_timeout` for a confirm. Leftovers of an earlier scenario
/// are purged first, so no id of another ledger shows up.
pub async fn engine(
    url: &str,
    scenario: &str,
    ledger: &Ledger,
    confirm_timeout: Duration,
) -> Engine {
    engine_with(url, scenario, ledger, confirm_timeout, None).await
}

/// As [`engine`], with handlers held by `gate` until it opens.
pub async fn engine_with(
    url: &str,
    scenario: &str,
    ledger: &Ledger,
    confirm_timeout: Duration,
    gate: Option<Gate>,
) -> Engine {
    engine_with_state(url, scenario, ledger, confirm_timeout, gate, None).await
}

/// As [`engine`], recording the starts of delayed jobs in `starts`.
pub async fn engine_with_starts(
    url: &str,
    scenario: &str,
    ledger: &Ledger,
    confirm_timeout: Duration,
    starts: &Starts,
) -> Engine {
    engine_with_state(
        url,
        scenario,
        ledger,
        confirm_timeout,
        None,
        Some(starts.clone()),
    )
    .await
}

async fn engine_with_state(
    url: &str,
    scenario: &str,
    ledger: &Ledger,
    confirm_timeout: Duration,
    gate: Option<Gate>,
    starts: Option<Starts>,
) -> Engine {
    // Several nodes are tried in the order given: a scenario knows which node the client is on.
    let transport = AmqpTransport::builder(url)
        .connection_name(connection_name(scenario))
        .in_order()
        .connect()
        .await
        .expect("the engine's transport connects to the private node");
    let mut builder = Engine::builder(Arc::new(transport))
        .job(&tracked_quorum::JOB)
        .job(&tracked_classic::JOB)
        .state(ledger.clone());
    if let Some(gate) = gate {
        builder = builder.state(gate);
    }
    if let Some(starts) = starts {
        builder = builder.state(starts);
    }
    let engine = builder
        .producer_options(ProducerOptions {
            confirm_timeout,
            ..ProducerOptions::default()
        })
        .start()
        .await
        .expect("the engine starts on the private node");
    for queue in Queue::Quorum
        .queues()
        .into_iter()
        .chain(Queue::Classic.queues())
    {
        engine
            .producer()
            .transport()
            .purge(&queue)
            .await
            .expect("a queue of the tracked jobs is purged");
    }
    engine
}

/// What the producers of a run saw besides confirms.
#[derive(Debug, Default)]
pub struct Produced {
    /// Enqueues that failed with a transient error (connection lost, confirm timeout, nack).
    pub transient_failures: usize,
}

/// Producers enqueueing `total` confirmed jobs between them, concurrently.
#[derive(Debug)]
pub struct Producers {
    tasks: Vec<JoinHandle<Produced>>,
    /// Each distinct failure seen so far, with how often, for a stalled scenario to report.
    failures: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Producers {
    /// Starts `count` producers on `producer` that enqueue until `total` jobs are confirmed,
    /// with ids from `first_id` on. A failed enqueue leaves its id attempted but unconfirmed
    /// (it may still have reached the queue: the ledger counts that apart), and the slot goes
    /// to a new id.
    pub fn start(
        producer: &Producer,
        ledger: &Ledger,
        queue: Queue,
        count: usize,
        total: usize,
        first_id: u64,
        fail_first: u32,
    ) -> Self {
        let next_id = Arc::new(AtomicU64::new(first_id));
        let remaining = Arc::new(AtomicUsize::new(total));
        let failures = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..count)
            .map(|_| {
                let failures = Arc::clone(&failures);
                let producer = producer.clone();
                let ledger = ledger.clone();
                let next_id = Arc::clone(&next_id);
                let remaining = Arc::clone(&remaining);
                tokio::spawn(async move {
                    let mut produced = Produced::default();
                    while take(&remaining) {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        ledger.attempted(id);
                        match queue.enqueue(&producer, Tracked { id, fail_first }).await {
                            Ok(()) => ledger.confirmed(id),
                            Err(error) => {
                                assert!(error.is_transient(), "enqueue {id}: {error:?}");
                                produced.transient_failures += 1;
                                *failures
                                    .lock()
                                    .expect("the failure tally")
                                    .entry(format!("{error:?}"))
                                    .or_insert(0) += 1;
                                remaining.fetch_add(1, Ordering::AcqRel);
                                // Pacing, not waiting for a condition: while the broker is
                                // away the transport fails fast, and a producer spinning
                                // through ids would only inflate `attempted`.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    produced
                })
            })
            .collect();
        Self { tasks, failures }
    }

    /// The distinct enqueue failures so far, with their counts.
    pub fn failures(&self) -> BTreeMap<String, usize> {
        self.failures.lock().expect("the failure tally").clone()
    }

    /// Waits for every producer to finish (within `within`) and sums what they saw.
    pub async fn finish(self, within: Duration) -> Produced {
        let mut sum = Produced::default();
        for task in self.tasks {
            let produced = tokio::time::timeout(within, task)
                .await
                .expect("the producers finish in time")
                .expect("a producer does not panic");
            sum.transient_failures += produced.transient_failures;
        }
        sum
    }
}

fn take(remaining: &AtomicUsize) -> bool {
    remaining
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

/// Waits (at most `within`) until no message of `queue`'s job waits in its work or retry
/// queues: a duplicate that a restart left in a retry queue then reaches this scenario's
/// engine and ledger, not the next scenario's.
pub async fn drained(engine: &Engine, queue: Queue, within: Duration) {
    let transport = engine.producer().transport();
    let deadline = Instant::now() + within;
    let queues: Vec<String> = queue
        .queues()
        .into_iter()
        .filter(|q| !q.ends_with(".err"))
        .collect();
    loop {
        let mut waiting = 0;
        for name in &queues {
            waiting += transport.message_count(name).await.unwrap_or(1);
        }
        if waiting == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} messages still wait in {queues:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every confirmed job of `ledger` is handled or dead-lettered.
pub async fn all_settled(ledger: &Ledger, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let report = ledger.report();
        if report.lost.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed jobs still unsettled after {within:?}: {report}, first {:?}",
            &report.lost[..report.lost.len().min(20)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
