//! Tests of the in-memory broker through the [`Transport`] trait, as the engine uses it.

mod consume;
mod dead_letter;
mod death;
mod declare;
mod differential;
mod exchange_binding;
mod idle;
mod max_length;
mod priority;
mod reply_to;
mod routing;
mod single_active;
mod subscribe;

use futures_util::{FutureExt, StreamExt};

use super::MemoryTransport;
use crate::envelope::{Envelope, HeaderValue, Headers};
use crate::job::ExchangeKind;
use crate::topology::{BindingSpec, ExchangeBindingSpec, ExchangeSpec, QueueSpec, Topology};
use crate::transport::{Consumer, Declare, Delivery, Publish, Settlement, Transport};

fn exchange(name: &str, kind: ExchangeKind) -> ExchangeSpec {
    ExchangeSpec {
        name: name.into(),
        kind,
    }
}

fn queue(name: &str, arguments: &[(&'static str, HeaderValue)]) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        arguments: arguments.iter().cloned().collect(),
    }
}

fn binding(queue: &str, exchange: &str, key: &str) -> BindingSpec {
    BindingSpec {
        queue: queue.into(),
        exchange: exchange.into(),
        routing_key: key.into(),
        arguments: Headers::new(),
    }
}

fn exchange_binding(destination: &str, source: &str, key: &str) -> ExchangeBindingSpec {
    ExchangeBindingSpec {
        destination: destination.into(),
        source: source.into(),
        routing_key: key.into(),
        arguments: Headers::new(),
    }
}

/// A broker with `topology` declared.
fn broker_with(topology: &Topology) -> MemoryTransport {
    let broker = MemoryTransport::new();
    declare(&broker, topology).unwrap();
    broker
}

fn declare(broker: &MemoryTransport, topology: &Topology) -> crate::Result<()> {
    broker
        .declare(topology, Declare::Create)
        .now_or_never()
        .expect("declare is immediate")
}

/// A broker with plain queues `names`, reached through the default exchange.
fn queues(names: &[&str]) -> MemoryTransport {
    broker_with(&Topology {
        queues: names.iter().map(|name| queue(name, &[])).collect(),
        ..Topology::default()
    })
}

/// A message identified by its `message_id`.
fn message(id: &str) -> Envelope {
    let mut envelope = Envelope::default();
    envelope.properties.message_id = Some(id.to_owned());
    envelope.body = bytes::Bytes::from(id.to_owned());
    envelope
}

fn publish_to(exchange: &str, routing_key: &str, envelope: Envelope) -> Publish {
    Publish {
        exchange: exchange.to_owned().into(),
        routing_key: routing_key.to_owned().into(),
        mandatory: true,
        envelope,
    }
}

fn publish(broker: &MemoryTransport, publish: Publish) -> crate::Result<()> {
    broker
        .publish(publish)
        .now_or_never()
        .expect("publish confirms at once")
}

/// Publishes message `id` to queue `queue` through the default exchange.
fn send(broker: &MemoryTransport, queue: &str, id: &str) {
    publish(broker, publish_to("", queue, message(id))).unwrap();
}

fn consume(broker: &MemoryTransport, queue: &str, prefetch: u16) -> Consumer {
    broker
        .consume(queue, prefetch)
        .now_or_never()
        .expect("consume is immediate")
        .unwrap()
}

/// The deliveries the consumer has now, without waiting.
fn ready(consumer: &mut Consumer) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(Some(delivery)) = consumer.deliveries.next().now_or_never() {
        out.push(delivery);
    }
    out
}

/// The message ids of `deliveries`.
fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| id_of(&d.envelope)).collect()
}

fn id_of(envelope: &Envelope) -> String {
    envelope.properties.message_id.clone().unwrap_or_default()
}

/// The message ids ready in `queue`.
fn queued(broker: &MemoryTransport, queue: &str) -> Vec<String> {
    broker.messages(queue).iter().map(id_of).collect()
}

fn settle(consumer: &Consumer, settlement: Settlement) -> crate::Result<()> {
    consumer
        .settler
        .settle(settlement)
        .now_or_never()
        .expect("settle is immediate")
}

fn ack(consumer: &Consumer, tag: u64) {
    settle(
        consumer,
        Settlement::Ack {
            tag,
            multiple: false,
        },
    )
    .unwrap();
}

fn nack(consumer: &Consumer, tag: u64, requeue: bool) {
    settle(
        consumer,
        Settlement::Nack {
            tag,
            multiple: false,
            requeue,
        },
    )
    .unwrap();
}
