//! Push delivery with prefetch credit, round-robin, acks, nacks, cancel and channel close.

use super::*;
use crate::error::Error;

#[tokio::test]
async fn deliveries_respect_prefetch_and_credit_returns_with_acks() {
    let broker = queues(&["q"]);
    for id in ["m1", "m2", "m3", "m4"] {
        send(&broker, "q", id);
    }
    let mut consumer = consume(&broker, "q", 2);
    let first = ready(&mut consumer);
    assert_eq!(ids(&first), ["m1", "m2"]);
    assert_eq!(first.iter().map(|d| d.tag).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((broker.queue_len("q"), broker.unacked("q")), (Some(2), 2));

    ack(&consumer, 1);
    let next = ready(&mut consumer);
    assert_eq!(ids(&next), ["m3"]);
    assert_eq!(next[0].tag, 3);
    assert!(ready(&mut consumer).is_empty(), "no credit left");
}

#[tokio::test]
async fn deliveries_carry_the_exchange_and_key_they_were_published_with() {
    let broker = broker_with(&Topology {
        exchanges: vec![exchange("ex", ExchangeKind::Topic)],
        queues: vec![queue("q", &[])],
        bindings: vec![binding("q", "ex", "a.#")],
        ..Topology::default()
    });
    let mut consumer = consume(&broker, "q", 10);
    publish(&broker, publish_to("ex", "a.b", message("m"))).unwrap();
    let delivery = ready(&mut consumer).remove(0);
    assert_eq!(
        (delivery.exchange.as_ref(), delivery.routing_key.as_ref()),
        ("ex", "a.b")
    );
    assert!(!delivery.redelivered);
    assert_eq!(*delivery.envelope, message("m"));
}

#[tokio::test]
async fn a_queue_delivers_round_robin_to_consumers_with_credit() {
    let broker = queues(&["q"]);
    let mut a = consume(&broker, "q", 10);
    let mut b = consume(&broker, "q", 1);
    for id in ["m1", "m2", "m3", "m4"] {
        send(&broker, "q", id);
    }
    let (to_a, to_b) = (ready(&mut a), ready(&mut b));
    assert_eq!(ids(&to_a), ["m1", "m3", "m4"], "b is full after m2");
    assert_eq!(ids(&to_b), ["m2"]);
    assert_eq!(to_b[0].tag, 1, "tags count per consumer");
}

#[tokio::test]
async fn ack_multiple_settles_every_earlier_tag() {
    let broker = queues(&["q"]);
    for id in ["m1", "m2", "m3", "m4"] {
        send(&broker, "q", id);
    }
    let mut consumer = consume(&broker, "q", 10);
    assert_eq!(ready(&mut consumer).len(), 4);
    ack(&consumer, 2);
    settle(
        &consumer,
        Settlement::Ack {
            tag: 3,
            multiple: true,
        },
    )
    .unwrap();
    assert_eq!(
        broker.unacked("q"),
        1,
        "1 and 3 are acked with 3, 2 was before"
    );
    ack(&consumer, 4);
    assert_eq!(broker.unacked("q"), 0);
}

#[tokio::test]
async fn an_unknown_tag_is_an_error_that_closes_the_channel() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    let mut consumer = consume(&broker, "q", 10);
    assert_eq!(ready(&mut consumer).len(), 2);
    ack(&consumer, 2);
    // 2 is settled already: a multiple ack up to it is as unknown to RabbitMQ as tag 7.
    let err = settle(
        &consumer,
        Settlement::Ack {
            tag: 2,
            multiple: true,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Broker(m) if m == "unknown delivery tag 2"),
        "{err:?}"
    );
    assert_eq!(consumer.deliveries.next().await, None, "the stream ended");
    assert_eq!(
        (broker.queue_len("q"), broker.unacked("q")),
        (Some(1), 0),
        "m1 went back"
    );
    let err = settle(
        &consumer,
        Settlement::Ack {
            tag: 1,
            multiple: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");

    let mut again = consume(&broker, "q", 10);
    let redelivered = ready(&mut again);
    assert_eq!(ids(&redelivered), ["m1"]);
    assert!(redelivered[0].redelivered);
    let err = settle(
        &again,
        Settlement::Nack {
            tag: 7,
            multiple: false,
            requeue: true,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Broker(m) if m == "unknown delivery tag 7"),
        "{err:?}"
    );
}

#[tokio::test]
async fn nack_with_requeue_puts_the_message_back_at_the_head_redelivered() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["m1"]);
    nack(&consumer, 1, true);
    let again = ready(&mut consumer);
    assert_eq!(ids(&again), ["m1"], "at the head, before m2");
    assert!(again[0].redelivered);
    assert_eq!(again[0].tag, 2);
    assert_eq!(
        again[0].envelope.properties.headers.get("x-delivery-count"),
        None,
        "classic queues do not count"
    );
}

