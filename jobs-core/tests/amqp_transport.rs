//! The AMQP transport against a RabbitMQ broker: `JOBS_AMQP_URL`, or the local default.
//!
//! Each test names its exchanges and queues uniquely and deletes them at the end. Without a
//! broker the tests skip, unless `JOBS_REQUIRE_BROKER` is set, when they fail.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use jobs_core::topology::{BindingSpec, ExchangeSpec, QueueSpec, Topology, argument};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Consumer, Declare, Delivery, Publish, Settlement, Transport};
use jobs_core::{Envelope, Error, ExchangeKind, HeaderValue, Headers};
use support::broker::{cleanup, to_queue, unique};

/// The start of every name these tests declare.
const PREFIX: &str = "amqp-test";

/// Generous: a bound on a wait that should end at once, not a timing assumption.
const WAIT: Duration = Duration::from_secs(10);

fn queue(name: &str, arguments: Headers) -> QueueSpec {
    QueueSpec {
        name: name.to_owned(),
        arguments,
    }
}

fn classic(name: &str) -> Topology {
    Topology {
        queues: vec![queue(
            name,
            [(argument::QUEUE_TYPE, "classic")].into_iter().collect(),
        )],
        ..Topology::default()
    }
}

fn with_id(id: &str) -> Envelope {
    let mut envelope = Envelope::default();
    envelope.properties.message_id = Some(id.to_owned());
    envelope
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.deliveries.next())
        .await
        .expect("no delivery in time")
        .expect("the delivery stream ended")
}

/// Asserts that `queue` holds `ready` messages ready for delivery: the broker's own count, so a
/// message it had sent to a consumer, even one not received yet, is not among them.
async fn ready_count(transport: &AmqpTransport, queue: &str, ready: u64) {
    assert_eq!(transport.message_count(queue).await.unwrap(), ready);
}

fn id(delivery: &Delivery) -> &str {
    delivery.envelope.properties.message_id.as_deref().unwrap()
}

#[tokio::test]
async fn publish_consume_ack_round_trip_keeps_properties_and_headers() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "round-trip");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();

    let nested: Headers = [("inner", HeaderValue::Int(-7))].into_iter().collect();
    // Sorted by name: a field table comes back in key order.
    let headers: Headers = [
        ("a-string", HeaderValue::String("text ✓".into())),
        ("b-bytes", HeaderValue::Bytes(vec![0xff, 0x00, 0xfe])),
        ("c-int", HeaderValue::Int(i64::MIN)),
        ("d-float", HeaderValue::Float(1.5)),
        ("e-bool", HeaderValue::Bool(true)),
        ("f-timestamp", HeaderValue::Timestamp(1_700_000_000)),
        (
            "g-array",
            HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::from("two")]),
        ),
        ("h-table", HeaderValue::Table(nested)),
        ("i-void", HeaderValue::Void),
    ]
    .into_iter()
    .collect();
    let mut envelope = with_id("m-1");
    envelope.properties.content_type = Some(jobs_core::envelope::CONTENT_TYPE.into());
    envelope.properties.kind = Some("send_email".into());
    envelope.properties.correlation_id = Some("corr".into());
    envelope.properties.reply_to = Some("replies".into());
    envelope.properties.timestamp = Some(1_700_000_001);
    envelope.properties.persistent = true;
    envelope.properties.headers = headers;
    envelope.body = bytes::Bytes::from_static(b"\x08\x96\x01 protobuf");
    transport
        .publish(to_queue(&name, envelope.clone()))
        .await
        .unwrap();

    let mut consumer = transport.consume(&name, 10).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.tag, 1);
    assert!(!delivery.redelivered);
    assert_eq!(delivery.exchange, "");
    assert_eq!(delivery.routing_key, name);
    assert_eq!(*delivery.envelope, envelope);
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: 1,
            multiple: false,
        })
        .await
        .unwrap();
    drop(consumer);
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn an_unroutable_mandatory_message_is_an_error() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let exchange = unique(PREFIX, "unroutable");
    let topology = Topology {
        exchanges: vec![ExchangeSpec {
            name: exchange.clone(),
            kind: ExchangeKind::Direct,
        }],
        ..Topology::default()
    };
    transport.declare(&topology, Declare::Create).await.unwrap();
    let err = transport
        .publish(Publish {
            exchange: exchange.clone().into(),
            routing_key: "nobody".into(),
            mandatory: true,
            envelope: with_id("u"),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { exchange: e, routing_key } if *e == exchange && routing_key == "nobody"),
        "{err:?}"
    );
    let not_mandatory = Publish {
        exchange: exchange.clone().into(),
        routing_key: "nobody".into(),
        mandatory: false,
        envelope: with_id("u"),
    };
    transport.publish(not_mandatory).await.unwrap();
    cleanup(&url, &[], &[&exchange]).await;
}

