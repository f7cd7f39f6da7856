//! A broker that can go down: the in-memory one, whose publishes fail as a lost connection's
//! while [`Outage::down`] is set.

use std::sync::atomic::{AtomicBool, Ordering};

use jobs_core::topology::Topology;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{
    BoxFuture, Consumer, Declare, Publish, ReplyStream, Requester, Transport,
};
use jobs_core::{Error, Result};

/// The in-memory broker, with publishes refused while `down` is set.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    pub(crate) broker: MemoryTransport,
    pub(crate) down: AtomicBool,
}

impl Outage {
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Transport for Outage {
    fn declare<'a>(&'a self, topology: &'a Topology, mode: Declare) -> BoxFuture<'a, Result<()>> {
        self.broker.declare(topology, mode)
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(Error::Connection(
                "the broker is down".into(),
            ))));
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

    fn requester(&self) -> BoxFuture<'_, Result<Requester>> {
        self.broker.requester()
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<ReplyStream>> {
        self.broker.subscribe(exchange, keys)
    }

    fn hold<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<ReplyStream>>> {
        self.broker.hold(queue)
    }

    fn delete_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<()>> {
        self.broker.delete_queue(queue)
    }
}
