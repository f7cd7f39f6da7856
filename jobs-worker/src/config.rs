//! The worker's configuration: [`WorkerConfig`], and the partial [`Settings`] it is resolved
//! from.
//!
//! One struct, [`Settings`], is every layer: the flags and environment (clap, a flag beating its
//! variable), the `--config` TOML file (serde, unknown keys refused), and the base the
//! application's [`WorkerBuilder`](crate::WorkerBuilder) sets. Each field is a key, spelled once;
//! layers merge field by field, flags and environment over the file over the builder over the
//! defaults, and every value is typed by the time it is read, so a bad one is reported with its
//! key whichever layer it came from.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::time::Duration;

use jobs_core::transport::{redact_url, split_urls};
use serde::Deserialize;

/// The broker URL when none is configured.
pub(crate) const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The HTTP address for `/healthz`, `/readyz` and `/metrics` when none is configured: every
/// interface, as a Kubernetes probe needs.
pub(crate) const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9090";
/// How long in-flight jobs may run on after a shutdown signal, when not configured: under
/// Kubernetes' 30 s grace period.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a starting worker keeps trying a broker that does not answer, when not
/// configured: long enough for a broker started beside it to boot.
pub(crate) const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(120);
/// The connection name the broker shows when none is configured.
pub(crate) const DEFAULT_CONNECTION_NAME: &str = "jobs-worker";
/// How old inbox records and unique keys get before the outbox relay prunes them.
#[cfg(feature = "outbox")]
pub(crate) const DEFAULT_OUTBOX_PRUNE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `plain` or `json`, as the `--log-format` flag and the file spell them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "plain" => Ok(Self::Plain),
            "json" => Ok(Self::Json),
            _ => Err("expected `plain` or `json`".to_owned()),
        }
    }
}

