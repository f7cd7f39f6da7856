//! The outcome scenarios of the delivery semantics (success, retries, the error queue),
//! written once and run on every transport.
//!
//! Each scenario takes a [`Suite`]: an engine serving [`shared_work()`] on some transport, with a
//! [`Recorder`] of its events. On the in-memory broker under a paused clock, delays are exact;
//! on RabbitMQ they are checked within [`Suite::tolerance`].
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jobs_core::engine::Engine;
use jobs_core::envelope::header;
use jobs_core::testing::{Outcome, Recorded, Recorder};
use jobs_core::transport::{Publish, Settlement, Transport};
use jobs_core::{Envelope, Error, FailedJob, FailureKind, JobContext, JobError, job};

/// What the shared job should do.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Work {
    /// `ok`, `flaky`, `always`, `fatal`, `hang-once`, `panic`.
    #[prost(string, tag = "1")]
    pub mode: String,
    /// For `flaky`: how many attempts fail before one succeeds.
    #[prost(uint32, tag = "2")]
    pub failures: u32,
}

impl Work {
    /// A job in `mode`.
    #[must_use]
    pub fn new(mode: &str) -> Self {
        Self {
            mode: mode.to_owned(),
            failures: 0,
        }
    }
}

/// The job every scenario runs: 3 attempts, 100 ms then 200 ms apart, a 2 s deadline.
#[job(
    exchange = "tests.shared",
    routing_key = "work",
    queue = "tests.shared.work",
    retries = 2,
    backoff = "100ms, 200ms",
    timeout = "2s",
    concurrency = 16
)]
pub async fn shared_work(work: Work, ctx: JobContext) -> Result<(), JobError> {
    match work.mode.as_str() {
        "flaky" if ctx.attempt() <= work.failures => {
            Err(JobError::retry(format!("attempt {} failed", ctx.attempt())))
        }
        "always" => Err(std::io::Error::other("storage unavailable").into()),
        "fatal" => Err(JobError::fatal("invalid input")),
        "hang-once" if ctx.attempt() == 1 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        "panic" => panic!("handler bug"),
        _ => Ok(()),
    }
}

/// An engine serving [`shared_work()`] on one transport.
#[derive(Debug)]
pub struct Suite {
    /// The running engine; enqueue through it.
    pub engine: Engine,
    /// The transport it runs on.
    pub transport: Arc<dyn Transport>,
    /// Its events.
    pub recorder: Arc<Recorder>,
    /// How far a measured delay may exceed the configured one (zero on virtual time).
    pub tolerance: Duration,
    /// The longest wait for any outcome.
    pub within: Duration,
}

impl Suite {
    /// Starts the engine on `transport`.
    ///
    /// # Panics
    ///
    /// When the engine cannot start.
    pub async fn start(transport: Arc<dyn Transport>, tolerance: Duration) -> Self {
        let recorder = Arc::new(Recorder::new());
        let engine = Engine::builder(Arc::clone(&transport))
            .job(&shared_work::JOB)
            .observer(Arc::clone(&recorder) as _)
            .start()
            .await
            .expect("the engine starts");
        Self {
            engine,
            transport,
            recorder,
            tolerance,
            within: Duration::from_secs(30),
        }
    }

    async fn enqueue(&self, work: Work) -> String {
        shared_work::enqueue(&self.engine, work)
            .await
            .expect("enqueued")
            .to_string()
    }

    async fn finished(&self, id: &str) -> Vec<Recorded> {
        self.recorder
            .finished(id, self.within)
            .await
            .expect("the job finishes")
    }

    /// Reads the error queue through the transport until the message `id` is there; acks
    /// what it reads, so older leftovers go too.
    async fn failed_job(&self, id: &str) -> FailedJob {
        let mut consumer = self
            .transport
            .consume(shared_work::ERROR_QUEUE, 100)
            .await
            .expect("the error queue can be consumed");
        let found = tokio::time::timeout(self.within, async {
            while let Some(delivery) = consumer.deliveries.next().await {
                let settled = consumer.settler.settle(Settlement::Ack {
                    tag: delivery.tag,
                    multiple: false,
                });
                settled.await.expect("acked");
                if delivery.envelope.properties.message_id.as_deref() == Some(id) {
                    return Some(FailedJob::new(Arc::unwrap_or_clone(delivery.envelope)));
                }
            }
            None
        })
        .await;
        found
            .ok()
            .flatten()
            .expect("the message reaches the error queue")
    }

    fn assert_delay(&self, measured: Duration, configured: Duration) {
        assert!(
            measured >= configured && measured <= configured + self.tolerance,
            "waited {measured:?} for a {configured:?} delay (tolerance {:?})",
            self.tolerance
        );
    }
}

fn starts(events: &[Recorded]) -> Vec<(u32, Duration)> {
    events
        .iter()
        .filter(|e| e.outcome == Outcome::Started)
        .map(|e| (e.attempt, e.at))
        .collect()
}

/// A successful job runs once.
pub async fn success(suite: &Suite) {
    let id = suite.enqueue(Work::new("ok")).await;
    let events = suite.finished(&id).await;
    let outcomes: Vec<_> = events.into_iter().map(|e| (e.attempt, e.outcome)).collect();
    assert_eq!(outcomes, [(1, Outcome::Started), (1, Outcome::Succeeded)]);
}

