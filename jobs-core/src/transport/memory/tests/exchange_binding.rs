//! Exchange-to-exchange bindings: routing on through them, once per exchange and queue, and
//! declaring them.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::error::Error;

/// Publishes message `id` to `exchange` with `key`, not mandatory.
fn publish_optional(broker: &MemoryTransport, exchange: &str, key: &str, id: &str) {
    let mut p = publish_to(exchange, key, message(id));
    p.mandatory = false;
    publish(broker, p).unwrap();
}

#[tokio::test]
async fn a_message_goes_on_through_exchange_bindings_of_every_type() {
    // topic -> direct -> fanout -> headers, each also binding a queue of its own.
    let mut by_header = binding("by_header", "h", "");
    by_header.arguments = [("kind", "pdf")].into_iter().collect();
    let mut to_headers = exchange_binding("h", "f", "");
    to_headers.arguments = [("ignored", "by a fanout source")].into_iter().collect();
    let broker = broker_with(&Topology {
        exchanges: vec![
            exchange("t", ExchangeKind::Topic),
            exchange("d", ExchangeKind::Direct),
            exchange("f", ExchangeKind::Fanout),
            exchange("h", ExchangeKind::Headers),
        ],
        queues: ["at_t", "at_d", "at_f", "by_header"]
            .iter()
            .map(|name| queue(name, &[]))
            .collect(),
        bindings: vec![
            binding("at_t", "t", "a.*"),
            binding("at_d", "d", "a.b"),
            binding("at_f", "f", ""),
            by_header,
        ],
        exchange_bindings: vec![
            exchange_binding("d", "t", "a.#"),
            exchange_binding("f", "d", "a.b"),
            to_headers,
        ],
    });
    let mut pdf = message("pdf");
    pdf.properties.headers.insert("kind", "pdf");
    publish(&broker, publish_to("t", "a.b", pdf)).unwrap();
    publish_optional(&broker, "t", "a.c", "only-topic");
    publish_optional(&broker, "t", "a.b.c", "past-topic");
    assert_eq!(queued(&broker, "at_t"), ["pdf", "only-topic"]);
    assert_eq!(
        queued(&broker, "at_d"),
        ["pdf"],
        "the direct exchange matches the same key"
    );
    assert_eq!(queued(&broker, "at_f"), ["pdf"]);
    assert_eq!(
        queued(&broker, "by_header"),
        ["pdf"],
        "the headers exchange matches the same headers"
    );
}

#[tokio::test]
async fn each_queue_gets_one_copy_however_many_paths_lead_to_it() {
    // a -> b -> q, a -> c -> q, a -> q, and b -> c.
    let broker = broker_with(&Topology {
        exchanges: ["a", "b", "c"]
            .iter()
            .map(|name| exchange(name, ExchangeKind::Fanout))
            .collect(),
        queues: vec![queue("q", &[])],
        bindings: vec![
            binding("q", "a", ""),
            binding("q", "b", ""),
            binding("q", "c", ""),
        ],
        exchange_bindings: vec![
            exchange_binding("b", "a", ""),
            exchange_binding("c", "a", ""),
            exchange_binding("c", "b", ""),
        ],
    });
    publish(&broker, publish_to("a", "", message("m"))).unwrap();
    assert_eq!(queued(&broker, "q"), ["m"]);
}

#[tokio::test]
async fn a_binding_loop_ends_with_each_exchange_visited_once() {
    // a -> b -> a, and a -> a.
    let broker = broker_with(&Topology {
        exchanges: vec![
            exchange("a", ExchangeKind::Topic),
            exchange("b", ExchangeKind::Topic),
        ],
        queues: vec![queue("qa", &[]), queue("qb", &[])],
        bindings: vec![binding("qa", "a", "#"), binding("qb", "b", "#")],
        exchange_bindings: vec![
            exchange_binding("b", "a", "#"),
            exchange_binding("a", "b", "#"),
            exchange_binding("a", "a", "#"),
        ],
    });
    publish(&broker, publish_to("b", "k", message("m"))).unwrap();
    assert_eq!(
        (queued(&broker, "qa"), queued(&broker, "qb")),
        (vec!["m".to_owned()], vec!["m".to_owned()])
    );
}

