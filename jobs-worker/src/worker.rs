//! The worker: connect, serve the jobs, answer probes, and shut down gracefully on a signal.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jobs_core::engine::{Engine, EngineBuilder, Observer};
use jobs_core::transport::amqp::{AmqpTransport, AmqpTransportBuilder};
use jobs_core::transport::{Transport, redact_url};
use jobs_core::{Job, JobDefaults, JobSettings, ProducerOptions, registry};

use crate::config::WorkerConfig;
use crate::dashboard::Dashboard;
use crate::error::{Error, Result};
use crate::fleet::{self, Fleet};
use crate::http::{self, Probes};
use crate::metrics::Metrics;
use crate::shutdown;

/// A worker serving jobs on RabbitMQ; made by [`Worker::builder`].
///
/// ```no_run
/// use std::sync::Arc;
/// use jobs_worker::Worker;
///
/// struct Db; // a connection pool, say
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     // Handlers that take `State<Arc<Db>>` get this one; flags, environment and the
///     // `--config` file still apply, and the same binary is the operator's tool.
///     jobs_worker::main_with(Worker::builder().state(Arc::new(Db))).await
/// }
/// ```
#[derive(Debug)]
pub struct Worker;

/// Configures a [`Worker`]: the jobs it serves, the values their handlers take as
/// [`State<T>`](jobs_core::State), and the engine's options. Run it with
/// [`main_with`](crate::main_with), which adds the command line, or [`run`](Self::run).
#[derive(Default)]
#[must_use]
pub struct WorkerBuilder {
    config: WorkerConfig,
    jobs: Option<Vec<&'static Job>>,
    engine: EngineBuilder,
    transport: Option<Arc<dyn Transport>>,
    /// In a mutex only to make the builder `Sync`: a future need not be.
    shutdown: Mutex<Option<ShutdownSignal>>,
}

/// A future that asks for a graceful shutdown when it completes.
type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("jobs", &self.jobs)
            .field("engine", &self.engine)
            .field("transport", &self.transport)
            .field(
                "shutdown_signal",
                &self
                    .shutdown
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some(),
            )
            .finish()
    }
}

impl Worker {
    /// A worker with the default configuration, serving every job linked into the binary.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }
}

