//! Priorities: `x-max-priority` on classic queues.

use super::*;
use crate::error::Error;

/// A classic queue `q` with `levels` priority levels.
fn prioritized(levels: i64) -> MemoryTransport {
    broker_with(&Topology {
        queues: vec![queue(
            "q",
            &[
                ("x-queue-type", "classic".into()),
                ("x-max-priority", levels.into()),
            ],
        )],
        ..Topology::default()
    })
}

/// Publishes message `id` to queue `q` with `priority`.
fn send_with(broker: &MemoryTransport, id: &str, priority: Option<u8>) {
    let mut envelope = message(id);
    envelope.properties.priority = priority;
    publish(broker, publish_to("", "q", envelope)).unwrap();
}

#[test]
fn higher_priorities_come_first_and_each_in_publish_order() {
    let broker = prioritized(5);
    send_with(&broker, "none-1", None);
    send_with(&broker, "p2-1", Some(2));
    send_with(&broker, "p0-1", Some(0));
    // Above the queue's highest: counts as the highest.
    send_with(&broker, "p9-1", Some(9));
    send_with(&broker, "p5-1", Some(5));
    send_with(&broker, "p2-2", Some(2));
    assert_eq!(
        queued(&broker, "q"),
        ["p9-1", "p5-1", "p2-1", "p2-2", "none-1", "p0-1"]
    );
}

#[test]
fn a_returned_message_goes_back_to_its_place_among_its_priority() {
    let broker = prioritized(5);
    send_with(&broker, "p2-1", Some(2));
    send_with(&broker, "p2-2", Some(2));
    let mut consumer = consume(&broker, "q", 1);
    let first = ready(&mut consumer);
    assert_eq!(ids(&first), ["p2-1"]);
    send_with(&broker, "p3-1", Some(3));
    send_with(&broker, "p2-3", Some(2));
    settle(
        &consumer,
        Settlement::Nack {
            tag: first[0].tag,
            multiple: false,
            requeue: true,
        },
    )
    .unwrap();
    drop(consumer);
    assert_eq!(queued(&broker, "q"), ["p3-1", "p2-1", "p2-2", "p2-3"]);
}

#[test]
fn a_quorum_queue_with_priorities_is_refused_as_rabbitmq_3_10_does() {
    let declared = declare(
        &MemoryTransport::new(),
        &Topology {
            queues: vec![queue(
                "q",
                &[
                    ("x-queue-type", "quorum".into()),
                    ("x-max-priority", 5i64.into()),
                ],
            )],
            ..Topology::default()
        },
    );
    assert!(matches!(declared, Err(Error::Topology(_))), "{declared:?}");
}

#[test]
fn levels_out_of_range_or_with_a_length_limit_are_refused() {
    for levels in [0_i64, 256, -1] {
        let declared = declare(
            &MemoryTransport::new(),
            &Topology {
                queues: vec![queue("q", &[("x-max-priority", levels.into())])],
                ..Topology::default()
            },
        );
        assert!(matches!(declared, Err(Error::Topology(_))), "{levels}");
    }
    let declared = declare(
        &MemoryTransport::new(),
        &Topology {
            queues: vec![queue(
                "q",
                &[
                    ("x-max-priority", 5i64.into()),
                    ("x-max-length", 1i64.into()),
                ],
            )],
            ..Topology::default()
        },
    );
    assert!(matches!(declared, Err(Error::Topology(_))), "{declared:?}");
}
