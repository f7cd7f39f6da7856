//! The broker's state behind one lock, and the path of a message from publish to a consumer.

use std::collections::HashMap;
use std::fmt;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::dead_letter::Reason;
use super::idle::IdleSignal;
use super::queue::{Message, Queue, QueueId};
use super::routing::Exchange;
use crate::envelope::Headers;
use crate::error::{Error, Result};
use crate::transport::{Delivery, Publish};

/// What the transport handles, streams and settlers share.
pub(super) struct Shared {
    state: Mutex<Broker>,
    pub(super) idle: Arc<IdleSignal>,
}

impl Shared {
    pub(super) fn new(recording: bool) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let idle = Arc::new(IdleSignal::default());
            Self {
                state: Mutex::new(Broker::new(weak.clone(), Arc::clone(&idle), recording)),
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
    pub(super) exchanges: HashMap<String, Exchange>,
    pub(super) queues: Vec<Queue>,
    pub(super) queue_ids: HashMap<String, QueueId>,
    pub(super) next_consumer: u64,
    /// Queues where something is still to happen; zero means quiescent.
    busy_queues: usize,
    /// Every successful publish, when recording.
    pub(super) log: Option<Vec<Publish>>,
    /// Reused buffer of routing results.
    scratch: Vec<QueueId>,
    idle: Arc<IdleSignal>,
    /// Back to the shared state, for the expiry timers this state spawns.
    pub(super) shared: Weak<Shared>,
    /// The runtime to spawn expiry timers on when called from outside one.
    pub(super) runtime: Option<Handle>,
}

impl Broker {
    fn new(shared: Weak<Shared>, idle: Arc<IdleSignal>, recording: bool) -> Self {
        Self {
            exchanges: HashMap::new(),
            queues: Vec::new(),
            queue_ids: HashMap::new(),
            next_consumer: 1,
            busy_queues: 0,
            log: recording.then(Vec::new),
            scratch: Vec::new(),
            idle,
            shared,
            runtime: Handle::try_current().ok(),
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
    pub(super) fn publish(&mut self, publish: Publish) -> Result<()> {
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
                if let Some(log) = &mut self.log {
                    log.push(publish.clone());
                }
                let message = Message::new(publish.exchange, publish.routing_key, publish.envelope);
                self.enqueue_all(&targets, message);
                Ok(())
            }
        };
        targets.clear();
        self.scratch = targets;
        outcome
    }

    /// Fills `targets` with the queues `exchange` routes the message to, each once.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the exchange does not exist.
    pub(super) fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &Headers,
        targets: &mut Vec<QueueId>,
    ) -> Result<()> {
        if exchange.is_empty() {
            targets.extend(self.queue_id(routing_key));
            return Ok(());
        }
        let exchange = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| Error::NotFound {
                what: "exchange",
                name: exchange.to_owned(),
            })?;
        exchange.router.route(routing_key, headers, targets);
        if targets.len() > 1 {
            // Two bindings to one queue still put one copy of the message in it.
            targets.sort_unstable();
            targets.dedup();
        }
        Ok(())
    }

    /// Puts a copy of `message` in each of `targets`; the body is shared, not copied.
    pub(super) fn enqueue_all(&mut self, targets: &[QueueId], message: Message) {
        if let Some((&last, rest)) = targets.split_last() {
            for &queue in rest {
                self.enqueue(queue, message.clone());
            }
            self.enqueue(last, message);
        }
    }

    /// Appends a message to a queue and delivers what can be delivered.
    pub(super) fn enqueue(&mut self, id: QueueId, mut message: Message) {
        let queue = &mut self.queues[id];
        if let Some(ttl) = queue.args.ttl {
            message.expires_at = Some(Instant::now() + ttl);
        }
        message.seq = queue.next_seq;
        queue.next_seq += 1;
        queue.ready.push_back(message);
        if queue.args.ttl.is_some() {
            self.ensure_timer(id, false);
        }
        self.drain(id);
    }

    // ===== deliver =====

    /// Delivers ready messages to consumers with credit, round-robin, then updates the
    /// queue's busy state.
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
            let Some(index) = queue.next_with_credit() else {
                break;
            };
            let Some(message) = queue.ready.pop_front() else {
                break;
            };
            queue.cursor = index + 1;
            let quorum = queue.args.quorum;
            let consumer = &mut queue.consumers[index];
            let tag = consumer.next_tag;
            let mut envelope = message.envelope.clone();
            if quorum && message.returns > 0 {
                envelope
                    .properties
                    .headers
                    .insert("x-delivery-count", message.returns);
            }
            let delivery = Delivery {
                tag,
                redelivered: message.redelivered,
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                envelope,
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

    /// Drops every ready message of `queue`; unacked deliveries stay.
    pub(super) fn purge(&mut self, queue: &str) -> Result<u64> {
        let id = self.queue_id(queue).ok_or_else(|| Error::NotFound {
            what: "queue",
            name: queue.to_owned(),
        })?;
        let ready = &mut self.queues[id].ready;
        let count = ready.len();
        ready.clear();
        self.refresh(id);
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }
}
