//! An in-process broker with RabbitMQ's semantics, on tokio's clock.
//!
//! [`MemoryTransport`] is not a mock: it is a second implementation of the broker behaviour the
//! worker engine relies on, so a unit test of a job runs the real retry and error-queue code.
//! Time comes from tokio, and so does the broker's wall clock ([`Transport::now`]), so under
//! `#[tokio::test(start_paused = true)]` retry delays, delayed jobs and schedules (queue
//! TTLs) pass instantly and deterministically.
//!
//! # What it emulates, and what it does not
//!
//! | area | emulated | not emulated |
//! | --- | --- | --- |
//! | exchanges | `direct` (exact key); `topic` (`*` one word, `#` zero or more); `fanout`; `headers` (`x-match` `all` (default) or `any`, also `all-with-x`/`any-with-x`; binding arguments starting with `x-` ignored; a void value asks for presence); the default exchange `""`, routing to the queue named by the key; exchange-to-exchange bindings between exchanges of any types (not the default exchange), routing the same message on with the same key and headers, each exchange visited once per routing (which ends binding loops); one copy per queue however many bindings or paths lead to it | alternate exchanges, CC/BCC headers, deletion |
//! | declaration | idempotent (bindings too); an exchange of another type is [`Error::Topology`] naming both; a queue with other arguments is [`Error::QueueMismatch`] (`none` for a missing side); passive and verify mode create nothing and report what is missing as [`Error::NotFound`], exchange bindings' two exchanges included; `message_count` counts ready messages, `purge` drops them | RabbitMQ's passive declare checks only existence, this one also types and arguments (so passive and verify act alike); neither can check bindings passively. Server-named, exclusive and auto-delete queues |
//! | publish | confirmed at once (the returned future is ready); a `mandatory` message no queue takes is [`Error::Unroutable`] (queues reached through exchange bindings count); a missing exchange is [`Error::NotFound`]; a publish a `reject-publish` queue refuses is [`Error::Nacked`], though the other queues take it; bodies are shared, not copied, between queues; a message reaches all its queues before any of them delivers it or dead-letters because of it (a head it pushes out of a full queue arrives in another queue after it, as RabbitMQ's separate dead-letter publish does) | other negative confirms, flow control, memory and disk alarms; how messages from different senders (a channel, queues dead-lettering) interleave in a queue, which RabbitMQ leaves to the race between them: 3.10.8 put a classic queue's dead letter ahead of the publish that caused it in a quorum queue in one scenario and behind it in another (the differential tests compare each sender's messages in order, not how they interleave) |
//! | consume | push delivery to consumers with prefetch credit (0 is unlimited), round-robin among a queue's consumers; tags 1, 2, 3… per consumer, each consumer on its own channel; `x-single-active-consumer` (quorum and classic): only the earliest attached consumer not cancelled receives, the next takes over when it is cancelled or its channel closes, and gets the messages that channel returns first (RabbitMQ does not promise that order); [`Transport::queue_stats`] reports consumers as a passive declare does: on a classic queue those not cancelled, on a quorum queue those it delivers to (not the waiting consumers of a single-active-consumer queue, but a cancelled one while it holds unacked deliveries) | several consumers on one channel, consumer priorities, the consumer timeout; two bugs of RabbitMQ 3.10.8's single active consumer, both found by differential testing: a classic queue does not deliver to the consumer that becomes active when the active one is cancelled, and crashes (losing its messages) at the next publish; a quorum queue with a TTL hands nothing over to the next consumer when the active one's channel closes, and its messages expire unseen |
//! | settle | ack and nack, `multiple` (tag 0 with `multiple` is everything); nack (or reject) with requeue gives the message back `redelivered`: a classic queue puts it at its original place, ahead of every message never delivered, and applies its length limit before delivering again (`requeue_and_run`); a quorum queue delivers returned messages before the others, in the order they came back (`rabbit_fifo`'s returns), except that without a delivery limit RabbitMQ 3.10 enqueues a requeued message afresh at the back; a closed channel's messages come back the same way; without, dead-letters it (`rejected`); an unknown tag is [`Error::Broker`] and closes the channel as RabbitMQ's `PRECONDITION_FAILED` does | RabbitMQ before 3.11 credits a consumer twice for a message its requeue sends past a quorum queue's delivery limit (rabbitmq-server#5609), so the consumer may then hold one delivery more than its prefetch; this broker keeps to the prefetch, as 3.11 does |
//! | cancel, close, disconnect | dropping the stream, or the settler's `cancel`, cancels (unacked deliveries stay settleable); dropping stream and settler closes the channel and returns its unacked messages, `redelivered`; [`MemoryTransport::disconnect`] closes every channel at once, so each unacked message goes back once | persistence and broker crashes |
//! | direct reply-to | [`Transport::requester`]: a channel consuming `amq.rabbitmq.reply-to` (no-ack) with its own address `amq.rabbitmq.reply-to.<n>`, which its publisher writes into each request's `reply_to` (whatever it carried is replaced) before publishing as [`Transport::publish`] does; a publish (or dead-lettering) to the default exchange with a live address as key goes straight into that requester's stream, settled on arrival and in no queue; to a dead or unknown address it is dropped. As in RabbitMQ 3.10 to 4.1, such a message reaches no queue, so with `mandatory` it is [`Error::Unroutable`] even when a live requester got it (RabbitMQ 4.2 counts it routed instead, live or not): responders reply without `mandatory`. Dropping the stream cancels the reply consumer and kills the address; a request published after that fails with [`Error::Broker`] (RabbitMQ's `PRECONDITION_FAILED`) and closes the channel, as a request to a missing exchange does after its [`Error::NotFound`] (the stream ends, later requests fail with [`Error::Connection`]); dropping stream and publisher closes it. [`MemoryTransport::disconnect`] ends every stream (unread replies are lost) and fails the publishers with [`Error::Connection`]. Replies never keep [`MemoryTransport::until_idle`] waiting. See the `reply_to` module | RabbitMQ's opaque address suffix (here a counter); declaring an address to check that its requester is alive; AMQP 1.0 requesters |
//! | subscriptions, holds, deletion | [`Transport::hold`]: an exclusive consumer, refused (`None`) while the queue has an active consumer; while it is active, other consumers are refused with [`Error::Broker`] (RabbitMQ's `ACCESS_REFUSED`); it lets go when its stream is dropped or its channel closes. [`Transport::subscribe`]: a queue `amq.gen-<n>` bound to the exchange with each key (a missing exchange is [`Error::NotFound`]), read by a stream that settles each message as it hands it out, deleted when the stream is dropped or [`MemoryTransport::disconnect`] ends it; [`Transport::delete_queue`]: ready messages go, consumers' streams end, a missing queue is no error, and a queue declared later under the name is a new one | a deleted queue's bindings stay behind and count as routes for `mandatory` (what they route is dropped) |
//! | quorum queues | `x-delivery-limit`: every return (requeue, channel close, disconnect) counts (but see the versions row), later deliveries carry `x-delivery-count`, and a return past the limit dead-letters (`delivery_limit`) | replication; `x-dead-letter-strategy` is accepted and changes nothing without crashes (dead-lettering is immediate) |
//! | TTL | `x-message-ttl`: messages expire that long after entering the queue, head first, and dead-letter (`expired`); an expired message is never delivered | per-message TTL (`expiration`), `x-expires` |
//! | dead-lettering | to `x-dead-letter-exchange` (`""` allowed) with `x-dead-letter-routing-key` or the message's own key, keeping properties and body, as RabbitMQ 3.10 does: the `x-death` array (one table per queue and reason: `count`, `exchange`, `queue`, `reason`, `routing-keys`, `time` on tokio's clock; newest first, the others regrouped in reverse as 3.10 does), and `x-first-death-reason`, `-queue` and `-exchange` on a message without `x-death`; dropped without a dead-letter exchange, when it routes nowhere, or, for a queue named in the message's own `x-death` with no rejection up to it, in a cycle (so a republished message keeps its history and a stripped one starts afresh); dead letters reach their queues in the order sent, and those they cause after them (breadth first, as messages between RabbitMQ's queue processes). See the `death` module | `x-last-death-*` (3.13 added them; 3.10 writes none, nor does this broker); `original-expiration`; a malformed `x-death` is reset (not an array) or loses its entries that are not tables, where 3.10 crashes |
//! | limits | `x-max-length` counting ready messages (not unacked ones) after delivery, on both queue types (but before it for the messages a classic queue takes back from a consumer); `x-overflow = drop-head` (the default) drops or dead-letters (`maxlen`) the oldest ready message, so `x-max-length` 1 is a last-value queue (several heads dropped at once by a quorum queue are dead-lettered last first, as RabbitMQ 3.10 does); `reject-publish` refuses, on a classic queue, a publish that would go over the limit, and on a quorum queue every publish from when it goes over (it takes one more, as RabbitMQ 3.10's does) until it is back to 80%; dead-lettering into a full `reject-publish` queue drops the message on a classic queue and goes past the limit on a quorum queue. See the `limit` module | `x-max-length-bytes`, `x-overflow = reject-publish-dlx`: refused at declaration rather than silently ignored, as are `x-expires` and stream queues; at-least-once dead-lettering into a full `reject-publish` queue, which RabbitMQ holds in its source queue until the target has room; when a quorum `reject-publish` queue refuses and takes publishes again, which RabbitMQ 3.10 tells each publishing channel asynchronously (differential testing saw it take publishes above 80% of its limit) |
//! | priorities | `x-max-priority` (1 to 255) on classic queues: a message is delivered after every ready message of a higher priority and of its own published before it; no priority is 0, and one above the queue's highest counts as the highest; a returned message goes back to its place among its priority; on a quorum queue the argument is refused at declaration, as RabbitMQ 3.10 refuses it | `x-max-priority` together with `x-message-ttl` or `x-max-length` (refused at declaration); quorum queues' two-level priorities of RabbitMQ 4 |
//! | versions | RabbitMQ 3.10.8 by default, or the version given to [`MemoryTransport::emulating`]: from 4.0 a quorum queue declared without `x-delivery-limit` has a limit of 20 and a negative one has none (before 4.0 a negative one dead-letters at the first return); from 4.3 a requeueing nack does not count toward the limit, while a requeueing reject, a closed channel and a disconnect do. Declarations are adapted to the version as the AMQP transport adapts them to its broker's ([`BrokerBehaviour::adapt`](crate::broker::BrokerBehaviour::adapt)) | the deprecated features RabbitMQ 4 refuses (the framework never uses them), the other differences between versions |
//!
//! # Checked against RabbitMQ
//!
//! The `jobs-differential` crate runs random scenarios of these operations on this broker and
//! on RabbitMQ 3.10.8 and compares what a client observes (`docs/testing.md`, "Differential
//! testing"). What it found was either fixed, each with a test in `tests/differential.rs`
//! (quorum queues' order of requeued and returned messages, the consumers a quorum queue
//! reports, a publish reaching all its queues before what it makes them dead-letter, a settlement's
//! dead-letters arriving after the queue delivered with the credit it freed, the reverse order
//! in which a quorum queue dead-letters what it drops at once, its delivery limit's
//! dead-letters coming before what a return finds expired, a classic
//! queue's length limit applied to returned messages before delivery, dead letters forwarded
//! breadth first, a full queue deciding on each dead letter as it arrives), or is RabbitMQ's own race or bug, listed in the table as not emulated (how
//! messages from different senders interleave in a queue, a consumer's
//! double credit, two single-active-consumer hand-overs, a quorum `reject-publish` queue's
//! asynchronous refusals); the at-least-once limit was known before.
//!
//! # Quiescence
//!
//! [`MemoryTransport::until_idle`] waits until no delivery is unacked, no queue with a consumer
//! holds a ready message and no queue with a TTL holds a message at all. On a paused clock,
//! tokio then advances time to the next expiry by itself. Direct replies never count: they are
//! settled on arrival in their requester's stream, so one left unread there is the client's
//! business, not the broker's, and waiting for it would hang; since a reply is in its stream as
//! soon as it is published, a quiescent broker already holds every reply sent before.

