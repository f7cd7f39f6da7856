//! Exchanges route by their type's rules; publishing reports what RabbitMQ reports.

use super::*;
use crate::error::Error;

fn exchange_with(kind: ExchangeKind, bindings: &[(&str, BindingSpec)]) -> MemoryTransport {
    broker_with(&Topology {
        exchanges: vec![exchange("ex", kind)],
        queues: bindings.iter().map(|(name, _)| queue(name, &[])).collect(),
        bindings: bindings.iter().map(|(_, b)| b.clone()).collect(),
        ..Topology::default()
    })
}

/// Which of `queues` hold a message after publishing one with `key` and `headers`.
fn routed(
    broker: &MemoryTransport,
    key: &str,
    headers: &[(&'static str, HeaderValue)],
    queues: &[&str],
) -> Vec<String> {
    let mut envelope = message("m");
    envelope.properties.headers = headers.iter().cloned().collect();
    let mut p = publish_to("ex", key, envelope);
    p.mandatory = false;
    publish(broker, p).unwrap();
    let hit = queues
        .iter()
        .filter(|q| broker.queue_len(q) == Some(1))
        .map(|q| (*q).to_owned())
        .collect();
    // Empty the queues for the next probe.
    for q in queues {
        let mut consumer = consume(broker, q, 0);
        for d in ready(&mut consumer) {
            ack(&consumer, d.tag);
        }
    }
    hit
}

#[tokio::test]
async fn direct_routes_on_the_exact_key() {
    let broker = exchange_with(
        ExchangeKind::Direct,
        &[
            ("a", binding("a", "ex", "k")),
            ("b", binding("b", "ex", "k.x")),
        ],
    );
    assert_eq!(routed(&broker, "k", &[], &["a", "b"]), ["a"]);
    assert_eq!(routed(&broker, "k.x", &[], &["a", "b"]), ["b"]);
    assert!(routed(&broker, "K", &[], &["a", "b"]).is_empty());
}

#[tokio::test]
async fn topic_routes_on_patterns() {
    let broker = exchange_with(
        ExchangeKind::Topic,
        &[
            ("all", binding("all", "ex", "#")),
            ("one", binding("one", "ex", "a.*")),
            ("tail", binding("tail", "ex", "a.#")),
        ],
    );
    let queues = ["all", "one", "tail"];
    assert_eq!(
        routed(&broker, "a", &[], &queues),
        ["all", "tail"],
        "`#` takes zero words, `*` one"
    );
    assert_eq!(routed(&broker, "a.b", &[], &queues), ["all", "one", "tail"]);
    assert_eq!(routed(&broker, "a.b.c", &[], &queues), ["all", "tail"]);
    assert_eq!(
        routed(&broker, "", &[], &queues),
        ["all"],
        "`#` matches the empty key"
    );
}

#[tokio::test]
async fn fanout_copies_to_every_bound_queue() {
    let broker = exchange_with(
        ExchangeKind::Fanout,
        &[
            ("a", binding("a", "ex", "x")),
            ("b", binding("b", "ex", "")),
        ],
    );
    assert_eq!(routed(&broker, "anything", &[], &["a", "b"]), ["a", "b"]);
}

#[tokio::test]
async fn headers_match_all_or_any_ignoring_x_arguments() {
    let mut all = binding("all", "ex", "");
    all.arguments = [
        ("x-match", HeaderValue::from("all")),
        ("kind", "pdf".into()),
        ("x-note", "ignored".into()),
        ("size", 1i64.into()),
    ]
    .into_iter()
    .collect();
    let mut any = binding("any", "ex", "");
    any.arguments = [("x-match", "any"), ("kind", "pdf"), ("lang", "en")]
        .into_iter()
        .collect();
    let broker = exchange_with(ExchangeKind::Headers, &[("all", all), ("any", any)]);
    let queues = ["all", "any"];
    let pdf = || ("kind", HeaderValue::from("pdf"));
    assert_eq!(
        routed(&broker, "", &[pdf(), ("size", 1i64.into())], &queues),
        ["all", "any"]
    );
    assert_eq!(routed(&broker, "", &[pdf()], &queues), ["any"]);
    assert_eq!(
        routed(&broker, "", &[("lang", "en".into())], &queues),
        ["any"]
    );
    assert_eq!(
        routed(&broker, "", &[pdf(), ("size", 2i64.into())], &queues),
        ["any"]
    );
    assert!(routed(&broker, "", &[], &queues).is_empty());
}

#[tokio::test]
async fn the_default_exchange_routes_to_the_queue_named_by_the_key() {
    let broker = queues(&["work"]);
    send(&broker, "work", "m1");
    assert_eq!(queued(&broker, "work"), ["m1"]);
}

#[tokio::test]
async fn a_queue_bound_twice_gets_one_copy() {
    let broker = exchange_with(
        ExchangeKind::Topic,
        &[
            ("q", binding("q", "ex", "a.*")),
            ("q", binding("q", "ex", "#")),
        ],
    );
    publish(&broker, publish_to("ex", "a.b", message("m"))).unwrap();
    assert_eq!(broker.queue_len("q"), Some(1));
}

#[tokio::test]
async fn fanout_copies_share_the_body() {
    let broker = exchange_with(
        ExchangeKind::Fanout,
        &[("a", binding("a", "ex", "")), ("b", binding("b", "ex", ""))],
    );
    publish(&broker, publish_to("ex", "", message("m"))).unwrap();
    let (a, b) = (broker.messages("a"), broker.messages("b"));
    assert_eq!(a[0].body.as_ptr(), b[0].body.as_ptr());
}

#[tokio::test]
async fn an_unroutable_mandatory_message_is_an_error_and_is_not_logged() {
    let broker = MemoryTransport::recording();
    declare(
        &broker,
        &Topology {
            exchanges: vec![exchange("ex", ExchangeKind::Direct)],
            ..Topology::default()
        },
    )
    .unwrap();
    let err = publish(&broker, publish_to("ex", "nowhere", message("m"))).unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { exchange, routing_key } if exchange == "ex" && routing_key == "nowhere"),
        "{err:?}"
    );
    let err = publish(&broker, publish_to("", "no-queue", message("m"))).unwrap_err();
    assert!(err.is_unroutable(), "{err:?}");
    assert!(broker.published().is_empty());

    let mut optional = publish_to("ex", "nowhere", message("dropped"));
    optional.mandatory = false;
    publish(&broker, optional.clone()).unwrap();
    assert_eq!(
        broker.published(),
        [optional],
        "a non-mandatory message is confirmed and dropped"
    );
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_is_not_found() {
    let broker = MemoryTransport::new();
    let err = publish(&broker, publish_to("nope", "k", message("m"))).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if name == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn only_a_recording_broker_logs_publishes() {
    let plain = queues(&["q"]);
    send(&plain, "q", "m");
    assert!(plain.published().is_empty());

    let recording = MemoryTransport::recording();
    declare(
        &recording,
        &Topology {
            queues: vec![queue("q", &[])],
            ..Topology::default()
        },
    )
    .unwrap();
    send(&recording, "q", "m1");
    send(&recording, "q", "m2");
    let log: Vec<String> = recording
        .published()
        .iter()
        .map(|p| id_of(&p.envelope))
        .collect();
    assert_eq!(log, ["m1", "m2"]);
}