impl WorkerBuilder {
    /// Uses `config` as the base the command line's flags, environment and file apply on top of.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves `jobs` instead of every linked job; the configuration's `jobs` selects among them.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = &'static Job>) -> Self {
        self.jobs = Some(jobs.into_iter().collect());
        self
    }

    /// Adds a value handlers take as a [`State<T>`](jobs_core::State) argument, one per type:
    /// a database pool, an HTTP client. The worker refuses to start while a job asks for a
    /// type it was not given.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.engine = self.engine.state(value);
        self
    }

    /// Defaults for the options jobs leave unset (retries, backoff, timeout, concurrency,
    /// queue type).
    pub fn defaults(mut self, defaults: JobDefaults) -> Self {
        self.engine = self.engine.defaults(defaults);
        self
    }

    /// Adds an observer of every job event, beside the worker's metrics.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.engine = self.engine.observer(observer);
        self
    }

    /// The size limit and confirm timeout of the engine's producer.
    pub fn producer_options(mut self, options: ProducerOptions) -> Self {
        self.engine = self.engine.producer_options(options);
        self
    }

    /// How long a failed attempt's retry or error-queue publish is tried again; see
    /// [`EngineBuilder::outcome_publish_timeout`].
    pub fn outcome_publish_timeout(mut self, timeout: Duration) -> Self {
        self.engine = self.engine.outcome_publish_timeout(timeout);
        self
    }

    /// The broker's consumer timeout, when it is not RabbitMQ's default of 30 minutes; see
    /// [`EngineBuilder::broker_consumer_timeout`]. The `broker_consumer_timeout` setting
    /// overrides it.
    pub fn broker_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.engine = self.engine.broker_consumer_timeout(timeout);
        self
    }

    /// Serves on `transport` instead of connecting to the configured URL: the in-memory
    /// broker in a test, or a transport the application connected itself. The worker does not
    /// close it.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Shuts down gracefully when `signal` completes, as on SIGTERM or SIGINT: for a worker
    /// embedded in a larger program, or a test.
    pub fn shutdown_signal(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Mutex::new(Some(Box::pin(signal)));
        self
    }

    /// The transport given with [`transport`](Self::transport), if any.
    pub(crate) fn given_transport(&self) -> Option<&Arc<dyn Transport>> {
        self.transport.as_ref()
    }

    pub(crate) fn base_config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The jobs this worker would serve, with their options resolved: for the operator
    /// commands.
    pub(crate) fn settings(&self) -> Result<Vec<JobSettings>> {
        let jobs = self.resolve_jobs()?;
        Ok(self.engine.jobs_settings(&jobs))
    }

    /// The jobs this worker would serve.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] for a configured name no job of the worker has, and
    /// [`Error::NoJobs`] when there is nothing to serve.
    pub(crate) fn resolve_jobs(&self) -> Result<Vec<&'static Job>> {
        let available = self.jobs.clone().unwrap_or_else(registry::registered);
        let jobs = match &self.config.jobs {
            None => available,
            Some(names) => names
                .iter()
                .map(|name| {
                    available
                        .iter()
                        .find(|job| job.name() == name)
                        .copied()
                        .ok_or_else(|| Error::UnknownJob {
                            name: name.clone(),
                            known: available
                                .iter()
                                .map(|job| job.name())
                                .collect::<Vec<_>>()
                                .join(", "),
                        })
                })
                .collect::<Result<_>>()?,
        };
        if jobs.is_empty() {
            return Err(Error::NoJobs);
        }
        Ok(jobs)
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully: stops taking deliveries,
    /// lets running jobs finish until the shutdown timeout, requeues the rest and closes the
    /// connections. The configuration is the builder's as it is: [`main_with`](crate::main_with)
    /// is the way to apply the command line.
    ///
    /// # Errors
    ///
    /// When there are no jobs to serve, a job takes a [`State<T>`](jobs_core::State) the
    /// worker was not given, the metrics address cannot be bound, the broker cannot be reached
    /// within the configuration's `connect_retry` (or refuses the login or the TLS handshake),
    /// the topology cannot be declared, or the signal handlers cannot be installed.
    pub async fn run(self) -> Result<()> {
        // First of all: a SIGTERM sent while the worker starts (an orchestrator scaling down
        // a pod it just made) then asks for a graceful stop, which the connect below and the
        // serve loop both answer, rather than killing the process by the default action.
        let signals = shutdown::Signals::install().map_err(Error::Signals)?;
        let config = self.config.clone();
        let jobs = self.resolve_jobs()?;
        let settings = Arc::new(self.engine.jobs_settings(&jobs));
        let metrics = Arc::new(Metrics::new(jobs.iter().copied()));
        let mut engine = self
            .engine
            .jobs(jobs.iter().copied())
            .name(config.connection_name.clone())
            .observer(metrics.clone());
        if let Some(concurrency) = config.concurrency {
            engine = engine.concurrency(concurrency);
        }
        if let Some(prefetch) = config.prefetch {
            engine = engine.prefetch(prefetch);
        }
        if let Some(timeout) = config.broker_consumer_timeout {
            engine = engine.broker_consumer_timeout(timeout);
        }
        // What needs no broker fails before anything connects: a missing `State<T>` names
        // the job and the type.
        engine.check().map_err(Error::Start)?;
        #[cfg(feature = "otel")]
        let telemetry = crate::telemetry::Telemetry::start(&config)?;
        let source = match self.transport {
            Some(given) => Source::Given(given),
            None => Source::Url(transport_builder(&config)?),
        };

        let running: Arc<Mutex<Option<Engine>>> = Arc::new(Mutex::new(None));
        // Set once connected: the dashboard and the queue gauges read the broker through it.
        let broker: Arc<OnceLock<Arc<dyn Transport>>> = Arc::new(OnceLock::new());
        let fleet = Arc::new(Fleet::default());
        let listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.metrics_addr,
                source,
            })?;
        #[cfg(feature = "outbox")]
        let relay_status = config
            .outbox_url
            .is_some()
            .then(|| Arc::new(crate::outbox::RelayStatus::default()));
        let shared = Arc::clone(&running);
        let probes = Probes {
            ready: Arc::new(move || {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(Engine::is_ready)
            }),
            metrics: Arc::clone(&metrics),
            paused: {
                let running = Arc::clone(&running);
                Arc::new(move || {
                    running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_ref()
                        .map(|engine| {
                            engine
                                .jobs()
                                .iter()
                                .map(|s| (s.job().name(), engine.is_paused(s.job())))
                                .collect()
                        })
                        .unwrap_or_default()
                })
            },
            jobs: Arc::clone(&settings),
            transport: Arc::clone(&broker),
            gauges: Arc::default(),
            #[cfg(feature = "outbox")]
            outbox: relay_status.clone(),
        };
        let dashboard = config.dashboard.then(|| {
            let dashboard = Dashboard::new(
                settings.to_vec(),
                Arc::clone(&broker),
                config.dashboard_token.clone(),
                Arc::clone(&fleet),
                config.connection_name.clone(),
            );
            #[cfg(feature = "outbox")]
            let dashboard = dashboard.with_outbox(relay_status.clone());
            Arc::new(dashboard)
        });
        // Aborted on every way out of `run`, errors included: the port must not stay bound.
        let _server = AbortOnDrop(tokio::spawn(http::serve(
            listener,
            http::router(probes, dashboard),
        )));
        tracing::info!(
            addr = %config.metrics_addr,
            dashboard = config.dashboard,
            actions = config.dashboard_token.is_some(),
            "serving /healthz, /readyz, /metrics and the dashboard at /"
        );

        let mut signal = AbortOnDrop(tokio::spawn(signals.first()));
        let mut asked = self
            .shutdown
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let (transport, connected): (Arc<dyn Transport>, _) = match source {
            Source::Given(given) => (given, None),
            Source::Url(connect) => {
                let url = redact_url(&config.url);
                tracing::info!(url = %url, connection_name = %config.connection_name, "connecting");
                let connecting = crate::connect::connect(&connect, &url, config.connect_retry);
                // A broker slow to come up must not hold back a request to stop.
                let stopped = tokio::select! {
                    connected = connecting => {
                        let transport =
                            connected.map_err(|source| Error::Connect { url, source })?;
                        Ok(transport)
                    }
                    signalled = &mut signal.0 => Err(signal_name(signalled)),
                    () = &mut asked => Err("the shutdown signal"),
                };
                match stopped {
                    Ok(transport) => (Arc::new(transport.clone()), Some(transport)),
                    Err(name) => {
                        tracing::info!(signal = name, "stopped before the broker could be reached");
                        #[cfg(feature = "otel")]
                        telemetry.shut_down().await;
                        return Ok(());
                    }
                }
            }
        };
        let started = engine
            .transport(Arc::clone(&transport))
            .start()
            .await
            .map_err(Error::Start)?;
        // Every worker reports to the fleet; one serving the dashboard also listens.
        let _report = AbortOnDrop(tokio::spawn(fleet::report(
            Arc::clone(&transport),
            Arc::clone(&metrics),
            fleet::worker_id(),
            config.connection_name.clone(),
        )));
        let _listen = config.dashboard.then(|| {
            AbortOnDrop(tokio::spawn(
                Arc::clone(&fleet).listen(Arc::clone(&transport)),
            ))
        });
        // The outbox's relay publishes with the engine's producer, beside the jobs.
        #[cfg(feature = "outbox")]
        let _relay = config
            .outbox_url
            .clone()
            .zip(relay_status)
            .map(|(url, status)| {
                let (prune_after, producer) =
                    (config.outbox_prune_after, started.producer().clone());
                AbortOnDrop(tokio::spawn(async move {
                    crate::outbox::relay(
                        url,
                        prune_after,
                        producer,
                        &status,
                        std::future::pending(),
                    )
                    .await;
                }))
            });
        let names: Vec<&str> = started.jobs().iter().map(|s| s.job().name()).collect();
        let nodes = transport.nodes().await;
        tracing::info!(jobs = ?names, nodes = ?nodes, "worker ready");
        let _ = broker.set(transport);
        *running.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);

        let name = tokio::select! {
            signalled = &mut signal.0 => signal_name(signalled),
            () = &mut asked => "the shutdown signal",
        };
        tracing::info!(
            signal = name,
            timeout = ?config.shutdown_timeout,
            "shutting down: finishing running jobs"
        );
        let stopping = running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stopping) = stopping {
            stopping.shutdown(config.shutdown_timeout).await;
        }
        if let Some(transport) = connected {
            transport.close().await;
        }
        #[cfg(feature = "otel")]
        telemetry.shut_down().await;
        tracing::info!("shut down");
        Ok(())
    }

    /// This builder with the configuration `config`, for the command line.
    pub(crate) fn with_config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }
}

