//! A worker given an OTLP endpoint exports its spans there, and sends the last ones when it
//! shuts down (feature `otel`).

#[path = "../../jobs-core/tests/support/otlp.rs"]
#[allow(dead_code, reason = "the receiver's helpers this test does not need")]
mod otlp;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::testing::Recorder;
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, Producer, job};
use jobs_worker::{Worker, WorkerConfig};
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp::{Receiver, text};

/// Generous: a bound on a wait that should end soon, not a timing assumption.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {}

#[job(exchange = "worker.otel", routing_key = "ping")]
async fn ping(_ping: Ping) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_an_otlp_endpoint_exports_its_spans_and_flushes_them_at_shutdown() {
    let receiver = Receiver::start();
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let recorder = Arc::new(Recorder::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = WorkerConfig::default()
        .with_metrics_addr("127.0.0.1:0".parse().unwrap())
        .with_otlp_endpoint(receiver.endpoint());
    let worker = Worker::builder()
        .config(config)
        .jobs([&ping::JOB])
        .transport(Arc::clone(&transport))
        .observer(recorder.clone())
        .shutdown_signal(async {
            let _ = stopped.await;
        });
    let running = tokio::spawn(worker.run());

    // The worker's tracer is set before its engine takes deliveries; this enqueue, before or
    // after that, is served once the engine runs.
    let id = "worker-otel-1";
    ping::with(Ping {})
        .message_id(id)
        .enqueue(&Producer::new(Arc::clone(&transport)))
        .await
        .unwrap();
    recorder.finished(id, WAIT).await.unwrap();
    // No flush here: the worker's shutdown sends what is left.
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // The producer's `publish` span carries the same message id when the enqueue ran after
    // the worker set its tracer; the consumer's span is the one this test is about.
    let process = format!("process {}", ping::QUEUE);
    let is_consumer =
        |span: &Span| span.name == process && text(span, "messaging.message.id") == Some(id);
    let spans = receiver
        .wait_for(WAIT, |spans| spans.iter().any(is_consumer))
        .await;
    let consumer = spans.iter().find(|span| is_consumer(span)).unwrap();
    assert_eq!(text(consumer, "jobs.outcome"), Some("succeeded"));
}
