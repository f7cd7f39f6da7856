//! The `x-death` header as the broker writes it, and cycle detection reading it from the
//! message, so that a republished message keeps its history and a stripped one starts afresh.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// The (queue, reason, count) of each `x-death` entry of `envelope`, in order.
fn deaths(envelope: &Envelope) -> Vec<(String, String, i64)> {
    let Some(HeaderValue::Array(entries)) = envelope.properties.headers.get("x-death") else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let HeaderValue::Table(table) = entry else {
                panic!("an x-death entry is not a table: {entry}");
            };
            (
                table.get_str("queue").unwrap().to_owned(),
                table.get_str("reason").unwrap().to_owned(),
                table.get("count").and_then(HeaderValue::as_i64).unwrap(),
            )
        })
        .collect()
}

fn death(queue: &str, reason: &str, count: i64) -> (String, String, i64) {
    (queue.to_owned(), reason.to_owned(), count)
}

/// `name` holds messages 1 s and then dead-letters them to queue `next` through the default
/// exchange.
fn wait_then(name: &str, next: &str) -> QueueSpec {
    queue(
        name,
        &[
            ("x-message-ttl", 1000i64.into()),
            ("x-dead-letter-exchange", "".into()),
            ("x-dead-letter-routing-key", next.to_owned().into()),
        ],
    )
}

/// Two delay queues in a row, `a` then `b`, in front of `q`; `q` dead-letters what it
/// rejects back into `a`.
fn chain() -> Topology {
    Topology {
        queues: vec![
            wait_then("a", "b"),
            wait_then("b", "q"),
            queue(
                "q",
                &[
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "a".into()),
                ],
            ),
        ],
        ..Topology::default()
    }
}

