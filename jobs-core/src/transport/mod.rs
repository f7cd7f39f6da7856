//! The broker interface the producer and the worker engine run over.
//!
//! Two implementations: [`MemoryTransport`](memory::MemoryTransport), an in-process broker that
//! is always compiled, and the AMQP transport on lapin. The engine's dispatch and settle logic is
//! written once against [`Transport`], so a test on the in-memory broker runs the same retry and
//! error-queue code that production runs.
//!
//! Applications pick a transport and hand it to an [`Engine`](crate::engine::Engine) or a
//! [`Producer`](crate::Producer); they never call it. The rest of this module ([`Transport`],
//! [`Consumer`], [`Settle`], [`Delivery`], [`BoxFuture`]…) is the plumbing a new transport
//! implements, and what tests use to publish raw messages and inspect queues.

#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub mod amqp;
pub mod memory;
mod nodes;
mod redact;

#[cfg(feature = "amqp")]
pub(crate) use nodes::first_node;
pub use nodes::split_urls;
pub use redact::{redact_text, redact_url};

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::topology::Topology;

/// A boxed, sendable future: what [`Transport`] and [`Settle`] methods return. Transport
/// plumbing.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The deliveries of one consumer, in delivery-tag order. It ends when the consumer is
/// cancelled or its channel closes.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// A message broker: declares topology, publishes with confirms, and consumes with acks.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Declares the topology, or with [`Declare::Passive`] or [`Declare::Verify`] only checks
    /// it. Declaring twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::QueueMismatch`](crate::Error::QueueMismatch) when a queue exists with other
    /// arguments, [`Error::Topology`](crate::Error::Topology) when an exchange exists with
    /// another type, [`Error::NotFound`](crate::Error::NotFound) in passive and verify mode when
    /// something is missing, and connection errors.
    fn declare<'a>(&'a self, topology: &'a Topology, mode: Declare) -> BoxFuture<'a, Result<()>>;

    /// Publishes one message and resolves once the broker has confirmed it.
    ///
    /// The future owns everything it needs, so callers keep many publishes in flight.
    ///
    /// # Errors
    ///
    /// [`Error::Unroutable`](crate::Error::Unroutable) for a `mandatory` message no queue
    /// took, [`Error::Nacked`](crate::Error::Nacked), [`Error::NotFound`](crate::Error::NotFound)
    /// for a missing exchange, and connection errors.
    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>>;

    /// Publishes one message without the broker's confirm: resolves once it is sent, for a
    /// message its sender may lose (a reply to a call, a rate's ticket). By default, as
    /// [`publish`](Self::publish).
    ///
    /// # Errors
    ///
    /// What is found before sending ([`Error::HeadersTooLarge`](crate::Error::HeadersTooLarge)),
    /// and connection errors. A message the broker refuses or cannot route is lost quietly.
    fn publish_unconfirmed(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        self.publish(publish)
    }

    /// This transport as the RabbitMQ one, when it is: a [`Producer`](crate::Producer) then
    /// publishes without boxing each publish. `None` by default, which a transport wrapping
    /// another keeps: forwarding its inner transport's answer would bypass its own `publish`.
    #[cfg(feature = "amqp")]
    #[doc(hidden)]
    fn as_amqp(&self) -> Option<&amqp::AmqpTransport> {
        None
    }

    /// Starts a consumer on `queue` with at most `prefetch` unsettled deliveries.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing queue, and connection errors.
    fn consume<'a>(&'a self, queue: &'a str, prefetch: u16) -> BoxFuture<'a, Result<Consumer>>;

    /// The broker's version, as its server properties said on the last connection opened;
    /// `None` when it did not say or said something that does not parse (RabbitMQ 3 is then
    /// assumed). What [`BrokerBehaviour`](crate::broker::BrokerBehaviour) decides from. `None`
    /// by default.
    fn broker_version(&self) -> Option<crate::broker::BrokerVersion> {
        None
    }

    /// The broker nodes the transport's connections are on (or will try first), passwords
    /// hidden, each once: for logs and dashboards. Empty by default (a broker without nodes,
    /// such as the in-memory one).
    fn nodes(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(std::future::ready(Vec::new()))
    }

    /// The time in the broker's world: the wall clock, or for the in-memory broker a clock
    /// that follows tokio's, so that on a paused clock a delay or a schedule's slot comes as
    /// its TTLs pass. Delays (`at`) and schedules read it.
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }

    /// How many messages of `queue` are ready for delivery (not counting unacked deliveries).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing queue, and connection errors.
    fn message_count<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// How many messages of `queue` are ready and how many consumers it has, as a passive
    /// declare reports them: what dashboards and autoscalers read. The default asks
    /// [`message_count`](Self::message_count) and leaves the consumers unknown.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing queue, and connection errors.
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats>> {
        Box::pin(async move {
            Ok(QueueStats {
                ready: self.message_count(queue).await?,
                consumers: None,
            })
        })
    }

    /// Removes every ready message of `queue` and returns how many went. Unacked deliveries
    /// stay.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing queue, and connection errors.
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Opens a channel for calls, RabbitMQ's *direct reply-to*: requests published through it
    /// carry the channel's address in `reply_to` (the transport sets it), and replies sent to
    /// that address come back on its stream, with no queue declared. A reply to a channel that
    /// closed is dropped.
    ///
    /// # Errors
    ///
    /// Connection errors.
    fn requester(&self) -> BoxFuture<'_, Result<Requester>>;

    /// Subscribes to the messages `exchange` routes with one of `keys` from now on: a queue of
    /// the subscriber's own, exclusive to it and deleted when the stream is dropped or its
    /// channel closes, read without acks. The stream ends when the channel closes. Transport
    /// plumbing, for the engine's control messages.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing exchange, and connection
    /// errors.
    fn subscribe<'a>(
        &'a self,
        exchange: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<ReplyStream>>;

    /// Tries to hold `queue` alone: to be its exclusive consumer, reading without acks.
    /// `None` when another consumer has it. The hold lasts until the stream is dropped, and
    /// ends (the stream with it) when its channel closes, so a holder that dies lets go by
    /// itself. Transport plumbing, for the engine's cluster-wide concurrency limits.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing queue, and connection errors.
    fn hold<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<ReplyStream>>>;

    /// Deletes `queue` with its messages. A queue that does not exist is no error.
    ///
    /// # Errors
    ///
    /// Connection errors.
    fn delete_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// A channel for calls; see [`Transport::requester`]. Transport plumbing.