/// Everything the worker needs to run, resolved and checked.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The broker URL, or the URLs of several nodes of one cluster separated by commas (see
    /// [`split_urls`]); printed only through [`redact_url`].
    pub url: String,
    /// The connection name the broker shows (`NAME.publish`, `NAME.consume`).
    pub connection_name: String,
    /// The job names to serve; `None` serves every job the worker was given.
    pub jobs: Option<Vec<String>>,
    /// Overrides every job's concurrency.
    pub concurrency: Option<u16>,
    /// Deliveries held per job, running or waiting for a handler slot; at least the
    /// concurrency (the default).
    pub prefetch: Option<u16>,
    /// How long in-flight jobs may run on after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// How long a starting worker keeps trying to connect while the broker cannot be reached;
    /// zero gives up at the first failure. A refused TLS handshake or a configuration error
    /// is never retried.
    pub connect_retry: Duration,
    /// The broker's consumer timeout, which every job's timeout must stay under; `None` for
    /// the engine's (RabbitMQ's default of 30 minutes unless the application set another).
    pub broker_consumer_timeout: Option<Duration>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_addr: SocketAddr,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// A PEM file of CA certificates to trust for `amqps://`.
    pub tls_ca: Option<PathBuf>,
    /// A PEM file of the client certificate (chain) for mutual TLS, with
    /// [`tls_key`](Self::tls_key).
    pub tls_cert: Option<PathBuf>,
    /// A PEM file of the client certificate's private key; only its path is ever shown.
    pub tls_key: Option<PathBuf>,
    /// Whether the dashboard is served at `/` of the metrics address (the default).
    pub dashboard: bool,
    /// The token the dashboard's actions (replay, delete, purge, pause) require; without one
    /// they are off and the dashboard is read-only.
    pub dashboard_token: Option<DashboardToken>,
    /// Where the engine's spans are exported over OTLP/gRPC (`http://collector:4317`); `None`
    /// exports nothing.
    #[cfg(feature = "otel")]
    pub otlp_endpoint: Option<String>,
    /// A PEM file of CA certificates to trust for an `https://` OTLP endpoint, besides the
    /// system's.
    #[cfg(feature = "otel")]
    pub otlp_ca: Option<PathBuf>,
    /// A PEM file of the client certificate (chain) to present to an `https://` OTLP endpoint,
    /// with [`otlp_key`](Self::otlp_key).
    #[cfg(feature = "otel")]
    pub otlp_cert: Option<PathBuf>,
    /// A PEM file of the OTLP client certificate's private key; only its path is ever shown.
    #[cfg(feature = "otel")]
    pub otlp_key: Option<PathBuf>,
    /// The PostgreSQL URL of the application's outbox: the worker runs its relay, publishing
    /// the jobs written there (see the `jobs-outbox` crate); printed only through
    /// [`redact_url`].
    #[cfg(feature = "outbox")]
    pub outbox_url: Option<String>,
    /// Inbox records and unique keys older than this are pruned by the relay.
    #[cfg(feature = "outbox")]
    pub outbox_prune_after: Duration,
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("WorkerConfig");
        debug
            .field("url", &redact_url(&self.url))
            .field("connection_name", &self.connection_name)
            .field("jobs", &self.jobs)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("connect_retry", &self.connect_retry)
            .field("broker_consumer_timeout", &self.broker_consumer_timeout)
            .field("metrics_addr", &self.metrics_addr)
            .field("log_format", &self.log_format)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("dashboard", &self.dashboard)
            .field("dashboard_token", &self.dashboard_token);
        #[cfg(feature = "otel")]
        debug
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("otlp_ca", &self.otlp_ca)
            .field("otlp_cert", &self.otlp_cert)
            .field("otlp_key", &self.otlp_key);
        #[cfg(feature = "outbox")]
        debug
            .field("outbox_url", &self.outbox_url.as_deref().map(redact_url))
            .field("outbox_prune_after", &self.outbox_prune_after);
        debug.finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            connection_name: DEFAULT_CONNECTION_NAME.to_owned(),
            jobs: None,
            concurrency: None,
            prefetch: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            connect_retry: DEFAULT_CONNECT_RETRY,
            broker_consumer_timeout: None,
            metrics_addr: DEFAULT_METRICS_ADDR
                .parse()
                .unwrap_or_else(|_| unreachable!("the default address parses")),
            log_format: LogFormat::Plain,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            dashboard: true,
            dashboard_token: None,
            #[cfg(feature = "otel")]
            otlp_endpoint: None,
            #[cfg(feature = "otel")]
            otlp_ca: None,
            #[cfg(feature = "otel")]
            otlp_cert: None,
            #[cfg(feature = "otel")]
            otlp_key: None,
            #[cfg(feature = "outbox")]
            outbox_url: None,
            #[cfg(feature = "outbox")]
            outbox_prune_after: DEFAULT_OUTBOX_PRUNE_AFTER,
        }
    }
}

