//! The expansion is clean under the lints a careful crate denies.
#![deny(
    warnings,
    unused_qualifications,
    missing_docs,
    unreachable_pub,
    rust_2018_idioms
)]

use jobs_core::{JobContext, JobError, job};

/// A ping.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    /// What to say.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// A private job, whose producer nobody calls.
#[job(
    exchange = "ops",
    routing_key = "ping",
    retries = 1,
    backoff = "1s, 2s"
)]
async fn ping(ping: Ping, ctx: JobContext) -> Result<(), JobError> {
    let _ = (ping, ctx);
    Ok(())
}

/// A public job.
#[job(exchange = "ops", routing_key = "pong", timeout = "10s")]
pub async fn pong(_: Ping) -> Result<(), JobError> {
    Ok(())
}

/// A periodic job.
#[job(
    exchange = "ops",
    routing_key = "tick",
    schedule = "0 0 * * * *",
    timezone = "Europe/Paris",
    missed = "skip"
)]
pub async fn tick(_: Ping) -> Result<(), JobError> {
    Ok(())
}

/// Jobs in a module.
pub mod more {
    use jobs_core::job;

    use super::Ping;

    /// A crate-visible job.
    #[job(exchange = "ops", routing_key = "crate")]
    pub(crate) async fn crate_job(_: Ping) -> Result<(), jobs_core::JobError> {
        Ok(())
    }
}

/// A message private to this module, with a private job.
#[derive(Clone, PartialEq, prost::Message)]
struct Secret {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

/// A private job with a private message.
#[job(exchange = "ops", routing_key = "secret")]
async fn secret(secret: Secret) -> Result<(), JobError> {
    let _ = secret.data;
    Ok(())
}

fn main() {
    let _ = secret::with(Secret::default());
    let _ = more::crate_job::QUEUE;
}