#[tokio::test]
async fn a_missing_exchange_is_not_found_and_publishing_goes_on() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let missing = unique(PREFIX, "missing-exchange");
    let err = transport
        .publish(Publish {
            exchange: missing.clone().into(),
            routing_key: "k".into(),
            mandatory: true,
            envelope: with_id("x"),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name } if *name == missing),
        "{err:?}"
    );

    let name = unique(PREFIX, "after-channel-error");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    transport
        .publish(to_queue(&name, with_id("ok")))
        .await
        .unwrap();
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn declaring_twice_is_a_no_op_and_bindings_route() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let exchange = unique(PREFIX, "twice-exchange");
    let name = unique(PREFIX, "twice");
    let mut topology = classic(&name);
    topology.exchanges.push(ExchangeSpec {
        name: exchange.clone(),
        kind: ExchangeKind::Topic,
    });
    topology.bindings.push(BindingSpec {
        queue: name.clone(),
        exchange: exchange.clone(),
        routing_key: "jobs.*".into(),
        arguments: Headers::new(),
    });
    transport.declare(&topology, Declare::Create).await.unwrap();
    transport.declare(&topology, Declare::Create).await.unwrap();
    transport
        .declare(&topology, Declare::Passive)
        .await
        .unwrap();
    transport
        .publish(Publish {
            exchange: exchange.clone().into(),
            routing_key: "jobs.email".into(),
            mandatory: true,
            envelope: with_id("routed"),
        })
        .await
        .unwrap();
    let mut consumer = transport.consume(&name, 1).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(id(&delivery), "routed");
    assert_eq!(delivery.exchange, exchange);
    assert_eq!(delivery.routing_key, "jobs.email");
    drop(consumer);
    cleanup(&url, &[&name], &[&exchange]).await;
}

#[tokio::test]
async fn a_queue_with_other_arguments_is_a_mismatch() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "mismatch");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    let quorum = Topology {
        queues: vec![queue(
            &name,
            [(argument::QUEUE_TYPE, "quorum")].into_iter().collect(),
        )],
        ..Topology::default()
    };
    let err = transport
        .declare(&quorum, Declare::Create)
        .await
        .unwrap_err();
    let Error::QueueMismatch {
        queue,
        argument,
        existing,
        declared,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(queue, &name);
    assert_eq!(argument, "x-queue-type");
    assert_eq!(existing, "classic");
    assert_eq!(declared, "quorum");
    // The failed declaration does not poison the next one.
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    cleanup(&url, &[&name], &[]).await;
}

