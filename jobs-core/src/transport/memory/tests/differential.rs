//! Regression tests of the divergences from RabbitMQ 3.10.8 that differential testing found
//! (the `jobs-differential` crate's transport scenarios), each fixed here.

use super::*;

fn quorum(name: &str, extra: &[(&'static str, HeaderValue)]) -> QueueSpec {
    let mut arguments = vec![("x-queue-type", HeaderValue::from("quorum"))];
    arguments.extend_from_slice(extra);
    queue(name, &arguments)
}

fn reject(consumer: &Consumer, tag: u64) {
    settle(consumer, Settlement::Reject { tag, requeue: true }).unwrap();
}

fn stats(broker: &MemoryTransport, queue: &str) -> crate::transport::QueueStats {
    broker
        .queue_stats(queue)
        .now_or_never()
        .expect("stats are immediate")
        .unwrap()
}

#[test]
fn a_quorum_queue_without_a_delivery_limit_requeues_to_the_back() {
    let broker = broker_with(&Topology {
        queues: vec![quorum("q", &[])],
        ..Topology::default()
    });
    for id in ["m1", "m2", "m3"] {
        send(&broker, "q", id);
    }
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["m1"]);
    // RabbitMQ 3.10 turns the requeue into a new enqueue (`rabbit_fifo`'s `requeue`).
    reject(&consumer, 1);
    let next = ready(&mut consumer);
    assert_eq!(ids(&next), ["m2"]);
    nack(&consumer, next[0].tag, true);
    assert_eq!(ids(&ready(&mut consumer)), ["m3"]);
    drop(consumer);
    assert_eq!(queued(&broker, "q"), ["m3", "m1", "m2"]);
    assert_eq!(broker.returns("q"), [1, 1, 1]);
}

#[test]
fn a_quorum_queue_gives_back_returns_first_in_the_order_they_came_back() {
    let broker = broker_with(&Topology {
        queues: vec![quorum("q", &[("x-delivery-limit", 5i64.into())])],
        ..Topology::default()
    });
    for id in ["m1", "m2", "m3", "m4"] {
        send(&broker, "q", id);
    }
    let mut first = consume(&broker, "q", 2);
    assert_eq!(ids(&ready(&mut first)), ["m1", "m2"]);
    // With a delivery limit a requeue is a return: ahead of the messages never delivered.
    nack(&first, 2, true);
    assert_eq!(ids(&ready(&mut first)), ["m2"]);
    first.settler.cancel().now_or_never().unwrap().unwrap();
    settle(
        &first,
        Settlement::Nack {
            tag: 0,
            multiple: true,
            requeue: true,
        },
    )
    .unwrap();
    assert_eq!(queued(&broker, "q"), ["m1", "m2", "m3", "m4"]);
    let mut second = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut second)), ["m1"]);
    // m1 comes back behind m2, returned before it: not to its original place.
    drop(second);
    assert_eq!(queued(&broker, "q"), ["m2", "m1", "m3", "m4"]);
}

#[test]
fn a_quorum_queue_counts_the_consumers_it_delivers_to() {
    let broker = broker_with(&Topology {
        queues: vec![
            quorum("q", &[]),
            quorum("single", &[("x-single-active-consumer", true.into())]),
            queue("classic", &[]),
        ],
        ..Topology::default()
    });
    for queue in ["q", "classic"] {
        send(&broker, queue, "m");
        let mut consumer = consume(&broker, queue, 1);
        assert_eq!(ready(&mut consumer).len(), 1);
        consumer.settler.cancel().now_or_never().unwrap().unwrap();
        let holding = u32::from(queue == "q");
        assert_eq!(
            stats(&broker, queue).consumers,
            Some(holding),
            "{queue}: a quorum queue counts a cancelled consumer while it holds a delivery"
        );
        ack(&consumer, 1);
        assert_eq!(stats(&broker, queue).consumers, Some(0));
    }
    let _active = consume(&broker, "single", 1);
    let _waiting = consume(&broker, "single", 1);
    assert_eq!(
        stats(&broker, "single").consumers,
        Some(1),
        "a waiting single active consumer is not counted"
    );
}

#[test]
fn a_publish_reaches_every_queue_before_what_it_makes_a_queue_dead_letter() {
    // `full` holds one message and dead-letters its dropped head to `all`, which the
    // publish's fanout reaches too: the publish arrives there first.
    let broker = broker_with(&Topology {
        exchanges: vec![exchange("fan", ExchangeKind::Fanout)],
        queues: vec![
            queue(
                "full",
                &[
                    ("x-max-length", 1i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "all".into()),
                ],
            ),
            queue("all", &[]),
        ],
        bindings: vec![binding("full", "fan", ""), binding("all", "fan", "")],
        ..Topology::default()
    });
    send(&broker, "full", "old");
    publish(&broker, publish_to("fan", "", message("new"))).unwrap();
    assert_eq!(queued(&broker, "all"), ["new", "old"]);
    assert_eq!(queued(&broker, "full"), ["new"]);
}

#[test]
fn a_classic_queue_applies_its_length_limit_to_a_requeued_message_before_delivering() {
    let broker = broker_with(&Topology {
        queues: vec![
            queue(
                "q",
                &[
                    ("x-max-length", 1i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "dropped".into()),
                ],
            ),
            queue("dropped", &[]),
        ],
        ..Topology::default()
    });
    let mut consumer = consume(&broker, "q", 1);
    send(&broker, "q", "m1");
    assert_eq!(ids(&ready(&mut consumer)), ["m1"]);
    send(&broker, "q", "m2");
    // m1 goes back ahead of m2, the queue is over its limit, and its head goes before the
    // consumer's freed credit is used (`requeue_and_run`).
    nack(&consumer, 1, true);
    assert_eq!(ids(&ready(&mut consumer)), ["m2"]);
    assert_eq!(queued(&broker, "dropped"), ["m1"]);
}