pub struct Requester {
    /// Publishes requests on the channel.
    pub publisher: Box<dyn PublishRequest>,
    /// The replies sent to the channel, in arrival order (no acks: a reply is settled on
    /// arrival). It ends when the channel closes.
    pub replies: ReplyStream,
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

/// The replies of a [`Requester`].
pub type ReplyStream = Pin<Box<dyn Stream<Item = Envelope> + Send>>;

/// Publishes requests on a [`Requester`]'s channel. Transport plumbing.
pub trait PublishRequest: Send + Sync + fmt::Debug {
    /// Publishes `publish` with its `reply_to` set to the channel's address (whatever it
    /// carried is replaced) and resolves once the broker confirmed it, as
    /// [`Transport::publish`] does, with the same errors.
    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>>;
}

/// Whether [`Transport::declare`] creates the topology or only checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declare {
    /// Create what is missing; fail on what differs.
    Create,
    /// Create nothing; fail on what is missing. RabbitMQ's passive declare checks existence
    /// only; the in-memory broker checks exchange types and queue arguments too.
    Passive,
    /// Create nothing; fail on what is missing or differs, on every transport: what exists is
    /// checked passively, then redeclared as declared, which creates nothing and fails on an
    /// exchange of another type or a queue with other arguments. Bindings are not checked.
    Verify,
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The exchange; `""` is the default exchange, which routes to the queue named by the key.
    pub exchange: Cow<'static, str>,
    /// The routing key.
    pub routing_key: Cow<'static, str>,
    /// Whether an unroutable message comes back as an error rather than being dropped.
    pub mandatory: bool,
    /// The message.
    pub envelope: Envelope,
}

/// What the broker says of a queue: [`Transport::queue_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages ready for delivery (not counting unacked deliveries).
    pub ready: u64,
    /// Consumers attached, when the transport can tell.
    pub consumers: Option<u32>,
}

