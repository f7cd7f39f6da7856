//! The broker's state behind one lock, and the path of a message from publish to a consumer.

use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::dead_letter::Reason;
use super::exchange::{Exchange, ExchangeId};
use super::idle::IdleSignal;
use super::names::NameMap;
use super::queue::{Message, Queue, QueueId};
use super::reply_to::Requesters;
use crate::broker::BrokerVersion;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::transport::{Delivery, Publish};

/// What the transport handles, streams and settlers share.
pub(super) struct Shared {
    state: Mutex<Broker>,
    pub(super) idle: Arc<IdleSignal>,
}

impl Shared {
    pub(super) fn new(recording: bool, version: BrokerVersion) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let idle = Arc::new(IdleSignal::default());
            Self {
                state: Mutex::new(Broker::new(
                    weak.clone(),
                    Arc::clone(&idle),
                    recording,
                    version,
                )),
                idle,
            }
        })
    }

    /// Locks the broker. The lock is never held across an await.
    pub(super) fn lock(&self) -> MutexGuard<'_, Broker> {
        // A panic under the lock leaves at worst one operation half done; the broker stays
        // usable, as a broker outlives a crashed client.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("MemoryBroker");
        // `try_lock`: formatting must not deadlock inside code that holds the lock.
        if let Ok(broker) = self.state.try_lock() {
            out.field("exchanges", &broker.exchanges.len())
                .field("queues", &broker.queues.len())
                .field("busy_queues", &broker.busy_queues);
        }
        out.finish_non_exhaustive()
    }
}

/// Everything the broker holds.
pub(super) struct Broker {
    /// Declared exchanges; the default exchange `""` is implicit.
    pub(super) exchanges: Vec<Exchange>,
    pub(super) exchange_ids: NameMap<ExchangeId>,
    pub(super) queues: Vec<Queue>,
    pub(super) queue_ids: NameMap<QueueId>,
    pub(super) next_consumer: u64,
    /// The number of the last subscription's queue, `amq.gen-<n>`.
    pub(super) next_subscription: u64,
    /// The direct reply-to channels.
    pub(super) requesters: Requesters,
    /// Queues where something is still to happen; zero means quiescent.
    busy_queues: usize,
    /// Every successful publish, when recording.
    pub(super) log: Option<Vec<Publish>>,
    /// Reused buffer of routing results.
    scratch: Vec<QueueId>,
    /// Dead letters sent and not yet forwarded to their queues; see [`Broker::holding`].
    pub(super) held: VecDeque<(Vec<QueueId>, Message)>,
    /// Whether dead letters are being held rather than forwarded at once.
    pub(super) holding: bool,
    /// Whether the held dead letters are being forwarded.
    pub(super) forwarding: bool,
    idle: Arc<IdleSignal>,
    /// Back to the shared state, for the expiry timers this state spawns.
    pub(super) shared: Weak<Shared>,
    /// The runtime to spawn expiry timers on when called from outside one.
    pub(super) runtime: Option<Handle>,
    /// The wall clock and tokio's clock at creation; see [`Broker::unix_time`].
    epoch: (SystemTime, Instant),
    /// The RabbitMQ version whose behaviour is emulated where versions differ: quorum queues'
    /// default delivery limit, and which returns count toward it.
    pub(super) version: BrokerVersion,
}

impl Broker {
    fn new(
        shared: Weak<Shared>,
        idle: Arc<IdleSignal>,
        recording: bool,
        version: BrokerVersion,
    ) -> Self {
        Self {
            exchanges: Vec::new(),
            exchange_ids: NameMap::default(),
            queues: Vec::new(),
            queue_ids: NameMap::default(),
            next_consumer: 1,
            next_subscription: 0,
            requesters: Requesters::default(),
            busy_queues: 0,
            log: recording.then(Vec::new),
            scratch: Vec::new(),
            held: VecDeque::new(),
            holding: false,
            forwarding: false,
            idle,
            shared,
            runtime: Handle::try_current().ok(),
            // On a whole second, so that on a paused clock the broker's time and tokio's
            // millisecond timers agree: a job due at 10:00:00 starts at 10:00:00.000.
            epoch: (whole_second(SystemTime::now()), Instant::now()),
            version,
        }
    }

