//! The worker runtime for `jobs-core`: what an operator deploys.
//!
//! A user's binary is
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     jobs_worker::main().await
//! }
//! ```
//!
//! and serves every `#[job]` linked into it; the same binary gives the operator commands.
//!
//! A worker whose handlers need the application's state (a database pool, an HTTP client) is
//! started with [`main_with`] and a [`Worker::builder`] that has it.
//!
//! `run` (the default command) connects to RabbitMQ, serves the jobs, answers `/healthz`,
//! `/readyz` and `/metrics` over HTTP (default `0.0.0.0:9090`), and on SIGTERM or SIGINT
//! stops taking deliveries, lets running jobs finish until the shutdown timeout (default 25 s),
//! requeues the rest and exits 0; a second signal exits at once. Settings come from flags, then
//! the environment (`JOBS_AMQP_URL`, `JOBS_SHUTDOWN_TIMEOUT`, …), then a TOML file
//! (`--config`), then the defaults. A broker that cannot be reached at start is an error
//! (exit 1, for the orchestrator to restart); a connection lost later is recovered with backoff
//! while `/readyz` reports 503. Exit codes: 1 a runtime failure, 2 a usage error, 3 a
//! configuration error.
//!
//! Feature `otel`: with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`, or `otlp_endpoint`
//! in the file) the worker exports a span per enqueue and per attempt over OTLP/gRPC; see
//! `jobs_core::otel`.

mod cli;
mod config;
mod connect;
mod dashboard;
mod error;
mod fleet;
mod http;
mod metrics;
mod ops;
#[cfg(feature = "outbox")]
mod outbox;
mod queues;
mod shutdown;
#[cfg(feature = "otel")]
mod telemetry;
mod worker;

pub use config::{DashboardToken, LogFormat, WorkerConfig};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use worker::{Worker, WorkerBuilder};

/// Runs the worker CLI on the process's arguments and environment, serving every job linked
/// into the binary, and returns its exit code.
pub async fn main() -> std::process::ExitCode {
    main_with(Worker::builder()).await
}

/// Runs the worker CLI with `worker` as the base: its jobs, the values its jobs take as
/// [`State<T>`](jobs_core::State), its defaults and observers, and its configuration, with the
/// command line's flags, environment and `--config` file applied on top. The same binary is
/// both the worker and the operator's tool.
///
/// ```no_run
/// use std::sync::Arc;
///
/// struct Storage; // the application's client, shared by every handler
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let worker = jobs_worker::Worker::builder().state(Arc::new(Storage));
///     jobs_worker::main_with(worker).await
/// }
/// ```
pub async fn main_with(worker: WorkerBuilder) -> std::process::ExitCode {
    cli::run(std::env::args_os(), worker).await
}

/// [`main_with`] on `args` (the program name first) instead of the process's arguments: for a
/// test, or a program that embeds the worker's command line.
pub async fn main_with_args<I, T>(worker: WorkerBuilder, args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    cli::run(args.into_iter().map(Into::into), worker).await
}