impl WorkerConfig {
    /// The broker URL.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The connection name the broker shows.
    #[must_use]
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[must_use]
    pub fn with_metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = addr;
        self
    }

    /// The token the dashboard's actions require.
    #[must_use]
    pub fn with_dashboard_token(mut self, token: DashboardToken) -> Self {
        self.dashboard_token = Some(token);
        self
    }

    /// Whether the dashboard is served at `/`.
    #[must_use]
    pub fn with_dashboard(mut self, on: bool) -> Self {
        self.dashboard = on;
        self
    }

    /// Relays the PostgreSQL outbox at `url` (`postgres://user:password@host/db`).
    #[cfg(feature = "outbox")]
    #[must_use]
    pub fn with_outbox_url(mut self, url: impl Into<String>) -> Self {
        self.outbox_url = Some(url.into());
        self
    }

    /// Exports the engine's spans over OTLP/gRPC to `endpoint`: `http://collector:4317` in
    /// plain text, `https://collector:4317` over TLS.
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// Trusts the CA certificates of the PEM file at `path` for an `https://` OTLP endpoint,
    /// besides the system's.
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn with_otlp_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.otlp_ca = Some(path.into());
        self
    }

    /// Presents the client certificate of the PEM files at `cert` and `key` to an `https://`
    /// OTLP endpoint that asks for one (mutual TLS).
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn with_otlp_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.otlp_cert = Some(cert.into());
        self.otlp_key = Some(key.into());
        self
    }

    /// How long in-flight jobs may run on after a shutdown signal.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a starting worker keeps trying a broker that cannot be reached; zero gives up
    /// at the first failure.
    #[must_use]
    pub fn with_connect_retry(mut self, retry: Duration) -> Self {
        self.connect_retry = retry;
        self
    }

    /// This configuration as a `--config` file would set it, the URL's password hidden; what
    /// is left to each job is a comment.
    pub(crate) fn to_toml(&self) -> String {
        let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("url = {}", quoted(&redact_url(&self.url))));
        line(format!(
            "connection_name = {}",
            quoted(&self.connection_name)
        ));
        line(match &self.jobs {
            Some(names) => {
                let names: Vec<String> = names.iter().map(|name| quoted(name)).collect();
                format!("jobs = [{}]", names.join(", "))
            }
            None => "# jobs: every job of the worker".to_owned(),
        });
        line(match self.concurrency {
            Some(n) => format!("concurrency = {n}"),
            None => "# concurrency: each job's own".to_owned(),
        });
        line(match self.prefetch {
            Some(n) => format!("prefetch = {n}"),
            None => "# prefetch: the concurrency".to_owned(),
        });
        line(format!(
            "shutdown_timeout = {}",
            quoted(&humantime::format_duration(self.shutdown_timeout).to_string())
        ));
        line(format!(
            "connect_retry = {}",
            quoted(&humantime::format_duration(self.connect_retry).to_string())
        ));
        line(match self.broker_consumer_timeout {
            Some(timeout) => format!(
                "broker_consumer_timeout = {}",
                quoted(&humantime::format_duration(timeout).to_string())
            ),
            None => "# broker_consumer_timeout: RabbitMQ's default, 30m".to_owned(),
        });
        line(format!(
            "metrics_addr = {}",
            quoted(&self.metrics_addr.to_string())
        ));
        line(format!(
            "log_format = {}",
            quoted(match self.log_format {
                LogFormat::Plain => "plain",
                LogFormat::Json => "json",
            })
        ));
        line(match &self.tls_ca {
            Some(path) => format!("tls_ca = {}", quoted(&path.to_string_lossy())),
            None => "# tls_ca: the system's certificates only".to_owned(),
        });
        for (key, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            line(match path {
                Some(path) => format!("{key} = {}", quoted(&path.to_string_lossy())),
                None => format!("# {key}: none, no client certificate"),
            });
        }
        line(format!("dashboard = {}", self.dashboard));
        line(match &self.dashboard_token {
            // Never the token itself: this output is meant to be shown and shared.
            Some(_) => "# dashboard_token: set (not shown)".to_owned(),
            None => "# dashboard_token: none, the dashboard is read-only".to_owned(),
        });
        #[cfg(feature = "otel")]
        {
            line(match &self.otlp_endpoint {
                Some(endpoint) => format!("otlp_endpoint = {}", quoted(endpoint)),
                None => "# otlp_endpoint: none, no spans are exported".to_owned(),
            });
            line(match &self.otlp_ca {
                Some(path) => format!("otlp_ca = {}", quoted(&path.to_string_lossy())),
                None => "# otlp_ca: the system's certificates only".to_owned(),
            });
            for (key, path) in [("otlp_cert", &self.otlp_cert), ("otlp_key", &self.otlp_key)] {
                line(match path {
                    Some(path) => format!("{key} = {}", quoted(&path.to_string_lossy())),
                    None => format!("# {key}: none, no client certificate"),
                });
            }
        }
        #[cfg(feature = "outbox")]
        {
            line(match &self.outbox_url {
                Some(url) => format!("outbox_url = {}", quoted(&redact_url(url))),
                None => "# outbox_url: none, no outbox relay".to_owned(),
            });
            line(format!(
                "outbox_prune_after = {}",
                quoted(&humantime::format_duration(self.outbox_prune_after).to_string())
            ));
        }
        out
    }

    /// `settings` over this configuration, field by field.
    pub(crate) fn apply(mut self, settings: Settings) -> Result<Self, ConfigError> {
        let Settings {
            url,
            connection_name,
            jobs,
            concurrency,
            prefetch,
            shutdown_timeout,
            connect_retry,
            broker_consumer_timeout,
            metrics_addr,
            log_format,
            tls_ca,
            tls_cert,
            tls_key,
            dashboard,
            dashboard_token,
            #[cfg(feature = "otel")]
            otlp_endpoint,
            #[cfg(feature = "otel")]
            otlp_ca,
            #[cfg(feature = "otel")]
            otlp_cert,
            #[cfg(feature = "otel")]
            otlp_key,
            #[cfg(feature = "outbox")]
            outbox_url,
            #[cfg(feature = "outbox")]
            outbox_prune_after,
        } = settings;
        if let Some(urls) = url {
            // Each value on its own: a value without a scheme must not pass as the tail of the
            // URL before it.
            let nodes: Vec<&str> = urls.iter().flat_map(|value| split_urls(value)).collect();
            if nodes.is_empty()
                || !nodes
                    .iter()
                    .all(|url| url.starts_with("amqp://") || url.starts_with("amqps://"))
            {
                // Not echoed: without a scheme, nothing says where a password would be.
                return Err(ConfigError::new(
                    "url",
                    "…",
                    "expected an amqp:// or amqps:// URL, or several separated by commas",
                ));
            }
            self.url = nodes.join(",");
        }
        if let Some(name) = connection_name {
            self.connection_name = name;
        }
        if let Some(JobNames(names)) = jobs {
            if names.is_empty() {
                return Err(ConfigError::new("jobs", "", "expected a list of job names"));
            }
            self.jobs = Some(names);
        }
        self.concurrency = concurrency.map(NonZeroU16::get).or(self.concurrency);
        self.prefetch = prefetch.map(NonZeroU16::get).or(self.prefetch);
        if let Some(HumanDuration(timeout)) = shutdown_timeout {
            self.shutdown_timeout = timeout;
        }
        if let Some(HumanDuration(retry)) = connect_retry {
            self.connect_retry = retry;
        }
        if let Some(HumanDuration(timeout)) = broker_consumer_timeout {
            self.broker_consumer_timeout = Some(timeout);
        }
        self.metrics_addr = metrics_addr.unwrap_or(self.metrics_addr);
        self.log_format = log_format.unwrap_or(self.log_format);
        self.tls_ca = tls_ca.or(self.tls_ca);
        self.tls_cert = tls_cert.or(self.tls_cert);
        self.tls_key = tls_key.or(self.tls_key);
        self.dashboard = dashboard.unwrap_or(self.dashboard);
        self.dashboard_token = dashboard_token.or(self.dashboard_token);
        #[cfg(feature = "otel")]
        {
            if let Some(endpoint) = otlp_endpoint {
                // Refused here, where the error names the setting, rather than when the worker
                // starts: without a scheme the exporter would pick one itself.
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "otlp_endpoint",
                        &endpoint,
                        "expected a gRPC URL, as http://collector:4317 or https://collector:4317",
                    ));
                }
                self.otlp_endpoint = Some(endpoint);
            }
            self.otlp_ca = otlp_ca.or(self.otlp_ca);
            self.otlp_cert = otlp_cert.or(self.otlp_cert);
            self.otlp_key = otlp_key.or(self.otlp_key);
        }
        #[cfg(feature = "outbox")]
        if let Some(url) = outbox_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // Not echoed: without a scheme, nothing says where a password would be.
                return Err(ConfigError::new(
                    "outbox_url",
                    "…",
                    "expected a postgres:// or postgresql:// URL",
                ));
            }
            self.outbox_url = Some(url);
        }
        #[cfg(feature = "outbox")]
        if let Some(HumanDuration(age)) = outbox_prune_after {
            self.outbox_prune_after = age;
        }
        Ok(self)
    }
}

