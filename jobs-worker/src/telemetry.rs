//! OTLP export of the engine's spans (feature `otel`): on when an endpoint is configured
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or `otlp_endpoint` in the file).
//!
//! The exporter is opentelemetry-otlp's over gRPC (tonic), batched by the SDK on a thread of its
//! own, so the hot path only hands finished spans over. It reads the other standard variables
//! itself (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, …), and the resource
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; without a service name, it is the worker's
//! connection name.
//!
//! An `https://` endpoint is reached over rustls (on ring, as the broker is), trusting the
//! system's certificates and `otlp_ca`'s, and presenting `otlp_cert` and `otlp_key` when both
//! are set: the files of the standard `OTEL_EXPORTER_OTLP_CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY`.

use std::path::Path;

use jobs_core::otel::set_tracer_provider;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    /// [`Error::Otlp`] when the exporter cannot be built for the endpoint;
    /// [`Error::TlsFile`] when a TLS file cannot be read, [`Error::OtlpPem`] when it holds
    /// no PEM of what it is for, [`Error::TlsIdentity`] when only one of the client
    /// certificate's files is set, and [`Error::OtlpPlainText`] when one is set for an
    /// `http://` endpoint.
    pub(crate) fn start(config: &WorkerConfig) -> Result<Self> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(Self(None));
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if endpoint.starts_with("https://") {
            exporter = exporter.with_tls_config(tls_config(config)?);
        } else if let Some(setting) = tls_setting(config) {
            return Err(Error::OtlpPlainText {
                setting,
                endpoint: endpoint.clone(),
            });
        }
        let exporter = exporter.build().map_err(|source| Error::Otlp {
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

/// The TLS of an `https://` endpoint: the system's roots, the CA file's, and the client
/// certificate when both of its files are set.
fn tls_config(config: &WorkerConfig) -> Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(path) = &config.otlp_ca {
        tls = tls.ca_certificate(Certificate::from_pem(certificates("otlp_ca", path)?));
    }
    match (&config.otlp_cert, &config.otlp_key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                certificates("otlp_cert", cert)?,
                private_key("otlp_key", key)?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::TlsIdentity {
                missing: "otlp_key",
            });
        }
        (None, Some(_)) => {
            return Err(Error::TlsIdentity {
                missing: "otlp_cert",
            });
        }
    }
    Ok(tls)
}

/// The file of setting `key`.
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        key,
        path: path.to_owned(),
        source,
    })
}

/// The file of setting `key`, which must hold PEM certificates: tonic would skip anything
/// else, and the exporter would then fail at every export rather than here.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<u8>> {
    let pem = read(key, path)?;
    let mut certificates = CertificateDer::pem_slice_iter(&pem);
    // The parser's error is not shown: it may quote a line of the file.
    if !matches!(certificates.next(), Some(Ok(_))) || certificates.any(|parsed| parsed.is_err()) {
        return Err(Error::OtlpPem {
            key,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(pem)
}

/// The file of setting `key`, which must hold a PEM private key.
fn private_key(key: &'static str, path: &Path) -> Result<Vec<u8>> {
    let pem = read(key, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return Err(Error::OtlpPem {
            key,
            path: path.to_owned(),
            expected: "private key (PKCS#8, PKCS#1 or SEC1)",
        });
    }
    Ok(pem)
}

/// The first TLS file set, which a plain-text endpoint would ignore.
fn tls_setting(config: &WorkerConfig) -> Option<&'static str> {
    [
        ("otlp_ca", &config.otlp_ca),
        ("otlp_cert", &config.otlp_cert),
        ("otlp_key", &config.otlp_key),
    ]
    .into_iter()
    .find_map(|(setting, path)| path.is_some().then_some(setting))
}

/// Whether the environment names the service, which then wins over the connection name.
fn names_the_service() -> bool {
    std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="))
}
