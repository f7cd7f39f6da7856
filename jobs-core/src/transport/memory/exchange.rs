//! Exchanges, their bindings to queues and to other exchanges, and routing through them.
//!
//! Routing follows RabbitMQ's `rabbit_exchange:route`: the exchange a message is published
//! (or dead-lettered) to matches its bindings; matched queues take the message, and matched
//! exchanges (exchange-to-exchange bindings) route the same message, with the same key and
//! headers, through their own bindings in turn. Each exchange is visited at most once per
//! routing, which also breaks binding loops, and each queue gets at most one copy.

use super::broker::Broker;
use super::queue::QueueId;
use super::reply_to;
use super::routing::Router;
use crate::envelope::Headers;
use crate::error::{Error, Result};
use crate::job::ExchangeKind;

/// Index of an exchange in the broker; exchanges are never deleted, so it stays valid.
pub(super) type ExchangeId = usize;

/// What a binding leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Destination {
    /// A queue (`queue.bind`).
    Queue(QueueId),
    /// Another exchange (`exchange.bind`), which routes the message again.
    Exchange(ExchangeId),
}

/// A declared exchange and its bindings.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) kind: ExchangeKind,
    /// Bindings as declared, to make binding idempotent: (destination, key, arguments).
    bindings: Vec<(Destination, String, Headers)>,
    /// Bindings to queues.
    queues: Router<QueueId>,
    /// Bindings to exchanges; `None` until the first, so routing through an exchange without
    /// any costs one check.
    exchanges: Option<Router<ExchangeId>>,
}

impl Exchange {
    pub(super) fn new(kind: ExchangeKind) -> Self {
        Self {
            kind,
            bindings: Vec::new(),
            queues: Router::new(kind),
            exchanges: None,
        }
    }

    /// Binds `destination` with `key` and `arguments`; binding twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] for a headers binding with an invalid `x-match`.
    pub(super) fn bind(
        &mut self,
        destination: Destination,
        key: &str,
        arguments: &Headers,
    ) -> Result<()> {
        if self
            .bindings
            .iter()
            .any(|(d, k, a)| *d == destination && k == key && a == arguments)
        {
            return Ok(());
        }
        match destination {
            Destination::Queue(queue) => self.queues.add(queue, key, arguments)?,
            Destination::Exchange(exchange) => self
                .exchanges
                .get_or_insert_with(|| Router::new(self.kind))
                .add(exchange, key, arguments)?,
        }
        self.bindings
            .push((destination, key.to_owned(), arguments.clone()));
        Ok(())
    }
}

impl Broker {
    /// The exchange named `name`; never the default exchange, which has no bindings.
    pub(super) fn exchange_id(&self, name: &str) -> Option<ExchangeId> {
        self.exchange_ids.get(name).copied()
    }

    /// Fills `targets` with the queues `exchange` routes the message to, through exchange
    /// bindings too, each queue once.
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
            // A direct reply-to address names no queue: the caller hands the message to its
            // requester (`Broker::deliver_reply`), as RabbitMQ's default exchange does.
            if !reply_to::is_address(routing_key) {
                targets.extend(self.queue_id(routing_key));
            }
            return Ok(());
        }
        let id = self.exchange_id(exchange).ok_or_else(|| Error::NotFound {
            what: "exchange",
            name: exchange.to_owned(),
        })?;
        let source = &self.exchanges[id];
        source.queues.route(routing_key, headers, targets);
        if let Some(onward) = &source.exchanges {
            self.route_onward(id, onward, routing_key, headers, targets);
        }
        if targets.len() > 1 {
            // Two bindings to one queue, or two paths to it, still put one copy in it.
            targets.sort_unstable();
            targets.dedup();
        }
        Ok(())
    }

    /// Routes on through the exchanges that `source`'s exchange bindings match, and theirs,
    /// each exchange once (RabbitMQ's rule, which also breaks binding loops).
    fn route_onward(
        &self,
        source: ExchangeId,
        onward: &Router<ExchangeId>,
        routing_key: &str,
        headers: &Headers,
        targets: &mut Vec<QueueId>,
    ) {
        // Only routings that reach an exchange binding allocate; a chain is a few exchanges
        // long, so a list beats a set for the visited ones.
        let mut visited = vec![source];
        let mut pending = Vec::new();
        onward.route(routing_key, headers, &mut pending);
        while let Some(id) = pending.pop() {
            if visited.contains(&id) {
                continue;
            }
            visited.push(id);
            let exchange = &self.exchanges[id];
            exchange.queues.route(routing_key, headers, targets);
            if let Some(next) = &exchange.exchanges {
                next.route(routing_key, headers, &mut pending);
            }
        }
    }
}
