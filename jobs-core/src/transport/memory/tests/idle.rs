//! Quiescence: `until_idle` returns when nothing is left to happen, and only then.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_broker_with_nothing_to_do_is_idle() {
    let broker = queues(&["q"]);
    assert!(broker.is_idle());
    send(&broker, "q", "m");
    assert!(
        broker.is_idle(),
        "a ready message nobody consumes will not move"
    );
    broker.until_idle().await;
}

#[tokio::test(start_paused = true)]
async fn until_idle_waits_for_every_delivery_to_be_settled() {
    let broker = queues(&["q"]);
    let mut consumer = consume(&broker, "q", 10);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    assert!(!broker.is_idle());
    let worker = tokio::spawn(async move {
        while let Some(delivery) = consumer.deliveries.next().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
            consumer
                .settler
                .settle(Settlement::Ack {
                    tag: delivery.tag,
                    multiple: false,
                })
                .await
                .unwrap();
        }
    });
    let start = Instant::now();
    broker.until_idle().await;
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(broker.unacked("q"), 0);
    worker.abort();
}

#[tokio::test(start_paused = true)]
async fn until_idle_returns_only_after_ttl_messages_moved() {
    let broker = broker_with(&Topology {
        queues: vec![
            queue("q", &[]),
            queue(
                "q.retry.1",
                &[
                    ("x-message-ttl", 1500i64.into()),
                    ("x-dead-letter-exchange", "".into()),
                    ("x-dead-letter-routing-key", "q".into()),
                ],
            ),
        ],
        ..Topology::default()
    });
    let start = Instant::now();
    send(&broker, "q.retry.1", "m");
    assert!(!broker.is_idle());
    broker.until_idle().await;
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(
        (broker.queue_len("q.retry.1"), queued(&broker, "q")),
        (Some(0), vec!["m".to_owned()])
    );
}

#[tokio::test(start_paused = true)]
async fn ready_messages_keep_a_consumed_queue_busy_until_delivered() {
    let broker = queues(&["q"]);
    let mut consumer = consume(&broker, "q", 1);
    send(&broker, "q", "m1");
    send(&broker, "q", "m2");
    assert_eq!(ready(&mut consumer).len(), 1);
    ack(&consumer, 1);
    assert!(!broker.is_idle(), "m2 is now unacked");
    ack(&consumer, 2);
    assert!(broker.is_idle());
    drop(consumer);
    send(&broker, "q", "m3");
    assert!(broker.is_idle(), "no consumer any more");
}
