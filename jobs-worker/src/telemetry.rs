//! OTLP export of the engine's spans (feature `otel`): on when an endpoint is configured
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or `otlp_endpoint` in the file).
//!
//! The exporter is opentelemetry-otlp's over gRPC (tonic), batched by the SDK on a thread of its
//! own, so the hot path only hands finished spans over. It reads the other standard variables
//! itself (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, …), and the resource
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; without a service name, it is the worker's
//! connection name.

use jobs_core::otel::set_tracer_provider;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::WorkerConfig;
use crate::error::{Error, Result};

/// The exporter while the worker runs; [`shut_down`](Self::shut_down) sends what is left.
#[derive(Debug)]
pub(crate) struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    /// Starts exporting spans when `config` has an OTLP endpoint; otherwise does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Otlp`] when the exporter cannot be built for the endpoint.
    pub(crate) fn start(config: &WorkerConfig) -> Result<Self> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(Self(None));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| Error::Otlp {
                endpoint: endpoint.clone(),
                source,
            })?;
        let mut resource = Resource::builder();
        if !names_the_service() {
            resource = resource.with_service_name(config.connection_name.clone());
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        set_tracer_provider(&provider);
        tracing::info!(endpoint = %endpoint, "exporting spans over OTLP");
        Ok(Self(Some(provider)))
    }

    /// Stops making spans and sends those not sent yet, waiting for the export.
    pub(crate) async fn shut_down(mut self) {
        let Some(provider) = self.0.take() else {
            return;
        };
        jobs_core::otel::clear_tracer_provider();
        // Off the runtime's threads: the SDK blocks until its export, which needs the runtime.
        let shut = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = shut {
            tracing::warn!(error = %error, "the last spans could not be exported");
        }
    }
}

impl Drop for Telemetry {
    /// On a way out of the worker that skipped [`shut_down`](Self::shut_down) (an error): stop
    /// making spans and send the rest without waiting.
    fn drop(&mut self) {
        let Some(provider) = self.0.take() else {
            return;
        };
        jobs_core::otel::clear_tracer_provider();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || provider.shutdown());
        }
    }
}

/// Whether the environment names the service, which then wins over the connection name.
fn names_the_service() -> bool {
    std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="))
}