mod broker;
mod consumer;
mod dead_letter;
mod death;
mod declare;
mod exchange;
mod expiry;
mod idle;
mod limit;
mod names;
mod queue;
mod reply_to;
mod routing;
mod single_active;
mod subscribe;
mod unacked;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use self::broker::Shared;
use crate::broker::BrokerVersion;
use crate::envelope::Envelope;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::topology::Topology;
use crate::transport::{
    BoxFuture, Consumer, Declare, Publish, QueueStats, ReplyStream, Requester, Transport,
};

/// An in-process broker with RabbitMQ's semantics; see the [module docs](self) for what it
/// emulates and what it does not.
///
/// Clones share one broker.
///
/// # Examples
///
/// ```
/// use jobs_core::transport::memory::MemoryTransport;
/// use jobs_core::transport::{Declare, Publish, Transport};
/// use jobs_core::topology::{QueueSpec, Topology};
/// use jobs_core::{Envelope, Headers};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> jobs_core::Result<()> {
/// let broker = MemoryTransport::new();
/// let topology = Topology {
///     queues: vec![QueueSpec { name: "work".into(), arguments: Headers::new() }],
///     ..Topology::default()
/// };
/// broker.declare(&topology, Declare::Create).await?;
/// let publish = Publish {
///     exchange: "".into(), // the default exchange routes to the queue named by the key
///     routing_key: "work".into(),
///     mandatory: true,
///     envelope: Envelope::default(),
/// };
/// broker.publish(publish).await?;
/// assert_eq!(broker.queue_len("work"), Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    shared: Arc<Shared>,
}

