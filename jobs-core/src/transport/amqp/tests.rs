//! Requesters (direct reply-to) against a RabbitMQ broker: `JOBS_AMQP_URL`, or the local
//! default. Without a broker the tests skip, unless `JOBS_REQUIRE_BROKER` is set, when they
//! fail. Each test names its queues uniquely and deletes them at the end.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};

use super::AmqpTransport;
use crate::envelope::{Envelope, HeaderValue, Headers};
use crate::error::Error;
use crate::topology::{QueueSpec, Topology, argument};
use crate::transport::{Consumer, Declare, Publish, Requester, Settlement, Transport};

/// Generous: a bound on a wait that should end at once, not a timing assumption.
const WAIT: Duration = Duration::from_secs(10);

/// The prefix of the address the broker gives a requester's channel.
const ADDRESS_PREFIX: &str = "amq.rabbitmq.reply-to.";

fn unique(test: &str) -> String {
    format!("amqp-test.{test}.{}", uuid::Uuid::now_v7())
}

/// A classic queue named `name`, declared on `transport`.
async fn declare_queue(transport: &AmqpTransport, name: &str) {
    let topology = Topology {
        queues: vec![QueueSpec {
            name: name.to_owned(),
            arguments: [(argument::QUEUE_TYPE, "classic")].into_iter().collect(),
        }],
        ..Topology::default()
    };
    transport
        .declare(&topology, Declare::Create)
        .await
        .expect("declaring the queue");
}

/// Deletes the queues a test created, on a connection of its own.
async fn cleanup(url: &str, queues: &[&str]) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in queues {
        channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let _ = connection.close(200, "cleanup".into()).await;
}

fn envelope(correlation_id: &str, body: &'static [u8]) -> Envelope {
    let mut envelope = Envelope::default();
    envelope.properties.correlation_id = Some(correlation_id.to_owned());
    envelope.body = body.into();
    envelope
}

fn to(routing_key: &str, mandatory: bool, envelope: Envelope) -> Publish {
    Publish {
        exchange: "".into(),
        routing_key: routing_key.to_owned().into(),
        mandatory,
        envelope,
    }
}

/// Publishes a request with `correlation_id` to `queue` through `requester`, receives it on
/// `consumer`, acks it and returns the address it carries.
async fn request(
    requester: &Requester,
    consumer: &mut Consumer,
    queue: &str,
    correlation_id: &str,
) -> String {
    let mut request = envelope(correlation_id, b"ping");
    // Replaced by the requester's own address.
    request.properties.reply_to = Some("somewhere-else".to_owned());
    requester
        .publisher
        .publish(to(queue, true, request))
        .await
        .expect("publishing the request");
    let delivery = tokio::time::timeout(WAIT, consumer.deliveries.next())
        .await
        .expect("no request in time")
        .expect("the request consumer ended");
    assert_eq!(
        delivery.envelope.properties.correlation_id.as_deref(),
        Some(correlation_id)
    );
    assert_eq!(&delivery.envelope.body[..], b"ping");
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: delivery.tag,
            multiple: false,
        })
        .await
        .unwrap();
    let address = delivery
        .envelope
        .properties
        .reply_to
        .clone()
        .expect("the request carries no reply-to");
    assert!(
        address.starts_with(ADDRESS_PREFIX),
        "reply-to `{address}` is not a direct reply-to address"
    );
    address
}

/// The next reply of `requester`, within [`WAIT`].
async fn next_reply(requester: &mut Requester) -> Envelope {
    tokio::time::timeout(WAIT, requester.replies.next())
        .await
        .expect("no reply in time")
        .expect("the reply stream ended")
}

fn correlation_id(envelope: &Envelope) -> &str {
    envelope.properties.correlation_id.as_deref().unwrap()
}

#[tokio::test]
async fn requester_reply_arrives_with_correlation_id_and_headers() {
    let Some(url) = crate::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let queue = unique("requester-round-trip");
    declare_queue(&transport, &queue).await;
    let mut consumer = transport.consume(&queue, 8).await.unwrap();
    let mut requester = transport.requester().await.unwrap();

    let address = request(&requester, &mut consumer, &queue, "call-1").await;
    // Sorted by name: a field table comes back in key order.
    let headers: Headers = [
        ("a-status", HeaderValue::from("ok")),
        ("b-count", HeaderValue::Int(7)),
    ]
    .into_iter()
    .collect();
    let mut reply = envelope("call-1", b"pong");
    reply.properties.headers = headers.clone();
    transport
        .publish(to(&address, false, reply))
        .await
        .expect("publishing the reply");

    let reply = next_reply(&mut requester).await;
    assert_eq!(correlation_id(&reply), "call-1");
    assert_eq!(reply.properties.headers, headers);
    assert_eq!(&reply.body[..], b"pong");

    drop(requester);
    cleanup(&url, &[&queue]).await;
    transport.close().await;
}

