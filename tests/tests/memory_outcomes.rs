//! Outcomes on the in-memory broker that need its exact virtual time or its state; the
//! scenarios every transport shares are in `jobs_tests::scenarios`.

use std::time::Duration;

use jobs_core::envelope::header;
use jobs_core::testing::{Outcome, Recorded, TestApp};
use jobs_core::transport::Publish;
use jobs_core::{Envelope, FailureKind, HeaderValue, JobContext, JobError, job};
use jobs_tests::scenarios::Work;

#[job(
    exchange = "tests.outcomes",
    routing_key = "work",
    retries = 3,
    backoff = "exp(1s, x2, 5m)",
    timeout = "10s"
)]
async fn run_work(work: Work, ctx: JobContext) -> Result<(), JobError> {
    match work.mode.as_str() {
        "flaky" if ctx.attempt() <= work.failures => {
            Err(JobError::retry(format!("attempt {} failed", ctx.attempt())))
        }
        "always" => Err(std::io::Error::other("storage unavailable").into()),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn app() -> TestApp {
    TestApp::builder().job(&run_work::JOB).build().unwrap()
}

fn started_at(events: &[Recorded]) -> Vec<Duration> {
    events
        .iter()
        .filter(|e| e.outcome == Outcome::Started)
        .map(|e| e.at)
        .collect()
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_successful_job_is_handled_once_and_acked() {
    let app = app();
    let id = run_work::enqueue(&app, Work::new("ok")).await.unwrap();
    app.run_until_idle().await;

    let outcomes: Vec<_> = app
        .events_of(id.as_str())
        .into_iter()
        .map(|e| (e.attempt, e.outcome))
        .collect();
    assert_eq!(outcomes, [(1, Outcome::Started), (1, Outcome::Succeeded)]);
    assert_eq!(app.transport().queue_len(run_work::QUEUE), Some(0));
    assert_eq!(app.transport().unacked(run_work::QUEUE), 0);
    assert!(app.error_queue(run_work::QUEUE).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_with_the_configured_backoff_then_succeeds() {
    let app = app();
    let flaky = Work {
        mode: "flaky".into(),
        failures: 2,
    };
    let id = run_work::enqueue(&app, flaky).await.unwrap();
    app.run_until_idle().await;

    let events = app.events_of(id.as_str());
    assert_eq!(
        gaps(&started_at(&events)),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Retried { delay, .. } => Some((e.attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [(1, Duration::from_secs(1)), (2, Duration::from_secs(2))]
    );
    assert_eq!(
        events.last().map(|e| (e.attempt, &e.outcome)),
        Some((3, &Outcome::Succeeded))
    );
    assert!(app.error_queue(run_work::QUEUE).is_empty());
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_land_in_the_error_queue_with_every_failure_header() {
    let app = app();
    let id = run_work::enqueue(&app, Work::new("always")).await.unwrap();
    app.run_until_idle().await;

    let events = app.events_of(id.as_str());
    let starts = started_at(&events);
    assert_eq!(starts.len(), 4, "the first attempt and 3 retries");
    assert_eq!(gaps(&starts), [1, 2, 4].map(Duration::from_secs));

    let letters = app.error_queue(run_work::QUEUE);
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.kind(), Some(FailureKind::Handler));
    assert_eq!(letter.error(), Some("storage unavailable"));
    assert_eq!(letter.attempt(), Some(4));
    assert_eq!(letter.message_id(), Some(id.as_str()));
    assert_eq!(letter.job(), Some("run_work"));
    assert_eq!(letter.queue(), Some(run_work::QUEUE));
    assert_eq!(letter.exchange(), Some("tests.outcomes"));
    assert_eq!(letter.routing_key(), Some("work"));
    assert!(letter.host().is_some_and(|h| !h.is_empty()));
    assert!(letter.failed_at().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(letter.decode::<Work>().unwrap(), Work::new("always"));
    assert_eq!(run_work::ERROR_QUEUE, format!("{}.err", run_work::QUEUE));
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_deadline_fails_as_timeout() {
    let app = app();
    let id = run_work::enqueue(&app, Work::new("hang")).await.unwrap();
    app.run_until_idle().await;

    let events = app.events_of(id.as_str());
    let first_retry = events
        .iter()
        .find(|e| matches!(e.outcome, Outcome::Retried { .. }))
        .unwrap();
    assert_eq!(
        first_retry.at,
        Duration::from_secs(10),
        "the 10 s deadline, on virtual time"
    );
    assert!(matches!(
        first_retry.outcome,
        Outcome::Retried {
            kind: FailureKind::Timeout,
            ..
        }
    ));
    let letters = app.error_queue(run_work::QUEUE);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind(), Some(FailureKind::Timeout));
    assert_eq!(letters[0].attempt(), Some(4));
}

/// A message as another producer might publish it, bypassing the typed producer.
fn raw(kind: Option<&'static str>, body: Vec<u8>, attempt: Option<HeaderValue>) -> Publish {
    let mut envelope = Envelope::default();
    envelope.properties.kind = kind.map(Into::into);
    envelope.properties.message_id = Some("raw-1".into());
    envelope.properties.persistent = true;
    if let Some(attempt) = attempt {
        envelope.properties.headers.insert(header::ATTEMPT, attempt);
    }
    envelope.body = body.into();
    Publish {
        exchange: "tests.outcomes".into(),
        routing_key: "work".into(),
        mandatory: true,
        envelope,
    }
}

async fn publish_raw(app: &TestApp, publish: Publish) -> jobs_core::FailedJob {
    app.producer().publish(publish).await.unwrap();
    app.run_until_idle().await;
    let mut letters = app.error_queue(run_work::QUEUE);
    assert_eq!(letters.len(), 1, "exactly one error-queue message");
    let outcomes: Vec<_> = app.events().into_iter().map(|e| e.outcome).collect();
    assert!(
        matches!(outcomes.as_slice(), [Outcome::Failed { .. }]),
        "the handler never ran and nothing was retried: {outcomes:?}"
    );
    letters.remove(0)
}

#[tokio::test(start_paused = true)]
async fn a_malformed_attempt_header_goes_to_the_error_queue() {
    let app = app();
    let letter = publish_raw(&app, raw(None, Vec::new(), Some(HeaderValue::from("two")))).await;
    assert_eq!(letter.kind(), Some(FailureKind::Decode));
    assert!(letter.error().unwrap().contains("x-jobs-attempt"));
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_size_limit_goes_to_the_error_queue() {
    let app = app();
    let limit = app.producer().options().max_message_size;
    let letter = publish_raw(&app, raw(Some("run_work"), vec![0; limit + 1], None)).await;
    assert_eq!(letter.kind(), Some(FailureKind::TooLarge));
}

#[tokio::test(start_paused = true)]
async fn a_message_without_a_type_is_the_queue_s_job() {
    let app = app();
    let body = prost::Message::encode_to_vec(&Work::new("ok"));
    app.producer().publish(raw(None, body, None)).await.unwrap();
    app.run_until_idle().await;
    assert_eq!(app.succeeded(&run_work::JOB), 1);
}

#[tokio::test(start_paused = true)]
async fn enqueue_carries_the_wire_contract() {
    let app = app();
    let id = run_work::with(Work::new("ok"))
        .header("tenant", "acme")
        .message_id("order-7")
        .enqueue(&app)
        .await
        .unwrap();
    assert_eq!(id.as_str(), "order-7");
    let sent = app.enqueued(&run_work::JOB).pop().unwrap();
    let props = &sent.envelope.properties;
    assert_eq!(
        props.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(props.kind.as_deref(), Some("run_work"));
    assert_eq!(props.message_id.as_deref(), Some("order-7"));
    assert!(props.persistent);
    assert!(props.timestamp.is_some_and(|t| t > 1_600_000_000));
    assert_eq!(
        props.headers.get(header::ATTEMPT),
        None,
        "a first publish carries no attempt header: missing means 1"
    );
    assert_eq!(props.headers.get_str("tenant"), Some("acme"));
    assert_eq!(
        sent.envelope.body,
        prost::Message::encode_to_vec(&Work::new("ok"))
    );
    assert!(sent.mandatory);
}
