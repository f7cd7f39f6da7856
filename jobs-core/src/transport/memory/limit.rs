//! Queue length limits: `x-max-length` with `x-overflow` `drop-head` (the default) or
//! `reject-publish`, as RabbitMQ 3.10 applies them.
//!
//! * Only ready messages count; unacked ones do not (RabbitMQ's "Queue Length Limit" guide,
//!   and `messages_ready` in `rabbit_fifo:is_over_limit` for quorum queues). The limit applies
//!   after delivery, so a message a consumer takes at once never counts; but a classic queue
//!   applies it to the messages a consumer gives back before delivering them again
//!   (`rabbit_amqqueue_process:requeue_and_run`), so a returned message can be dropped at once.
//! * `drop-head`: while a queue holds more ready messages than its limit, its head (the
//!   oldest ready message) is dropped, and dead-lettered with reason `maxlen` when the queue
//!   has a dead-letter exchange. This holds however the message came in: publish,
//!   dead-lettering, or a return. A limit of 1 is a last-value queue.
//! * `reject-publish` on a classic queue: a publish that would take the queue over its limit
//!   is refused (`rabbit_amqqueue_process:will_overflow`), so the queue holds at most the
//!   limit.
//! * `reject-publish` on a quorum queue: the queue takes the publish that goes over the
//!   limit, then refuses publishes until it is back to 80% of it (`rabbit_fifo`'s
//!   `evaluate_limit` and `is_below_soft_limit`), so it holds at most the limit + 1. RabbitMQ
//!   tells each publishing channel asynchronously; here the queue refuses at once, for every
//!   publisher.
//! * A refused publish is negatively confirmed ([`Error::Nacked`](crate::Error::Nacked)),
//!   even when other queues took the message, as RabbitMQ nacks it.
//! * Dead-lettering into a full `reject-publish` queue: a classic queue drops the message (a
//!   dead-lettered message has no publisher to nack). A quorum queue takes it past its limit:
//!   RabbitMQ 3.10's at-most-once dead-lettering enqueues without the publisher checks that
//!   refuse, and at-least-once dead-lettering keeps the message in its source queue and
//!   retries until the target takes it, so either way it arrives (here at once, there once
//!   the target has room).

use super::broker::Broker;
use super::dead_letter::Reason;
use super::queue::{Queue, QueueId};

/// What a queue does when it is full: `x-overflow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Overflow {
    /// `drop-head`, the default: drop (or dead-letter) the oldest ready message.
    DropHead,
    /// `reject-publish`: refuse new publishes.
    RejectPublish,
}

/// A queue's length limit.
#[derive(Clone, Copy, Debug)]
pub(super) struct MaxLength {
    /// `x-max-length`: how many ready messages the queue holds.
    pub(super) max: usize,
    /// `x-overflow`.
    pub(super) overflow: Overflow,
}

impl MaxLength {
    /// The length a refusing quorum queue must be back to before it takes publishes again:
    /// RabbitMQ's `trunc(max * 0.8)`.
    fn soft_limit(self) -> usize {
        self.max - self.max.div_ceil(5)
    }
}

impl Queue {
    /// Whether the queue refuses a publish now.
    pub(super) fn refuses_publish(&self) -> bool {
        match self.args.max_length {
            Some(MaxLength {
                max,
                overflow: Overflow::RejectPublish,
            }) => {
                if self.args.quorum {
                    self.refusing
                } else {
                    self.ready.len() >= max
                }
            }
            _ => false,
        }
    }

    /// Whether a dead-lettered message may enter the queue now; see the [module docs](self).
    pub(super) fn takes_dead_letter(&self) -> bool {
        self.args.quorum || !self.refuses_publish()
    }
}

impl Broker {
    /// Applies queue `id`'s length limit after its ready messages changed: drops the head of a
    /// `drop-head` queue while it is over the limit, and updates whether a quorum
    /// `reject-publish` queue refuses publishes.
    pub(super) fn apply_limit(&mut self, id: QueueId) {
        let Some(limit) = self.queues[id].args.max_length else {
            return;
        };
        match limit.overflow {
            Overflow::DropHead => {
                let mut dropped = Vec::new();
                while self.queues[id].ready.len() > limit.max {
                    let Some(head) = self.queues[id].ready.pop_front() else {
                        break;
                    };
                    dropped.push(head);
                }
                if self.queues[id].args.quorum {
                    // RabbitMQ 3.10's quorum queue dead-letters the heads one command drops in
                    // reverse: each drop prepends its dead-letter effect.
                    dropped.reverse();
                }
                self.holding(|broker| {
                    for head in dropped {
                        broker.dead_letter(id, head, Reason::MaxLen);
                    }
                });
            }
            Overflow::RejectPublish => {
                let queue = &mut self.queues[id];
                if queue.args.quorum {
                    let ready = queue.ready.len();
                    if ready > limit.max {
                        queue.refusing = true;
                    } else if ready <= limit.soft_limit() {
                        queue.refusing = false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_rabbitmqs_trunc_of_eighty_percent() {
        let soft = |max| {
            MaxLength {
                max,
                overflow: Overflow::RejectPublish,
            }
            .soft_limit()
        };
        assert_eq!(
            [0, 1, 2, 5, 7, 10, 11].map(soft),
            [0, 0, 1, 4, 5, 8, 8],
            "trunc(0.8 * max)"
        );
    }
}