#[tokio::test]
async fn requester_receives_only_the_replies_to_its_own_address() {
    let Some(url) = crate::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let queue = unique("requester-two");
    declare_queue(&transport, &queue).await;
    let mut consumer = transport.consume(&queue, 8).await.unwrap();
    let mut first = transport.requester().await.unwrap();
    let mut second = transport.requester().await.unwrap();

    let first_address = request(&first, &mut consumer, &queue, "first").await;
    let second_address = request(&second, &mut consumer, &queue, "second").await;
    assert_ne!(first_address, second_address);

    // Interleaved, each confirmed before the next: a reply that reached the wrong requester
    // would come before that requester's own next one.
    for (address, id) in [
        (&second_address, "second-1"),
        (&first_address, "first-1"),
        (&second_address, "second-2"),
    ] {
        transport
            .publish(to(address, false, envelope(id, b"pong")))
            .await
            .expect("publishing a reply");
    }
    assert_eq!(correlation_id(&next_reply(&mut first).await), "first-1");
    assert_eq!(correlation_id(&next_reply(&mut second).await), "second-1");
    assert_eq!(correlation_id(&next_reply(&mut second).await), "second-2");

    drop((first, second));
    cleanup(&url, &[&queue]).await;
    transport.close().await;
}

#[tokio::test]
async fn requester_mandatory_request_to_an_unbound_key_is_unroutable() {
    let Some(url) = crate::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let queue = unique("requester-unroutable");
    declare_queue(&transport, &queue).await;
    let mut consumer = transport.consume(&queue, 8).await.unwrap();
    let mut requester = transport.requester().await.unwrap();
    let nowhere = unique("requester-nowhere");

    let err = requester
        .publisher
        .publish(to(&nowhere, true, envelope("lost", b"ping")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { exchange, routing_key } if exchange.is_empty() && *routing_key == nowhere),
        "{err:?}"
    );

    // The return left the channel as it was: the requester still makes calls.
    let address = request(&requester, &mut consumer, &queue, "after").await;
    transport
        .publish(to(&address, false, envelope("after", b"pong")))
        .await
        .unwrap();
    assert_eq!(correlation_id(&next_reply(&mut requester).await), "after");

    drop(requester);
    cleanup(&url, &[&queue]).await;
    transport.close().await;
}

#[tokio::test]
async fn requester_gone_its_replies_are_dropped_without_an_error() {
    let Some(url) = crate::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let queue = unique("requester-gone");
    declare_queue(&transport, &queue).await;
    let mut consumer = transport.consume(&queue, 8).await.unwrap();

    // Dropped: lapin cancels the consumer and closes the channel.
    let requester = transport.requester().await.unwrap();
    let dropped_address = request(&requester, &mut consumer, &queue, "dropped").await;
    drop(requester);
    transport
        .publish(to(&dropped_address, false, envelope("dropped", b"pong")))
        .await
        .expect("a reply to a dropped requester");

    // Its connection closed: the reply stream ends, and later requests fail.
    let other = AmqpTransport::connect(&url).await.unwrap();
    let mut requester = other.requester().await.unwrap();
    let closed_address = request(&requester, &mut consumer, &queue, "closed").await;
    other.close().await;
    let ended = tokio::time::timeout(WAIT, requester.replies.next())
        .await
        .expect("the reply stream did not end in time");
    assert!(ended.is_none(), "a reply after the connection closed");
    let err = requester
        .publisher
        .publish(to(&queue, true, envelope("late", b"ping")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    transport
        .publish(to(&closed_address, false, envelope("closed", b"pong")))
        .await
        .expect("a reply to a closed requester");

    // Neither reply cost the publishing channel anything.
    transport
        .publish(to(&queue, true, envelope("still-up", b"ping")))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(WAIT, consumer.deliveries.next())
        .await
        .expect("no message in time")
        .expect("the consumer ended");
    assert_eq!(
        delivery.envelope.properties.correlation_id.as_deref(),
        Some("still-up")
    );

    drop(requester);
    cleanup(&url, &[&queue]).await;
    transport.close().await;
}

#[tokio::test]
async fn requester_request_to_a_missing_exchange_is_not_found_and_ends_it() {
    let Some(url) = crate::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let mut requester = transport.requester().await.unwrap();
    let missing = unique("requester-missing");

    let mut request = to("key", true, envelope("lost", b"ping"));
    request.exchange = missing.clone().into();
    let err = requester.publisher.publish(request).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if *name == missing),
        "{err:?}"
    );
    // The broker closed the channel: the replies end, and so do the requests.
    let ended = tokio::time::timeout(WAIT, requester.replies.next())
        .await
        .expect("the reply stream did not end in time");
    assert!(ended.is_none(), "a reply after the channel closed");
    let err = requester
        .publisher
        .publish(to("key", false, envelope("late", b"ping")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    // The transport's own publishing channel is another one.
    transport
        .publish(to("key", false, envelope("other", b"ping")))
        .await
        .unwrap();

    transport.close().await;
}