#[tokio::test(start_paused = true)]
async fn dead_lettering_writes_the_x_death_entry_and_the_first_death_headers() {
    let broker = broker_with(&chain());
    let start = std::time::SystemTime::now();
    send(&broker, "a", "m");
    broker.until_idle().await;
    let arrived = broker.messages("q").remove(0);
    let headers = &arrived.properties.headers;
    assert_eq!(
        deaths(&arrived),
        [death("b", "expired", 1), death("a", "expired", 1)]
    );
    assert_eq!(headers.get_str("x-first-death-queue"), Some("a"));
    assert_eq!(headers.get_str("x-first-death-reason"), Some("expired"));
    assert_eq!(headers.get_str("x-first-death-exchange"), Some(""));
    assert_eq!(
        headers.get("x-last-death-queue"),
        None,
        "RabbitMQ 3.10 writes no x-last-death headers"
    );

    let Some(HeaderValue::Array(entries)) = headers.get("x-death") else {
        panic!("no x-death");
    };
    let HeaderValue::Table(newest) = &entries[0] else {
        panic!("not a table");
    };
    let names: Vec<&str> = newest.iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "count",
            "exchange",
            "queue",
            "reason",
            "routing-keys",
            "time"
        ]
    );
    assert_eq!(newest.get_str("exchange"), Some(""), "where it was before");
    assert_eq!(
        newest.get("routing-keys"),
        Some(&HeaderValue::Array(vec!["b".into()])),
        "the key `a` dead-lettered it with"
    );
    let Some(HeaderValue::Timestamp(time)) = newest.get("time") else {
        panic!("time is not a timestamp");
    };
    let start = start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (start + 1..=start + 3).contains(time),
        "the time moves with tokio's clock: b dead-lettered it 2 s in ({time}, from {start})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_dead_lettered_again_through_a_queue_without_rejection_is_dropped() {
    let broker = broker_with(&chain());
    send(&broker, "a", "m");
    broker.until_idle().await;
    let mut consumer = consume(&broker, "q", 1);
    let delivery = ready(&mut consumer).remove(0);
    ack(&consumer, delivery.tag);

    // A client sends it round again with its headers, as a naive retry would.
    publish(
        &broker,
        publish_to("", "a", Envelope::clone(&delivery.envelope)),
    )
    .unwrap();
    let start = Instant::now();
    broker.until_idle().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "dropped when `a` dead-letters it into `b`, which it left by expiry before"
    );
    assert!(ready(&mut consumer).is_empty());
    assert_eq!(
        (
            broker.queue_len("a"),
            broker.queue_len("b"),
            broker.queue_len("q")
        ),
        (Some(0), Some(0), Some(0))
    );

    // Stripped of its history, the same message goes through.
    let mut fresh = Arc::unwrap_or_clone(delivery.envelope);
    fresh
        .properties
        .headers
        .retain(|name, _| !name.starts_with("x-death") && !name.starts_with("x-first-death"));
    publish(&broker, publish_to("", "a", fresh)).unwrap();
    let arrived = consumer.deliveries.next().await.unwrap();
    assert_eq!(
        deaths(&arrived.envelope),
        [death("b", "expired", 1), death("a", "expired", 1)],
        "a fresh history"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_breaks_the_cycle_and_counts_increment() {
    // q rejects into q.retry, which sends it back to q a second later: a retry loop.
    let broker = broker_with(&Topology {
        queues: vec![
            queue(
                "q",
                &[
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q.retry".into()),
                ],
            ),
            wait_then("q.retry", "q"),
        ],
        ..Topology::default()
    });
    let mut consumer = consume(&broker, "q", 1);
    send(&broker, "q", "m");
    let mut histories = Vec::new();
    for _ in 0..3 {
        let delivery = consumer.deliveries.next().await.unwrap();
        histories.push(deaths(&delivery.envelope));
        nack(&consumer, delivery.tag, false);
    }
    assert_eq!(
        histories,
        [
            vec![],
            vec![death("q.retry", "expired", 1), death("q", "rejected", 1)],
            vec![death("q.retry", "expired", 2), death("q", "rejected", 2)],
        ]
    );
    let first = consumer.deliveries.next().await.unwrap();
    assert_eq!(
        first
            .envelope
            .properties
            .headers
            .get_str("x-first-death-reason"),
        Some("rejected"),
        "set once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_entries_behind_the_newest_come_reversed_as_in_rabbitmq_3_10() {
    // q rejects into `a`: the message's history is then [q rejected, b expired, a expired].
    // When `a` dead-letters it again, 3.10 regroups the entries in reverse before putting
    // `a`'s first, so the rejection ends up behind `b`'s entry, and `b` closes a cycle.
    let broker = broker_with(&chain());
    send(&broker, "a", "m");
    broker.until_idle().await;
    let mut consumer = consume(&broker, "q", 1);
    let delivery = ready(&mut consumer).remove(0);
    nack(&consumer, delivery.tag, false);
    let waiting = broker.messages("a").remove(0);
    assert_eq!(
        deaths(&waiting),
        [
            death("q", "rejected", 1),
            death("a", "expired", 1),
            death("b", "expired", 1)
        ],
        "two entries regrouped in reverse behind the new one"
    );
    broker.until_idle().await;
    assert_eq!(
        (broker.queue_len("b"), broker.queue_len("q")),
        (Some(0), Some(0)),
        "dropped on the way into b"
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_x_death_from_a_client_is_replaced_not_fatal() {
    let broker = broker_with(&chain());
    let mut envelope = message("m");
    envelope
        .properties
        .headers
        .insert("x-death", "stringified by a client");
    publish(&broker, publish_to("", "b", envelope)).unwrap();
    let mut odd = message("odd");
    odd.properties.headers.insert(
        "x-death",
        HeaderValue::Array(vec![
            HeaderValue::Int(1),
            HeaderValue::Table([("queue", HeaderValue::Int(3))].into_iter().collect()),
        ]),
    );
    publish(&broker, publish_to("", "b", odd)).unwrap();
    broker.until_idle().await;
    let arrived = broker.messages("q");
    assert_eq!(ids_of(&arrived), ["m", "odd"]);
    assert_eq!(deaths(&arrived[0]), [death("b", "expired", 1)]);
    assert_eq!(
        arrived[0].properties.headers.get("x-first-death-queue"),
        None,
        "RabbitMQ sets no first death over an x-death it resets"
    );
    let HeaderValue::Array(entries) = arrived[1].properties.headers.get("x-death").unwrap() else {
        panic!("x-death is not an array");
    };
    assert_eq!(entries.len(), 2, "the foreign entry that is a table stays");
}

fn ids_of(envelopes: &[Envelope]) -> Vec<String> {
    envelopes.iter().map(id_of).collect()
}
