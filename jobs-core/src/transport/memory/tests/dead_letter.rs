//! Dead-lettering: rejections, the quorum delivery limit and queue TTLs on a paused clock.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// A quorum work queue `q` with `limit`, dead-lettering to `q.err` through the default
/// exchange, and a retry queue with a 1 s TTL that dead-letters back to `q`.
fn job_topology(limit: i64) -> Topology {
    Topology {
        queues: vec![
            queue(
                "q",
                &[
                    ("x-queue-type", "quorum".into()),
                    ("x-delivery-limit", limit.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q.err".into()),
                ],
            ),
            queue(
                "q.retry.1",
                &[
                    ("x-message-ttl", 1000i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q".into()),
                ],
            ),
            queue("q.err", &[]),
        ],
        ..Topology::default()
    }
}

fn header<'a>(envelope: &'a Envelope, name: &str) -> Option<&'a str> {
    envelope.properties.headers.get_str(name)
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_its_first_death() {
    let broker = broker_with(&job_topology(5));
    send(&broker, "q", "m");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ready(&mut consumer).len(), 1);
    nack(&consumer, 1, false);
    let dead = broker.messages("q.err");
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], "x-first-death-reason"), Some("rejected"));
    assert_eq!(header(&dead[0], "x-first-death-queue"), Some("q"));
    assert_eq!(header(&dead[0], "x-first-death-exchange"), Some(""));
    assert_eq!(
        dead[0].body,
        message("m").body,
        "properties and body are kept"
    );
    assert_eq!(id_of(&dead[0]), "m");
}

#[tokio::test]
async fn the_delivery_limit_dead_letters_a_message_returned_too_often() {
    let broker = broker_with(&job_topology(2));
    send(&broker, "q", "m");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let mut consumer = consume(&broker, "q", 1);
        let delivery = ready(&mut consumer).remove(0);
        counts.push(
            delivery
                .envelope
                .properties
                .headers
                .get("x-delivery-count")
                .cloned(),
        );
        // A crash: the channel closes with the delivery unacked.
        drop(consumer);
    }
    assert_eq!(
        counts,
        [None, Some(HeaderValue::Int(1)), Some(HeaderValue::Int(2))]
    );
    assert_eq!(broker.queue_len("q"), Some(0));
    let dead = broker.messages("q.err");
    assert_eq!(dead.len(), 1, "the third return is over the limit of 2");
    assert_eq!(
        header(&dead[0], "x-first-death-reason"),
        Some("delivery_limit")
    );
}

#[tokio::test]
async fn requeue_nacks_and_disconnects_count_toward_the_delivery_limit() {
    let broker = broker_with(&job_topology(1));
    send(&broker, "q", "m");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ready(&mut consumer).len(), 1);
    nack(&consumer, 1, true);
    assert_eq!(ready(&mut consumer).len(), 1);
    broker.disconnect();
    assert_eq!(broker.messages("q.err").len(), 1);
}

#[tokio::test]
async fn a_queue_without_a_dead_letter_exchange_drops_what_it_dead_letters() {
    let broker = queues(&["q"]);
    send(&broker, "q", "m");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ready(&mut consumer).len(), 1);
    nack(&consumer, 1, false);
    assert_eq!((broker.queue_len("q"), broker.unacked("q")), (Some(0), 0));
}

#[tokio::test(start_paused = true)]
async fn a_message_expires_after_the_queue_ttl_and_goes_to_the_dead_letter_target() {
    let broker = broker_with(&job_topology(5));
    let mut consumer = consume(&broker, "q", 10);
    let start = Instant::now();
    send(&broker, "q.retry.1", "m");
    assert!(ready(&mut consumer).is_empty());
    let delivery = consumer.deliveries.next().await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "exactly the TTL, on virtual time"
    );
    assert_eq!(
        (delivery.exchange.as_ref(), delivery.routing_key.as_ref()),
        ("", "q")
    );
    assert_eq!(
        header(&delivery.envelope, "x-first-death-reason"),
        Some("expired")
    );
    assert_eq!(
        header(&delivery.envelope, "x-first-death-queue"),
        Some("q.retry.1")
    );
    assert!(!delivery.redelivered);
}

#[tokio::test(start_paused = true)]
async fn messages_expire_head_first_each_a_ttl_after_it_entered() {
    let broker = broker_with(&job_topology(5));
    let mut consumer = consume(&broker, "q", 10);
    let start = Instant::now();
    send(&broker, "q.retry.1", "m1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&broker, "q.retry.1", "m2");
    let mut arrivals = Vec::new();
    for _ in 0..2 {
        let delivery = consumer.deliveries.next().await.unwrap();
        arrivals.push((id_of(&delivery.envelope), start.elapsed()));
    }
    assert_eq!(
        arrivals,
        [
            ("m1".to_owned(), Duration::from_millis(1000)),
            ("m2".to_owned(), Duration::from_millis(1300))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_death_headers_stay_those_of_the_first_death() {
    let broker = broker_with(&job_topology(5));
    let mut consumer = consume(&broker, "q", 10);
    send(&broker, "q.retry.1", "m");
    let delivery = consumer.deliveries.next().await.unwrap();
    nack(&consumer, delivery.tag, false);
    let dead = broker.messages("q.err");
    assert_eq!(header(&dead[0], "x-first-death-reason"), Some("expired"));
    assert_eq!(header(&dead[0], "x-first-death-queue"), Some("q.retry.1"));
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_cycle_without_rejection_is_broken() {
    let ttl_to = |name: &str, target: &str| {
        queue(
            name,
            &[
                ("x-message-ttl", 100i64.into()),
                ("x-dead-letter-exchange", "".into()),
                ("x-dead-letter-routing-key", target.to_owned().into()),
            ],
        )
    };
    let broker = broker_with(&Topology {
        queues: vec![ttl_to("a", "b"), ttl_to("b", "a")],
        ..Topology::default()
    });
    let start = Instant::now();
    send(&broker, "a", "m");
    broker.until_idle().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200),
        "a to b, then dropped instead of back to a"
    );
    assert_eq!(
        (broker.queue_len("a"), broker.queue_len("b")),
        (Some(0), Some(0))
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_message_is_never_delivered() {
    let broker = broker_with(&job_topology(5));
    let start = Instant::now();
    // A consumer on the TTL queue itself, with no credit until after the TTL.
    send(&broker, "q.retry.1", "first");
    send(&broker, "q.retry.1", "second");
    let mut consumer = consume(&broker, "q.retry.1", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["first"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ack(&consumer, 1);
    assert!(ready(&mut consumer).is_empty(), "second expired at 1 s");
    assert_eq!(broker.queue_len("q"), Some(1));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}