impl MemoryTransport {
    /// An empty broker: only the default exchange exists. It emulates RabbitMQ
    /// [`3.10.8`](Self::DEFAULT_VERSION) where versions differ.
    #[must_use]
    pub fn new() -> Self {
        Self::emulating(Self::DEFAULT_VERSION)
    }

    /// An empty broker that also keeps a log of every successful publish; see
    /// [`MemoryTransport::published`].
    #[must_use]
    pub fn recording() -> Self {
        Self {
            shared: Shared::new(true, Self::DEFAULT_VERSION),
        }
    }

    /// The RabbitMQ version a broker made by [`new`](Self::new) emulates, and reports as
    /// [`Transport::broker_version`].
    pub const DEFAULT_VERSION: BrokerVersion = BrokerVersion::new(3, 10, 8);

    /// An empty broker that emulates RabbitMQ `version` where versions differ (see the
    /// module docs' versions row), and reports it as [`Transport::broker_version`]: for
    /// tests of what the framework does on RabbitMQ 4.
    #[must_use]
    pub fn emulating(version: BrokerVersion) -> Self {
        Self {
            shared: Shared::new(false, version),
        }
    }

    /// Every successful publish so far, in order; empty unless the broker was made with
    /// [`MemoryTransport::recording`]. Dead-lettering by the broker is not a publish.
    #[must_use]
    pub fn published(&self) -> Vec<Publish> {
        self.shared.lock().log.clone().unwrap_or_default()
    }