/// One layer of settings: flags and environment, the `--config` file, or the application's
/// base. Every field is optional; a set one overrides the layers below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[allow(
    clippy::doc_markdown,
    reason = "the fields' docs are the flags' --help text, read without Markdown"
)]
pub(crate) struct Settings {
    /// The broker URL; for a cluster, each node's, repeated or separated by commas. Prefer
    /// JOBS_AMQP_URL or the file: on the command line a password shows in the process list
    /// [default: amqp://guest:guest@127.0.0.1:5672/%2f].
    #[arg(
        long,
        global = true,
        env = "JOBS_AMQP_URL",
        hide_env_values = true,
        value_name = "URL",
        action = clap::ArgAction::Append
    )]
    #[serde(default, deserialize_with = "urls_from_file")]
    pub(crate) url: Option<Vec<String>>,
    /// The connection name the broker shows (NAME.publish, NAME.consume) [default: jobs-worker].
    #[arg(long, global = true, env = "JOBS_CONNECTION_NAME", value_name = "NAME")]
    pub(crate) connection_name: Option<String>,
    /// Serves only these jobs (comma-separated names) [default: every job of the worker].
    #[arg(long, global = true, env = "JOBS_WORKER_JOBS", value_name = "NAMES")]
    pub(crate) jobs: Option<JobNames>,
    /// Handlers run at once per job; overrides each job's own concurrency.
    #[arg(long, global = true, env = "JOBS_CONCURRENCY", value_name = "N")]
    pub(crate) concurrency: Option<NonZeroU16>,
    /// Deliveries prefetched per job, running or waiting for a handler slot (at least the
    /// concurrency) [default: the concurrency].
    #[arg(long, global = true, env = "JOBS_PREFETCH", value_name = "N")]
    pub(crate) prefetch: Option<NonZeroU16>,
    /// How long running jobs may finish after SIGTERM before they are requeued [default: 25s].
    #[arg(
        long,
        global = true,
        env = "JOBS_SHUTDOWN_TIMEOUT",
        value_name = "DURATION"
    )]
    pub(crate) shutdown_timeout: Option<HumanDuration>,
    /// How long a starting worker keeps trying a broker that cannot be reached, backing off
    /// between attempts; 0s gives up at the first failure [default: 2m].
    #[arg(
        long,
        global = true,
        env = "JOBS_CONNECT_RETRY",
        value_name = "DURATION"
    )]
    pub(crate) connect_retry: Option<HumanDuration>,
    /// The broker's consumer_timeout (rabbitmq.conf), when not RabbitMQ's default: a job whose
    /// timeout is at or above it is refused at startup [default: 30m].
    #[arg(
        long,
        global = true,
        env = "JOBS_BROKER_CONSUMER_TIMEOUT",
        value_name = "DURATION"
    )]
    pub(crate) broker_consumer_timeout: Option<HumanDuration>,
    /// Where /healthz, /readyz and /metrics are served [default: 0.0.0.0:9090, every interface,
    /// as Kubernetes probes need].
    #[arg(long, global = true, env = "JOBS_METRICS_ADDR", value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Log lines as `plain` text or `json`; filter them with RUST_LOG [default: plain].
    #[arg(long, global = true, env = "JOBS_LOG_FORMAT", value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    /// A PEM file of CA certificates to trust for amqps://, besides the system's.
    #[arg(long, global = true, env = "JOBS_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A PEM file of the client certificate for mutual TLS (with --tls-key); log in with it
    /// through auth_mechanism=external in the URL [default: none].
    #[arg(long, global = true, env = "JOBS_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// A PEM file of the client certificate's private key (with --tls-cert) [default: none].
    #[arg(long, global = true, env = "JOBS_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serves the dashboard at / of the metrics address (true or false) [default: true].
    #[arg(long, global = true, env = "JOBS_DASHBOARD", value_name = "BOOL")]
    pub(crate) dashboard: Option<bool>,
    /// The token the dashboard's actions require (at least 16 characters); prefer
    /// JOBS_DASHBOARD_TOKEN or the file [default: none, the dashboard is read-only].
    #[arg(
        long,
        global = true,
        env = "JOBS_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) dashboard_token: Option<DashboardToken>,
    /// Exports spans over OTLP/gRPC to this collector URL, as http://collector:4317 (the
    /// other OTEL_EXPORTER_OTLP_* variables apply) [default: none, nothing is exported].
    #[cfg(feature = "otel")]
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub(crate) otlp_endpoint: Option<String>,
    /// A PEM file of CA certificates to trust for an https:// --otlp-endpoint, besides the
    /// system's.
    #[cfg(feature = "otel")]
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_CERTIFICATE",
        value_name = "FILE"
    )]
    pub(crate) otlp_ca: Option<PathBuf>,
    /// A PEM file of the client certificate for an https:// --otlp-endpoint that asks for one
    /// (with --otlp-key) [default: none].
    #[cfg(feature = "otel")]
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        value_name = "FILE"
    )]
    pub(crate) otlp_cert: Option<PathBuf>,
    /// A PEM file of the OTLP client certificate's private key (with --otlp-cert)
    /// [default: none].
    #[cfg(feature = "otel")]
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        value_name = "FILE"
    )]
    pub(crate) otlp_key: Option<PathBuf>,
    /// The PostgreSQL URL of the application's outbox (jobs-outbox): the worker relays the jobs
    /// written there to the broker; prefer JOBS_OUTBOX_URL or the file, as for --url
    /// [default: none, no relay].
    #[cfg(feature = "outbox")]
    #[arg(
        long,
        global = true,
        env = "JOBS_OUTBOX_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) outbox_url: Option<String>,
    /// Inbox records and unique keys older than this are pruned by the relay, hourly; keep it
    /// above how long a job can wait in a queue, a retry or the error queue [default: 7d].
    #[cfg(feature = "outbox")]
    #[arg(
        long,
        global = true,
        env = "JOBS_OUTBOX_PRUNE_AFTER",
        value_name = "DURATION"
    )]
    pub(crate) outbox_prune_after: Option<HumanDuration>,
}

