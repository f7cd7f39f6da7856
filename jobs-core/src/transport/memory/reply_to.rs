//! Direct reply-to: requesters, their addresses, and replies that go straight to a requester's
//! stream without a queue.
//!
//! A requester stands for a channel consuming the pseudo-queue `amq.rabbitmq.reply-to` in
//! no-ack mode, the channel its requests are published on. Its address,
//! `amq.rabbitmq.reply-to.<n>`, goes into every request's `reply_to` (RabbitMQ rewrites the
//! bare pseudo-queue name into the channel's address the same way; here the suffix is a
//! counter rather than an opaque token).
//!
//! As in RabbitMQ (`rabbit_exchange:route`), the default exchange hands a message whose key is
//! such an address to the requester's channel itself and routes it to no queue: a live
//! requester gets it, settled on arrival; a dead or unknown address drops it. Since no queue
//! took it, a `mandatory` one is [`Error::Unroutable`] whether or not a requester got it, as
//! RabbitMQ 3.10 to 4.1 return it (4.2, which made direct reply-to a queue type, counts it as
//! routed instead, live or not). Either way `mandatory` says nothing about the requester, so
//! responders reply without it.
//!
//! The stream and the publisher share the channel, as a consumer's stream and settler do.
//! Dropping the stream cancels the reply consumer: the address is dead from then on, and a
//! request published on the channel afterwards fails as RabbitMQ fails it (`PRECONDITION_FAILED`,
//! "fast reply consumer does not exist"), which closes the channel; so does a request to a
//! missing exchange (`NOT_FOUND`), after failing with [`Error::NotFound`]. Dropping both closes
//! the channel. A lost connection ([`MemoryTransport::disconnect`](super::MemoryTransport::disconnect))
//! closes every requester's channel: streams end at once, even with replies unread, and
//! publishers fail with [`Error::Connection`].
//!
//! Replies never make the broker busy for
//! [`until_idle`](super::MemoryTransport::until_idle): no-ack deliveries are settled when they
//! arrive, so a reply unread in a stream is the client's, not the broker's, and a test that
//! never reads one must not wait forever. A reply is in its stream as soon as it is published,
//! so a broker quiescent after a responder acked its request already holds the reply there.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use super::broker::{Broker, Shared};
use super::consumer::channel_closed;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Publish, PublishRequest, Requester};

/// What every direct reply-to address starts with. RabbitMQ treats any key with this prefix on
/// the default exchange as an address, never as a queue name.
const PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Whether `routing_key` on the default exchange is a direct reply-to address rather than a
/// queue name.
pub(super) fn is_address(routing_key: &str) -> bool {
    routing_key.starts_with(PREFIX)
}

/// The broker's side of the requesters: the open channels, by address.
#[derive(Debug, Default)]
pub(super) struct Requesters {
    /// The number in the next address; addresses are never reused.
    next: u64,
    open: HashMap<Arc<str>, RequesterState>,
}

/// The broker's side of one requester's channel.
#[derive(Debug)]
struct RequesterState {
    /// Where replies go; `None` once the reply consumer is cancelled (the stream dropped).
    sender: Option<mpsc::UnboundedSender<Envelope>>,
    /// Set when the channel closes, so the stream ends at once rather than after what it has
    /// buffered, and the publisher fails without taking the lock.
    closed: Arc<AtomicBool>,
}

impl RequesterState {
    /// Closes the channel: the stream ends and the publisher fails.
    fn close(self) {
        // Before the sender drops: the stream, woken by the drop, must see the close.
        self.closed.store(true, Ordering::Release);
        drop(self.sender);
    }
}

/// Why a request cannot be published on a requester's channel.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The channel is closed.
    Closed,
    /// The reply consumer is gone: RabbitMQ closes the channel with `PRECONDITION_FAILED`.
    NoConsumer,
}

// ===== impl Broker (direct reply-to) =====

impl Broker {
    /// Opens a requester's channel with a new address.
    pub(super) fn open_requester(&mut self) -> Opened {
        let requesters = &mut self.requesters;
        requesters.next += 1;
        let address: Arc<str> = format!("{PREFIX}{}", requesters.next).into();
        let (sender, receiver) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        requesters.open.insert(
            Arc::clone(&address),
            RequesterState {
                sender: Some(sender),
                closed: Arc::clone(&closed),
            },
        );
        Opened {
            address,
            receiver,
            closed,
        }
    }

    /// For a message published or dead-lettered to the default exchange with a direct reply-to
    /// address as its key: hands it to that requester if it is alive, and otherwise drops it.
    /// Routing puts such a message in no queue; this is the rest of what RabbitMQ's default
    /// exchange does with it.
    pub(super) fn deliver_reply(&self, exchange: &str, routing_key: &str, envelope: &Envelope) {
        if !exchange.is_empty() || !is_address(routing_key) {
            return;
        }
        let sender = self
            .requesters
            .open
            .get(routing_key)
            .and_then(|requester| requester.sender.as_ref());
        match sender {
            // A failed send is a stream dropped without having cancelled yet: dropped too.
            Some(sender) => drop(sender.send(envelope.clone())),
            None => tracing::trace!(
                address = routing_key,
                "reply to a gone direct reply-to address dropped"
            ),
        }
    }