/// A declaration spreads its steps over several channels at once; of two mismatches it still
/// reports the earlier one, as one channel declaring in order would.
#[tokio::test]
async fn of_many_queues_the_earliest_mismatch_is_the_error() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let names: Vec<String> = (0..20)
        .map(|n| unique(PREFIX, &format!("many{n}")))
        .collect();
    let typed = |quorum: &[usize]| Topology {
        queues: names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                let kind = if quorum.contains(&n) {
                    "quorum"
                } else {
                    "classic"
                };
                queue(name, [(argument::QUEUE_TYPE, kind)].into_iter().collect())
            })
            .collect(),
        ..Topology::default()
    };
    transport
        .declare(&typed(&[]), Declare::Create)
        .await
        .unwrap();
    // Of 20 steps over 8 channels, 6 and 13 go on two channels, 5 and 13 on one.
    for (quorum, earliest) in [([13, 6], 6), ([13, 5], 5)] {
        let err = transport
            .declare(&typed(&quorum), Declare::Create)
            .await
            .unwrap_err();
        let Error::QueueMismatch { queue, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(queue, &names[earliest]);
    }
    // Neither failure poisons the next declaration.
    transport
        .declare(&typed(&[]), Declare::Verify)
        .await
        .unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    cleanup(&url, &refs, &[]).await;
}

/// A declaration that cannot open all its channels (on a connection allowed only a few) fails
/// with that error and runs no step; the channels it did open are closed, so failing again and
/// again leaks none, and a declaration that needs one channel then goes through.
#[tokio::test]
async fn a_declaration_whose_channels_cannot_all_open_fails_and_leaks_none() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let limited = format!("{url}{separator}channel_max=4");
    let transport = AmqpTransport::connect(&limited).await.unwrap();
    let names: Vec<String> = (0..8)
        .map(|n| unique(PREFIX, &format!("lanes{n}")))
        .collect();
    // Eight queues: eight steps of one kind, so eight channels wanted.
    let eight = Topology {
        queues: names
            .iter()
            .map(|name| {
                queue(
                    name,
                    [(argument::QUEUE_TYPE, "classic")].into_iter().collect(),
                )
            })
            .collect(),
        ..Topology::default()
    };
    for _ in 0..5 {
        let err = transport
            .declare(&eight, Declare::Create)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Connection(reason) if reason.to_string().contains("channel")),
            "{err:?}"
        );
    }
    // No step ran: none of the eight queues exists.
    let unlimited = AmqpTransport::connect(&url).await.unwrap();
    for name in &names {
        let missing = unlimited.message_count(name).await.unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    }
    transport
        .declare(&classic(&names[0]), Declare::Create)
        .await
        .expect("a declaration on one channel goes through: the failed ones leaked none");
    cleanup(&url, &[&names[0]], &[]).await;
}

#[tokio::test]
async fn an_exchange_of_another_kind_is_a_topology_error() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let exchange = unique(PREFIX, "kind");
    let of_kind = |kind| Topology {
        exchanges: vec![ExchangeSpec {
            name: exchange.clone(),
            kind,
        }],
        ..Topology::default()
    };
    transport
        .declare(&of_kind(ExchangeKind::Direct), Declare::Create)
        .await
        .unwrap();
    let err = transport
        .declare(&of_kind(ExchangeKind::Topic), Declare::Create)
        .await
        .unwrap_err();
    let Error::Topology(message) = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains(&exchange), "{message}");
    assert!(
        message.contains("direct") && message.contains("topic"),
        "{message}"
    );
    cleanup(&url, &[], &[&exchange]).await;
}