impl Settings {
    /// The settings of a TOML document (the `--config` file).
    ///
    /// # Errors
    ///
    /// When it is not TOML, sets a key that is not a setting, or gives one a value of the
    /// wrong type; the error names the key and the line, never the file's text.
    pub(crate) fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err: toml::de::Error| {
            let line = err
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let at = line.map_or_else(String::new, |line| format!(" (line {line})"));
            // The message names the key; the error's own Display would quote the line, and with
            // it a value that may be a secret.
            ConfigError::new("config", "", format!("{}{at}", err.message().trim()))
        })
    }
}

/// The secret the dashboard's actions require. Never printed: its `Debug` hides it, and the
/// worker compares it in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardToken(String);

/// The shortest token accepted: shorter ones could be guessed.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

impl DashboardToken {
    /// The token `text`.
    ///
    /// # Errors
    ///
    /// When it is shorter than 16 characters; the error does not repeat it.
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if text.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "expected a dashboard token of at least {MIN_TOKEN_LEN} characters"
            ));
        }
        Ok(Self(text))
    }

    /// Whether `given` is this token, in time that does not depend on where they differ.
    #[must_use]
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        // Every byte of the longer is visited whatever the lengths; a length mismatch still
        // fails.
        let mut differ = u8::from(expected.len() != given.len());
        for i in 0..expected.len().max(given.len()) {
            let a = expected.get(i).copied().unwrap_or(0);
            let b = given.get(i).copied().unwrap_or(0xff);
            differ |= a ^ b;
        }
        std::hint::black_box(differ) == 0
    }
}

