//! The worker: connect, serve the jobs, answer probes, and shut down gracefully on a signal.

use std::sync::{Arc, Mutex, PoisonError};

use jobs_core::engine::Engine;
use jobs_core::transport::amqp::{AmqpTransport, AmqpTransportBuilder};
use jobs_core::transport::redact_url;
use jobs_core::{Job, registry};

use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::http::{self, Probes};
use crate::metrics::Metrics;
use crate::shutdown;

/// A worker serving jobs on RabbitMQ; made by [`Worker::builder`].
///
/// ```no_run
/// # async fn run() -> jobs_worker::Result<()> {
/// jobs_worker::Worker::builder().run().await
/// # }
/// ```
#[derive(Debug)]
pub struct Worker;

/// Configures a [`Worker`].
#[derive(Debug, Default)]
#[must_use]
pub struct WorkerBuilder {
    config: WorkerConfig,
    jobs: Option<Vec<&'static Job>>,
}

impl Worker {
    /// A worker with the default configuration, serving every job linked into the binary.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }
}

impl WorkerBuilder {
    /// Uses `config`.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves `jobs` instead of every linked job (and instead of the configuration's `jobs`).
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = &'static Job>) -> Self {
        self.jobs = Some(jobs.into_iter().collect());
        self
    }

    /// The jobs this worker would serve.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] for a configured name no linked job has, and [`Error::NoJobs`]
    /// when there is nothing to serve.
    pub fn resolve_jobs(&self) -> Result<Vec<&'static Job>> {
        let jobs = match (&self.jobs, &self.config.jobs) {
            (Some(jobs), _) => jobs.clone(),
            (None, Some(names)) => names
                .iter()
                .map(|name| {
                    registry::find(name).ok_or_else(|| Error::UnknownJob {
                        name: name.clone(),
                        known: registry::registered()
                            .iter()
                            .map(|job| job.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect::<Result<_>>()?,
            (None, None) => registry::registered(),
        };
        if jobs.is_empty() {
            return Err(Error::NoJobs);
        }
        Ok(jobs)
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully: stops taking deliveries,
    /// lets running jobs finish until the shutdown timeout, requeues the rest and closes the
    /// connections.
    ///
    /// # Errors
    ///
    /// When there are no jobs to serve, the metrics address cannot be bound, the broker cannot
    /// be reached or the topology cannot be declared.
    pub async fn run(self) -> Result<()> {
        let config = self.config.clone();
        let jobs = self.resolve_jobs()?;
        let transport = transport_builder(&config)?;

        let metrics = Arc::new(Metrics::new(jobs.iter().copied()));
        let engine: Arc<Mutex<Option<Engine>>> = Arc::new(Mutex::new(None));
        let listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: config.metrics_addr,
                source,
            })?;
        let shared = Arc::clone(&engine);
        let probes = Probes {
            ready: Arc::new(move || {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(Engine::is_ready)
            }),
            metrics: Arc::clone(&metrics),
        };
        // Aborted on every way out of `run`, errors included: the port must not stay bound.
        let _server = AbortOnDrop(tokio::spawn(http::serve(listener, probes)));
        tracing::info!(addr = %config.metrics_addr, "serving /healthz, /readyz and /metrics");

        let mut signal = AbortOnDrop(tokio::spawn(shutdown::first_signal()));
        let url = redact_url(&config.url);
        tracing::info!(url = %url, connection_name = %config.connection_name, "connecting");
        let transport = transport.connect().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source,
        })?;
        let mut builder = Engine::builder(Arc::new(transport.clone()))
            .jobs(jobs.iter().copied())
            .observer(metrics);
        if let Some(concurrency) = config.concurrency {
            builder = builder.concurrency(concurrency);
        }
        if let Some(prefetch) = config.prefetch {
            builder = builder.prefetch(prefetch);
        }
        let started = builder.start().await.map_err(Error::Start)?;
        let names: Vec<&str> = started.jobs().iter().map(|s| s.job().name()).collect();
        tracing::info!(jobs = ?names, "worker ready");
        *engine.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);

        // Without signal handling there is no way to stop gracefully later: stop now.
        let (name, outcome) = match (&mut signal.0).await {
            Ok(Ok(name)) => (name, Ok(())),
            Ok(Err(source)) => ("none", Err(Error::Signals(source))),
            Err(_) => ("none", Ok(())),
        };
        tracing::info!(
            signal = name,
            timeout = ?config.shutdown_timeout,
            "shutting down: finishing running jobs"
        );
        let running = engine.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(running) = running {
            running.shutdown(config.shutdown_timeout).await;
        }
        transport.close().await;
        tracing::info!("shut down");
        outcome
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The broker connection options of `config`: URL, connection name and TLS CA.
///
/// # Errors
///
/// [`Error::TlsCa`] when the CA file cannot be read.
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
        let config = WorkerConfig {
            url: format!("amqp://guest:guest@{broker}/%2f"),
            metrics_addr,
            ..WorkerConfig::default()
        };
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
}