    /// The queue named `name`.
    pub(super) fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.queue_ids.get(name).copied()
    }

    /// Whether nothing is left to happen.
    pub(super) fn is_idle(&self) -> bool {
        self.busy_queues == 0
    }

    // ===== publish and route =====

    /// Routes and enqueues one message; the confirm is this call returning.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing exchange, [`Error::Unroutable`] for a `mandatory`
    /// message no queue takes, and [`Error::Nacked`] when a target queue refuses it
    /// (`x-overflow = reject-publish`): RabbitMQ nacks such a publish even though the other
    /// queues took the message, and so does this.
    ///
    /// A direct reply-to address as the key on the default exchange reaches its requester, if
    /// alive, and no queue: so with `mandatory` it is [`Error::Unroutable`] even when a
    /// requester got it, as in RabbitMQ 3.10 (see the `reply_to` module).
    pub(super) fn publish(&mut self, publish: Publish) -> Result<()> {
        self.deliver_reply(&publish.exchange, &publish.routing_key, &publish.envelope);
        let mut targets = mem::take(&mut self.scratch);
        let headers = &publish.envelope.properties.headers;
        let routed = self.route(
            &publish.exchange,
            &publish.routing_key,
            headers,
            &mut targets,
        );
        let outcome = match routed {
            Err(err) => Err(err),
            Ok(()) if targets.is_empty() && publish.mandatory => Err(Error::Unroutable {
                exchange: publish.exchange.into_owned(),
                routing_key: publish.routing_key.into_owned(),
            }),
            Ok(()) => {
                let refused = targets.iter().any(|&q| self.queues[q].refuses_publish());
                if refused {
                    targets.retain(|&q| !self.queues[q].refuses_publish());
                } else if let Some(log) = &mut self.log {
                    // A nacked publish is not a successful one, even if some queue took it.
                    log.push(publish.clone());
                }
                let exchange = refused.then(|| publish.exchange.to_string());
                let message = Message::new(publish.exchange, publish.routing_key, publish.envelope);
                self.enqueue_all(&targets, message);
                match exchange {
                    Some(exchange) => Err(Error::Nacked { exchange }),
                    None => Ok(()),
                }
            }
        };
        targets.clear();
        self.scratch = targets;
        outcome
    }

    /// The broker's time: the wall clock at its creation plus tokio's time since, so that on a
    /// paused clock it moves with the virtual time.
    pub(super) fn now(&self) -> SystemTime {
        let (wall, at) = self.epoch;
        wall + Instant::now().saturating_duration_since(at)
    }

    /// [`Broker::now`] as Unix seconds, for `x-death` entries.
    pub(super) fn unix_time(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }

    /// Puts a copy of `message` in each of `targets` (the body is shared, not copied), then
    /// lets each deliver it and apply its length limit, then forwards what they dead-lettered.
    ///
    /// Every queue takes the message before any of them acts on it, as in RabbitMQ, where a
    /// publish reaches all its queues at once and what a queue then dead-letters (a head
    /// dropped for the new message, say) is a publish of its own, reaching the other queues
    /// after the message that caused it.
    pub(super) fn enqueue_all(&mut self, targets: &[QueueId], message: Message) {
        self.take_and_drain(targets, message);
        self.forward_held();
    }

    /// Puts `message` in each of `targets`, then lets each deliver it and apply its length
    /// limit, holding what they dead-letter.
    fn take_and_drain(&mut self, targets: &[QueueId], message: Message) {
        let holding = mem::replace(&mut self.holding, true);
        if let Some((&last, rest)) = targets.split_last() {
            for &queue in rest {
                self.push(queue, message.clone());
            }
            self.push(last, message);
        }
        for &queue in targets {
            if !self.queues[queue].deleted {
                self.drain(queue);
            }
        }
        self.holding = holding;
    }

    /// Appends a message to a queue (behind the messages of its priority and above, in a queue
    /// with priorities), without delivering it yet.
    fn push(&mut self, id: QueueId, mut message: Message) {
        let queue = &mut self.queues[id];
        if queue.deleted {
            return;
        }
        if let Some(ttl) = queue.args.ttl {
            message.expires_at = Some(Instant::now() + ttl);
        }
        message.seq = queue.next_seq;
        queue.next_seq += 1;
        if let Some(max) = queue.args.max_priority {
            // RabbitMQ delivers a priority above the queue's highest as the highest.
            let priority = message.envelope.properties.priority.unwrap_or(0).min(max);
            message.rank = max - priority;
            let at = queue.ready.partition_point(|m| m.rank <= message.rank);
            queue.ready.insert(at, message);
        } else {
            // A rank from a queue it was dead-lettered from means nothing here.
            message.rank = 0;
            queue.ready.push_back(message);
        }
        if queue.args.ttl.is_some() {
            self.ensure_timer(id, false);
        }
    }

    // ===== deliver =====

    /// Delivers ready messages to consumers with credit (round-robin, or to the single active
    /// consumer), applies the queue's length limit to what is left, then updates the queue's
    /// busy state.
    pub(super) fn drain(&mut self, id: QueueId) {
        let now = self.queues[id].args.ttl.map(|_| Instant::now());
        loop {
            let queue = &mut self.queues[id];
            let Some(head) = queue.ready.front() else {
                break;
            };
            if let (Some(now), Some(at)) = (now, head.expires_at)
                && now > at
            {
                // RabbitMQ never delivers an expired message; the timer may not have run yet.
                if let Some(message) = queue.ready.pop_front() {
                    self.dead_letter(id, message, Reason::Expired);
                }
                continue;
            }
            let Some(index) = queue.next_recipient() else {
                break;
            };
            let Some(message) = queue.ready.pop_front() else {
                break;
            };
            queue.cursor = index + 1;
            let quorum = queue.args.quorum;
            let consumer = &mut queue.consumers[index];
            let tag = consumer.next_tag;
            let envelope = if quorum && message.returns > 0 {
                // The count is the delivery's, not the message's: the copy carries it.
                let mut envelope = Envelope::clone(&message.envelope);
                envelope
                    .properties
                    .headers
                    .insert("x-delivery-count", message.returns);
                Arc::new(envelope)
            } else {
                Arc::clone(&message.envelope)
            };
            let delivery = Delivery {
                tag,
                redelivered: message.redelivered,
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                envelope,
                // Replies go through `publish_unconfirmed`, which is as immediate here.
                reply: None,
            };
            if consumer.send(delivery) {
                consumer.next_tag += 1;
                consumer.unacked.insert(tag, message);
                queue.unacked += 1;
            } else {
                // The stream is gone without having cancelled: treat it as cancelled. The
                // message was the head, so it goes back there.
                consumer.sender = None;
                queue.active_consumers -= 1;
                queue.ready.push_front(message);
            }
        }
        // After delivering, as both queue types do: a message a consumer takes at once never
        // counts toward the limit.
        self.apply_limit(id);
        self.refresh(id);
    }

    /// Recounts whether queue `id` is busy, and signals quiescence when the last busy queue
    /// calms down.
    pub(super) fn refresh(&mut self, id: QueueId) {
        let queue = &mut self.queues[id];
        let busy = queue.is_busy();
        if busy == queue.busy {
            return;
        }
        queue.busy = busy;
        if busy {
            self.busy_queues += 1;
        } else {
            self.busy_queues -= 1;
            if self.busy_queues == 0 {
                self.idle.signal();
            }
        }
    }

    /// Deletes `queue`: its ready messages go, its consumers' streams end (their unacked
    /// deliveries stay settleable), and a queue declared later under its name is a new one. A
    /// missing queue is no error, as in RabbitMQ 3.10.
    pub(super) fn delete_queue(&mut self, queue: &str) {
        let Some(id) = self.queue_ids.remove(queue) else {
            return;
        };
        let queue = &mut self.queues[id];
        queue.deleted = true;
        queue.ready.clear();
        for consumer in &mut queue.consumers {
            if consumer.sender.take().is_some() {
                queue.active_consumers -= 1;
            }
        }
        self.refresh(id);
    }

    /// Drops every ready message of `queue`; unacked deliveries stay.
    pub(super) fn purge(&mut self, queue: &str) -> Result<u64> {
        let id = self.queue_id(queue).ok_or_else(|| Error::NotFound {
            what: "queue",
            name: queue.to_owned(),
        })?;
        let ready = &mut self.queues[id].ready;
        let count = ready.len();
        ready.clear();
        self.apply_limit(id);
        self.refresh(id);
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }
}

/// `time` rounded down to a whole second.
fn whole_second(time: SystemTime) -> SystemTime {
    time.duration_since(UNIX_EPOCH).map_or(time, |since| {
        UNIX_EPOCH + Duration::from_secs(since.as_secs())
    })
}