#[tokio::test]
async fn nack_multiple_requeues_in_the_original_order() {
    let broker = queues(&["q"]);
    for id in ["m1", "m2", "m3"] {
        send(&broker, "q", id);
    }
    let mut consumer = consume(&broker, "q", 2);
    assert_eq!(ready(&mut consumer).len(), 2);
    settle(
        &consumer,
        Settlement::Nack {
            tag: 2,
            multiple: true,
            requeue: true,
        },
    )
    .unwrap();
    assert_eq!(ids(&ready(&mut consumer)), ["m1", "m2"]);
    assert_eq!(queued(&broker, "q"), ["m3"]);
}

#[tokio::test]
async fn dropping_the_stream_cancels_but_keeps_unacked_deliveries_settleable() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m1");
    let mut consumer = consume(&broker, "q", 10);
    assert_eq!(ready(&mut consumer).len(), 1);
    let Consumer {
        deliveries,
        settler,
    } = consumer;
    drop(deliveries);
    send(&broker, "q", "m2");
    assert_eq!(queued(&broker, "q"), ["m2"], "no delivery after cancel");
    assert_eq!(broker.unacked("q"), 1);
    settler
        .settle(Settlement::Ack {
            tag: 1,
            multiple: false,
        })
        .await
        .unwrap();
    assert_eq!(broker.unacked("q"), 0);
}

#[tokio::test]
async fn closing_the_channel_requeues_unacked_messages_redelivered() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    let mut consumer = consume(&broker, "q", 10);
    assert_eq!(ready(&mut consumer).len(), 2);
    ack(&consumer, 2);
    drop(consumer);
    assert_eq!(
        (queued(&broker, "q"), broker.unacked("q")),
        (vec!["m1".to_owned()], 0)
    );
    let mut next = consume(&broker, "q", 10);
    let again = ready(&mut next);
    assert!(again[0].redelivered);
    assert_eq!(again[0].tag, 1, "a new channel counts from 1");
}

#[tokio::test]
async fn disconnect_ends_every_stream_and_the_broker_keeps_working() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m1");
    let mut consumer = consume(&broker, "q", 10);
    let mut other = consume(&broker, "q", 10);
    send(&broker, "q", "m2");
    broker.disconnect();
    assert_eq!(
        consumer.deliveries.next().await,
        None,
        "buffered deliveries are lost with the connection"
    );
    assert_eq!(other.deliveries.next().await, None);
    assert!(matches!(
        settle(
            &consumer,
            Settlement::Ack {
                tag: 1,
                multiple: false
            }
        ),
        Err(Error::Connection(_))
    ));
    assert_eq!(queued(&broker, "q"), ["m1", "m2"]);

    let mut fresh = consume(&broker, "q", 10);
    send(&broker, "q", "m3");
    let all = ready(&mut fresh);
    assert_eq!(ids(&all), ["m1", "m2", "m3"]);
    assert_eq!(
        all.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
        [true, true, false]
    );
}

#[tokio::test]
async fn disconnect_counts_one_return_per_message_however_many_consumers() {
    let broker = broker_with(&Topology {
        queues: vec![queue(
            "q",
            &[
                ("x-queue-type", "quorum".into()),
                ("x-delivery-limit", 1i64.into()),
            ],
        )],
        ..Topology::default()
    });
    let mut a = consume(&broker, "q", 1);
    let mut b = consume(&broker, "q", 10);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    assert_eq!((ready(&mut a).len(), ready(&mut b).len()), (1, 1));
    broker.disconnect();
    assert_eq!(
        (queued(&broker, "q"), broker.returns("q")),
        (vec!["m1".to_owned(), "m2".to_owned()], vec![1, 1]),
        "a's message is not handed to b before b's channel closes too"
    );
}

/// A publish yields now and then, as a socket write does: a loop of publishes lets the other
/// tasks of its runtime run, here a consumer on the same thread, rather than piling every
/// message into the queue first.
#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_publishes_lets_a_consumer_on_its_thread_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let broker = queues(&["q"]);
    let mut consumer = consume(&broker, "q", 0);
    let received = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&received);
    tokio::spawn(async move {
        while consumer.deliveries.next().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    for n in 0..1_000 {
        broker
            .publish(publish_to("", "q", message(&n.to_string())))
            .await
            .unwrap();
    }
    assert!(
        received.load(Ordering::Relaxed) > 0,
        "the consumer never ran while the loop published"
    );
}
