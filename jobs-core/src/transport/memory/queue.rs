//! A queue: its parsed arguments, its ready messages and its consumers.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::consumer::ConsumerState;
use super::limit::{MaxLength, Overflow};
use crate::broker::BrokerVersion;
use crate::envelope::{Envelope, HeaderValue, Headers};
use crate::error::{Error, Result};
use crate::topology::argument;

/// Index of a queue in the broker; a deleted queue keeps its place, so it stays valid.
pub(super) type QueueId = usize;

/// A message held by a queue, ready or delivered and not yet settled.
#[derive(Clone, Debug)]
pub(super) struct Message {
    /// The exchange it was published (or dead-lettered) to.
    pub(super) exchange: Cow<'static, str>,
    /// The routing key it was published (or dead-lettered) with.
    pub(super) routing_key: Cow<'static, str>,
    /// Shared with the deliveries of it: a delivery is a pointer, not a copy.
    pub(super) envelope: Arc<Envelope>,
    /// Its place in its queue: ready messages are always in `(rank, seq)` order, so a
    /// returned message goes back where it was, and expiry order is queue order.
    pub(super) seq: u64,
    /// How far below the queue's highest priority it is: 0 in a queue without priorities, so
    /// that such a queue is in `seq` order.
    pub(super) rank: u8,
    /// Whether it was delivered before and returned unacked.
    pub(super) redelivered: bool,
    /// How many times it came back unacked: a quorum queue's delivery count.
    pub(super) returns: u32,
    /// When it expires, in a queue with a message TTL.
    pub(super) expires_at: Option<Instant>,
}

impl Message {
    /// A message as published: never delivered, never dead-lettered.
    pub(super) fn new(
        exchange: Cow<'static, str>,
        routing_key: Cow<'static, str>,
        envelope: Envelope,
    ) -> Self {
        Self {
            exchange,
            routing_key,
            envelope: Arc::new(envelope),
            seq: 0,
            rank: 0,
            redelivered: false,
            returns: 0,
            expires_at: None,
        }
    }
}

/// Where a queue dead-letters to.
#[derive(Debug)]
pub(super) struct DeadLetterTarget {
    /// `x-dead-letter-exchange`; `""` is the default exchange.
    pub(super) exchange: String,
    /// `x-dead-letter-routing-key`; `None` keeps the message's own key.
    pub(super) routing_key: Option<String>,
}

/// The arguments of a queue the broker acts on, parsed once at declare time.
#[derive(Debug, Default)]
pub(super) struct QueueArgs {
    /// `x-queue-type = quorum`: delivery counts and the delivery limit apply.
    pub(super) quorum: bool,
    /// `x-message-ttl`.
    pub(super) ttl: Option<Duration>,
    /// `x-dead-letter-exchange` and `x-dead-letter-routing-key`.
    pub(super) dead_letter: Option<DeadLetterTarget>,
    /// `x-delivery-limit`, on quorum queues only.
    pub(super) delivery_limit: Option<u32>,
    /// `x-single-active-consumer`.
    pub(super) single_active: bool,
    /// `x-max-length` and `x-overflow`.
    pub(super) max_length: Option<MaxLength>,
    /// `x-max-priority`, on classic queues only.
    pub(super) max_priority: Option<u8>,
}

/// Arguments that change what a queue does and that this broker does not emulate: declaring
/// them is an error rather than a silent difference from RabbitMQ.
const UNSUPPORTED: [&str; 2] = ["x-max-length-bytes", "x-expires"];

/// `x-single-active-consumer`.
const SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";
/// `x-max-length`.
const MAX_LENGTH: &str = "x-max-length";

/// The `seq` of a queue's first message: the ones below are for the messages a quorum queue
/// takes back (see [`Queue::next_return`]).
const FIRST_SEQ: u64 = 1 << 62;

/// RabbitMQ 4's delivery limit of a quorum queue declared without one.
const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// The delivery limit a quorum queue with `x-delivery-limit` = `argument` has on `version`:
/// from 4.0, 20 without the argument and none for a negative one; before, none without it, and
/// a negative one dead-letters at the first return (RabbitMQ 3 compares the count with it as
/// it is).
fn effective_delivery_limit(argument: Option<i64>, version: BrokerVersion) -> Option<u32> {
    let v4 = version >= crate::broker::DEFAULT_LIMIT_FROM;
    match argument {
        None => v4.then_some(DEFAULT_DELIVERY_LIMIT),
        Some(limit) if limit < 0 => (!v4).then_some(0),
        Some(limit) => Some(u32::try_from(limit).unwrap_or(u32::MAX)),
    }
}

