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
//!
//! # Concurrency limits
//!
//! A job declared with `#[job(max_running = N)]` has `N` empty classic queues,
//! `jobs.slots.<job name>.0` to `.N-1`. A worker runs one handler of the job for each of them it
//! holds as their exclusive consumer, which RabbitMQ grants to one consumer at a time and takes
//! back when the holder's connection closes: at most `N` handlers run across every worker, and
//! a worker that dies gives its slots back by itself (at once for a process that exits or is
//! killed, whose sockets the kernel closes; within the heartbeat timeout for a host that
//! vanishes).
//!
//! # Rate limits
//!
//! A job declared with `#[job(rate = "50/s")]` starts only with a ticket from the queue
//! `jobs.rate.<job name>`. One worker, the keeper (the exclusive consumer of
//! `jobs.rate.<job name>.keeper`, another taking over when it dies), publishes the tickets at the
//! rate: one every 20 ms for 50/s. The ticket queue holds at most one tick's tickets
//! (`x-max-length`, dropping the oldest), so tickets nobody took do not pile up into a burst, and
//! every worker takes them one at a time (a prefetch of one), so at most one ticket per worker
//! is held ahead of a job. Starts across the cluster stay within the rate, plus at most one per
//! worker; a keeper that dies leaves a gap of about a second, never a burst.

use std::borrow::Cow;
use std::time::Duration;

use crate::envelope::{Envelope, Headers, Properties};
use crate::error::{Error, Result};
use crate::job::{ExchangeKind, QueueType};
use crate::topology::{ExchangeSpec, QueueSpec, Topology, argument};
use crate::transport::{Publish, Transport};

/// The topic exchange the news of a change goes through.
pub const EXCHANGE: &str = "jobs.control";

/// The start of the name of the queue whose existence means that a job is paused.
pub const PAUSED_PREFIX: &str = "jobs.paused.";

/// The start of the names of the slot queues of jobs with `max_running`.
pub const SLOTS_PREFIX: &str = "jobs.slots.";

/// Slot `n` of the job named `job`: a worker runs one of the job's handlers for each slot it
/// holds (the queue's exclusive consumer), so at most `max_running` run across every worker.
#[must_use]
pub fn slot_queue(job: &str, n: u16) -> String {
    format!("{SLOTS_PREFIX}{job}.{n}")
}

/// The start of the names of the queues of jobs with a `rate`.
pub const RATE_PREFIX: &str = "jobs.rate.";

/// How often a rate's keeper publishes tickets, at the most.
pub const TICK: Duration = Duration::from_millis(10);

/// Starts of a job per period, across every worker: `#[job(rate = "50/s")]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per `per`.
    pub starts: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// How often the keeper publishes tickets, and how many each time: one every
    /// `per / starts`, or every [`TICK`] as many as fall in it.
    #[must_use]
    pub fn tick(self) -> (Duration, u32) {
        let each = self.per / self.starts.max(1);
        if each >= TICK {
            return (each, 1);
        }
        let per_tick = (TICK.as_nanos() * u128::from(self.starts)) / self.per.as_nanos().max(1);
        (TICK, u32::try_from(per_tick).unwrap_or(u32::MAX).max(1))
    }
}

impl std::fmt::Display for Rate {
    /// `50/1s`, `100/60s`, `5/1500ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.per.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}/{}s", self.starts, ms / 1000)
        } else {
            write!(f, "{}/{ms}ms", self.starts)
        }
    }
}

/// The queue of the tickets of the job named `job`: a handler starts only with one.
#[must_use]
pub fn tickets_queue(job: &str) -> String {
    format!("{RATE_PREFIX}{job}")
}

/// The queue whose exclusive consumer is the keeper of the job's rate: the worker that
/// publishes its tickets.
#[must_use]
pub fn keeper_queue(job: &str) -> String {
    format!("{RATE_PREFIX}{job}.keeper")
}

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
    transport
        .declare(&paused_topology(job), crate::transport::Declare::Create)
        .await?;
    announce(transport, job).await
}

/// What pausing `job` declares: the control exchange, and the queue whose existence is the
/// pause.
pub(crate) fn paused_topology(job: &str) -> Topology {
    Topology {
        exchanges: vec![exchange()],
        queues: vec![QueueSpec {
            name: paused_queue(job),
            arguments: Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Quorum.as_str())]),
        }],
        ..Topology::default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_ticks_once_per_ticket_down_to_ten_milliseconds() {
        let rate = |starts, secs| Rate {
            starts,
            per: Duration::from_secs(secs),
        };
        assert_eq!(rate(50, 1).tick(), (Duration::from_millis(20), 1));
        assert_eq!(rate(100, 60).tick(), (Duration::from_millis(600), 1));
        assert_eq!(rate(1000, 1).tick(), (TICK, 10));
        assert_eq!(rate(10_000, 1).tick(), (TICK, 100));
        assert_eq!(rate(50, 1).to_string(), "50/1s");
    }
}