impl fmt::Debug for DashboardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DashboardToken(**)")
    }
}

impl std::str::FromStr for DashboardToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

impl<'de> Deserialize<'de> for DashboardToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

/// `url = "…"` or `url = ["…", "…"]` in the file.
fn urls_from_file<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    }))
}

/// Job names: a comma-separated list on the command line, a list in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct JobNames(pub(crate) Vec<String>);

impl std::str::FromStr for JobNames {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err("expected a comma-separated list of job names".to_owned());
        }
        Ok(Self(names))
    }
}

/// A duration like `25s` or `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text.trim())
            .map(Self)
            .map_err(|_| format!("expected a duration like \"25s\", not {text:?}"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The key, as the TOML file spells it.
    pub(crate) key: String,
    /// The value as given (never a URL's password, never an unknown key's value).
    pub(crate) value: String,
    /// What was expected.
    pub(crate) expected: String,
}

impl ConfigError {
    fn new(key: &str, value: &str, expected: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "invalid configuration: {}: {}", self.key, self.expected)
        } else {
            write!(
                f,
                "invalid configuration: {} = {:?}: {}",
                self.key, self.value, self.expected
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Settings {
        Settings::from_toml(text).unwrap()
    }

    #[test]
    fn defaults() {
        let config = WorkerConfig::default();
        assert_eq!(config.url, DEFAULT_URL);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(config.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(config.jobs, None);
        assert_eq!(config.log_format, LogFormat::Plain);
    }

    #[test]
    fn layers_merge_field_by_field() {
        let base = WorkerConfig::default().with_connection_name("from-the-builder");
        let from_file = file(
            "shutdown_timeout = \"40s\"\nconcurrency = 3\njobs = [\"a\", \"b\"]\nmetrics_addr = \"127.0.0.1:9999\"",
        );
        let flags = Settings {
            shutdown_timeout: Some("5s".parse().unwrap()),
            log_format: Some(LogFormat::Json),
            ..Settings::default()
        };
        let config = base.apply(from_file).unwrap().apply(flags).unwrap();
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(config.concurrency, Some(3));
        assert_eq!(config.jobs, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:9999");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.connection_name, "from-the-builder");
        assert_eq!(config.url, DEFAULT_URL);
    }

    #[test]
    fn a_bad_file_value_is_named_by_its_key_and_line() {
        let err = Settings::from_toml("concurrency = 0").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = Settings::from_toml("\nshutdown_timeout = \"25x\"").unwrap_err();
        assert!(err.to_string().contains("expected a duration"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn an_unknown_file_key_is_named_and_its_value_never_shown() {
        let err = Settings::from_toml("shutdown_timout = \"5s\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `shutdown_timout`"),
            "{err}"
        );
        let err = Settings::from_toml("password = \"hunter2\"").unwrap_err();
        assert!(err.to_string().contains("`password`"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn the_printed_configuration_reads_back_as_the_same_file() {
        let from_file = file(
            "connection_name = \"a \\\"quoted\\\" name\"\nshutdown_timeout = \"1m 30s\"\njobs = [\"a\"]\nprefetch = 7\nlog_format = \"json\"",
        );
        let config = WorkerConfig::default().apply(from_file).unwrap();
        let printed = config.to_toml();
        let again = WorkerConfig::default().apply(file(&printed)).unwrap();
        // All but the password, which is printed hidden.
        assert_eq!(again.url, "amqp://guest:**@127.0.0.1:5672/%2f");
        assert_eq!(again.with_url(DEFAULT_URL), config, "{printed}");
        let secret = WorkerConfig::default().with_url("amqp://guest:hunter2@host/");
        assert!(!secret.to_toml().contains("hunter2"));
    }

    #[cfg(feature = "otel")]
    #[test]
    fn the_otlp_endpoint_comes_from_the_file_or_the_flags_and_must_be_a_url() {
        let config = WorkerConfig::default()
            .apply(file("otlp_endpoint = \"http://collector:4317\""))
            .unwrap();
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert!(
            config
                .to_toml()
                .contains("otlp_endpoint = \"http://collector:4317\"")
        );
        assert_eq!(WorkerConfig::default().otlp_endpoint, None);
        let tls = WorkerConfig::default()
            .apply(file(
                "otlp_endpoint = \"https://collector:4317\"\notlp_ca = \"/etc/jobs/otlp-ca.pem\"",
            ))
            .unwrap();
        assert_eq!(tls.otlp_endpoint.as_deref(), Some("https://collector:4317"));
        assert!(
            tls.to_toml()
                .contains("otlp_ca = \"/etc/jobs/otlp-ca.pem\"")
        );
        for bad in ["collector:4317", "grpc://collector:4317"] {
            let bad = Settings {
                otlp_endpoint: Some(bad.to_owned()),
                ..Settings::default()
            };
            let err = WorkerConfig::default().apply(bad).unwrap_err();
            assert_eq!(err.key, "otlp_endpoint");
        }
    }

    #[cfg(feature = "outbox")]
    #[test]
    fn the_outbox_url_is_a_postgres_url_and_its_password_is_never_printed() {
        let config = WorkerConfig::default()
            .apply(file(
                "outbox_url = \"postgres://app:hunter2@db:5432/shop\"\noutbox_prune_after = \"2d\"",
            ))
            .unwrap();
        assert_eq!(
            config.outbox_url.as_deref(),
            Some("postgres://app:hunter2@db:5432/shop")
        );
        assert_eq!(config.outbox_prune_after, Duration::from_secs(2 * 86_400));
        let printed = config.to_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(
            printed.contains("outbox_url = \"postgres://app:**@db:5432/shop\""),
            "{printed}"
        );
        for bad in ["db:5432/shop", "mysql://db/shop"] {
            let bad = Settings {
                outbox_url: Some(bad.to_owned()),
                ..Settings::default()
            };
            let err = WorkerConfig::default().apply(bad).unwrap_err();
            assert_eq!(err.key, "outbox_url");
        }
    }

    #[test]
    fn the_broker_consumer_timeout_comes_from_the_file_or_the_flags_and_prints_back() {
        assert_eq!(WorkerConfig::default().broker_consumer_timeout, None);
        let config = WorkerConfig::default()
            .apply(file("broker_consumer_timeout = \"1h\""))
            .unwrap();
        assert_eq!(
            config.broker_consumer_timeout,
            Some(Duration::from_secs(3600))
        );
        let printed = config.to_toml();
        assert!(
            printed.contains("broker_consumer_timeout = \"1h\""),
            "{printed}"
        );
        let flags = Settings {
            broker_consumer_timeout: Some("45m".parse().unwrap()),
            ..Settings::default()
        };
        let config = config.apply(flags).unwrap();
        assert_eq!(
            config.broker_consumer_timeout,
            Some(Duration::from_secs(45 * 60))
        );
        let err = Settings::from_toml("broker_consumer_timeout = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("expected a duration"), "{err}");
    }

    #[test]
    fn the_client_certificate_and_key_are_paths_from_any_layer() {
        let config = WorkerConfig::default()
            .apply(file(
                "tls_cert = \"/etc/jobs/client.pem\"\ntls_key = \"/etc/jobs/key.pem\"",
            ))
            .unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("/etc/jobs/client.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/etc/jobs/key.pem")));
        let printed = config.to_toml();
        assert!(
            printed.contains("tls_key = \"/etc/jobs/key.pem\""),
            "{printed}"
        );
        let flags = Settings {
            tls_key: Some(PathBuf::from("/run/secrets/key.pem")),
            ..Settings::default()
        };
        let config = config.apply(flags).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("/etc/jobs/client.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/run/secrets/key.pem")));
        let unset = WorkerConfig::default().to_toml();
        assert!(unset.contains("# tls_cert: none"), "{unset}");
    }

    #[test]
    fn a_bad_url_is_refused_and_never_shown() {
        let bad = Settings {
            url: Some(vec!["http://guest:hunter2@host/".to_owned()]),
            ..Settings::default()
        };
        let err = WorkerConfig::default().apply(bad).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let config = WorkerConfig::default().with_url("amqp://guest:hunter2@host/");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