/// A job failing twice is retried after each backoff step, then succeeds.
pub async fn retried_then_succeeds(suite: &Suite) {
    let id = suite
        .enqueue(Work {
            mode: "flaky".into(),
            failures: 2,
        })
        .await;
    let events = suite.finished(&id).await;
    let starts = starts(&events);
    assert_eq!(starts.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    suite.assert_delay(starts[1].1 - starts[0].1, Duration::from_millis(100));
    suite.assert_delay(starts[2].1 - starts[1].1, Duration::from_millis(200));
    assert_eq!(events.last().map(|e| &e.outcome), Some(&Outcome::Succeeded));
}

/// A job that always fails gets exactly its attempts, then lands in the error queue with
/// every failure header.
pub async fn exhausted_into_the_error_queue(suite: &Suite) {
    let id = suite.enqueue(Work::new("always")).await;
    let events = suite.finished(&id).await;
    assert_eq!(starts(&events).len(), 3, "the first attempt and 2 retries");
    let letter = suite.failed_job(&id).await;
    assert_eq!(letter.kind(), Some(FailureKind::Handler));
    assert_eq!(letter.error(), Some("storage unavailable"));
    assert_eq!(letter.attempt(), Some(3));
    assert_eq!(letter.job(), Some("shared_work"));
    assert_eq!(letter.queue(), Some(shared_work::QUEUE));
    assert_eq!(letter.exchange(), Some("tests.shared"));
    assert_eq!(letter.routing_key(), Some("work"));
    assert!(letter.host().is_some_and(|h| !h.is_empty()));
    assert!(letter.failed_at().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(
        letter.decode::<Work>().expect("the body is kept"),
        Work::new("always")
    );
}

/// A fatal error goes to the error queue after one attempt.
pub async fn fatal_goes_straight_to_the_error_queue(suite: &Suite) {
    let id = suite.enqueue(Work::new("fatal")).await;
    assert_eq!(starts(&suite.finished(&id).await).len(), 1);
    let letter = suite.failed_job(&id).await;
    assert_eq!(
        (letter.kind(), letter.attempt()),
        (Some(FailureKind::Fatal), Some(1))
    );
}

/// An attempt past its deadline fails as a timeout and is retried.
pub async fn timeout_is_a_retryable_failure(suite: &Suite) {
    let id = suite.enqueue(Work::new("hang-once")).await;
    let events = suite.finished(&id).await;
    let retry = events
        .iter()
        .find_map(|e| match &e.outcome {
            Outcome::Retried { kind, .. } => Some((e.attempt, *kind, e.at)),
            _ => None,
        })
        .expect("the first attempt was retried");
    assert_eq!((retry.0, retry.1), (1, FailureKind::Timeout));
    suite.assert_delay(retry.2 - starts(&events)[0].1, Duration::from_secs(2));
    assert_eq!(events.last().map(|e| &e.outcome), Some(&Outcome::Succeeded));
}

/// A panicking handler is a failure; the worker keeps serving.
pub async fn panic_is_a_failure_and_the_worker_goes_on(suite: &Suite) {
    let id = suite.enqueue(Work::new("panic")).await;
    let letter = suite.failed_job(&id).await;
    assert_eq!(letter.kind(), Some(FailureKind::Panic));
    assert!(letter.error().is_some_and(|e| e.contains("handler bug")));
    let after = suite.enqueue(Work::new("ok")).await;
    assert_eq!(
        suite.finished(&after).await.last().map(|e| &e.outcome),
        Some(&Outcome::Succeeded)
    );
}

fn raw(kind: Option<&'static str>, body: Vec<u8>, id: &str) -> Publish {
    let mut envelope = Envelope::default();
    envelope.properties.kind = kind.map(Into::into);
    envelope.properties.message_id = Some(id.to_owned());
    envelope.properties.persistent = true;
    envelope.body = body.into();
    Publish {
        exchange: "tests.shared".into(),
        routing_key: "work".into(),
        mandatory: true,
        envelope,
    }
}

/// A body that is not the job's message goes to the error queue on its first delivery.
pub async fn undecodable_body_goes_to_the_error_queue_at_once(suite: &Suite) {
    let id = format!("raw-{}", jobs_core::MessageId::generate());
    let body = vec![0x0a, 100, b'a', b'b', b'c'];
    suite
        .engine
        .producer()
        .publish(raw(Some("shared_work"), body, &id))
        .await
        .expect("published");
    let letter = suite.failed_job(&id).await;
    assert_eq!(letter.kind(), Some(FailureKind::Decode));
    assert!(
        suite
            .recorder
            .events_of(&id)
            .iter()
            .all(|e| e.outcome != Outcome::Started)
    );
}

/// A message naming no known job goes to the error queue on its first delivery.
pub async fn unknown_job_goes_to_the_error_queue_at_once(suite: &Suite) {
    let id = format!("raw-{}", jobs_core::MessageId::generate());
    suite
        .engine
        .producer()
        .publish(raw(Some("not_a_job"), Vec::new(), &id))
        .await
        .expect("published");
    let letter = suite.failed_job(&id).await;
    assert_eq!(letter.kind(), Some(FailureKind::UnknownJob));
    assert!(
        letter
            .envelope()
            .properties
            .headers
            .get(header::ERROR)
            .is_some()
    );
}

/// An enqueue no queue takes is an error.
pub async fn unroutable_enqueue_fails(suite: &Suite) {
    let err = shared_work::with(Work::new("ok"))
        .routing_key("nowhere")
        .enqueue(&suite.engine)
        .await
        .expect_err("unroutable");
    assert!(err.is_unroutable(), "{err:?}");
}

/// A job over the size limit is refused before anything is published.
pub async fn too_large_is_refused(suite: &Suite) {
    let limit = suite.engine.producer().options().max_message_size;
    let huge = Work {
        mode: "x".repeat(limit),
        failures: 0,
    };
    let err = shared_work::enqueue(&suite.engine, huge)
        .await
        .expect_err("too large");
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}