/// The name of the signal the signal task saw; a task that ended without one (it panicked,
/// which it has no way to) stops the worker as a signal would.
fn signal_name(
    signalled: std::result::Result<&'static str, tokio::task::JoinError>,
) -> &'static str {
    signalled.unwrap_or("none")
}

/// Where the worker's transport comes from.
enum Source {
    /// The application gave it.
    Given(Arc<dyn Transport>),
    /// The worker connects to the configured URL.
    Url(AmqpTransportBuilder),
}

/// A background task that ends with its owner.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The broker connection options of `config`: URL, connection name, TLS CA and client
/// certificate.
///
/// # Errors
///
/// [`Error::TlsCa`] when the CA file cannot be read, [`Error::TlsFile`] when the client
/// certificate or key cannot, [`Error::TlsIdentity`] when only one of them is set.
pub(crate) fn transport_builder(config: &WorkerConfig) -> Result<AmqpTransportBuilder> {
    let mut builder =
        AmqpTransport::builder(config.url.clone()).connection_name(config.connection_name.clone());
    if let Some(path) = &config.tls_ca {
        let pem = std::fs::read_to_string(path).map_err(|source| Error::TlsCa {
            path: path.clone(),
            source,
        })?;
        builder = builder.tls_ca(pem);
    }
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |key: &'static str, path: &std::path::Path| {
                std::fs::read_to_string(path).map_err(|source| Error::TlsFile {
                    key,
                    path: path.to_owned(),
                    source,
                })
            };
            builder = builder.tls_client_identity(read("tls_cert", cert)?, read("tls_key", key)?);
        }
        (None, None) => {}
        (Some(_), None) => return Err(Error::TlsIdentity { missing: "tls_key" }),
        (None, Some(_)) => {
            return Err(Error::TlsIdentity {
                missing: "tls_cert",
            });
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use jobs_core::{JobError, job};

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Nothing {}

    #[job(exchange = "jobs_worker.unit", routing_key = "nothing")]
    async fn nothing(_message: Nothing) -> Result<(), JobError> {
        Ok(())
    }

    fn free_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("a bound address")
    }

    #[tokio::test]
    async fn a_worker_that_cannot_connect_fails_and_frees_its_metrics_port() {
        let (broker, metrics_addr) = (free_addr(), free_addr());
        let config = WorkerConfig::default()
            .with_url(format!("amqp://guest:guest@{broker}/%2f"))
            .with_metrics_addr(metrics_addr)
            .with_connect_retry(Duration::ZERO);
        let err = Worker::builder()
            .config(config)
            .jobs([&nothing::JOB])
            .run()
            .await
            .expect_err("no broker listens there");
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        // The aborted server task lets go of the port at the runtime's next turn.
        for _ in 0..1000 {
            if std::net::TcpListener::bind(metrics_addr).is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the metrics port {metrics_addr} is still bound after the failed start");
    }

    #[test]
    fn a_client_certificate_needs_both_files_and_a_missing_one_is_named() {
        let mut config = WorkerConfig {
            tls_cert: Some("/nonexistent/client.pem".into()),
            ..WorkerConfig::default()
        };
        let err = transport_builder(&config).expect_err("no key");
        assert!(
            matches!(err, Error::TlsIdentity { missing: "tls_key" }),
            "{err:?}"
        );
        config.tls_key = Some("/nonexistent/client.key".into());
        let err = transport_builder(&config).expect_err("no such file");
        assert!(
            matches!(
                &err,
                Error::TlsFile {
                    key: "tls_cert",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("/nonexistent/client.pem"), "{err}");
    }
}