    /// Resolves once the broker is quiescent: no unacked delivery, no ready message in a
    /// queue with a consumer, and no message in a queue with a message TTL.
    ///
    /// It waits for a signal rather than polling, so on a paused clock tokio advances time to
    /// the next expiry when everything else is waiting.
    pub async fn until_idle(&self) {
        self.shared.idle.wait(|| self.is_idle()).await;
    }

    /// Whether the broker is quiescent now; see [`MemoryTransport::until_idle`].
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.shared.lock().is_idle()
    }

    /// The ready messages of `queue`, head first (unacked ones are not included); empty when
    /// there is no such queue.
    #[must_use]
    pub fn messages(&self, queue: &str) -> Vec<Envelope> {
        let broker = self.shared.lock();
        broker.queue_id(queue).map_or_else(Vec::new, |id| {
            broker.queues[id]
                .ready
                .iter()
                .map(|m| Envelope::clone(&m.envelope))
                .collect()
        })
    }

    /// How often each ready message of `queue` went back to it unsettled (requeued, or returned
    /// by a closed channel), head first: what a quorum queue counts toward its delivery limit
    /// and shows as `x-delivery-count`. Empty when there is no such queue.
    #[must_use]
    pub fn returns(&self, queue: &str) -> Vec<u32> {
        let broker = self.shared.lock();
        broker.queue_id(queue).map_or_else(Vec::new, |id| {
            broker.queues[id].ready.iter().map(|m| m.returns).collect()
        })
    }

    /// How many messages of `queue` are ready; `None` when there is no such queue.
    #[must_use]
    pub fn queue_len(&self, queue: &str) -> Option<usize> {
        let broker = self.shared.lock();
        broker
            .queue_id(queue)
            .map(|id| broker.queues[id].ready.len())
    }

    /// How many deliveries from `queue` are unsettled; 0 when there is no such queue.
    #[must_use]
    pub fn unacked(&self, queue: &str) -> usize {
        let broker = self.shared.lock();
        broker
            .queue_id(queue)
            .map_or(0, |id| broker.queues[id].unacked)
    }

    /// Acts like a lost connection: every consumer's stream ends and its unacked messages go
    /// back to their queues, `redelivered` and counted toward a quorum queue's delivery limit.
    /// Every requester's reply stream ends too, unread replies with it, and its address is
    /// dead. Settling on the old consumers and publishing on the old requesters fail with
    /// [`Error::Connection`]; new consumers, requesters and publishes work as before.
    pub fn disconnect(&self) {
        let mut broker = self.shared.lock();
        broker.disconnect();
        broker.disconnect_requesters();
    }
}

