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
//! `run` (the default command) connects to RabbitMQ, serves the jobs, answers `/healthz`,
//! `/readyz` and `/metrics` over HTTP (default `0.0.0.0:9090`), and on SIGTERM or SIGINT
//! stops taking deliveries, lets running jobs finish until the shutdown timeout (default 25 s),
//! requeues the rest and exits 0; a second signal exits at once. Settings come from flags, then
//! the environment (`JOBS_AMQP_URL`, `JOBS_SHUTDOWN_TIMEOUT`, …), then a TOML file
//! (`--config`), then the defaults. A broker that cannot be reached at start is an error
//! (exit 1, for the orchestrator to restart); a connection lost later is recovered with backoff
//! while `/readyz` reports 503. Exit codes: 1 a runtime failure, 2 a usage error, 3 a
//! configuration error.

mod cli;
pub mod config;
mod error;
mod http;
pub mod metrics;
pub mod ops;
mod shutdown;
mod worker;

pub use config::WorkerConfig;
pub use error::{Error, Result};
pub use worker::{Worker, WorkerBuilder};

/// Runs the worker CLI on the process's arguments and environment, and returns its exit code.
pub async fn main() -> std::process::ExitCode {
    cli::run(std::env::args_os()).await
}