#[tokio::test]
async fn passive_declare_of_something_missing_is_not_found() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "passive");
    let err = transport
        .declare(&classic(&name), Declare::Passive)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "queue", name: n } if *n == name),
        "{err:?}"
    );
    let exchange = unique(PREFIX, "passive-exchange");
    let topology = Topology {
        exchanges: vec![ExchangeSpec {
            name: exchange.clone(),
            kind: ExchangeKind::Fanout,
        }],
        ..Topology::default()
    };
    let err = transport
        .declare(&topology, Declare::Passive)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "exchange", name: n } if *n == exchange),
        "{err:?}"
    );
    let err = transport.consume(&name, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "queue", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "prefetch");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    for n in 1..=5 {
        transport
            .publish(to_queue(&name, with_id(&n.to_string())))
            .await
            .unwrap();
    }
    let mut consumer = transport.consume(&name, 2).await.unwrap();
    assert_eq!(next(&mut consumer).await.tag, 1);
    assert_eq!(next(&mut consumer).await.tag, 2);
    ready_count(&transport, &name, 3).await;
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: 2,
            multiple: true,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut consumer).await.tag, 3);
    assert_eq!(next(&mut consumer).await.tag, 4);
    ready_count(&transport, &name, 1).await;
    drop(consumer);
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn nack_with_requeue_redelivers() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "nack");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    transport
        .publish(to_queue(&name, with_id("again")))
        .await
        .unwrap();
    let mut consumer = transport.consume(&name, 1).await.unwrap();
    let first = next(&mut consumer).await;
    assert!(!first.redelivered);
    consumer
        .settler
        .settle(Settlement::Nack {
            tag: first.tag,
            multiple: false,
            requeue: true,
        })
        .await
        .unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(id(&second), "again");
    assert_eq!(second.tag, 2);
    assert!(second.redelivered);
    drop(consumer);
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn ack_multiple_settles_every_earlier_tag() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "ack-multiple");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    for n in 1..=3 {
        transport
            .publish(to_queue(&name, with_id(&n.to_string())))
            .await
            .unwrap();
    }
    let mut consumer = transport.consume(&name, 10).await.unwrap();
    for tag in 1..=3 {
        assert_eq!(next(&mut consumer).await.tag, tag);
    }
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: 3,
            multiple: true,
        })
        .await
        .unwrap();
    transport
        .publish(to_queue(&name, with_id("marker")))
        .await
        .unwrap();
    assert_eq!(id(&next(&mut consumer).await), "marker");
    // Closing the channel returns what is unacked; had the acks not counted, 1 to 3 would come
    // back ahead of the marker, and wait behind it as ready messages.
    drop(consumer);
    let mut consumer = transport.consume(&name, 1).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(id(&delivery), "marker");
    assert!(delivery.redelivered);
    ready_count(&transport, &name, 0).await;
    drop(consumer);
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn quorum_delivery_limit_and_ttl_retry_dead_letter() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let work = unique(PREFIX, "quorum");
    let retry = format!("{work}.retry.1");
    let error = format!("{work}.err");
    let quorum = |extra: &[(&'static str, HeaderValue)]| {
        let mut arguments: Headers = [(argument::QUEUE_TYPE, "quorum")].into_iter().collect();
        for (name, value) in extra {
            arguments.insert(*name, value.clone());
        }
        arguments
    };
    let at_least_once = [
        (argument::DEAD_LETTER_STRATEGY, "at-least-once".into()),
        (argument::OVERFLOW, "reject-publish".into()),
    ];
    let topology = Topology {
        queues: vec![
            queue(
                &work,
                quorum(
                    &[
                        (argument::DEAD_LETTER_EXCHANGE, "".into()),
                        (argument::DEAD_LETTER_ROUTING_KEY, error.clone().into()),
                        (argument::DELIVERY_LIMIT, HeaderValue::Int(1)),
                    ]
                    .into_iter()
                    .chain(at_least_once.clone())
                    .collect::<Vec<_>>(),
                ),
            ),
            queue(
                &retry,
                quorum(
                    &[
                        (argument::MESSAGE_TTL, HeaderValue::Int(200)),
                        (argument::DEAD_LETTER_EXCHANGE, "".into()),
                        (argument::DEAD_LETTER_ROUTING_KEY, work.clone().into()),
                    ]
                    .into_iter()
                    .chain(at_least_once)
                    .collect::<Vec<_>>(),
                ),
            ),
            queue(&error, quorum(&[])),
        ],
        ..Topology::default()
    };
    transport.declare(&topology, Declare::Create).await.unwrap();
    transport.declare(&topology, Declare::Create).await.unwrap();

    // A retry waits out the TTL, then dead-letters back to the work queue.
    transport
        .publish(to_queue(&retry, with_id("retried")))
        .await
        .unwrap();
    let mut consumer = transport.consume(&work, 1).await.unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(id(&delivery), "retried");
    assert_eq!(delivery.routing_key, work);

    // Returned past the delivery limit, it dead-letters to the error queue: returned until it
    // shows up there, and no more than the limit allows.
    let mut errors = transport.consume(&error, 1).await.unwrap();
    let mut tag = delivery.tag;
    let mut returns = 0;
    let dead = loop {
        consumer
            .settler
            .settle(Settlement::Nack {
                tag,
                multiple: false,
                requeue: true,
            })
            .await
            .unwrap();
        returns += 1;
        tokio::select! {
            dead = next(&mut errors) => break dead,
            again = next(&mut consumer) => {
                assert!(again.redelivered);
                tag = again.tag;
            }
        }
    };
    assert_eq!(id(&dead), "retried");
    assert_eq!(returns, 2, "a delivery limit of 1 allows one redelivery");
    drop((consumer, errors));
    cleanup(&url, &[&work, &retry, &error], &[]).await;
}

