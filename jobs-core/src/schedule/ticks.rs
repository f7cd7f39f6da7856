//! The broker state of one schedule: its tick queue, its last fired slot, and the messages
//! that travel between them.
//!
//! For a scheduled job `J`:
//!
//! * `jobs.schedule.J` is a quorum queue with `x-single-active-consumer`: every worker that
//!   serves `J` consumes it, and the broker makes one of them the active scheduler, and
//!   another when that one's connection dies. It holds *ticks*: a message per slot, which
//!   arrives through the delay cascade when the slot is due, so nothing waits unacked in a
//!   worker, whatever the period.
//! * `jobs.schedule.J.last` is a last-value queue (`x-max-length` 1, dropping its head) that
//!   holds the last slot fired and the worker that fired it: a tick at or before it is a
//!   duplicate and goes, which keeps one chain of ticks per schedule however many were
//!   started.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::envelope::{CONTENT_TYPE, Envelope, HeaderValue, Headers, Properties, header};
use crate::error::{Error, Result};
use crate::job::{Job, QueueType};
use crate::producer::unix_now;
use crate::topology::{QueueSpec, argument};
use crate::transport::{Publish, Settlement, Transport};

/// The start of the names of schedules' queues, which jobs may not use.
pub const RESERVED_PREFIX: &str = "jobs.schedule.";

/// The AMQP `type` of a tick.
const TICK_TYPE: &str = "jobs.tick";

/// How long reading the last fired slot waits for the message a count said is there.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// The queue of `job`'s ticks.
#[must_use]
pub fn tick_queue(job: &Job) -> String {
    format!("{RESERVED_PREFIX}{}", job.name())
}

/// The queue of `job`'s last fired slot.
#[must_use]
pub fn last_queue(job: &Job) -> String {
    format!("{RESERVED_PREFIX}{}.last", job.name())
}

/// The queues of a scheduled job.
pub(crate) fn queues(job: &Job) -> [QueueSpec; 2] {
    let quorum = || Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Quorum.as_str())]);
    let mut ticks = quorum();
    ticks.insert(argument::SINGLE_ACTIVE_CONSUMER, true);
    let mut last = quorum();
    last.insert(argument::MAX_LENGTH, 1_i64);
    last.insert(argument::OVERFLOW, "drop-head");
    [
        QueueSpec {
            name: tick_queue(job),
            arguments: ticks,
        },
        QueueSpec {
            name: last_queue(job),
            arguments: last,
        },
    ]
}

