//! The engine's own failure paths on the in-memory broker, on virtual time: an enqueue never
//! confirmed, outcome publishes that fail for a while, observers and decoders that panic, and
//! deliveries whose consumer is gone before they start.
//!
//! Publishes fail through [`Faulty`], a transport that passes everything to a
//! [`MemoryTransport`] except the publishes to the queues it is told to refuse, which the broker
//! nacks, as a RabbitMQ queue with a `reject-publish` length limit does.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::{DEFAULT_OUTCOME_PUBLISH_TIMEOUT, Engine, Event, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{FailedJob, FailureKind, JobContext, JobError, job};
use support::faulty::Faulty;
use tokio::sync::Semaphore;

/// A job's message: its failing attempts, and the key the handler counts its runs under.
#[derive(Clone, PartialEq, prost::Message)]
struct Work {
    #[prost(uint32, tag = "1")]
    fail_first: u32,
    #[prost(string, tag = "2")]
    key: String,
}

/// Handler runs per key, attempt by attempt.
#[derive(Debug, Default)]
struct Runs(Mutex<HashMap<String, Vec<u32>>>);

impl Runs {
    fn of(&self, key: &str) -> Vec<u32> {
        self.0.lock().unwrap().get(key).cloned().unwrap_or_default()
    }
}

#[job(
    exchange = "engine.faults",
    routing_key = "flaky",
    retries = 2,
    backoff = "1s"
)]
async fn flaky(work: Work, ctx: JobContext) -> Result<(), JobError> {
    let runs = ctx.state::<Arc<Runs>>()?;
    runs.0
        .lock()
        .unwrap()
        .entry(work.key.clone())
        .or_default()
        .push(ctx.attempt());
    if ctx.attempt() <= work.fail_first {
        return Err(JobError::retry("not yet"));
    }
    Ok(())
}

struct Setup {
    faulty: Arc<Faulty>,
    runs: Arc<Runs>,
    recorder: Arc<Recorder>,
    engine: Engine,
}

async fn setup() -> Setup {
    let faulty = Arc::new(Faulty::default());
    let runs = Arc::new(Runs::default());
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::clone(&faulty) as Arc<dyn Transport>)
        .job(&flaky::JOB)
        .state(Arc::clone(&runs))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await
        .unwrap();
    Setup {
        faulty,
        runs,
        recorder,
        engine,
    }
}

fn work(key: &str, fail_first: u32) -> Work {
    Work {
        fail_first,
        key: key.to_owned(),
    }
}

fn retry_queue() -> String {
    format!("{}.retry.1", flaky::QUEUE)
}