    /// Publishes a request on the requester's channel at `address`, with `reply_to` set to
    /// that address, as [`Broker::publish`] does; a missing exchange closes the channel.
    fn publish_request(&mut self, address: &str, mut publish: Publish) -> Result<()> {
        match self.check_requester(address) {
            Ok(()) => {}
            Err(Refusal::Closed) => return Err(channel_closed()),
            Err(Refusal::NoConsumer) => {
                self.close_requester(address);
                return Err(Error::Broker(
                    "PRECONDITION_FAILED - fast reply consumer does not exist".to_owned(),
                ));
            }
        }
        publish.envelope.properties.reply_to = Some(address.to_owned());
        let outcome = self.publish(publish);
        if matches!(outcome, Err(Error::NotFound { .. })) {
            // A publish to a missing exchange is a channel error (`NOT_FOUND`) in RabbitMQ: the
            // channel closes, and its reply consumer and address with it.
            self.close_requester(address);
        }
        outcome
    }

    /// Whether the channel at `address` is open with its reply consumer.
    fn check_requester(&self, address: &str) -> std::result::Result<(), Refusal> {
        match self.requesters.open.get(address) {
            None => Err(Refusal::Closed),
            Some(requester) if requester.sender.is_none() => Err(Refusal::NoConsumer),
            Some(_) => Ok(()),
        }
    }

    /// Cancels the reply consumer at `address`: replies to it are dropped from now on.
    fn cancel_requester(&mut self, address: &str) {
        if let Some(requester) = self.requesters.open.get_mut(address) {
            requester.sender = None;
        }
    }

    /// Closes the channel at `address`.
    fn close_requester(&mut self, address: &str) {
        if let Some(requester) = self.requesters.open.remove(address) {
            requester.close();
        }
    }

    /// Closes every requester's channel, as a lost connection does.
    pub(super) fn disconnect_requesters(&mut self) {
        for (_, requester) in self.requesters.open.drain() {
            requester.close();
        }
    }
}

/// A requester just opened, before it is wrapped for the caller.
pub(super) struct Opened {
    address: Arc<str>,
    receiver: mpsc::UnboundedReceiver<Envelope>,
    closed: Arc<AtomicBool>,
}

impl Opened {
    /// Wraps the requester in its stream and publisher, which share its channel.
    pub(super) fn into_requester(self, shared: Arc<Shared>) -> Requester {
        let channel = Arc::new(ReplyChannel {
            shared,
            address: self.address,
            closed: self.closed,
        });
        Requester {
            publisher: Box::new(RequestPublisher {
                channel: Arc::clone(&channel),
            }),
            replies: Box::pin(Replies {
                channel,
                receiver: self.receiver,
            }),
        }
    }
}

// ===== impl ReplyChannel =====

/// A requester's channel, shared by its stream and its publisher; it closes when both are
/// gone.
struct ReplyChannel {
    shared: Arc<Shared>,
    address: Arc<str>,
    closed: Arc<AtomicBool>,
}

impl ReplyChannel {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for ReplyChannel {
    fn drop(&mut self) {
        self.shared.lock().close_requester(&self.address);
    }
}

impl fmt::Debug for ReplyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyChannel")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The replies of one requester.
struct Replies {
    channel: Arc<ReplyChannel>,
    receiver: mpsc::UnboundedReceiver<Envelope>,
}

impl Stream for Replies {
    type Item = Envelope;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let next = self.receiver.poll_recv(cx);
        // Checked after receiving: a reply buffered before a close is not handed out.
        if self.channel.is_closed() {
            return Poll::Ready(None);
        }
        next
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.channel
            .shared
            .lock()
            .cancel_requester(&self.channel.address);
    }
}

/// Publishes requests on one requester's channel.
#[derive(Debug)]
struct RequestPublisher {
    channel: Arc<ReplyChannel>,
}

impl PublishRequest for RequestPublisher {
    /// Sets `reply_to` to the requester's address, then routes and enqueues the request before
    /// returning, as [`Transport::publish`](crate::transport::Transport::publish) does.
    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        let channel = &self.channel;
        let outcome = if channel.is_closed() {
            Err(channel_closed())
        } else {
            channel
                .shared
                .lock()
                .publish_request(&channel.address, publish)
        };
        Box::pin(async move {
            // As `Transport::publish`: a tight loop of requests yields to the responders.
            tokio::task::coop::consume_budget().await;
            outcome
        })
    }
}
