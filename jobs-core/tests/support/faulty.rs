//! [`Faulty`]: a transport that passes everything to a [`MemoryTransport`] except what it is
//! told to fail, the way a RabbitMQ broker fails it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jobs_core::topology::Topology;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{
    BoxFuture, Consumer, Declare, Publish, PublishRequest, ReplyStream, Requester, Transport,
};
use jobs_core::{Error, Result};

/// What every direct reply-to address starts with.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Publishes to these queues (through the default exchange) are nacked while listed, as a
/// RabbitMQ queue with a `reject-publish` length limit does; messages with more headers than
/// `header_limit` are refused as larger than a frame; replies to calls are nacked while
/// `refuse_replies` is set; call requests are never confirmed while `stall_requests` is, nor
/// any other publish while `stall_publishes` is; and subscriptions fail while
/// `refuse_subscriptions` is.
#[derive(Debug, Default)]
pub(crate) struct Faulty {
    /// Where everything else goes.
    pub(crate) broker: MemoryTransport,
    refused: Mutex<HashSet<String>>,
    /// The most headers a message may carry, when set.
    pub(crate) header_limit: Mutex<Option<usize>>,
    /// Nack every publish to a direct reply-to address.
    pub(crate) refuse_replies: AtomicBool,
    /// Leave every call request unconfirmed, forever.
    pub(crate) stall_requests: Arc<AtomicBool>,
    /// Leave every publish unconfirmed, forever, as on a connection that hangs.
    pub(crate) stall_publishes: AtomicBool,
    /// Fail every subscription, as a broker that does not answer in time.
    pub(crate) refuse_subscriptions: AtomicBool,
}

impl Faulty {
    /// Passes everything to `broker`, refusing nothing yet.
    pub(crate) fn on(broker: MemoryTransport) -> Self {
        Self {
            broker,
            ..Self::default()
        }
    }

    /// Nacks publishes to `queue` from now on.
    pub(crate) fn refuse(&self, queue: &str) {
        self.refused.lock().unwrap().insert(queue.to_owned());
    }

    /// Takes publishes to every queue again.
    pub(crate) fn accept_all(&self) {
        self.refused.lock().unwrap().clear();
    }

    fn refuses(&self, publish: &Publish) -> bool {
        publish.exchange.is_empty()
            && (self.refused.lock().unwrap().contains(&*publish.routing_key)
                || (publish.routing_key.starts_with(REPLY_TO)
                    && self.refuse_replies.load(Ordering::Relaxed)))
    }
}

impl Transport for Faulty {
    fn broker_version(&self) -> Option<jobs_core::broker::BrokerVersion> {
        self.broker.broker_version()
    }

    fn declare<'a>(&'a self, topology: &'a Topology, mode: Declare) -> BoxFuture<'a, Result<()>> {
        self.broker.declare(topology, mode)
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        let headers = publish.envelope.properties.headers.len();
        if let Some(limit) = *self.header_limit.lock().unwrap()
            && headers > limit
        {
            let too_large = Error::HeadersTooLarge {
                size: headers,
                limit,
            };
            return Box::pin(std::future::ready(Err(too_large)));
        }
        if self.stall_publishes.load(Ordering::Relaxed) {
            return Box::pin(std::future::pending());
        }
        if self.refuses(&publish) {
            return Box::pin(std::future::ready(Err(Error::Nacked {
                exchange: String::new(),
            })));
        }
        self.broker.publish(publish)
    }

    fn consume<'a>(&'a self, queue: &'a str, prefetch: u16) -> BoxFuture<'a, Result<Consumer>> {
        self.broker.consume(queue, prefetch)
    }

    fn message_count<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.broker.message_count(queue)
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.broker.purge(queue)
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<ReplyStream>> {
        if self.refuse_subscriptions.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err(Error::Connection(
                "no answer from the broker".into(),
            ))));
        }
        self.broker.subscribe(exchange, keys)
    }

    fn delete_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<()>> {
        self.broker.delete_queue(queue)
    }

    fn hold<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<ReplyStream>>> {
        self.broker.hold(queue)
    }

    fn requester(&self) -> BoxFuture<'_, Result<Requester>> {
        Box::pin(async {
            let requester = self.broker.requester().await?;
            Ok(Requester {
                publisher: Box::new(Stalling {
                    inner: requester.publisher,
                    stall: Arc::clone(&self.stall_requests),
                }),
                replies: requester.replies,
            })
        })
    }
}

/// A requester's publisher whose confirms never come while `stall` is set: the request is
/// dropped before the broker sees it, as on a connection that hangs.
#[derive(Debug)]
struct Stalling {
    inner: Box<dyn PublishRequest>,
    stall: Arc<AtomicBool>,
}

impl PublishRequest for Stalling {
    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        if self.stall.load(Ordering::Relaxed) {
            return Box::pin(std::future::pending());
        }
        self.inner.publish(publish)
    }
}