#[tokio::test]
async fn many_publishes_are_in_flight_at_once() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "in-flight");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    let publishes = (0..1000).map(|n| transport.publish(to_queue(&name, with_id(&n.to_string()))));
    let results = join_all(publishes).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn debug_output_hides_the_password() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let shown = format!("{transport:?}");
    if let Some(password) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
    {
        assert!(!shown.contains(&format!(":{password}@")), "{shown}");
    }
    assert!(shown.contains(":**@") || !url.contains('@'), "{shown}");
}

#[tokio::test]
async fn verify_creates_nothing_and_reports_drift_by_argument() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "verify");
    let err = transport
        .declare(&classic(&name), Declare::Verify)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "queue", name: n } if *n == name),
        "{err:?}"
    );
    // Nothing was created: a passive declare still finds nothing.
    let err = transport
        .declare(&classic(&name), Declare::Passive)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::NotFound { .. }), "{err:?}");

    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    transport
        .declare(&classic(&name), Declare::Verify)
        .await
        .unwrap();
    let quorum = Topology {
        queues: vec![queue(
            &name,
            [(argument::QUEUE_TYPE, "quorum")].into_iter().collect(),
        )],
        ..Topology::default()
    };
    // Passive declare sees no drift; verify does.
    transport.declare(&quorum, Declare::Passive).await.unwrap();
    let err = transport
        .declare(&quorum, Declare::Verify)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::QueueMismatch { queue, argument, existing, declared }
            if *queue == name && argument == "x-queue-type" && existing == "classic" && declared == "quorum"),
        "{err:?}"
    );

    let exchange = unique(PREFIX, "verify-exchange");
    let of_kind = |kind| Topology {
        exchanges: vec![ExchangeSpec {
            name: exchange.clone(),
            kind,
        }],
        ..Topology::default()
    };
    transport
        .declare(&of_kind(ExchangeKind::Direct), Declare::Create)
        .await
        .unwrap();
    transport
        .declare(&of_kind(ExchangeKind::Direct), Declare::Verify)
        .await
        .unwrap();
    let err = transport
        .declare(&of_kind(ExchangeKind::Topic), Declare::Verify)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Topology(m) if m.contains(&exchange)),
        "{err:?}"
    );
    cleanup(&url, &[&name], &[&exchange]).await;
}

#[tokio::test]
async fn message_count_and_purge() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "purge");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    for i in 0..3 {
        transport
            .publish(to_queue(&name, with_id(&format!("m-{i}"))))
            .await
            .unwrap();
    }
    assert_eq!(transport.message_count(&name).await.unwrap(), 3);
    assert_eq!(transport.purge(&name).await.unwrap(), 3);
    assert_eq!(transport.message_count(&name).await.unwrap(), 0);
    let missing = unique(PREFIX, "purge-missing");
    let err = transport.message_count(&missing).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "queue", .. }),
        "{err:?}"
    );
    let err = transport.purge(&missing).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "queue", .. }),
        "{err:?}"
    );
    cleanup(&url, &[&name], &[]).await;
}

