//! Single active consumer: one consumer receives, the next takes over when it leaves.

use super::*;

/// A queue `q` with a single active consumer, of type `kind`, with a delivery limit of 5 on
/// a quorum queue.
fn single_active(kind: &str) -> MemoryTransport {
    let mut arguments = vec![
        ("x-queue-type", HeaderValue::from(kind)),
        ("x-single-active-consumer", true.into()),
    ];
    if kind == "quorum" {
        arguments.push(("x-delivery-limit", 5i64.into()));
    }
    broker_with(&Topology {
        queues: vec![queue("q", &arguments)],
        ..Topology::default()
    })
}

#[tokio::test]
async fn only_the_earliest_consumer_receives_and_the_others_hold_nothing() {
    for kind in ["quorum", "classic"] {
        let broker = single_active(kind);
        let mut first = consume(&broker, "q", 2);
        let mut second = consume(&broker, "q", 10);
        for id in ["m1", "m2", "m3"] {
            send(&broker, "q", id);
        }
        assert_eq!(ids(&ready(&mut first)), ["m1", "m2"], "{kind}");
        assert!(
            ready(&mut second).is_empty(),
            "{kind}: idle even with credit while the first has none"
        );
        assert_eq!(queued(&broker, "q"), ["m3"], "{kind}");
        ack(&first, 1);
        assert_eq!(ids(&ready(&mut first)), ["m3"], "{kind}");
    }
}

#[tokio::test]
async fn a_cancelled_consumer_keeps_its_deliveries_and_the_next_takes_over() {
    let broker = single_active("quorum");
    let first = consume(&broker, "q", 10);
    let mut second = consume(&broker, "q", 10);
    send(&broker, "q", "m1");
    first.settler.cancel().now_or_never().unwrap().unwrap();
    send(&broker, "q", "m2");
    assert_eq!(ids(&ready(&mut second)), ["m2"], "active at once");
    assert_eq!(
        broker.unacked("q"),
        2,
        "m1 stays with the cancelled consumer"
    );
    ack(&first, 1);
    assert_eq!(broker.unacked("q"), 1);
}

#[tokio::test]
async fn a_closed_channel_hands_its_messages_to_the_next_consumer() {
    for kind in ["quorum", "classic"] {
        let broker = single_active(kind);
        let mut first = consume(&broker, "q", 10);
        let mut second = consume(&broker, "q", 10);
        let mut third = consume(&broker, "q", 10);
        send(&broker, "q", "m1");
        send(&broker, "q", "m2");
        assert_eq!(ready(&mut first).len(), 2, "{kind}");
        ack(&first, 2);
        drop(first);
        let handed = ready(&mut second);
        assert_eq!(ids(&handed), ["m1"], "{kind}");
        assert!(handed[0].redelivered, "{kind}");
        let count = handed[0]
            .envelope
            .properties
            .headers
            .get("x-delivery-count")
            .cloned();
        let expected = (kind == "quorum").then_some(HeaderValue::Int(1));
        assert_eq!(
            count, expected,
            "{kind}: the return counts on a quorum queue"
        );
        assert!(ready(&mut third).is_empty(), "{kind}: still waiting");
    }
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_active_consumer() {
    let broker = single_active("classic");
    let Consumer {
        deliveries,
        settler,
    } = consume(&broker, "q", 10);
    let mut second = consume(&broker, "q", 10);
    drop(deliveries);
    send(&broker, "q", "m");
    assert_eq!(ids(&ready(&mut second)), ["m"]);
    drop(settler);
}

#[tokio::test]
async fn a_waiting_consumer_that_leaves_changes_nothing() {
    let broker = single_active("quorum");
    let mut first = consume(&broker, "q", 10);
    let waiting = consume(&broker, "q", 10);
    drop(waiting);
    send(&broker, "q", "m");
    assert_eq!(ids(&ready(&mut first)), ["m"]);
    assert_eq!(broker.unacked("q"), 1);
}

#[tokio::test]
async fn disconnect_returns_the_active_consumers_messages_once() {
    let broker = single_active("quorum");
    let mut first = consume(&broker, "q", 10);
    let _second = consume(&broker, "q", 10);
    send(&broker, "q", "m");
    assert_eq!(ready(&mut first).len(), 1);
    broker.disconnect();
    assert_eq!(
        queued(&broker, "q"),
        ["m"],
        "no consumer is left to take it"
    );
    assert_eq!(broker.returns("q"), [1], "one return, not one per channel");
    let mut fresh = consume(&broker, "q", 10);
    assert_eq!(ids(&ready(&mut fresh)), ["m"]);
}
