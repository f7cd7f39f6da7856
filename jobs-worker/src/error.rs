//! The worker library's errors.

use std::net::SocketAddr;

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is nothing to serve: no job is linked into the binary (or selected).
    #[error(
        "no jobs to serve: this binary links no #[job]s (build your own worker binary that calls jobs_worker::main(), or select jobs with --jobs)"
    )]
    NoJobs,
    /// A selected job name is not linked into the binary.
    #[error("no job named `{name}` is linked into this binary (known: {known})")]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The names of the linked jobs.
        known: String,
    },
    /// The metrics address could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker could not be reached or refused the login.
    #[error("could not connect to {url}")]
    Connect {
        /// The URL, with its password redacted.
        url: String,
        /// Why.
        #[source]
        source: jobs_core::Error,
    },
    /// The engine could not start (topology or consumers).
    #[error("could not start the engine")]
    Start(#[source] jobs_core::Error),
    /// The signal handlers could not be installed.
    #[error("could not install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The `tls_ca` file could not be read.
    #[error("could not read the TLS CA file {path}")]
    TlsCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file could not be read (its contents are never shown).
    #[error("could not read the {key} file {path}")]
    TlsFile {
        /// The setting: `tls_cert`, `tls_key`, `otlp_ca`, `otlp_cert` or `otlp_key`.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Only one of a client certificate's two files is set (`tls_cert` and `tls_key`, or
    /// `otlp_cert` and `otlp_key`): it needs both.
    #[error("a client certificate needs its certificate and its key; {missing} is not set")]
    TlsIdentity {
        /// The one not set.
        missing: &'static str,
    },
    /// An OTLP TLS file holds no PEM of what it is for (its contents are never shown).
    #[cfg(feature = "otel")]
    #[error("the {key} file {path} holds no PEM {expected}")]
    OtlpPem {
        /// The setting: `otlp_ca`, `otlp_cert` or `otlp_key`.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// A TLS file is set for an OTLP endpoint that is not `https://`, which would ignore it.
    #[cfg(feature = "otel")]
    #[error("{setting} is set, but the OTLP endpoint {endpoint} is not https://")]
    OtlpPlainText {
        /// The TLS setting: `otlp_ca`, `otlp_cert` or `otlp_key`.
        setting: &'static str,
        /// The endpoint.
        endpoint: String,
    },
    /// The OTLP exporter could not be built for the configured endpoint.
    #[cfg(feature = "otel")]
    #[error("could not export spans to {endpoint}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

impl Error {
    /// Whether a setting is wrong (exit code 3): another try with the same ones fails the same.
    pub(crate) fn is_configuration(&self) -> bool {
        match self {
            Self::NoJobs
            | Self::UnknownJob { .. }
            | Self::TlsCa { .. }
            | Self::TlsFile { .. }
            | Self::TlsIdentity { .. }
            | Self::Start(
                jobs_core::Error::MissingState { .. } | jobs_core::Error::ConsumerTimeout { .. },
            ) => true,
            #[cfg(feature = "otel")]
            Self::OtlpPlainText { .. } | Self::OtlpPem { .. } => true,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