/// A peer that accepts TCP and never says a word: the handshake must give up, not hang.
#[tokio::test]
async fn a_broker_that_never_answers_fails_the_connect_instead_of_hanging() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    // Accepts and keeps every socket open, answering nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let connecting = AmqpTransport::builder(format!("amqp://guest:guest@{addr}/%2f"))
        .connect_timeout(Duration::from_millis(300))
        .connect();
    let result = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("the connect gives up on its own");
    let err = result.expect_err("a silent peer is no broker");
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    let chain: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
    assert!(
        chain.iter().any(|e| e.contains("no answer within")),
        "{chain:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn headers_larger_than_a_frame_are_refused_typed_and_the_connection_lives() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "frame");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    // RabbitMQ's default frame_max is 131,072 bytes; a frame's own bytes take 8 of them. The
    // content header then holds 14 bytes (class, weight, body size, flags), the table's length
    // (4), and this one entry: its name (1 + 3), type (1), and string length (4) and bytes.
    let limit = 131_072 - 8;
    let at_limit = limit - 14 - 4 - (1 + 3) - 1 - 4;
    let big = |len: usize| {
        let mut envelope = Envelope::default();
        envelope
            .properties
            .headers
            .insert("big", HeaderValue::String("x".repeat(len)));
        to_queue(&name, envelope)
    };
    transport.publish(big(at_limit)).await.unwrap();
    let err = transport.publish(big(at_limit + 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::HeadersTooLarge { size, limit: l } if size == limit + 1 && l == limit),
        "{err:?}"
    );
    // The connection is still up: nothing reached the broker to make it close it.
    transport
        .publish(to_queue(&name, with_id("after")))
        .await
        .unwrap();
    ready_count(&transport, &name, 2).await;
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_publish_learns_its_own_fate_among_many_in_flight() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "fates");
    let nowhere = unique(PREFIX, "nowhere");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    // Unroutable and routable publishes interleaved on one confirm channel: the broker acks
    // several at once (`multiple`), and every unroutable one must still hear it was returned,
    // never a routable one.
    // Each from a task of its own, so that publishes race from both worker threads.
    const N: usize = 2_000;
    let publishes = (0..N).map(|n| {
        let queue = if n % 3 == 0 { &nowhere } else { &name };
        let publish = transport.publish(to_queue(queue, with_id(&format!("m{n}"))));
        tokio::spawn(async move { (n, publish.await) })
    });
    let results = join_all(publishes)
        .await
        .into_iter()
        .map(|joined| joined.expect("a publish task"));
    let mut routed = 0;
    for (n, result) in results {
        if n % 3 == 0 {
            assert!(
                matches!(result, Err(Error::Unroutable { ref routing_key, .. }) if *routing_key == nowhere),
                "publish {n} to a queue that does not exist: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "publish {n} to {name}: {result:?}");
            routed += 1;
        }
    }
    ready_count(&transport, &name, routed).await;
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn a_subscription_hears_what_is_published_after_it_and_goes_with_its_stream() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let exchange = unique(PREFIX, "subscribe");
    let topology = Topology {
        exchanges: vec![ExchangeSpec {
            name: exchange.clone(),
            kind: ExchangeKind::Topic,
        }],
        ..Topology::default()
    };
    transport.declare(&topology, Declare::Create).await.unwrap();
    let publish = |key: &str, id: &str| Publish {
        exchange: exchange.clone().into(),
        routing_key: key.to_owned().into(),
        mandatory: true,
        envelope: with_id(id),
    };
    // Before any subscription, nothing takes it.
    let before = transport.publish(publish("news.a", "early")).await;
    assert!(
        matches!(before, Err(Error::Unroutable { .. })),
        "{before:?}"
    );

    let keys = ["news.a".to_owned(), "news.b".to_owned()];
    let mut news = transport.subscribe(&exchange, &keys).await.unwrap();
    for (key, id) in [("news.a", "1"), ("news.c", "not-bound"), ("news.b", "2")] {
        let published = transport.publish(publish(key, id)).await;
        assert_eq!(published.is_ok(), id != "not-bound", "{key}: {published:?}");
    }
    let mut heard = Vec::new();
    for _ in 0..2 {
        let envelope = tokio::time::timeout(WAIT, news.next())
            .await
            .unwrap()
            .unwrap();
        heard.push(envelope.properties.message_id.unwrap());
    }
    assert_eq!(heard, ["1", "2"]);

    // Dropped, its queue goes with its channel: a publish finds no queue again.
    drop(news);
    let gone = async {
        loop {
            if let Err(Error::Unroutable { .. }) =
                transport.publish(publish("news.a", "late")).await
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, gone).await.unwrap();
    cleanup(&url, &[], &[&exchange]).await;
}

#[tokio::test]
async fn delete_queue_removes_it_and_a_missing_one_is_no_error() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "delete");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    assert_eq!(transport.message_count(&name).await.unwrap(), 0);
    transport.delete_queue(&name).await.unwrap();
    let count = transport.message_count(&name).await;
    assert!(matches!(count, Err(Error::NotFound { .. })), "{count:?}");
    transport.delete_queue(&name).await.unwrap();
}

