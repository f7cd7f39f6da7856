//! Every delivery settled once and durably, whatever fails around the handler, on a private
//! RabbitMQ node with an in-process engine, every job counted by a ledger and every handler run
//! counted by id and attempt:
//!
//! * a retry queue deleted while jobs fail: their retries wait (no handler runs again) until the
//!   queue is back;
//! * an error queue that rejects publishes (a length policy with `reject-publish`, so the node
//!   nacks): fatal jobs wait until it takes them, each run once;
//! * a retry queue gone longer than the outcome publish timeout: the jobs go to the error queue
//!   with the reason, and a replay from there gets them handled;
//! * an observer that panics on every tenth event: every job settled, none stuck.

mod nodes_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::{Engine, Event, Observer};
use jobs_core::error_queue::{Action, ErrorQueue};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::topology::Topology;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{FailedJob, Job, JobContext, JobError, Producer, ProducerOptions, job};
use jobs_faults::scenario::{drain, sized};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use prost::Message as _;

/// A job the ledger follows.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Step {
    /// Its ledger id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// Handler runs: the attempts each id ran at, in order.
#[derive(Debug, Default)]
struct Runs(Mutex<BTreeMap<u64, Vec<u32>>>);

impl Runs {
    fn record(&self, id: u64, attempt: u32) {
        self.0
            .lock()
            .expect("the runs")
            .entry(id)
            .or_default()
            .push(attempt);
    }

    /// Ids whose runs are not `expected`, with theirs.
    fn other_than(&self, ids: std::ops::Range<u64>, expected: &[u32]) -> Vec<(u64, Vec<u32>)> {
        let runs = self.0.lock().expect("the runs");
        ids.filter_map(|id| {
            let seen = runs.get(&id).cloned().unwrap_or_default();
            (seen != expected).then_some((id, seen))
        })
        .collect()
    }
}

/// Fails its first attempt, retryably; the second succeeds.
#[job(
    exchange = "faults.settle",
    routing_key = "retry",
    queue = "faults.settle.retry",
    retries = 1,
    backoff = "200ms",
    concurrency = 16
)]
async fn settle_retry(step: Step, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Runs>>()?.record(step.id, ctx.attempt());
    if ctx.attempt() == 1 {
        return Err(JobError::retry("the first attempt fails"));
    }
    ctx.state::<Ledger>()?.handled(step.id);
    Ok(())
}

/// Fails every attempt, fatally: straight to the error queue.
#[job(
    exchange = "faults.settle",
    routing_key = "fatal",
    queue = "faults.settle.fatal",
    concurrency = 16
)]
async fn settle_fatal(step: Step, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Runs>>()?.record(step.id, ctx.attempt());
    Err(JobError::fatal("always fatal"))
}

const JOBS: [&Job; 2] = [&settle_retry::JOB, &settle_fatal::JOB];
/// The longest wait for jobs to settle.
const SETTLE: Duration = Duration::from_secs(120);

/// One scenario's engine, ledger, runs and record of events.
struct Run {
    engine: Engine,
    /// The jobs' own producer, on a connection apart from the engine's, as an application's
    /// would be: a channel whose publishes a quorum queue rejects can see a nack for another
    /// publish in flight beside them.
    producer: Producer,
    transport: AmqpTransport,
    topology: Topology,
    ledger: Ledger,
    runs: Arc<Runs>,
    recorder: Arc<Recorder>,
}

impl Run {
    /// An engine serving both jobs on `node`, with every queue of theirs declared and empty.
    async fn start(node: &PrivateNode, scenario: &str, outcome_timeout: Duration) -> Self {
        Self::start_observed(node, scenario, outcome_timeout, None).await
    }

