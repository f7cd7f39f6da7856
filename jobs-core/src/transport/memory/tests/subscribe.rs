//! Subscriptions and queue deletion.

use super::*;
use crate::error::Error;

fn news_exchange() -> MemoryTransport {
    broker_with(&Topology {
        exchanges: vec![exchange("news", ExchangeKind::Topic)],
        ..Topology::default()
    })
}

fn publish_news(broker: &MemoryTransport, key: &str, id: &str) -> crate::Result<()> {
    publish(broker, publish_to("news", key, message(id)))
}

#[test]
fn a_subscription_hears_what_is_published_after_it_and_goes_with_its_stream() {
    let broker = news_exchange();
    assert!(matches!(
        publish_news(&broker, "news.a", "early"),
        Err(Error::Unroutable { .. })
    ));
    let keys = ["news.a".to_owned(), "news.b".to_owned()];
    let mut news = broker
        .subscribe("news", &keys)
        .now_or_never()
        .unwrap()
        .unwrap();
    publish_news(&broker, "news.a", "1").unwrap();
    assert!(publish_news(&broker, "news.c", "not-bound").is_err());
    publish_news(&broker, "news.b", "2").unwrap();
    let mut heard = Vec::new();
    while let Some(Some(envelope)) = news.next().now_or_never() {
        heard.push(id_of(&envelope));
    }
    assert_eq!(heard, ["1", "2"]);
    // Settled as handed out: nothing keeps the broker busy.
    assert!(broker.until_idle().now_or_never().is_some());

    drop(news);
    // Its queue's binding stays behind (see the module docs), but what it routes is dropped.
    publish_news(&broker, "news.a", "late").unwrap();
    assert!(broker.until_idle().now_or_never().is_some());
}

#[test]
fn a_subscription_to_a_missing_exchange_is_not_found() {
    let broker = MemoryTransport::new();
    let subscribed = broker
        .subscribe("nowhere", &["a".to_owned()])
        .now_or_never()
        .unwrap();
    assert!(matches!(subscribed, Err(Error::NotFound { .. })));
}

#[test]
fn a_deleted_queue_is_gone_and_a_new_one_takes_its_name() {
    let broker = queues(&["q"]);
    send(&broker, "q", "old");
    let mut consumer = consume(&broker, "q", 1);
    assert_eq!(ids(&ready(&mut consumer)), ["old"]);
    // Ready behind the unacked one.
    send(&broker, "q", "waiting");
    broker.delete_queue("q").now_or_never().unwrap().unwrap();
    assert_eq!(broker.queue_len("q"), None);
    // Its consumer's stream ended.
    assert!(matches!(
        consumer.deliveries.next().now_or_never(),
        Some(None)
    ));
    broker.delete_queue("q").now_or_never().unwrap().unwrap();

    declare(
        &broker,
        &Topology {
            queues: vec![queue("q", &[])],
            ..Topology::default()
        },
    )
    .unwrap();
    assert_eq!(queued(&broker, "q"), Vec::<String>::new());
    send(&broker, "q", "new");
    assert_eq!(queued(&broker, "q"), ["new"]);
}
