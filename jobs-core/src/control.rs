//! Pausing and resuming a job on every worker at once, with the state kept on the broker.
//!
//! # How it works
//!
//! * **The state** is the existence of a queue: a job is paused while the durable quorum queue
//!   `jobs.paused.<job name>` exists. [`pause`] declares it, [`resume`] deletes it, and any
//!   number of workers read it at once with a passive declare ([`is_paused`]). It survives a
//!   broker restart, is replicated on a cluster, and shows in the management UI. (A last-value
//!   queue holding the state would do the same, but reading one means taking its message for a
//!   moment, and another reader at that moment sees it empty.)
//! * **The news** goes through the topic exchange `jobs.control`: after changing the state,
//!   [`pause`] and [`resume`] publish a message with routing key `paused.<job name>` and the job
//!   name as its `type`. Each worker subscribes to the keys of the jobs it serves, with a queue
//!   of its own that the broker deletes with its connection, and on each message reads the
//!   state again, so that whatever order messages and changes meet in, a worker ends on the
//!   state the queue holds.
//! * **A worker** subscribes first, then reads the state of each of its jobs, so that a change
//!   made in between reaches it as news. It starts a paused job's consumer only once the job is
//!   resumed. Pausing cancels the consumer: the jobs running finish and settle, the deliveries
//!   prefetched and not started go back to the queue, and nothing more is taken. When the
//!   subscription is lost with its connection, the worker subscribes again and reads every
//!   state again.
//!
//! A paused job's messages wait in its queue: enqueueing goes on, and so do retries coming back
//! from retry queues, which wait with the rest.

use std::borrow::Cow;

use crate::envelope::{Envelope, Headers, Properties};
use crate::error::{Error, Result};
use crate::job::{ExchangeKind, QueueType};
use crate::topology::{ExchangeSpec, QueueSpec, Topology, argument};
use crate::transport::{Publish, Transport};

/// The topic exchange the news of a change goes through.
pub const EXCHANGE: &str = "jobs.control";

/// The start of the name of the queue whose existence means that a job is paused.
pub const PAUSED_PREFIX: &str = "jobs.paused.";

/// The queue whose existence means that the job named `job` is paused.
#[must_use]
pub fn paused_queue(job: &str) -> String {
    format!("{PAUSED_PREFIX}{job}")
}

/// The routing key of the news about the job named `job`.
pub(crate) fn news_key(job: &str) -> String {
    format!("paused.{job}")
}

/// The control exchange, as a topology to declare.
pub(crate) fn exchange() -> ExchangeSpec {
    ExchangeSpec {
        name: EXCHANGE.to_owned(),
        kind: ExchangeKind::Topic,
    }
}

/// Pauses the job named `job` on every worker that serves it, now and after restarts, until
/// [`resume`]. Workers stop taking its deliveries as the news reaches them (the jobs running
/// finish); its messages wait in its queue. Pausing a paused job changes nothing.
///
/// # Errors
///
/// Connection errors, and the broker's refusal to declare the state's queue (permissions).
pub async fn pause(transport: &dyn Transport, job: &str) -> Result<()> {
    let topology = Topology {
        exchanges: vec![exchange()],
        queues: vec![QueueSpec {
            name: paused_queue(job),
            arguments: Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Quorum.as_str())]),
        }],
        ..Topology::default()
    };
    transport
        .declare(&topology, crate::transport::Declare::Create)
        .await?;
    announce(transport, job).await
}

/// Resumes the job named `job` on every worker that serves it. Resuming a job that is not
/// paused changes nothing.
///
/// # Errors
///
/// Connection errors.
pub async fn resume(transport: &dyn Transport, job: &str) -> Result<()> {
    transport.delete_queue(&paused_queue(job)).await?;
    let topology = Topology {
        exchanges: vec![exchange()],
        ..Topology::default()
    };
    transport
        .declare(&topology, crate::transport::Declare::Create)
        .await?;
    announce(transport, job).await
}

/// Whether the job named `job` is paused.
///
/// # Errors
///
/// Connection errors.
pub async fn is_paused(transport: &dyn Transport, job: &str) -> Result<bool> {
    match transport.message_count(&paused_queue(job)).await {
        Ok(_) => Ok(true),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Tells the workers serving `job` that its state changed. Not mandatory: with no worker
/// running, nobody needs to hear it.
async fn announce(transport: &dyn Transport, job: &str) -> Result<()> {
    transport
        .publish(Publish {
            exchange: Cow::Borrowed(EXCHANGE),
            routing_key: Cow::Owned(news_key(job)),
            mandatory: false,
            envelope: Envelope {
                properties: Properties {
                    kind: Some(Cow::Owned(job.to_owned())),
                    ..Properties::default()
                },
                body: bytes::Bytes::new(),
            },
        })
        .await
}