    async fn start_observed(
        node: &PrivateNode,
        scenario: &str,
        outcome_timeout: Duration,
        observer: Option<Arc<dyn Observer>>,
    ) -> Self {
        let transport = AmqpTransport::builder(node.url())
            .connection_name(nodes_support::connection_name(scenario))
            .connect()
            .await
            .expect("connected to the private node");
        let (ledger, runs, recorder) = (
            Ledger::new(),
            Arc::new(Runs::default()),
            Arc::new(Recorder::new()),
        );
        let mut builder = Engine::builder(Arc::new(transport.clone()))
            .jobs(JOBS)
            .state(ledger.clone())
            .state(Arc::clone(&runs))
            .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
            .outcome_publish_timeout(outcome_timeout)
            .producer_options(ProducerOptions {
                confirm_timeout: Duration::from_secs(5),
                ..ProducerOptions::default()
            });
        if let Some(observer) = observer {
            builder = builder.observer(observer);
        }
        let topology = Topology::for_jobs(&builder.settings()).expect("a topology");
        transport
            .declare(&topology, Declare::Create)
            .await
            .expect("declared");
        for queue in topology.job_queues() {
            transport.purge(&queue.name).await.expect("purged");
        }
        let engine = builder.start().await.expect("the engine starts");
        let producer = AmqpTransport::builder(node.url())
            .connection_name(nodes_support::connection_name(&format!(
                "{scenario}-producer"
            )))
            .connect()
            .await
            .expect("the producer connects");
        Self {
            engine,
            producer: Producer::new(Arc::new(producer)),
            transport,
            topology,
            ledger,
            runs,
            recorder,
        }
    }

    /// Enqueues `ids` of `job`, each confirmed.
    async fn enqueue(&self, job: &'static Job, ids: std::ops::Range<u64>) {
        for id in ids {
            self.ledger.attempted(id);
            jobs_core::Enqueue::new(job, Step { id })
                .enqueue(&self.producer)
                .await
                .expect("a confirmed enqueue");
            self.ledger.confirmed(id);
        }
    }

    /// Waits until `job`'s outcome publishes have failed `n` times: the fault has bitten.
    async fn publishes_failed(&self, job: &'static Job, n: usize) {
        let recorder = &self.recorder;
        recorder
            .wait_until(SETTLE, || {
                (recorder.count(job, |o| matches!(o, Outcome::PublishFailed { .. })) >= n)
                    .then_some(())
            })
            .await
            .unwrap_or_else(|_| panic!("{n} failed outcome publishes of {}", job.name()));
    }

    fn requeued(&self) -> usize {
        JOBS.iter()
            .map(|job| {
                self.recorder
                    .count(job, |o| matches!(o, Outcome::Requeued { .. }))
            })
            .sum()
    }

    /// Declares the topology again: what an operator or a restarted worker does.
    async fn redeclare(&self) {
        self.transport
            .declare(&self.topology, Declare::Create)
            .await
            .expect("declared again");
    }

    /// Waits until `queue` holds `n` ready messages.
    async fn ready(&self, queue: &str, n: u64) {
        self.ready_within(queue, n, SETTLE).await;
    }