#[test]
fn a_rejected_message_dead_lettered_back_arrives_after_the_queue_delivered_again() {
    // A quorum queue of one message that refuses publishes past it, dead-lettering to itself.
    let broker = broker_with(&Topology {
        queues: vec![quorum(
            "q",
            &[
                ("x-max-length", 1i64.into()),
                ("x-overflow", "reject-publish".into()),
                ("x-dead-letter-exchange", "".into()),
            ],
        )],
        ..Topology::default()
    });
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["m1"]);
    // The freed credit takes m2 first, which empties the queue and lifts the refusal; m1 comes
    // back after, as RabbitMQ's separate dead-letter publish does.
    nack(&consumer, 1, false);
    assert_eq!(ids(&ready(&mut consumer)), ["m2"]);
    assert_eq!(queued(&broker, "q"), ["m1"]);
    publish(&broker, publish_to("", "q", message("m3"))).unwrap();
    assert_eq!(queued(&broker, "q"), ["m1", "m3"]);
}

#[test]
fn a_quorum_queue_dead_letters_the_heads_one_command_drops_in_reverse() {
    let broker = broker_with(&Topology {
        queues: vec![
            quorum(
                "q",
                &[
                    ("x-max-length", 2i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "dropped".into()),
                ],
            ),
            queue("dropped", &[]),
        ],
        ..Topology::default()
    });
    send(&broker, "q", "m0");
    send(&broker, "q", "m1");
    let mut consumer = consume(&broker, "q", 3);
    send(&broker, "q", "m2");
    send(&broker, "q", "m3");
    assert_eq!(ids(&ready(&mut consumer)), ["m0", "m1", "m2"]);
    // Three come back ahead of m3: the queue is two over its limit and drops m0 and m1 at
    // once, which RabbitMQ 3.10 dead-letters last first.
    drop(consumer);
    assert_eq!(queued(&broker, "q"), ["m2", "m3"]);
    assert_eq!(queued(&broker, "dropped"), ["m1", "m0"]);
}

#[tokio::test(start_paused = true)]
async fn a_quorum_queue_dead_letters_past_its_delivery_limit_before_what_expired() {
    let broker = broker_with(&Topology {
        queues: vec![
            quorum(
                "q",
                &[
                    ("x-message-ttl", 1000i64.into()),
                    ("x-delivery-limit", 1i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "dead".into()),
                ],
            ),
            queue("dead", &[]),
        ],
        ..Topology::default()
    });
    send(&broker, "q", "old");
    let mut consumer = consume(&broker, "q", 0);
    assert_eq!(ids(&ready(&mut consumer)), ["old"]);
    tokio::time::advance(std::time::Duration::from_millis(1500)).await;
    send(&broker, "q", "new");
    assert_eq!(ids(&ready(&mut consumer)), ["new"]);
    nack(&consumer, 2, true);
    assert_eq!(ids(&ready(&mut consumer)), ["new"]);
    // Closing gives back `old`, expired while unacked, and `new`, past its delivery limit: the
    // limit's dead-letter comes first, as in RabbitMQ 3.10's `return` command.
    drop(consumer);
    assert_eq!(queued(&broker, "dead"), ["new", "old"]);
}

#[test]
fn two_queues_dead_lettering_into_each_others_length_limit_forward_breadth_first() {
    // Two classic queues of two messages each, bound to one fanout, dead-lettering their
    // dropped heads to it: each dead letter reaches the other queue after those sent before
    // it, as messages between RabbitMQ's queue processes do, and a message that would come
    // back to a queue it died in is dropped there (no rejection in the cycle).
    let full = |name| {
        queue(
            name,
            &[
                ("x-max-length", 2i64.into()),
                ("x-dead-letter-exchange", "fan".into()),
            ],
        )
    };
    let broker = broker_with(&Topology {
        exchanges: vec![exchange("fan", ExchangeKind::Fanout)],
        queues: vec![full("q1"), full("q2")],
        bindings: vec![binding("q1", "fan", ""), binding("q2", "fan", "")],
        ..Topology::default()
    });
    for id in ["m1", "m2", "m3"] {
        publish(&broker, publish_to("fan", "", message(id))).unwrap();
    }
    assert_eq!(queued(&broker, "q1"), ["m2", "m3"]);
    assert_eq!(queued(&broker, "q2"), ["m2", "m3"]);
}

#[test]
fn a_full_queue_refuses_the_dead_letters_that_arrive_past_its_limit_one_by_one() {
    // A channel's close sends two messages past a quorum queue's delivery limit of 0 to a
    // classic `reject-publish` queue with room for one more: it takes the first and the
    // second, arriving after it, finds it full and is dropped.
    let broker = broker_with(&Topology {
        queues: vec![
            queue(
                "full",
                &[
                    ("x-max-length", 3i64.into()),
                    ("x-overflow", "reject-publish".into()),
                ],
            ),
            quorum(
                "limited",
                &[
                    ("x-delivery-limit", 0i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "full".into()),
                ],
            ),
        ],
        ..Topology::default()
    });
    let mut consumer = consume(&broker, "limited", 0);
    send(&broker, "full", "m6");
    send(&broker, "full", "m7");
    send(&broker, "limited", "m8");
    send(&broker, "limited", "m9");
    assert_eq!(ids(&ready(&mut consumer)), ["m8", "m9"]);
    drop(consumer);
    assert_eq!(queued(&broker, "full"), ["m6", "m7", "m8"]);
}