#[tokio::test]
async fn mandatory_counts_queues_reached_through_exchange_bindings() {
    let broker = broker_with(&Topology {
        exchanges: vec![
            exchange("front", ExchangeKind::Direct),
            exchange("back", ExchangeKind::Direct),
        ],
        queues: vec![queue("q", &[])],
        bindings: vec![binding("q", "back", "k")],
        exchange_bindings: vec![exchange_binding("back", "front", "k")],
    });
    publish(&broker, publish_to("front", "k", message("m"))).unwrap();
    assert_eq!(queued(&broker, "q"), ["m"]);
    let err = publish(&broker, publish_to("front", "other", message("m"))).unwrap_err();
    assert!(err.is_unroutable(), "{err:?}");
}

/// Level `level` of a three-level delay cascade (delays of 0 to 7 s): a topic exchange that
/// routes a key whose word for the level is `1` into the level's queue (TTL 2^level s), and
/// one whose word is `0` straight on to the exchange below.
fn level(level: u32, topology: &mut Topology) {
    let name = format!("delay.{level}");
    let below = match level {
        0 => "delay.deliver".to_owned(),
        _ => format!("delay.{}", level - 1),
    };
    let word = |bit: &str| {
        let mut words = ["*"; 3];
        words[2 - level as usize] = bit;
        format!("{}.#", words.join("."))
    };
    topology
        .exchanges
        .push(exchange(&name, ExchangeKind::Topic));
    topology.queues.push(queue(
        &name,
        &[
            ("x-queue-type", "quorum".into()),
            ("x-message-ttl", (1000i64 << level).into()),
            ("x-dead-letter-exchange", below.clone().into()),
            ("x-dead-letter-strategy", "at-least-once".into()),
            ("x-overflow", "reject-publish".into()),
        ],
    ));
    topology.bindings.push(binding(&name, &name, &word("1")));
    topology
        .exchange_bindings
        .push(exchange_binding(&below, &name, &word("0")));
}

/// A three-level cascade delivering to queue `work`.
fn cascade() -> Topology {
    let mut topology = Topology {
        exchanges: vec![exchange("delay.deliver", ExchangeKind::Topic)],
        queues: vec![queue("work", &[])],
        bindings: vec![binding("work", "delay.deliver", "*.*.*.work")],
        ..Topology::default()
    };
    for l in 0..3 {
        level(l, &mut topology);
    }
    topology
}

#[tokio::test(start_paused = true)]
async fn a_delay_cascade_delivers_after_the_levels_its_key_spells() {
    let broker = broker_with(&cascade());
    let mut consumer = consume(&broker, "work", 10);
    let start = Instant::now();
    // 5 s = 101 in binary: levels 2 and 0 hold it, level 1 passes it on.
    publish(&broker, publish_to("delay.2", "1.0.1.work", message("m"))).unwrap();
    assert_eq!(queued(&broker, "delay.2"), ["m"]);
    let delivery = consumer.deliveries.next().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        (delivery.exchange.as_ref(), delivery.routing_key.as_ref()),
        ("delay.deliver", "1.0.1.work"),
        "dead-lettered by the last level it waited in, with its own key"
    );

    let start = Instant::now();
    // 2 s: published to level 2's exchange, which passes it on to level 1.
    publish(&broker, publish_to("delay.2", "0.1.0.work", message("m2"))).unwrap();
    assert_eq!(queued(&broker, "delay.1"), ["m2"]);
    consumer.deliveries.next().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    publish(&broker, publish_to("delay.2", "0.0.0.work", message("now"))).unwrap();
    assert_eq!(
        ids(&ready(&mut consumer)),
        ["now"],
        "a zero delay goes straight through"
    );
}

