//! OpenTelemetry spans (feature `otel`), exported over OTLP/gRPC to a receiver inside the test:
//! on the in-memory broker, and on RabbitMQ (`JOBS_AMQP_URL`, or the local default; without a
//! broker that test skips, unless `JOBS_REQUIRE_BROKER` is set).
//!
//! The tracer is the process's, so the tests take turns.

#[path = "support/otlp.rs"]
mod otlp;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::envelope::header::TRACEPARENT;
use jobs_core::otel::attribute as key;
use jobs_core::testing::{Recorder, TestApp};
use jobs_core::transport::Transport;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobContext, JobError, Producer, TraceContext, job};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use otlp::{Receiver, int, text};

/// Generous: a bound on a wait that should end soon, not a timing assumption.
const WAIT: Duration = Duration::from_secs(30);

/// One test at a time: the tracer provider is the process's.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, PartialEq, prost::Message)]
struct Step {}

#[job(
    exchange = "otel.test",
    routing_key = "flaky",
    retries = 2,
    backoff = "50ms"
)]
async fn flaky(_step: Step, ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() < 3 {
        return Err(JobError::retry("not yet"));
    }
    Ok(())
}

#[job(exchange = "otel.test", routing_key = "first")]
async fn first(_step: Step, ctx: JobContext) -> Result<(), JobError> {
    second::with(Step {})
        .message_id(format!("{}.second", ctx.message_id().unwrap_or_default()))
        .enqueue(&ctx)
        .await
        .map_err(JobError::retry)?;
    Ok(())
}

#[job(exchange = "otel.test", routing_key = "second")]
async fn second(_step: Step) -> Result<(), JobError> {
    Ok(())
}

fn unique(test: &str) -> String {
    format!("otel.{test}.{}", uuid::Uuid::now_v7())
}

/// The spans of message `id`: its producer spans and its consumer spans, by attempt.
fn of(spans: &[Span], id: &str) -> (Vec<Span>, Vec<Span>) {
    let mine = spans
        .iter()
        .filter(|span| text(span, key::MESSAGING_MESSAGE_ID) == Some(id));
    let (mut producers, mut consumers): (Vec<Span>, Vec<Span>) = mine
        .cloned()
        .partition(|span| span.kind == SpanKind::Producer as i32);
    producers.sort_by_key(|span| span.start_time_unix_nano);
    consumers.sort_by_key(|span| int(span, key::ATTEMPT));
    (producers, consumers)
}

/// Waits for, and checks, the spans of `flaky`'s message `id` retried twice: one producer
/// span, three consumer spans, its children, in one trace; returns the producer span.
async fn check_retried_twice(receiver: &Receiver, id: &str) -> Span {
    let spans = receiver
        .wait_for(WAIT, |spans| {
            let (producers, consumers) = of(spans, id);
            producers.len() + consumers.len() >= 4
        })
        .await;
    let (producers, consumers) = of(&spans, id);
    assert_eq!(producers.len(), 1, "one producer span: {producers:#?}");
    assert_eq!(consumers.len(), 3, "three consumer spans: {consumers:#?}");
    let producer = &producers[0];

    assert_eq!(producer.name, "publish otel.test");
    assert_eq!(text(producer, key::MESSAGING_SYSTEM), Some("rabbitmq"));
    assert_eq!(text(producer, key::MESSAGING_OPERATION_TYPE), Some("send"));
    assert_eq!(
        text(producer, key::MESSAGING_OPERATION_NAME),
        Some("publish")
    );
    assert_eq!(
        text(producer, key::MESSAGING_DESTINATION_NAME),
        Some("otel.test")
    );
    assert_eq!(
        text(producer, key::MESSAGING_RABBITMQ_ROUTING_KEY),
        Some("flaky")
    );
    assert_eq!(text(producer, key::JOB_NAME), Some(flaky::JOB.name()));
    assert!(producer.parent_span_id.is_empty(), "a root: {producer:#?}");

    let outcomes = [
        ("retried", Some("handler")),
        ("retried", Some("handler")),
        ("succeeded", None),
    ];
    for (attempt, (consumer, (outcome, kind))) in (1..).zip(consumers.iter().zip(outcomes)) {
        assert_eq!(
            consumer.trace_id, producer.trace_id,
            "one trace: {consumer:#?}"
        );
        assert_eq!(consumer.parent_span_id, producer.span_id, "{consumer:#?}");
        assert_eq!(consumer.kind, SpanKind::Consumer as i32);
        assert_eq!(consumer.name, format!("process {}", flaky::QUEUE));
        assert_eq!(text(consumer, key::MESSAGING_SYSTEM), Some("rabbitmq"));
        assert_eq!(
            text(consumer, key::MESSAGING_OPERATION_TYPE),
            Some("process")
        );
        // The enqueue's exchange and key, though retries arrive through the default exchange.
        assert_eq!(
            text(consumer, key::MESSAGING_DESTINATION_NAME),
            Some("otel.test")
        );
        assert_eq!(
            text(consumer, key::MESSAGING_RABBITMQ_ROUTING_KEY),
            Some("flaky")
        );
        assert_eq!(
            text(consumer, key::MESSAGING_SUBSCRIPTION_NAME),
            Some(flaky::QUEUE)
        );
        assert_eq!(text(consumer, key::JOB_NAME), Some(flaky::JOB.name()));
        assert_eq!(int(consumer, key::ATTEMPT), Some(attempt));
        assert_eq!(text(consumer, key::OUTCOME), Some(outcome), "{consumer:#?}");
        assert_eq!(text(consumer, key::FAILURE_KIND), kind);
        assert_eq!(text(consumer, key::ERROR_TYPE), kind);
        let status = consumer.status.clone().unwrap_or_default();
        if kind.is_some() {
            assert_eq!(status.code, StatusCode::Error as i32);
            assert_eq!(status.message, "not yet");
        } else {
            assert_ne!(status.code, StatusCode::Error as i32);
        }
    }
    producer.clone()
}

