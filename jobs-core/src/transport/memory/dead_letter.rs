//! Dead-lettering, and returning unacked messages under a quorum queue's delivery limit.

use std::borrow::Cow;
use std::mem;

use super::broker::Broker;
use super::queue::{Message, QueueId};
use crate::envelope::HeaderValue;

/// Header RabbitMQ sets to the reason of a message's first dead-lettering.
pub(super) const FIRST_DEATH_REASON: &str = "x-first-death-reason";
/// Header RabbitMQ sets to the queue a message was first dead-lettered from.
pub(super) const FIRST_DEATH_QUEUE: &str = "x-first-death-queue";
/// Header RabbitMQ sets to the exchange a message was published to before its first death.
pub(super) const FIRST_DEATH_EXCHANGE: &str = "x-first-death-exchange";

/// Why a message is dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// Nacked or rejected without requeue.
    Rejected,
    /// Its TTL passed in the queue.
    Expired,
    /// Returned more often than the quorum queue's `x-delivery-limit`.
    DeliveryLimit,
}

impl Reason {
    /// RabbitMQ's name for it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::DeliveryLimit => "delivery_limit",
        }
    }
}

/// One dead-lettering of a message: the queue it left and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Death {
    pub(super) queue: QueueId,
    pub(super) reason: Reason,
}

/// Whether sending a message with `deaths` (newest last) to `target` closes a cycle without a
/// rejection in it, which RabbitMQ breaks by dropping the message.
fn is_cycle(deaths: &[Death], target: QueueId) -> bool {
    for death in deaths.iter().rev() {
        if death.reason == Reason::Rejected {
            return false;
        }
        if death.queue == target {
            return true;
        }
    }
    false
}

impl Broker {
    /// Sends a message from queue `from` to its dead-letter exchange, or drops it when the
    /// queue has none or the dead-letter exchange routes it nowhere, as RabbitMQ does.
    pub(super) fn dead_letter(&mut self, from: QueueId, mut message: Message, reason: Reason) {
        let queue = &self.queues[from];
        let Some(target) = &queue.args.dead_letter else {
            return;
        };
        let headers = &mut message.envelope.properties.headers;
        if headers.get(FIRST_DEATH_REASON).is_none() {
            headers.insert(FIRST_DEATH_REASON, reason.as_str());
            headers.insert(FIRST_DEATH_QUEUE, queue.name.clone());
            headers.insert(
                FIRST_DEATH_EXCHANGE,
                HeaderValue::String(message.exchange.clone().into_owned()),
            );
        }
        // Like an `x-death` entry: one per (queue, reason), moved to the newest place.
        let death = Death {
            queue: from,
            reason,
        };
        message.deaths.retain(|d| *d != death);
        message.deaths.push(death);

        let exchange = target.exchange.clone();
        let routing_key = match &target.routing_key {
            Some(key) => Cow::Owned(key.clone()),
            None => mem::take(&mut message.routing_key),
        };
        let mut targets = Vec::new();
        let headers = &message.envelope.properties.headers;
        if self
            .route(&exchange, &routing_key, headers, &mut targets)
            .is_err()
        {
            tracing::debug!(queue = %queue.name, exchange, "dead-letter exchange does not exist; message dropped");
            return;
        }
        if reason != Reason::Rejected {
            targets.retain(|&target| !is_cycle(&message.deaths, target));
        }
        let message = Message {
            exchange: Cow::Owned(exchange),
            routing_key,
            redelivered: false,
            returns: 0,
            expires_at: None,
            ..message
        };
        self.enqueue_all(&targets, message);
    }

    /// Gives unacked messages back to queue `id`: each return counts as a delivery, and on a
    /// quorum queue one past its delivery limit is dead-lettered instead. The others go back
    /// to their original place, ahead of every message never delivered, as in a classic queue.
    pub(super) fn return_messages(
        &mut self,
        id: QueueId,
        messages: impl IntoIterator<Item = Message>,
    ) {
        let limit = self.queues[id].args.delivery_limit;
        let mut returned = false;
        for mut message in messages {
            message.returns = message.returns.saturating_add(1);
            message.redelivered = true;
            if limit.is_some_and(|limit| message.returns > limit) {
                self.dead_letter(id, message, Reason::DeliveryLimit);
            } else {
                let ready = &mut self.queues[id].ready;
                let at = ready.partition_point(|m| m.seq < message.seq);
                ready.insert(at, message);
                returned = true;
            }
        }
        if returned && self.queues[id].args.ttl.is_some() {
            self.ensure_timer(id, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(queue: QueueId, reason: Reason) -> Death {
        Death { queue, reason }
    }

    #[test]
    fn a_cycle_needs_the_target_among_deaths_and_no_rejection_since() {
        let expired = [death(1, Reason::Expired), death(2, Reason::Expired)];
        assert!(is_cycle(&expired, 1));
        assert!(is_cycle(&expired, 2));
        assert!(!is_cycle(&expired, 3));
        let rejected = [death(1, Reason::Rejected), death(2, Reason::Expired)];
        assert!(
            !is_cycle(&rejected, 1),
            "a rejection in the loop is a deliberate retry loop"
        );
        assert!(is_cycle(&rejected, 2));
    }
}