    /// Waits until `queue` holds `n` ready messages, at most `within`.
    async fn ready_within(&self, queue: &str, n: u64, within: Duration) {
        let transport = &self.transport;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = transport.message_count(queue).await.expect("a count");
            if now == n {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{queue} holds {now}, not {n}; {}", self.state().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the queues hold and what happened, for a scenario that did not end as it should.
    async fn state(&self) -> String {
        let mut counts = Vec::new();
        for queue in &self.topology.queues {
            let count = self.transport.message_count(&queue.name).await.ok();
            counts.push(format!("{} {count:?}", queue.name));
        }
        let mut outcomes = BTreeMap::new();
        for event in self.recorder.events() {
            let name = format!("{:?}", event.outcome);
            let kind = name.split([' ', '{', '(']).next().unwrap_or("").to_owned();
            *outcomes.entry((event.job, kind)).or_insert(0) += 1;
        }
        format!(
            "{}; queues: {counts:?}; events: {outcomes:?}",
            self.ledger.report()
        )
    }

    /// Drains `job`'s error queue of `n` messages into the ledger, each checked with `check`.
    async fn drain_errors(&self, job: &'static Job, n: usize, check: impl Fn(&FailedJob)) {
        let queue = format!("{}.err", job.queue());
        for delivery in drain(&self.transport, &queue, n, SETTLE).await {
            let letter = FailedJob::new(Arc::unwrap_or_clone(delivery.envelope));
            check(&letter);
            let id = Step::decode(letter.envelope().body.clone()).map_or(u64::MAX, |s| s.id);
            self.ledger.failed(id);
        }
    }

    async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let report = self.ledger.report();
            if report.lost.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let sample: Vec<_> = {
                    let runs = self.runs.0.lock().expect("the runs");
                    report
                        .lost
                        .iter()
                        .take(5)
                        .map(|id| (*id, runs.get(id).cloned()))
                        .collect()
                };
                panic!(
                    "confirmed jobs unsettled after {SETTLE:?}; runs of some: {sample:?}; {}",
                    self.state().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn finish(self) {
        self.engine.shutdown(Duration::from_secs(10)).await;
        self.transport.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_outcome_publishes_wait_instead_of_running_handlers_again() {
    if skip_without_rabbitmq() {
        return;
    }
    let node = PrivateNode::start_new()
        .await
        .expect("the private node starts");
    retry_queue_deleted_for_a_while(&node).await;
    error_queue_rejecting_publishes(&node).await;
    retry_queue_gone_past_the_timeout_then_replayed(&node).await;
    observer_panicking_on_every_tenth_event(&node).await;
}

/// Jobs fail their first attempt while their retry queue is deleted: each retry publish comes
/// back unroutable, and waits. Once the queue is declared again every job is handled at its
/// second attempt, and no handler ran twice.
async fn retry_queue_deleted_for_a_while(node: &PrivateNode) {
    let scenario = "retry queue deleted";
    let total = sized(300, 3_000);
    let run = Run::start(node, "retry-deleted", Duration::from_secs(120)).await;
    let retry_queue = format!("{}.retry.1", settle_retry::QUEUE);
    node.ctl(&["delete_queue", &retry_queue])
        .await
        .expect("the retry queue is deleted");
    run.enqueue(&settle_retry::JOB, 0..total).await;
    // Every handler slot holds a delivery whose retry is refused, several times over.
    run.publishes_failed(&settle_retry::JOB, 64).await;
    assert_eq!(
        run.ledger.report().handled,
        0,
        "nothing got past its first attempt"
    );
    run.redeclare().await;
    run.settled().await;

    let wrong = run.runs.other_than(0..total, &[1, 2]);
    assert!(
        wrong.is_empty(),
        "{scenario}: runs other than [1, 2]: {wrong:?}"
    );
    assert_eq!(run.requeued(), 0, "nothing went back to the queue");
    let failed_publishes = run.recorder.count(&settle_retry::JOB, |o| {
        matches!(o, Outcome::PublishFailed { .. })
    });
    eprintln!("{scenario}: {failed_publishes} retry publishes refused, then taken");
    run.ledger.report().check(scenario, 0);
    run.finish().await;
}

/// Fatal jobs while a length policy makes their error queue reject every publish (the node
/// nacks them): each waits until the policy goes, runs once, and ends in the error queue.
async fn error_queue_rejecting_publishes(node: &PrivateNode) {
    let scenario = "error queue nacking publishes";
    let total = sized(300, 3_000);
    let run = Run::start(node, "error-nacks", Duration::from_secs(120)).await;
    let error_queue = format!("{}.err", settle_fatal::QUEUE);
    let pattern = format!("^{}$", error_queue.replace('.', "\\."));
    node.ctl(&[
        "set_policy",
        "faults-reject",
        &pattern,
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
        "--apply-to",
        "queues",
    ])
    .await
    .expect("the policy is set");
    run.enqueue(&settle_fatal::JOB, 0..total).await;
    run.publishes_failed(&settle_fatal::JOB, 64).await;
    node.ctl(&["clear_policy", "faults-reject"])
        .await
        .expect("the policy is cleared");
    run.ready(&error_queue, total).await;

    let wrong = run.runs.other_than(0..total, &[1]);
    assert!(
        wrong.is_empty(),
        "{scenario}: runs other than [1]: {wrong:?}"
    );
    assert_eq!(run.requeued(), 0, "nothing went back to the queue");
    let total_usize = usize::try_from(total).expect("a count");
    run.drain_errors(&settle_fatal::JOB, total_usize, |letter| {
        assert_eq!(letter.error(), Some("always fatal"));
    })
    .await;
    run.ledger.report().check(scenario, 0);
    run.finish().await;
}

/// The retry queue stays away longer than the outcome publish timeout: the jobs go to the
/// error queue instead, saying why, and a replay from there (the operator's `errors replay`)
/// gets each handled once the queue is back.
async fn retry_queue_gone_past_the_timeout_then_replayed(node: &PrivateNode) {
    let scenario = "retry queue gone past the timeout, then replayed";
    let total = sized(100, 1_000);
    let timeout = Duration::from_secs(2);
    let run = Run::start(node, "retry-timeout", timeout).await;
    let retry_queue = format!("{}.retry.1", settle_retry::QUEUE);
    node.ctl(&["delete_queue", &retry_queue])
        .await
        .expect("the retry queue is deleted");
    run.enqueue(&settle_retry::JOB, 0..total).await;
    let error_queue = format!("{}.err", settle_retry::QUEUE);
    // Each job holds one of the 16 handler slots for the whole timeout before it goes to the
    // error queue: 63 rounds of 2 s at full size.
    let rounds = u32::try_from(total.div_ceil(16)).expect("a count");
    run.ready_within(&error_queue, total, timeout * rounds + SETTLE)
        .await;
    run.redeclare().await;

    let errors = ErrorQueue::new(
        Arc::new(run.transport.clone()) as Arc<dyn Transport>,
        settle_retry::QUEUE,
    );
    let mut reasons = 0;
    let walked = errors
        .walk(None, |letter| {
            let error = letter.error().unwrap_or_default();
            if error.contains("its retry could not be published to `faults.settle.retry.retry.1`") {
                reasons += 1;
            }
            Action::Replay
        })
        .await
        .expect("the replay walks the error queue");
    assert_eq!(walked.replayed, total, "{walked:?}");
    assert_eq!(reasons, total, "every one says why it is there");
    run.settled().await;

    // The first attempt, then the replayed first attempt and its retry.
    let wrong = run.runs.other_than(0..total, &[1, 1, 2]);
    assert!(
        wrong.is_empty(),
        "{scenario}: runs other than [1, 1, 2]: {wrong:?}"
    );
    run.ledger.report().check(scenario, 0);
    run.finish().await;
}

/// Panics on every tenth event it sees.
#[derive(Debug, Default)]
struct Panicky(AtomicUsize);

impl Observer for Panicky {
    fn on_event(&self, _: &Event<'_>) {
        if self.0.fetch_add(1, Ordering::Relaxed) % 10 == 9 {
            std::panic::panic_any(OBSERVER_BUG);
        }
    }
}

const OBSERVER_BUG: &str = "an observer bug";

/// An observer that panics on every tenth event (of four per job: started, retried, started,
/// succeeded): every job is handled, the queues end empty, the consumer stays ready and the
/// process does not grow.
async fn observer_panicking_on_every_tenth_event(node: &PrivateNode) {
    let scenario = "observer panicking on every tenth event";
    let total = sized(2_000, 20_000);
    // The panics are the scenario's, not news: keep them out of the output.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&OBSERVER_BUG) {
            hook(info);
        }
    }));
    let panicky = Arc::new(Panicky::default());
    let run = Run::start_observed(
        node,
        "observer-panics",
        Duration::from_secs(120),
        Some(Arc::clone(&panicky) as Arc<dyn Observer>),
    )
    .await;
    run.enqueue(&settle_retry::JOB, 0..total / 2).await;
    run.settled().await;
    let halfway = resident_kib();
    run.enqueue(&settle_retry::JOB, total / 2..total).await;
    run.settled().await;
    let end = resident_kib();

    let wrong = run.runs.other_than(0..total, &[1, 2]);
    assert!(
        wrong.is_empty(),
        "{scenario}: runs other than [1, 2]: {wrong:?}"
    );
    let panics = panicky.0.load(Ordering::Relaxed) / 10;
    assert!(panics as u64 >= total * 4 / 10 - 1, "{panics} panics");
    assert!(run.engine.is_ready(), "the consumer is still attached");
    for queue in [
        settle_retry::QUEUE,
        &format!("{}.retry.1", settle_retry::QUEUE),
    ] {
        run.ready(queue, 0).await;
    }
    let grew = end.saturating_sub(halfway);
    eprintln!("{scenario}: {panics} panics; resident {halfway} KiB halfway, {end} KiB at the end");
    assert!(
        grew < 20 * 1024,
        "the process grew by {grew} KiB in the second half"
    );
    run.ledger.report().check(scenario, 0);
    run.finish().await;
}

/// This process's resident memory, in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
