//! Direct reply-to: requests carry the requester's address, replies to it come back on its
//! stream without a queue, and replies to a gone requester are dropped.

use crate::error::Error;
use crate::transport::Requester;

use super::*;

fn requester(broker: &MemoryTransport) -> Requester {
    broker
        .requester()
        .now_or_never()
        .expect("requester is immediate")
        .unwrap()
}

/// Publishes a request on `requester`'s channel.
fn request(requester: &Requester, publish: Publish) -> crate::Result<()> {
    requester
        .publisher
        .publish(publish)
        .now_or_never()
        .expect("publish confirms at once")
}

/// A reply `id` to `address`, published as a responder does (not mandatory).
fn reply(broker: &MemoryTransport, address: &str, id: &str) -> crate::Result<()> {
    publish(
        broker,
        Publish {
            mandatory: false,
            ..publish_to("", address, message(id))
        },
    )
}

/// The message ids of the replies `requester` has now, without waiting.
fn replies(requester: &mut Requester) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(Some(envelope)) = requester.replies.next().now_or_never() {
        out.push(id_of(&envelope));
    }
    out
}

/// Whether `requester`'s stream has ended.
fn ended(requester: &mut Requester) -> bool {
    matches!(requester.replies.next().now_or_never(), Some(None))
}

/// The address `requester` writes into its requests, read from one it sends to queue `queue`.
fn address_of(broker: &MemoryTransport, requester: &Requester, queue: &str) -> String {
    request(requester, publish_to("", queue, message("probe"))).unwrap();
    let address = broker.messages(queue).pop().unwrap().properties.reply_to;
    broker.purge(queue).now_or_never().unwrap().unwrap();
    address.unwrap()
}

#[tokio::test]
async fn a_request_reaches_its_queue_with_reply_to_set_to_the_requesters_address() {
    let broker = queues(&["rpc"]);
    let first = requester(&broker);
    let second = requester(&broker);
    let mut envelope = message("req");
    envelope.properties.reply_to = Some("somewhere-else".to_owned());
    request(&first, publish_to("", "rpc", envelope)).unwrap();
    request(&second, publish_to("", "rpc", message("req2"))).unwrap();
    let queued = broker.messages("rpc");
    let addresses: Vec<_> = queued
        .iter()
        .map(|m| m.properties.reply_to.clone().unwrap())
        .collect();
    assert_eq!(queued[0].body, "req", "the request itself is unchanged");
    assert!(
        addresses
            .iter()
            .all(|a| a.starts_with("amq.rabbitmq.reply-to.")),
        "{addresses:?}"
    );
    assert_ne!(
        addresses[0], addresses[1],
        "each requester has its own address"
    );
    assert_eq!(
        addresses[0],
        address_of(&broker, &first, "rpc"),
        "a requester keeps its address"
    );
}

#[tokio::test]
async fn a_reply_to_the_address_arrives_on_the_stream_and_in_no_queue() {
    let broker = queues(&["rpc"]);
    let mut requester = requester(&broker);
    let mut server = consume(&broker, "rpc", 1);
    request(&requester, publish_to("", "rpc", message("req"))).unwrap();
    let delivery = ready(&mut server).pop().unwrap();
    let address = delivery.envelope.properties.reply_to.clone().unwrap();
    reply(&broker, &address, "answer").unwrap();
    ack(&server, delivery.tag);
    assert_eq!(replies(&mut requester), ["answer"]);
    assert_eq!(broker.queue_len(&address), None, "no queue is involved");
    assert!(replies(&mut requester).is_empty());
    assert!(!ended(&mut requester), "the stream waits for more");
}

#[tokio::test(start_paused = true)]
async fn an_unread_reply_does_not_keep_the_broker_busy() {
    let broker = queues(&["rpc"]);
    let mut requester = requester(&broker);
    let address = address_of(&broker, &requester, "rpc");
    reply(&broker, &address, "answer").unwrap();
    assert!(broker.is_idle());
    broker.until_idle().await;
    assert_eq!(replies(&mut requester), ["answer"], "still there to read");
}

#[tokio::test]
async fn two_requesters_get_only_their_own_replies() {
    let broker = queues(&["rpc"]);
    let mut first = requester(&broker);
    let mut second = requester(&broker);
    let to_first = address_of(&broker, &first, "rpc");
    let to_second = address_of(&broker, &second, "rpc");
    reply(&broker, &to_second, "b1").unwrap();
    reply(&broker, &to_first, "a1").unwrap();
    reply(&broker, &to_second, "b2").unwrap();
    assert_eq!(replies(&mut first), ["a1"]);
    assert_eq!(replies(&mut second), ["b1", "b2"], "in arrival order");
}

#[tokio::test]
async fn a_reply_to_a_dropped_requester_is_dropped_and_a_mandatory_one_returned() {
    let broker = queues(&["rpc"]);
    let gone = requester(&broker);
    let address = address_of(&broker, &gone, "rpc");
    drop(gone);
    let mut other = requester(&broker);
    reply(&broker, &address, "late").unwrap();
    let mandatory = publish(&broker, publish_to("", &address, message("late2")));
    assert!(
        matches!(
            &mandatory,
            Err(Error::Unroutable { exchange, routing_key })
                if exchange.is_empty() && *routing_key == address
        ),
        "{mandatory:?}"
    );
    assert!(replies(&mut other).is_empty(), "nobody else gets it");
    assert!(broker.is_idle());
    for unknown in ["amq.rabbitmq.reply-to.999", "amq.rabbitmq.reply-to.x"] {
        reply(&broker, unknown, "stray").unwrap();
        assert!(matches!(
            publish(&broker, publish_to("", unknown, message("stray"))),
            Err(Error::Unroutable { .. })
        ));
    }
}