impl QueueArgs {
    /// Parses the arguments of queue `queue`.
    pub(super) fn parse(queue: &str, arguments: &Headers, version: BrokerVersion) -> Result<Self> {
        let invalid = |name: &str, value: &HeaderValue| {
            Error::Topology(format!("queue `{queue}` has an invalid {name} = {value}"))
        };
        let unsupported = |name: &str| {
            Error::Topology(format!(
                "queue `{queue}`: the in-memory broker does not emulate {name}"
            ))
        };
        let mut args = Self::default();
        let mut delivery_limit = None;
        let mut dead_letter_key = None;
        let mut max_length = None;
        let mut max_priority = None;
        let mut overflow = Overflow::DropHead;
        for (name, value) in arguments.iter() {
            match name {
                argument::QUEUE_TYPE => match value.as_str() {
                    Some("quorum") => args.quorum = true,
                    Some("classic") => args.quorum = false,
                    Some("stream") => return Err(unsupported(name)),
                    _ => return Err(invalid(name, value)),
                },
                argument::MESSAGE_TTL => {
                    let ms = value.as_i64().and_then(|n| u64::try_from(n).ok());
                    args.ttl = Some(Duration::from_millis(
                        ms.ok_or_else(|| invalid(name, value))?,
                    ));
                }
                argument::DEAD_LETTER_EXCHANGE => {
                    let exchange = value.as_str().ok_or_else(|| invalid(name, value))?;
                    args.dead_letter = Some(DeadLetterTarget {
                        exchange: exchange.to_owned(),
                        routing_key: None,
                    });
                }
                argument::DEAD_LETTER_ROUTING_KEY => {
                    dead_letter_key = Some(
                        value
                            .as_str()
                            .ok_or_else(|| invalid(name, value))?
                            .to_owned(),
                    );
                }
                argument::DELIVERY_LIMIT => {
                    delivery_limit = Some(value.as_i64().ok_or_else(|| invalid(name, value))?);
                }
                // RabbitMQ takes only a boolean here.
                SINGLE_ACTIVE_CONSUMER => match value {
                    HeaderValue::Bool(on) => args.single_active = *on,
                    _ => return Err(invalid(name, value)),
                },
                MAX_LENGTH => {
                    let max = value.as_i64().and_then(|n| usize::try_from(n).ok());
                    max_length = Some(max.ok_or_else(|| invalid(name, value))?);
                }
                // RabbitMQ takes 1 to 255, on classic queues only.
                argument::MAX_PRIORITY => {
                    let levels = value.as_i64().and_then(|n| u8::try_from(n).ok());
                    max_priority = Some(
                        levels
                            .filter(|levels| *levels > 0)
                            .ok_or_else(|| invalid(name, value))?,
                    );
                }
                argument::OVERFLOW => {
                    overflow = match value.as_str() {
                        Some("drop-head") => Overflow::DropHead,
                        Some("reject-publish") => Overflow::RejectPublish,
                        Some("reject-publish-dlx") => {
                            return Err(unsupported("x-overflow = reject-publish-dlx"));
                        }
                        _ => return Err(invalid(name, value)),
                    };
                }
                _ if UNSUPPORTED.contains(&name) => return Err(unsupported(name)),
                _ => {}
            }
        }
        if let Some(target) = &mut args.dead_letter {
            target.routing_key = dead_letter_key;
        }
        // `x-overflow` alone is accepted and does nothing, as in RabbitMQ.
        args.max_length = max_length.map(|max| MaxLength { max, overflow });
        // RabbitMQ 3.10 classic queues ignore the argument; only quorum queues count deliveries.
        if args.quorum {
            args.delivery_limit = effective_delivery_limit(delivery_limit, version);
            // RabbitMQ 3.10 closes the channel: PRECONDITION_FAILED, invalid arg.
            if let Some(levels) = max_priority {
                return Err(Error::Topology(format!(
                    "queue `{queue}`: a quorum queue takes no x-max-priority (= {levels})"
                )));
            }
        }
        args.max_priority = max_priority;
        // Expiry and length limits act on the head of the queue, which a priority queue keeps
        // per level; the framework never combines them, and this broker does not emulate it.
        if args.max_priority.is_some() && (args.ttl.is_some() || args.max_length.is_some()) {
            return Err(unsupported(
                "x-max-priority together with x-message-ttl or x-max-length",
            ));
        }
        Ok(args)
    }
}

