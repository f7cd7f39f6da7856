//! Length limits: `x-max-length` with `drop-head` and `reject-publish`, on both queue types.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::error::Error;

/// A queue `q` of type `kind` holding at most `max` ready messages, with `overflow`, and
/// dead-lettering to queue `q.dead` (classic, unlimited).
fn limited(kind: &str, max: i64, overflow: &str) -> Topology {
    Topology {
        queues: vec![
            queue(
                "q",
                &[
                    ("x-queue-type", kind.to_owned().into()),
                    ("x-max-length", max.into()),
                    ("x-overflow", overflow.to_owned().into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q.dead".into()),
                ],
            ),
            queue("q.dead", &[]),
        ],
        ..Topology::default()
    }
}

fn count(broker: &MemoryTransport, queue: &str) -> u64 {
    broker
        .message_count(queue)
        .now_or_never()
        .expect("message_count is immediate")
        .unwrap()
}

#[tokio::test]
async fn a_last_value_queue_keeps_only_the_newest_message() {
    for kind in ["quorum", "classic"] {
        let broker = broker_with(&Topology {
            queues: vec![queue(
                "slot",
                &[
                    ("x-queue-type", kind.to_owned().into()),
                    ("x-max-length", 1i64.into()),
                ],
            )],
            ..Topology::default()
        });
        for id in ["s1", "s2", "s3"] {
            send(&broker, "slot", id);
        }
        assert_eq!(queued(&broker, "slot"), ["s3"], "{kind}");
        assert_eq!(count(&broker, "slot"), 1, "{kind}");
        let mut reader = consume(&broker, "slot", 1);
        assert_eq!(ids(&ready(&mut reader)), ["s3"], "{kind}");
    }
}

#[tokio::test]
async fn drop_head_dead_letters_the_oldest_with_reason_maxlen() {
    for kind in ["quorum", "classic"] {
        let broker = broker_with(&limited(kind, 2, "drop-head"));
        for id in ["m1", "m2", "m3", "m4"] {
            send(&broker, "q", id);
        }
        assert_eq!(queued(&broker, "q"), ["m3", "m4"], "{kind}");
        assert_eq!(count(&broker, "q"), 2, "{kind}");
        let dead = broker.messages("q.dead");
        assert_eq!(
            dead.iter().map(id_of).collect::<Vec<_>>(),
            ["m1", "m2"],
            "{kind}"
        );
        assert_eq!(
            dead[0].properties.headers.get_str("x-first-death-reason"),
            Some("maxlen"),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn unacked_messages_do_not_count_but_returned_ones_do() {
    for kind in ["quorum", "classic"] {
        let broker = broker_with(&limited(kind, 1, "drop-head"));
        let mut consumer = consume(&broker, "q", 1);
        for id in ["m1", "m2", "m3"] {
            send(&broker, "q", id);
        }
        assert_eq!(ids(&ready(&mut consumer)), ["m1"], "{kind}");
        assert_eq!(
            (queued(&broker, "q"), broker.unacked("q")),
            (vec!["m3".to_owned()], 1),
            "{kind}: m2 dropped, m1 unacked beside the limit"
        );
        drop(consumer);
        assert_eq!(
            queued(&broker, "q"),
            ["m3"],
            "{kind}: the returned m1 is the head, and the head goes"
        );
        assert_eq!(
            broker
                .messages("q.dead")
                .iter()
                .map(id_of)
                .collect::<Vec<_>>(),
            ["m2", "m1"],
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_message_a_consumer_takes_at_once_never_counts() {
    let broker = broker_with(&limited("classic", 0, "drop-head"));
    let mut consumer = consume(&broker, "q", 1);
    send(&broker, "q", "taken");
    send(&broker, "q", "dropped");
    assert_eq!(ids(&ready(&mut consumer)), ["taken"]);
    assert_eq!(queued(&broker, "q.dead"), ["dropped"]);
}

#[tokio::test]
async fn a_classic_queue_refuses_the_publish_that_would_go_over_its_limit() {
    let broker = broker_with(&limited("classic", 2, "reject-publish"));
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    let err = publish(&broker, publish_to("", "q", message("m3"))).unwrap_err();
    assert!(
        matches!(&err, Error::Nacked { exchange } if exchange.is_empty()),
        "{err:?}"
    );
    assert_eq!(queued(&broker, "q"), ["m1", "m2"]);
    assert!(
        queued(&broker, "q.dead").is_empty(),
        "a refused publish is not dead-lettered"
    );
    let mut consumer = consume(&broker, "q", 1);
    let tag = ready(&mut consumer)[0].tag;
    ack(&consumer, tag);
    send(&broker, "q", "m3");
    assert_eq!(queued(&broker, "q"), ["m3"], "m2 went to the consumer");
}

#[tokio::test]
async fn a_quorum_queue_takes_one_more_then_refuses_until_back_to_eighty_percent() {
    let broker = broker_with(&limited("quorum", 5, "reject-publish"));
    for i in 1..=6 {
        send(&broker, "q", &format!("m{i}"));
    }
    let refused = publish(&broker, publish_to("", "q", message("m7")));
    assert!(matches!(refused, Err(Error::Nacked { .. })), "{refused:?}");
    assert_eq!(count(&broker, "q"), 6, "RabbitMQ 3.10 overshoots by one");

    let again = || publish(&broker, publish_to("", "q", message("again")));
    let mut consumer = consume(&broker, "q", 1);
    let first = ready(&mut consumer).remove(0);
    assert_eq!(count(&broker, "q"), 5);
    let refused = again();
    assert!(
        matches!(refused, Err(Error::Nacked { .. })),
        "5 of 5 is over the soft limit of 4: {refused:?}"
    );
    ack(&consumer, first.tag);
    assert_eq!(
        count(&broker, "q"),
        4,
        "the ack made room for the next delivery"
    );
    again().unwrap();
    assert_eq!(count(&broker, "q"), 5);
}

#[tokio::test]
async fn a_publish_one_queue_refuses_is_nacked_though_the_others_took_it() {
    let mut topology = limited("classic", 0, "reject-publish");
    topology.exchanges = vec![exchange("ex", ExchangeKind::Fanout)];
    topology.queues.push(queue("other", &[]));
    topology.bindings = vec![binding("q", "ex", ""), binding("other", "ex", "")];
    let broker = MemoryTransport::recording();
    declare(&broker, &topology).unwrap();
    let err = publish(&broker, publish_to("ex", "", message("m"))).unwrap_err();
    assert!(
        matches!(&err, Error::Nacked { exchange } if exchange == "ex"),
        "{err:?}"
    );
    assert_eq!(
        (queued(&broker, "q"), queued(&broker, "other")),
        (vec![], vec!["m".to_owned()])
    );
    assert!(broker.published().is_empty(), "not a successful publish");
}

#[tokio::test]
async fn dead_lettering_into_a_full_reject_publish_queue() {
    for (kind, kept) in [
        ("classic", vec!["full"]),
        ("quorum", vec!["full", "over", "dead"]),
    ] {
        let broker = broker_with(&Topology {
            queues: vec![
                queue(
                    "q",
                    &[
                        ("x-dead-letter-exchange", "".into()),
                        ("x-dead-letter-routing-key", "target".into()),
                    ],
                ),
                queue(
                    "target",
                    &[
                        ("x-queue-type", kind.to_owned().into()),
                        ("x-max-length", 1i64.into()),
                        ("x-overflow", "reject-publish".into()),
                    ],
                ),
            ],
            ..Topology::default()
        });
        send(&broker, "target", "full");
        // Refused by the classic queue; taken by the quorum queue, which refuses from then on.
        let over = publish(&broker, publish_to("", "target", message("over")));
        assert_eq!(over.is_err(), kind == "classic", "{kind}: {over:?}");
        send(&broker, "q", "dead");
        let mut consumer = consume(&broker, "q", 1);
        let tag = ready(&mut consumer)[0].tag;
        nack(&consumer, tag, false);
        assert_eq!(queued(&broker, "target"), kept, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_ttl_queue_drops_its_head_and_the_rest_expire_on_time() {
    let broker = broker_with(&Topology {
        queues: vec![
            queue(
                "wait",
                &[
                    ("x-max-length", 1i64.into()),
                    ("x-message-ttl", 1000i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q".into()),
                ],
            ),
            queue("q", &[]),
        ],
        ..Topology::default()
    });
    let mut consumer = consume(&broker, "q", 10);
    let start = Instant::now();
    send(&broker, "wait", "m1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&broker, "wait", "m2");
    let mut arrivals = Vec::new();
    for _ in 0..2 {
        let delivery = consumer.deliveries.next().await.unwrap();
        let reason = delivery
            .envelope
            .properties
            .headers
            .get_str("x-first-death-reason")
            .unwrap_or_default()
            .to_owned();
        arrivals.push((id_of(&delivery.envelope), reason, start.elapsed()));
    }
    assert_eq!(
        arrivals,
        [
            (
                "m1".to_owned(),
                "maxlen".to_owned(),
                Duration::from_millis(300)
            ),
            (
                "m2".to_owned(),
                "expired".to_owned(),
                Duration::from_millis(1300)
            ),
        ]
    );
}