/// A publish's confirm, already in: ready at once, unless the task has spent its budget.
///
/// A socket write yields now and then; so does this, or a tight enqueue loop would starve the
/// consumers on its runtime and pile every job into the queue first.
struct Confirmed;

impl Future for Confirmed {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match tokio::task::coop::poll_proceed(cx) {
            Poll::Ready(budget) => {
                budget.made_progress();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for MemoryTransport {
    fn broker_version(&self) -> Option<BrokerVersion> {
        Some(self.shared.lock().version)
    }

    fn declare<'a>(&'a self, topology: &'a Topology, mode: Declare) -> BoxFuture<'a, Result<()>> {
        let outcome = self.shared.lock().declare(topology, mode);
        Box::pin(std::future::ready(outcome))
    }

    /// The wall clock at the broker's creation plus tokio's time since: on a paused clock,
    /// delays and schedules see the virtual time.
    fn now(&self) -> std::time::SystemTime {
        self.shared.lock().now()
    }

    /// Routes and enqueues the message before returning: the confirm is immediate, and the
    /// returned future is already resolved.
    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        match self.shared.lock().publish(publish) {
            // A future of no size: boxing it allocates nothing.
            Ok(()) => Box::pin(Confirmed),
            Err(err) => Box::pin(async move {
                tokio::task::coop::consume_budget().await;
                Err(err)
            }),
        }
    }

    fn consume<'a>(&'a self, queue: &'a str, prefetch: u16) -> BoxFuture<'a, Result<Consumer>> {
        let outcome = self
            .shared
            .lock()
            .consume(queue, prefetch)
            .map(|attached| attached.into_consumer(Arc::clone(&self.shared)));
        Box::pin(std::future::ready(outcome))
    }

    fn message_count<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        let outcome = self.queue_len(queue).map_or_else(
            || Err(not_found(queue)),
            |len| Ok(u64::try_from(len).unwrap_or(u64::MAX)),
        );
        Box::pin(std::future::ready(outcome))
    }

    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats>> {
        let broker = self.shared.lock();
        let outcome = broker.queue_id(queue).map_or_else(
            || Err(not_found(queue)),
            |id| {
                let queue = &broker.queues[id];
                Ok(QueueStats::new(
                    u64::try_from(queue.ready.len()).unwrap_or(u64::MAX),
                    Some(u32::try_from(queue.reported_consumers()).unwrap_or(u32::MAX)),
                ))
            },
        );
        Box::pin(std::future::ready(outcome))
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        let outcome = self.shared.lock().purge(queue);
        Box::pin(std::future::ready(outcome))
    }

    /// A channel consuming `amq.rabbitmq.reply-to` with its own address; see the module docs'
    /// direct reply-to row. The returned future is already resolved.
    fn requester(&self) -> BoxFuture<'_, Result<Requester>> {
        let opened = self.shared.lock().open_requester();
        let requester = opened.into_requester(Arc::clone(&self.shared));
        Box::pin(std::future::ready(Ok(requester)))
    }

    /// A queue `amq.gen-<n>` bound with `keys`, read by the stream and deleted with it; see the
    /// module docs' subscriptions row. The returned future is already resolved.
    fn subscribe<'a>(
        &'a self,
        exchange: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<ReplyStream>> {
        Box::pin(std::future::ready(subscribe::subscribe(
            &self.shared,
            exchange,
            keys,
        )))
    }

    fn delete_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<()>> {
        self.shared.lock().delete_queue(queue);
        Box::pin(std::future::ready(Ok(())))
    }

    /// An exclusive consumer of `queue`, read without acks; see the module docs'
    /// subscriptions row. The returned future is already resolved.
    fn hold<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<ReplyStream>>> {
        Box::pin(std::future::ready(subscribe::hold(&self.shared, queue)))
    }
}

fn not_found(queue: &str) -> crate::error::Error {
    crate::error::Error::NotFound {
        what: "queue",
        name: queue.to_owned(),
    }
}