#[tokio::test(start_paused = true)]
async fn dead_lettering_routes_on_through_exchange_bindings() {
    let broker = broker_with(&Topology {
        exchanges: vec![
            exchange("dlx", ExchangeKind::Fanout),
            exchange("next", ExchangeKind::Direct),
        ],
        queues: vec![
            queue(
                "wait",
                &[
                    ("x-message-ttl", 100i64.into()),
                    ("x-dead-letter-exchange", "dlx".into()),
                ],
            ),
            queue("q", &[]),
        ],
        bindings: vec![binding("q", "next", "wait")],
        exchange_bindings: vec![exchange_binding("next", "dlx", "")],
    });
    send(&broker, "wait", "m");
    broker.until_idle().await;
    assert_eq!(queued(&broker, "q"), ["m"]);
}

#[tokio::test]
async fn declaring_an_exchange_binding_twice_binds_once() {
    let topology = Topology {
        exchanges: vec![
            exchange("a", ExchangeKind::Fanout),
            exchange("b", ExchangeKind::Fanout),
        ],
        queues: vec![queue("q", &[])],
        bindings: vec![binding("q", "b", "")],
        exchange_bindings: vec![
            exchange_binding("b", "a", ""),
            exchange_binding("b", "a", ""),
        ],
    };
    let broker = broker_with(&topology);
    declare(&broker, &topology).unwrap();
    publish(&broker, publish_to("a", "", message("m"))).unwrap();
    assert_eq!(queued(&broker, "q"), ["m"]);
}

#[tokio::test]
async fn an_exchange_binding_needs_both_exchanges_and_passive_mode_creates_nothing() {
    let broker = broker_with(&Topology {
        exchanges: vec![exchange("a", ExchangeKind::Fanout)],
        queues: vec![queue("q", &[])],
        bindings: vec![binding("q", "a", "")],
        ..Topology::default()
    });
    for (destination, source, missing) in [("b", "a", "b"), ("a", "b", "b")] {
        let topology = Topology {
            exchange_bindings: vec![exchange_binding(destination, source, "")],
            ..Topology::default()
        };
        for mode in [Declare::Create, Declare::Passive, Declare::Verify] {
            let err = broker
                .declare(&topology, mode)
                .now_or_never()
                .unwrap()
                .unwrap_err();
            assert!(
                matches!(&err, Error::NotFound { what: "exchange", name } if name == missing),
                "{mode:?}: {err:?}"
            );
        }
    }

    let mut both = Topology {
        exchanges: vec![exchange("b", ExchangeKind::Fanout)],
        ..Topology::default()
    };
    declare(&broker, &both).unwrap();
    both.exchange_bindings = vec![exchange_binding("a", "b", "")];
    for mode in [Declare::Passive, Declare::Verify] {
        broker.declare(&both, mode).now_or_never().unwrap().unwrap();
    }
    publish(&broker, publish_to("b", "", message("m"))).unwrap_err();
    assert!(queued(&broker, "q").is_empty(), "checking bound nothing");
    declare(&broker, &both).unwrap();
    publish(&broker, publish_to("b", "", message("m"))).unwrap();
    assert_eq!(queued(&broker, "q"), ["m"]);
}

#[tokio::test]
async fn the_default_exchange_is_neither_source_nor_destination() {
    let broker = broker_with(&Topology {
        exchanges: vec![exchange("a", ExchangeKind::Direct)],
        ..Topology::default()
    });
    for spec in [
        exchange_binding("a", "", "k"),
        exchange_binding("", "a", "k"),
    ] {
        let topology = Topology {
            exchange_bindings: vec![spec],
            ..Topology::default()
        };
        let err = declare(&broker, &topology).unwrap_err();
        assert!(
            matches!(&err, Error::Topology(m) if m.contains("default exchange")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_headers_exchange_binding_is_refused() {
    let broker = broker_with(&Topology {
        exchanges: vec![
            exchange("h", ExchangeKind::Headers),
            exchange("d", ExchangeKind::Direct),
        ],
        ..Topology::default()
    });
    let mut spec = exchange_binding("d", "h", "");
    spec.arguments = [("x-match", "some")].into_iter().collect();
    let topology = Topology {
        exchange_bindings: vec![spec],
        ..Topology::default()
    };
    assert!(matches!(
        declare(&broker, &topology),
        Err(Error::Topology(_))
    ));
}