#[tokio::test]
async fn a_mandatory_reply_is_returned_even_when_a_live_requester_got_it() {
    // RabbitMQ 3.10 to 4.1 route a reply to no queue, so a mandatory one comes back.
    let broker = queues(&["rpc"]);
    let mut requester = requester(&broker);
    let address = address_of(&broker, &requester, "rpc");
    let outcome = publish(&broker, publish_to("", &address, message("answer")));
    assert!(
        matches!(outcome, Err(Error::Unroutable { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        replies(&mut requester),
        ["answer"],
        "delivered all the same"
    );
}

#[tokio::test]
async fn dropping_only_the_stream_kills_the_address_and_fails_the_next_request() {
    let broker = queues(&["rpc"]);
    let requester = requester(&broker);
    let address = address_of(&broker, &requester, "rpc");
    let Requester { publisher, replies } = requester;
    drop(replies);
    reply(&broker, &address, "late").unwrap();
    let refused = publisher
        .publish(publish_to("", "rpc", message("req")))
        .now_or_never()
        .unwrap();
    assert!(
        matches!(&refused, Err(Error::Broker(text)) if text.contains("fast reply consumer")),
        "{refused:?}"
    );
    assert_eq!(broker.queue_len("rpc"), Some(0), "the request went nowhere");
    let closed = publisher
        .publish(publish_to("", "rpc", message("req")))
        .now_or_never()
        .unwrap();
    assert!(
        matches!(closed, Err(Error::Connection(_))),
        "the channel closed"
    );
}

#[tokio::test]
async fn dropping_only_the_publisher_keeps_the_replies_coming() {
    let broker = queues(&["rpc"]);
    let requester = requester(&broker);
    let address = address_of(&broker, &requester, "rpc");
    let Requester {
        publisher,
        mut replies,
    } = requester;
    drop(publisher);
    reply(&broker, &address, "answer").unwrap();
    assert_eq!(
        replies.next().now_or_never().flatten().as_ref().map(id_of),
        Some("answer".to_owned())
    );
}

#[tokio::test]
async fn disconnect_ends_every_stream_and_fails_the_publishers() {
    let broker = queues(&["rpc"]);
    let mut first = requester(&broker);
    let mut second = requester(&broker);
    let to_first = address_of(&broker, &first, "rpc");
    reply(&broker, &to_first, "unread").unwrap();
    broker.disconnect();
    assert!(ended(&mut first), "ends at once, the unread reply with it");
    assert!(ended(&mut second));
    for requester in [&first, &second] {
        let outcome = request(requester, publish_to("", "rpc", message("req")));
        assert!(matches!(outcome, Err(Error::Connection(_))), "{outcome:?}");
    }
    reply(&broker, &to_first, "late").unwrap();
    let mut fresh = requester(&broker);
    let address = address_of(&broker, &fresh, "rpc");
    assert_ne!(address, to_first, "a new requester gets a new address");
    reply(&broker, &address, "answer").unwrap();
    assert_eq!(replies(&mut fresh), ["answer"], "new requesters work");
}

#[tokio::test]
async fn a_mandatory_request_to_nowhere_is_unroutable() {
    let broker = queues(&["rpc"]);
    let requester = requester(&broker);
    let outcome = request(&requester, publish_to("", "missing", message("req")));
    assert!(
        matches!(&outcome, Err(Error::Unroutable { routing_key, .. }) if routing_key == "missing"),
        "{outcome:?}"
    );
    let dropped = Publish {
        mandatory: false,
        ..publish_to("", "missing", message("req"))
    };
    request(&requester, dropped).unwrap();
    assert_eq!(broker.queue_len("rpc"), Some(0));
}

#[tokio::test]
async fn a_request_to_a_missing_exchange_closes_the_requesters_channel() {
    let broker = queues(&["rpc"]);
    let mut requester = requester(&broker);
    let address = address_of(&broker, &requester, "rpc");
    let outcome = request(&requester, publish_to("nowhere", "rpc", message("req")));
    assert!(
        matches!(outcome, Err(Error::NotFound { .. })),
        "{outcome:?}"
    );
    assert!(ended(&mut requester), "a channel error, as in RabbitMQ");
    let outcome = request(&requester, publish_to("", "rpc", message("req")));
    assert!(matches!(outcome, Err(Error::Connection(_))), "{outcome:?}");
    reply(&broker, &address, "late").unwrap();
    assert_eq!(broker.queue_len("rpc"), Some(0));
}

#[tokio::test]
async fn a_message_dead_lettered_to_an_address_reaches_its_requester() {
    let broker = MemoryTransport::new();
    let mut requester = requester(&broker);
    declare(
        &broker,
        &Topology {
            queues: vec![queue("rpc", &[])],
            ..Topology::default()
        },
    )
    .unwrap();
    let address = address_of(&broker, &requester, "rpc");
    declare(
        &broker,
        &Topology {
            queues: vec![queue(
                "work",
                &[
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", address.as_str().into()),
                ],
            )],
            ..Topology::default()
        },
    )
    .unwrap();
    let mut worker = consume(&broker, "work", 1);
    send(&broker, "work", "failed");
    let tag = ready(&mut worker)[0].tag;
    nack(&worker, tag, false);
    let reply = requester.replies.next().now_or_never().flatten().unwrap();
    assert_eq!(id_of(&reply), "failed");
    assert!(reply.properties.headers.get("x-death").is_some());
    assert_eq!(broker.queue_len("work"), Some(0));
}