impl QueueStats {
    /// Stats of `ready` messages and `consumers` consumers.
    #[must_use]
    pub fn new(ready: u64, consumers: Option<u32>) -> Self {
        Self { ready, consumers }
    }
}

/// A consumer: its deliveries and the handle that settles them.
pub struct Consumer {
    /// The deliveries.
    pub deliveries: DeliveryStream,
    /// Acks, nacks and rejects deliveries of this consumer.
    pub settler: Box<dyn Settle>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("settler", &self.settler)
            .finish_non_exhaustive()
    }
}

/// Settles the deliveries of one consumer: transport plumbing, which the engine calls.
pub trait Settle: Send + Sync + fmt::Debug {
    /// Sends one settlement to the broker. It does not wait for the broker to act on it.
    ///
    /// # Errors
    ///
    /// A connection error when the consumer's channel is gone: the broker then redelivers
    /// whatever was unsettled.
    fn settle(&self, settlement: Settlement) -> BoxFuture<'_, Result<()>>;

    /// Stops deliveries to this consumer and resolves once the broker has (`basic.cancel-ok`):
    /// no delivery comes after it, and the ones received stay settleable. A reader that must
    /// not receive more than it asked for cancels before its last acks, which would otherwise
    /// free prefetch credit for more.
    ///
    /// # Errors
    ///
    /// A connection error when the consumer's channel is gone.
    fn cancel(&self) -> BoxFuture<'_, Result<()>>;

    /// Called once after the last settlement, before the consumer's channel closes: resolves
    /// when the broker can be trusted to have applied them. At once by default; the engine
    /// bounds the wait by its shutdown deadline.
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A message delivered to a consumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The consumer's tag for this delivery: 1, 2, 3… in delivery order.
    pub tag: u64,
    /// Whether the broker delivered this message before and it was not acked.
    pub redelivered: bool,
    /// The exchange it was published (or dead-lettered) to.
    pub exchange: Cow<'static, str>,
    /// The routing key it was published (or dead-lettered) with.
    pub routing_key: Cow<'static, str>,
    /// The message, shared: the in-memory broker hands over the message it keeps for a
    /// redelivery without copying it, and the engine's handler context shares it as it is.
    pub envelope: Arc<Envelope>,
    /// For a request (a message with `reply_to`), where its reply can go on the channel the
    /// request came on, when the transport offers that; `None` otherwise.
    pub reply: Option<ReplyChannel>,
}

/// Publishes replies on the channel a consumer's deliveries come on. Transport plumbing.
pub trait Reply: Send + Sync + fmt::Debug {
    /// Publishes `publish` on the consumer's channel, without a confirm, and resolves once it
    /// is written: a settlement sent after it on that channel reaches the broker after it.
    ///
    /// # Errors
    ///
    /// The publish's own errors ([`Error::HeadersTooLarge`](crate::Error::HeadersTooLarge),
    /// names too long), or a connection error when the channel is gone.
    fn reply(&self, publish: Publish) -> BoxFuture<'static, Result<()>>;
}

/// A [`Reply`] shared by the deliveries of one consumer; equal when it is the same one.
#[derive(Clone, Debug)]
pub struct ReplyChannel(pub Arc<dyn Reply>);

impl PartialEq for ReplyChannel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What to tell the broker about a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Done with it; with `multiple`, with every earlier unsettled tag too.
    Ack {
        /// The delivery tag.
        tag: u64,
        /// Whether every earlier unsettled tag is acked as well.
        multiple: bool,
    },
    /// Not done; with `requeue` the broker delivers it again, otherwise it dead-letters it.
    /// A requeueing nack counts toward a quorum queue's delivery limit before RabbitMQ 4.3,
    /// not from 4.3 on.
    Nack {
        /// The delivery tag.
        tag: u64,
        /// Whether every earlier unsettled tag is nacked as well.
        multiple: bool,
        /// Whether the broker keeps the message for another delivery.
        requeue: bool,
    },
    /// Not done (`basic.reject`, one delivery); with `requeue` the broker delivers it again,
    /// otherwise it dead-letters it. As a nack, except that RabbitMQ 4.3 and later count a
    /// requeueing reject toward a quorum queue's delivery limit and not a requeueing nack.
    Reject {
        /// The delivery tag.
        tag: u64,
        /// Whether the broker keeps the message for another delivery.
        requeue: bool,
    },
}