/// The message id of `job`'s run for `slot`: the same whoever fires it, so a slot fired twice
/// in a takeover carries one id.
#[must_use]
pub fn run_id(job: &Job, slot: SystemTime) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from(slot);
    format!("{}@{}", job.name(), time.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// The slot a message is for: its `x-jobs-slot` header, Unix seconds.
pub(crate) fn slot_of(envelope: &Envelope) -> Option<SystemTime> {
    let seconds = envelope.properties.headers.get(header::SLOT)?.as_i64()?;
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

fn slot_header(slot: SystemTime) -> i64 {
    i64::try_from(super::spec::unix_seconds(slot)).unwrap_or(i64::MAX)
}

/// The tick for `slot`, due `delay` from now, through the delay cascade. The cascade counts
/// whole seconds: the delay is rounded down, so the tick comes up to a second early and the
/// scheduler waits the rest, and a slot fires on time rather than up to a second late.
pub(crate) fn tick(job: &Job, slot: SystemTime, delay: Duration) -> Result<Publish> {
    let queue = tick_queue(job);
    let (exchange, routing_key) = crate::delay::route(delay.as_secs(), &queue)?;
    let headers = Headers::from_iter([(header::SLOT, HeaderValue::from(slot_header(slot)))]);
    Ok(Publish {
        exchange: Cow::Owned(exchange),
        routing_key: Cow::Owned(routing_key),
        mandatory: true,
        envelope: Envelope {
            properties: Properties {
                kind: Some(Cow::Borrowed(TICK_TYPE)),
                message_id: Some(format!("{}.tick", run_id(job, slot))),
                timestamp: Some(unix_now()),
                persistent: true,
                headers,
                ..Properties::default()
            },
            body: Bytes::new(),
        },
    })
}

/// `job`'s run for `slot`: its message's default value (an empty body, which every protobuf
/// message decodes to its defaults), published to the job's exchange as an enqueue would.
pub(crate) fn run(job: &Job, slot: SystemTime) -> Publish {
    let headers = Headers::from_iter([(header::SLOT, HeaderValue::from(slot_header(slot)))]);
    Publish {
        exchange: Cow::Borrowed(job.exchange()),
        routing_key: Cow::Borrowed(job.routing_key()),
        mandatory: true,
        envelope: Envelope {
            properties: Properties {
                content_type: Some(Cow::Borrowed(CONTENT_TYPE)),
                kind: Some(Cow::Borrowed(job.name())),
                message_id: Some(run_id(job, slot)),
                timestamp: Some(unix_now()),
                persistent: true,
                headers,
                ..Properties::default()
            },
            body: Bytes::new(),
        },
    }
}

/// The record that `slot` was fired by `by`.
pub(crate) fn record(job: &Job, slot: SystemTime, by: &str) -> Publish {
    let mut headers = Headers::from_iter([(header::SLOT, HeaderValue::from(slot_header(slot)))]);
    headers.insert(header::FIRED_BY, by);
    Publish {
        exchange: Cow::Borrowed(""),
        routing_key: Cow::Owned(last_queue(job)),
        mandatory: true,
        envelope: Envelope {
            properties: Properties {
                timestamp: Some(unix_now()),
                persistent: true,
                headers,
                ..Properties::default()
            },
            body: Bytes::new(),
        },
    }
}

/// The last slot a schedule fired, and who fired it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastFired {
    /// The slot.
    pub slot: SystemTime,
    /// The worker that fired it: the connection name it was given, its host and process id.
    pub by: String,
    /// When it was recorded.
    pub at: Option<SystemTime>,
}

/// Reads `job`'s last fired slot, leaving it in its queue; `None` when none was fired yet.
///
/// # Errors
///
/// Broker errors; [`Error::Timeout`] when the message a count said is there does not come.
pub async fn last_fired(transport: &dyn Transport, job: &Job) -> Result<Option<LastFired>> {
    let queue = last_queue(job);
    // The count leaves out a record another reader holds for a moment: read then, it looks
    // like none. For a scheduler that can only happen as it becomes the active one, where a
    // slot may fire twice anyway (see the runner's docs).
    if transport.message_count(&queue).await? == 0 {
        return Ok(None);
    }
    let mut consumer = transport.consume(&queue, 1).await?;
    let delivery = match tokio::time::timeout(READ_DEADLINE, consumer.deliveries.next()).await {
        Ok(Some(delivery)) => delivery,
        // Taken by another reader in between, or the channel closed: as good as none seen.
        Ok(None) => return Ok(None),
        Err(_) => {
            return Err(Error::Timeout {
                after: READ_DEADLINE,
            });
        }
    };
    // Given back: the record stays for the next reader. The queue holds one message, so
    // nothing waits behind it.
    consumer
        .settler
        .settle(Settlement::Nack {
            tag: delivery.tag,
            multiple: false,
            requeue: true,
        })
        .await?;
    let _ = consumer.settler.cancel().await;
    let envelope = &delivery.envelope;
    let Some(slot) = slot_of(envelope) else {
        // A record that is not one of ours: no slot is known.
        return Ok(None);
    };
    Ok(Some(LastFired {
        slot,
        by: envelope
            .properties
            .headers
            .get_str(header::FIRED_BY)
            .unwrap_or("?")
            .to_owned(),
        at: envelope
            .properties
            .timestamp
            .and_then(|t| UNIX_EPOCH.checked_add(Duration::from_secs(t))),
    }))
}