#[tokio::test]
async fn an_unconfirmed_publish_arrives_and_an_unroutable_one_is_lost_quietly() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "unconfirmed");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    transport
        .publish_unconfirmed(to_queue(&name, with_id("1")))
        .await
        .unwrap();
    // No queue by that name, and no confirm to say so: the publish resolves all the same.
    transport
        .publish_unconfirmed(to_queue(&unique(PREFIX, "nowhere"), with_id("2")))
        .await
        .unwrap();
    // On a channel of its own: it reaches the queue when the broker gets to it.
    eventually_ready(&transport, &name, 1).await;
    // The confirmed channel is unaffected.
    transport
        .publish(to_queue(&name, with_id("3")))
        .await
        .unwrap();
    eventually_ready(&transport, &name, 2).await;
    cleanup(&url, &[&name], &[]).await;
}

#[tokio::test]
async fn a_request_is_answered_on_the_channel_it_came_on_before_its_ack() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let name = unique(PREFIX, "requests");
    transport
        .declare(&classic(&name), Declare::Create)
        .await
        .unwrap();
    let mut requester = transport.requester().await.unwrap();
    let mut consumer = transport.consume(&name, 1).await.unwrap();

    // A plain message carries no reply channel; a request does.
    transport
        .publish(to_queue(&name, with_id("plain")))
        .await
        .unwrap();
    let plain = next(&mut consumer).await;
    assert!(plain.reply.is_none());
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: plain.tag,
            multiple: false,
        })
        .await
        .unwrap();
    let mut request = with_id("request");
    request.properties.correlation_id = Some("c-1".to_owned());
    requester
        .publisher
        .publish(to_queue(&name, request))
        .await
        .unwrap();
    let delivery = next(&mut consumer).await;
    let reply_to = delivery.envelope.properties.reply_to.clone().unwrap();
    let channel = delivery
        .reply
        .clone()
        .expect("a request has a reply channel");
    let mut answer = with_id("answer");
    answer.properties.correlation_id = Some("c-1".to_owned());
    channel
        .0
        .reply(Publish {
            exchange: "".into(),
            routing_key: reply_to.into(),
            mandatory: false,
            envelope: answer,
        })
        .await
        .unwrap();
    consumer
        .settler
        .settle(Settlement::Ack {
            tag: delivery.tag,
            multiple: false,
        })
        .await
        .unwrap();
    let reply = tokio::time::timeout(WAIT, requester.replies.next())
        .await
        .expect("no reply in time")
        .expect("the reply stream ended");
    assert_eq!(reply.properties.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(reply.properties.message_id.as_deref(), Some("answer"));
    eventually_ready(&transport, &name, 0).await;
    cleanup(&url, &[&name], &[]).await;
}

/// Waits until `queue` holds `ready` messages, [`WAIT`] at most.
async fn eventually_ready(transport: &AmqpTransport, queue: &str, ready: u64) {
    let reached = tokio::time::timeout(WAIT, async {
        while transport.message_count(queue).await.unwrap() != ready {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{queue} never held {ready} messages");
}