/// An enqueue the broker never confirms fails after the producer's confirm timeout, measured
/// from when it first waited; the next one goes through. (A publish done at once starts no
/// timer at all: the in-memory broker's never waits.)
#[tokio::test(start_paused = true)]
async fn an_enqueue_the_broker_never_confirms_fails_after_the_confirm_timeout() {
    let s = setup().await;
    s.faulty.stall_publishes.store(true, Ordering::Relaxed);
    let confirm_timeout = s.engine.producer().options().confirm_timeout;
    let started = tokio::time::Instant::now();
    // Bounded, so that an enqueue that never times out fails the test rather than hangs it.
    let result = tokio::time::timeout(confirm_timeout * 2, flaky::enqueue(&s.engine, work("a", 0)))
        .await
        .expect("the enqueue gives up on its own");
    assert!(
        matches!(result, Err(jobs_core::Error::Timeout { after }) if after == confirm_timeout),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), confirm_timeout);

    s.faulty.stall_publishes.store(false, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    flaky::enqueue(&s.engine, work("b", 0)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    s.faulty.broker.until_idle().await;
    assert!(
        s.runs.of("a").is_empty(),
        "the stalled job never reached the queue"
    );
    assert_eq!(s.runs.of("b"), [1]);
    s.engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_publish_that_fails_for_a_while_waits_and_never_reruns_the_handler() {
    let s = setup().await;
    s.faulty.refuse(&retry_queue());
    flaky::enqueue(&s.engine, work("a", 1)).await.unwrap();
    // The first attempt fails; its retry is refused for 30 s of virtual time.
    let recorder = &s.recorder;
    recorder
        .wait_until(Duration::from_secs(60), || {
            (recorder.count(&flaky::JOB, |o| matches!(o, Outcome::PublishFailed { .. })) >= 5)
                .then_some(())
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        s.runs.of("a"),
        [1],
        "the handler ran once while its retry was refused"
    );
    s.faulty.accept_all();
    s.faulty.broker.until_idle().await;

    assert_eq!(s.runs.of("a"), [1, 2], "attempt 1, then its retry");
    assert_eq!(
        recorder.count(&flaky::JOB, |o| matches!(o, Outcome::Requeued { .. })),
        0
    );
    assert_eq!(recorder.count(&flaky::JOB, |o| *o == Outcome::Succeeded), 1);
    // Pauses grow: 30 s of refusals take a handful of tries, not thousands.
    let tries = recorder.count(&flaky::JOB, |o| matches!(o, Outcome::PublishFailed { .. }));
    assert!((5..=20).contains(&tries), "{tries} tries");
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_cannot_be_published_in_time_goes_to_the_error_queue_with_the_reason() {
    let s = setup().await;
    s.faulty.refuse(&retry_queue());
    flaky::enqueue(&s.engine, work("b", 1)).await.unwrap();
    s.faulty.broker.until_idle().await;

    assert_eq!(s.runs.of("b"), [1]);
    let failed: Vec<FailedJob> = s
        .faulty
        .broker
        .messages(&format!("{}.err", flaky::QUEUE))
        .into_iter()
        .map(FailedJob::new)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].kind(), Some(FailureKind::Handler));
    let error = failed[0].error().unwrap();
    assert!(
        error.starts_with(
            "not yet; its retry could not be published to `engine.faults.flaky.retry.1` within 120s"
        ),
        "{error}"
    );
    assert!(s.recorder.events().last().unwrap().at >= DEFAULT_OUTCOME_PUBLISH_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_requeued_after_both_publishes_failed_is_not_run_again() {
    let s = setup().await;
    s.faulty.refuse(&retry_queue());
    s.faulty.refuse(&format!("{}.err", flaky::QUEUE));
    flaky::enqueue(&s.engine, work("c", 1)).await.unwrap();
    let recorder = &s.recorder;
    // Twice through both timeouts: requeued, redelivered, requeued again.
    recorder
        .wait_until(Duration::from_secs(3600), || {
            (recorder.count(&flaky::JOB, |o| matches!(o, Outcome::Requeued { .. })) >= 2)
                .then_some(())
        })
        .await
        .unwrap();
    assert_eq!(s.runs.of("c"), [1], "requeued twice, the handler ran once");
    s.faulty.accept_all();
    s.faulty.broker.until_idle().await;

    // The decision remembered was the error queue, since the retry had timed out first: the
    // redelivery publishes it there, still without running the handler.
    assert_eq!(s.runs.of("c"), [1]);
    let failed = s.faulty.broker.messages(&format!("{}.err", flaky::QUEUE));
    assert_eq!(failed.len(), 1);
    let failed = FailedJob::new(failed[0].clone());
    assert_eq!(
        (failed.kind(), failed.attempt()),
        (Some(FailureKind::Handler), Some(1))
    );
    assert_eq!(s.faulty.broker.queue_len(&retry_queue()), Some(0));
}

#[tokio::test(start_paused = true)]
async fn foreign_headers_too_large_for_a_frame_are_dropped_and_the_job_goes_on() {
    let s = setup().await;
    let mut enqueue = flaky::with(work("d", 9));
    for n in 0..100 {
        enqueue = enqueue.header(format!("foreign-{n}"), i64::from(n));
    }
    // Taken as sent, and with a retry's headers (and the broker's dead-lettering ones); with the
    // error queue's, over the limit.
    *s.faulty.header_limit.lock().unwrap() = Some(108);
    enqueue.enqueue(&s.engine).await.unwrap();
    s.faulty.broker.until_idle().await;

    assert_eq!(s.runs.of("d"), [1, 2, 3], "every attempt ran, none twice");
    let failed = s.faulty.broker.messages(&format!("{}.err", flaky::QUEUE));
    assert_eq!(failed.len(), 1);
    let failed = FailedJob::new(failed[0].clone());
    assert!(
        failed
            .envelope()
            .properties
            .headers
            .iter()
            .all(|(name, _)| !name.starts_with("foreign-"))
    );
    let error = failed.error().unwrap();
    assert!(
        error.contains("its 104 foreign headers were dropped"),
        "{error}"
    );
}

/// Panics on every tenth event it sees.
#[derive(Debug, Default)]
struct Panicky(AtomicUsize);

impl Observer for Panicky {
    fn on_event(&self, _: &Event<'_>) {
        if self.0.fetch_add(1, Ordering::Relaxed) % 10 == 9 {
            panic!("observer bug");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_observer_that_panics_leaves_every_delivery_settled_once() {
    let broker = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::new(broker.clone()))
        .job(&flaky::JOB)
        .state(Arc::clone(&runs))
        .observer(Arc::new(Panicky::default()))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .concurrency(4)
        .start()
        .await
        .unwrap();
    for n in 0..200 {
        flaky::enqueue(&engine, work(&n.to_string(), n % 4))
            .await
            .unwrap();
    }
    broker.until_idle().await;

    assert_eq!(broker.queue_len(flaky::QUEUE), Some(0));
    assert_eq!(broker.unacked(flaky::QUEUE), 0);
    for n in 0..200_u32 {
        let expected: Vec<u32> = (1..=(n % 4).min(2) + 1).collect();
        assert_eq!(runs.of(&n.to_string()), expected, "job {n}");
    }
    // The jobs failing every attempt exhaust their retries and reach the error queue.
    let failing = (0..200).filter(|n| n % 4 == 3).count();
    assert_eq!(
        broker.queue_len(&format!("{}.err", flaky::QUEUE)),
        Some(failing)
    );
    assert!(engine.is_ready());
    engine.shutdown(Duration::from_secs(1)).await;
}

/// Holds every handler until released.
#[job(exchange = "engine.faults", routing_key = "held", concurrency = 1)]
async fn held(work: Work, ctx: JobContext) -> Result<(), JobError> {
    let gate = ctx.state::<Arc<Semaphore>>()?;
    ctx.state::<Arc<Runs>>()?
        .0
        .lock()
        .unwrap()
        .entry(work.key.clone())
        .or_default()
        .push(ctx.attempt());
    let _pass = gate.acquire().await.map_err(JobError::fatal)?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn deliveries_waiting_for_a_slot_when_their_consumer_is_lost_never_run_on_it() {
    let broker = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let gate = Arc::new(Semaphore::new(0));
    let engine = Engine::builder(Arc::new(broker.clone()))
        .job(&held::JOB)
        .state(Arc::clone(&runs))
        .state(Arc::clone(&gate))
        .prefetch(8)
        .start()
        .await
        .unwrap();
    for n in 0..8 {
        held::enqueue(&engine, work(&n.to_string(), 0))
            .await
            .unwrap();
    }
    // On the paused clock this returns once every task has run as far as it can: one handler
    // runs, held at the gate, and seven deliveries wait for its slot.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(broker.unacked(held::QUEUE), 8);
    let started: usize = (0..8).map(|n| runs.of(&n.to_string()).len()).sum();
    assert_eq!(started, 1);
    broker.disconnect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    gate.add_permits(1000);
    broker.until_idle().await;

    let all: Vec<Vec<u32>> = (0..8).map(|n| runs.of(&n.to_string())).collect();
    let twice = all.iter().filter(|r| r.len() == 2).count();
    assert!(all.iter().all(|r| !r.is_empty() && r.len() <= 2), "{all:?}");
    assert_eq!(
        twice, 1,
        "only the delivery that was running when the connection went runs again: {all:?}"
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

/// An engine that cannot subscribe to the control exchange at start starts on the states it
/// read, and hears of a pause once a later subscription holds.
#[tokio::test(start_paused = true)]
async fn an_engine_that_cannot_subscribe_at_start_hears_of_pauses_later() {
    let faulty = Arc::new(Faulty::default());
    faulty.refuse_subscriptions.store(true, Ordering::Relaxed);
    let engine = Engine::builder(Arc::clone(&faulty) as Arc<dyn Transport>)
        .job(&flaky::JOB)
        .state(Arc::new(Runs::default()))
        .start()
        .await
        .expect("it starts without the subscription");
    assert!(!engine.is_paused(&flaky::JOB));
    faulty.refuse_subscriptions.store(false, Ordering::Relaxed);
    // Its next try (a backoff of at most 5 s) subscribes; a pause is then news.
    tokio::time::sleep(Duration::from_secs(10)).await;
    jobs_core::control::pause(faulty.as_ref(), flaky::JOB.name())
        .await
        .unwrap();
    let heard = async {
        while !engine.is_paused(&flaky::JOB) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(1), heard)
        .await
        .expect("the engine hears of the pause");
    engine.shutdown(Duration::from_secs(1)).await;
}

/// A message whose decoding panics when its key is `"panic"`: a panic outside the handler,
/// in the handler task.
#[derive(Clone, Debug, Default, PartialEq)]
struct Fragile(Work);

/// Decodes of `Fragile` that panicked.
static PANICS: AtomicUsize = AtomicUsize::new(0);

impl prost::Message for Fragile {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        self.0.encode_raw(buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.0.merge_field(tag, wire_type, buf, ctx)?;
        if self.0.key == "panic" {
            PANICS.fetch_add(1, Ordering::Relaxed);
            panic!("a decoder that panics");
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[job(exchange = "engine.faults", routing_key = "fragile", concurrency = 2)]
async fn fragile(work: Fragile, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Runs>>()?
        .0
        .lock()
        .unwrap()
        .entry(work.0.key.clone())
        .or_default()
        .push(ctx.attempt());
    Ok(())
}

/// A delivery whose handling panics outside the handler goes back as failed, each return
/// counted, until the delivery limit dead-letters it; the consumer's handler tasks go on with
/// the deliveries around it. On a broker of 4.3, where a plain requeue is not counted, so that
/// one given back as anything but failed would go round for ever.
#[tokio::test(start_paused = true)]
async fn a_panic_outside_the_handler_meets_the_delivery_limit_and_the_others_still_run() {
    let version = jobs_core::broker::BrokerVersion::parse("4.3.0").unwrap();
    let broker = MemoryTransport::emulating(version);
    let runs = Arc::new(Runs::default());
    let engine = Engine::builder(Arc::new(broker.clone()))
        .job(&fragile::JOB)
        .defaults(jobs_core::JobDefaults {
            delivery_limit: 3,
            ..jobs_core::JobDefaults::default()
        })
        .state(Arc::clone(&runs))
        .start()
        .await
        .unwrap();
    fragile::enqueue(&engine, Fragile(work("panic", 0)))
        .await
        .unwrap();
    for n in 0..20 {
        fragile::enqueue(&engine, Fragile(work(&n.to_string(), 0)))
            .await
            .unwrap();
    }
    let error_queue = format!("{}.err", fragile::QUEUE);
    // Three counted returns, and the fourth dead-letters; more means they were not counted.
    while broker.queue_len(&error_queue) != Some(1) {
        assert!(
            PANICS.load(Ordering::Relaxed) <= 4,
            "the delivery went round uncounted"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(PANICS.load(Ordering::Relaxed), 4);
    broker.until_idle().await;

    for n in 0..20 {
        assert_eq!(runs.of(&n.to_string()), [1], "job {n}");
    }
    assert!(runs.of("panic").is_empty());
    let died = FailedJob::new(broker.messages(&error_queue)[0].clone());
    assert_eq!(died.kind(), Some(FailureKind::DeliveryLimit));
    assert_eq!(broker.queue_len(fragile::QUEUE), Some(0));
    assert_eq!(broker.unacked(fragile::QUEUE), 0);
    // And the consumer still serves.
    fragile::enqueue(&engine, Fragile(work("after", 0)))
        .await
        .unwrap();
    broker.until_idle().await;
    assert_eq!(runs.of("after"), [1]);
    engine.shutdown(Duration::from_secs(1)).await;
}