/// The hex of a span id, as a `traceparent` spells it.
fn hex(id: &[u8]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_retried_twice_is_one_producer_span_and_three_consumer_spans_in_one_trace() {
    let _turn = TURN.lock().await;
    let receiver = Receiver::start();
    let provider = receiver.provider();
    jobs_core::otel::set_tracer_provider(&provider);

    let app = TestApp::builder().job(&flaky::JOB).build().unwrap();
    let id = unique("memory");
    flaky::with(Step {})
        .message_id(id.clone())
        .enqueue(&app)
        .await
        .unwrap();
    app.run_until_idle().await;
    assert_eq!(
        (app.retried(&flaky::JOB), app.succeeded(&flaky::JOB)),
        (2, 1)
    );
    otlp::flush(&provider).await;

    let producer = check_retried_twice(&receiver, &id).await;
    // The message names the producer span: the consumer spans' parent is what it carried.
    let enqueued = app.enqueued(&flaky::JOB);
    let carried = enqueued[0]
        .envelope
        .properties
        .headers
        .get_str(TRACEPARENT)
        .and_then(TraceContext::parse)
        .expect("a traceparent");
    assert_eq!(carried.trace_id(), hex(&producer.trace_id));
    assert_eq!(carried.span_id(), hex(&producer.span_id));

    jobs_core::otel::clear_tracer_provider();
    otlp::shut_down(provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_job_is_a_child_of_the_attempt_that_enqueued_it() {
    let _turn = TURN.lock().await;
    let receiver = Receiver::start();
    let provider = receiver.provider();
    jobs_core::otel::set_tracer_provider(&provider);

    let app = TestApp::builder()
        .job(&first::JOB)
        .job(&second::JOB)
        .build()
        .unwrap();
    let id = unique("follow-up");
    let follow_up = format!("{id}.second");
    first::with(Step {})
        .message_id(id.clone())
        .enqueue(&app)
        .await
        .unwrap();
    app.run_until_idle().await;
    assert_eq!(app.succeeded(&second::JOB), 1);
    otlp::flush(&provider).await;

    let spans = receiver
        .wait_for(WAIT, |spans| {
            let ((a, b), (c, d)) = (of(spans, &id), of(spans, &follow_up));
            a.len() + b.len() + c.len() + d.len() >= 4
        })
        .await;
    let ((first_producer, first_consumer), (second_producer, second_consumer)) =
        (of(&spans, &id), of(&spans, &follow_up));
    let (first_producer, first_consumer) = (&first_producer[0], &first_consumer[0]);
    let (second_producer, second_consumer) = (&second_producer[0], &second_consumer[0]);
    for span in [first_consumer, second_producer, second_consumer] {
        assert_eq!(
            span.trace_id, first_producer.trace_id,
            "one trace: {span:#?}"
        );
    }
    assert_eq!(first_consumer.parent_span_id, first_producer.span_id);
    assert_eq!(second_producer.parent_span_id, first_consumer.span_id);
    assert_eq!(second_consumer.parent_span_id, second_producer.span_id);

    jobs_core::otel::clear_tracer_provider();
    otlp::shut_down(provider).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_retried_twice_on_rabbitmq_is_one_producer_span_and_three_consumer_spans() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let _turn = TURN.lock().await;
    let receiver = Receiver::start();
    let provider = receiver.provider();
    jobs_core::otel::set_tracer_provider(&provider);

    let transport: Arc<dyn Transport> = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::clone(&transport))
        .job(&flaky::JOB)
        .observer(recorder.clone())
        .start()
        .await
        .unwrap();
    let id = unique("rabbitmq");
    flaky::with(Step {})
        .message_id(id.clone())
        .enqueue(&Producer::new(Arc::clone(&transport)))
        .await
        .unwrap();
    // The spans end before the engine reports the outcome.
    recorder.finished(&id, WAIT).await.unwrap();
    otlp::flush(&provider).await;
    check_retried_twice(&receiver, &id).await;

    engine.shutdown(Duration::from_secs(5)).await;
    jobs_core::otel::clear_tracer_provider();
    otlp::shut_down(provider).await;
    if let Err(err) = jobs_core::testing::delete_job_queues(&url, &[&flaky::JOB]).await {
        eprintln!("the test's queues stay on the broker: {err}");
    }
}
