//! Dead-lettering, and returning unacked messages under a quorum queue's delivery limit.

use std::borrow::Cow;
use std::sync::Arc;

use super::broker::Broker;
use super::death::{self, Death};
use super::queue::{Message, QueueId};

/// Why a message is dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// Nacked or rejected without requeue.
    Rejected,
    /// Its TTL passed in the queue.
    Expired,
    /// Dropped from the head of a full queue (`x-max-length`, `drop-head`).
    MaxLen,
    /// Returned more often than the quorum queue's `x-delivery-limit`.
    DeliveryLimit,
}

impl Reason {
    /// RabbitMQ's name for it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::MaxLen => "maxlen",
            Self::DeliveryLimit => "delivery_limit",
        }
    }
}

impl Broker {
    /// Sends a message from queue `from` to its dead-letter exchange, recording the death in
    /// its headers; drops it when the queue has no dead-letter exchange, when that exchange
    /// does not exist or routes it nowhere, and leaves out the target queues that would close
    /// a cycle, as RabbitMQ 3.10 does (`rabbit_dead_letter`).
    pub(super) fn dead_letter(&mut self, from: QueueId, mut message: Message, reason: Reason) {
        let queue = &self.queues[from];
        let Some(target) = &queue.args.dead_letter else {
            return;
        };
        death::record(
            &mut Arc::make_mut(&mut message.envelope).properties.headers,
            &Death {
                reason,
                queue: &queue.name,
                exchange: &message.exchange,
                routing_key: &message.routing_key,
                time: self.unix_time(),
            },
        );
        let exchange = target.exchange.clone();
        let routing_key = match &target.routing_key {
            Some(key) => Cow::Owned(key.clone()),
            None => message.routing_key.clone(),
        };
        // To a direct reply-to address, as routing by RabbitMQ's default exchange does.
        self.deliver_reply(&exchange, &routing_key, &message.envelope);
        let mut targets = Vec::new();
        let headers = &message.envelope.properties.headers;
        if self
            .route(&exchange, &routing_key, headers, &mut targets)
            .is_err()
        {
            tracing::debug!(queue = %queue.name, exchange, "dead-letter exchange does not exist; message dropped");
            return;
        }
        // A rejection is a client's decision, never a cycle; the other reasons are checked
        // against the history the message carries, which a client may have republished.
        if reason != Reason::Rejected {
            targets.retain(|&target| {
                let name = &self.queues[target].name;
                let cycle = death::is_cycle(headers, name);
                if cycle {
                    tracing::debug!(queue = %name, "dead-letter cycle without a rejection; message dropped there");
                }
                !cycle
            });
        }
        let message = Message {
            exchange: Cow::Owned(exchange),
            routing_key,
            redelivered: false,
            returns: 0,
            expires_at: None,
            ..message
        };
        self.held.push_back((targets, message));
        if !self.holding {
            self.forward_held();
        }
    }

    /// Runs `act` with the dead letters it sends held, then forwards them in the order sent
    /// (unless an outer call holds them still).
    ///
    /// A dead letter is a publish of its own, from the queue that sent it, so it reaches its
    /// queues after whatever was already on its way: several heads one operation drops all
    /// leave before the first of them lands anywhere, and a dead letter that makes another
    /// queue dead-letter in turn is forwarded after those sent before it, breadth first. On
    /// RabbitMQ each queue is a process and each dead letter a message between them; two
    /// queues dead-lettering into each other's length limit end in this order.
    pub(super) fn holding<R>(&mut self, act: impl FnOnce(&mut Self) -> R) -> R {
        let holding = std::mem::replace(&mut self.holding, true);
        let result = act(self);
        self.holding = holding;
        if !holding {
            self.forward_held();
        }
        result
    }

    /// Forwards the held dead letters to their queues in the order sent, and those they
    /// cause after them. Does nothing when a forward is already under way: that one goes on
    /// with them.
    pub(super) fn forward_held(&mut self) {
        if self.forwarding {
            return;
        }
        self.forwarding = true;
        while let Some((mut targets, message)) = self.held.pop_front() {
            // A queue decides as the dead letter arrives, after those before it: a full
            // `reject-publish` queue takes the first of two and drops the second.
            targets.retain(|&target| self.queues[target].takes_dead_letter());
            self.enqueue_all(&targets, message);
        }
        self.forwarding = false;
    }

    /// Gives unacked messages back to queue `id`: `requeued` by a settlement (nack or reject
    /// with requeue), or returned because their consumer's channel closed. A `counted` return
    /// counts as a delivery, and on a quorum queue one past its delivery limit is dead-lettered
    /// instead; one that is not (a requeueing nack from RabbitMQ 4.3) only comes back
    /// `redelivered`.
    ///
    /// Where they go, as RabbitMQ 3.10 puts them:
    ///
    /// * a classic queue puts each back at its original place, ahead of every message never
    ///   delivered, and applies its length limit before it delivers again;
    /// * a quorum queue keeps returned messages apart, delivered before the others, in the
    ///   order they came back (`rabbit_fifo`'s `returns`), except that a requeue on a queue
    ///   without a delivery limit enqueues the message afresh at the back (`rabbit_fifo`
    ///   turns such a `return` into a `requeue` command).
    pub(super) fn return_messages(
        &mut self,
        id: QueueId,
        messages: impl IntoIterator<Item = Message>,
        counted: bool,
        requeued: bool,
    ) {
        let limit = self.queues[id].args.delivery_limit;
        let quorum = self.queues[id].args.quorum;
        let mut returned = false;
        let mut past_limit = Vec::new();
        for mut message in messages {
            if counted {
                message.returns = message.returns.saturating_add(1);
            }
            message.redelivered = true;
            if counted && limit.is_some_and(|limit| message.returns > limit) {
                past_limit.push(message);
            } else {
                let queue = &mut self.queues[id];
                if quorum && requeued && limit.is_none() {
                    message.seq = queue.next_seq;
                    queue.next_seq += 1;
                } else if quorum {
                    message.seq = queue.next_return;
                    queue.next_return += 1;
                }
                let ready = &mut queue.ready;
                let at = ready.partition_point(|m| (m.rank, m.seq) < (message.rank, message.seq));
                ready.insert(at, message);
                returned = true;
            }
        }
        if returned && self.queues[id].args.ttl.is_some() {
            self.ensure_timer(id, true);
        }
        if returned && !quorum {
            // A classic queue applies its length limit to what came back before it delivers
            // again (`rabbit_amqqueue_process:requeue_and_run` drops the head first), so a
            // returned message can push out the head, itself included, rather than go to a
            // consumer with credit.
            self.apply_limit(id);
        }
        // Before the queue delivers again and finds its expired messages, as RabbitMQ 3.10's
        // `return` does.
        self.holding(|broker| {
            for message in past_limit {
                broker.dead_letter(id, message, Reason::DeliveryLimit);
            }
        });
    }
}
