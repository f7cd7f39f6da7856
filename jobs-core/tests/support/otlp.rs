//! An OTLP/gRPC trace receiver inside the test: a tonic `TraceService` on 127.0.0.1, keeping
//! every span it is sent, and a way to wait for the ones a test expects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The spans received so far, and a signal when more come.
#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<Span>>,
    arrived: Notify,
}

/// The service the server runs: it records into the receiver's [`Received`].
#[derive(Debug)]
struct Collector(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        self.0.spans.lock().unwrap().extend(spans);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    endpoint: String,
    received: Arc<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub(crate) fn start() -> Self {
        Self::start_with(Server::builder(), "http")
    }

    /// Starts a receiver on a free port of 127.0.0.1 with `server`'s settings (its TLS, for
    /// one), its endpoint a `scheme://` URL.
    pub(crate) fn start_with(server: Server, scheme: &str) -> Self {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let endpoint = format!("{scheme}://{}", incoming.local_addr().unwrap());
        let received = Arc::new(Received::default());
        let service = TraceServiceServer::new(Collector(Arc::clone(&received)));
        let server = tokio::spawn(async move {
            server.serve_with_incoming(service, incoming).await.unwrap();
        });
        Self {
            endpoint,
            received,
            server,
        }
    }

    /// Its URL, for an exporter.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A tracer provider exporting to this receiver over OTLP/gRPC, in batches.
    pub(crate) fn provider(&self) -> SdkTracerProvider {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(self.endpoint())
            .build()
            .unwrap();
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build()
    }

    /// How many spans it has received so far.
    #[allow(dead_code, reason = "for jobs-worker's tests, which share this file")]
    pub(crate) fn received(&self) -> usize {
        self.received.spans.lock().unwrap().len()
    }

    /// Waits, at most `within`, until the spans received satisfy `done`, and returns them.
    ///
    /// # Panics
    ///
    /// When `within` passes first, with the spans received.
    pub(crate) async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check, so an export between the two still wakes it.
            let arrived = self.received.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            arrived.as_mut().enable();
            {
                let spans = self.received.spans.lock().unwrap();
                if done(&spans) {
                    return spans.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let spans = self.received.spans.lock().unwrap();
                panic!("the receiver did not get the spans expected in {within:?}: {spans:#?}");
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Exports every span `provider` holds now, off the runtime's threads: the export needs them.
pub(crate) async fn flush(provider: &SdkTracerProvider) {
    let provider = provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap()
        .unwrap();
}

/// Shuts `provider` down, off the runtime's threads.
pub(crate) async fn shut_down(provider: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// The value of `span`'s attribute `key`.
pub(crate) fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

/// The text of `span`'s attribute `key`.
pub(crate) fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

/// The integer of `span`'s attribute `key`.
pub(crate) fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}