/// A durable queue.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) name: String,
    /// The arguments as declared, to compare with later declarations.
    pub(super) arguments: Headers,
    pub(super) args: QueueArgs,
    /// Ready messages, head first, in `(rank, seq)` order: `seq` order without priorities.
    pub(super) ready: VecDeque<Message>,
    /// The `seq` of the next message to enter.
    pub(super) next_seq: u64,
    /// The `seq` of the next message a quorum queue takes back: below every `seq` of a
    /// message entering, so returned messages go first, in the order they came back.
    pub(super) next_return: u64,
    /// Consumers, in attach order; cancelled ones stay while they hold unacked messages.
    pub(super) consumers: Vec<ConsumerState>,
    /// Where round-robin delivery looks for the next consumer.
    pub(super) cursor: usize,
    /// Consumers that still take deliveries.
    pub(super) active_consumers: usize,
    /// Messages delivered and not settled, over every consumer.
    pub(super) unacked: usize,
    /// Whether the queue counted as busy at the last [`Queue::is_busy`] check.
    pub(super) busy: bool,
    /// Wakes the queue's expiry timer while one runs (TTL queues only).
    pub(super) timer: Option<Arc<Notify>>,
    /// A quorum queue with `x-overflow = reject-publish` went over its limit and refuses
    /// publishes until it is back to 80% of it (see [`super::limit`]).
    pub(super) refusing: bool,
    /// Deleted: no longer found by name, and what its old bindings route to it is dropped.
    pub(super) deleted: bool,
    /// The consumer holding the queue exclusively, if one did; it holds it while active.
    pub(super) exclusive: Option<u64>,
}

impl Queue {
    pub(super) fn new(name: String, arguments: Headers, args: QueueArgs) -> Self {
        Self {
            name,
            arguments,
            args,
            ready: VecDeque::new(),
            next_seq: FIRST_SEQ,
            next_return: 0,
            consumers: Vec::new(),
            cursor: 0,
            active_consumers: 0,
            unacked: 0,
            busy: false,
            timer: None,
            refusing: false,
            deleted: false,
            exclusive: None,
        }
    }

    /// Whether something will still happen here: a delivery to settle, a ready message a
    /// consumer will get, or a message that will expire.
    pub(super) fn is_busy(&self) -> bool {
        self.unacked > 0
            || (!self.ready.is_empty() && (self.active_consumers > 0 || self.args.ttl.is_some()))
    }

    /// The consumers a passive declare reports. A classic queue counts those not cancelled. A
    /// quorum queue (RabbitMQ 3.10's `rabbit_fifo:query_stat`) counts those it delivers to: not
    /// the consumers of a single-active-consumer queue waiting their turn, but a cancelled one
    /// as long as it holds unacked deliveries.
    pub(super) fn reported_consumers(&self) -> usize {
        if !self.args.quorum {
            return self.active_consumers;
        }
        let waiting = if self.args.single_active {
            self.active_consumers.saturating_sub(1)
        } else {
            0
        };
        let cancelled_holding = self
            .consumers
            .iter()
            .filter(|c| !c.is_consuming() && !c.unacked.is_empty())
            .count();
        self.active_consumers - waiting + cancelled_holding
    }

    /// Whether an active consumer holds the queue exclusively.
    pub(super) fn is_held(&self) -> bool {
        self.exclusive
            .and_then(|holder| self.consumer(holder))
            .is_some_and(|index| self.consumers[index].sender.is_some())
    }

    /// The position of consumer `id`.
    pub(super) fn consumer(&self, id: u64) -> Option<usize> {
        self.consumers.iter().position(|c| c.id == id)
    }

    /// The next consumer in round-robin order that takes a delivery now.
    pub(super) fn next_with_credit(&self) -> Option<usize> {
        let count = self.consumers.len();
        (0..count)
            .map(|offset| (self.cursor + offset) % count)
            .find(|&i| self.consumers[i].has_credit())
    }
}
