//! RabbitMQ 4 safety against a real broker (`JOBS_AMQP_URL`, or the local default): the
//! version read from the server properties, a requeueing reject counted toward a quorum
//! queue's delivery limit, and error queues declared as the broker's version needs, which on
//! RabbitMQ 3 is exactly as before versions were read.
//!
//! Without a broker the tests skip, unless `JOBS_REQUIRE_BROKER` is set, when they fail.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use jobs_core::broker::{BrokerBehaviour, BrokerVersion, FailedReturn};
use jobs_core::topology::{QueueSpec, Topology, argument};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Settlement, Transport};
use jobs_core::{Envelope, HeaderValue, Headers, JobDefaults, JobError, JobSettings, job};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use support::broker::{cleanup, to_queue, unique};

/// The start of every name these tests declare.
const PREFIX: &str = "amqp-rabbitmq4";

/// Generous: a bound on a wait that should end at once, not a timing assumption.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, PartialEq, prost::Message)]
struct Work {}

#[job(exchange = "amqp-rabbitmq4.jobs", routing_key = "audit", retries = 0)]
async fn audited(_: Work) -> Result<(), JobError> {
    Ok(())
}

async fn raw(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap()
}

/// The version the broker gives a plain lapin connection, read independently of the transport.
async fn version_of(url: &str) -> Option<BrokerVersion> {
    let connection = raw(url).await;
    let properties = connection.configuration().server_properties();
    let version = match properties.inner().get("version") {
        Some(AMQPValue::LongString(text)) => {
            BrokerVersion::parse(&String::from_utf8_lossy(text.as_bytes()))
        }
        _ => None,
    };
    let _ = connection.close(200, "done".into()).await;
    version
}

#[tokio::test]
async fn the_transport_reads_the_brokers_version_from_its_server_properties() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let version = transport.broker_version();
    assert!(version.is_some(), "RabbitMQ always says its version");
    assert_eq!(version, version_of(&url).await);
    let behaviour = BrokerBehaviour::for_version(version);
    if version < Some(BrokerVersion::new(4, 0, 0)) {
        // RabbitMQ 3: what the framework always did.
        let unchanged = BrokerBehaviour::default();
        assert_eq!(
            (behaviour.unlimited_dead_ends, behaviour.failed_return),
            (unchanged.unlimited_dead_ends, unchanged.failed_return),
            "{version:?}"
        );
    }
    transport.close().await;
}

#[tokio::test]
async fn a_requeueing_reject_counts_toward_a_quorum_queues_delivery_limit() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let (limited, sink) = (unique(PREFIX, "limited"), unique(PREFIX, "sink"));
    let mut arguments = Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]);
    arguments.insert(argument::DELIVERY_LIMIT, 1_i64);
    arguments.insert(argument::DEAD_LETTER_EXCHANGE, "");
    arguments.insert(argument::DEAD_LETTER_ROUTING_KEY, sink.clone());
    let topology = Topology {
        queues: vec![
            QueueSpec {
                name: limited.clone(),
                arguments,
            },
            QueueSpec {
                name: sink.clone(),
                arguments: Headers::from_iter([(argument::QUEUE_TYPE, "classic")]),
            },
        ],
        ..Topology::default()
    };
    transport.declare(&topology, Declare::Create).await.unwrap();
    transport
        .publish(to_queue(&limited, Envelope::default()))
        .await
        .unwrap();
    let mut consumer = transport.consume(&limited, 1).await.unwrap();
    let reject = |tag| Settlement::Reject { tag, requeue: true };
    let first = tokio::time::timeout(WAIT, consumer.deliveries.next())
        .await
        .unwrap()
        .unwrap();
    consumer.settler.settle(reject(first.tag)).await.unwrap();
    let second = tokio::time::timeout(WAIT, consumer.deliveries.next())
        .await
        .unwrap()
        .unwrap();
    assert!(second.redelivered);
    let count = second.envelope.properties.headers.get("x-delivery-count");
    assert_eq!(count, Some(&HeaderValue::from(1_i64)), "the reject counted");
    // The second counted return is past the limit of 1: dead-lettered, not delivered again.
    consumer.settler.settle(reject(second.tag)).await.unwrap();
    let moved = tokio::time::timeout(WAIT, async {
        while transport.message_count(&sink).await.unwrap() != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(moved.is_ok(), "the delivery limit dead-lettered it");
    drop(consumer);
    transport.close().await;
    cleanup(&url, &[&limited, &sink], &[]).await;
}

#[tokio::test]
async fn an_error_queue_is_declared_as_the_brokers_version_needs() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.unwrap();
    let settings = JobSettings::resolve(&audited::JOB, &JobDefaults::default());
    let topology = Topology::for_jobs([&settings]).unwrap();
    transport.declare(&topology, Declare::Create).await.unwrap();
    let version = transport.broker_version();
    // What the error queue had before versions were read: its type, nothing else. On
    // RabbitMQ 3 redeclaring it so must still be accepted (the broker refuses a redeclare
    // with other arguments); on 4 it carries x-delivery-limit = -1 as well.
    let mut arguments = FieldTable::default();
    arguments.insert(
        argument::QUEUE_TYPE.into(),
        AMQPValue::LongString("quorum".into()),
    );
    let behaviour = BrokerBehaviour::for_version(version);
    if behaviour.unlimited_dead_ends {
        arguments.insert(argument::DELIVERY_LIMIT.into(), AMQPValue::LongLongInt(-1));
    } else {
        assert_eq!(behaviour.failed_return, FailedReturn::Nack);
    }
    let connection = raw(&url).await;
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let redeclared = channel
        .queue_declare(settings.error_queue().into(), options, arguments)
        .await;
    assert!(
        redeclared.is_ok(),
        "{version:?}: the error queue has other arguments: {redeclared:?}"
    );
    let _ = connection.close(200, "done".into()).await;
    transport.close().await;
    let queues: Vec<&str> = topology.job_queues().map(|q| q.name.as_str()).collect();
    cleanup(&url, &queues, &[audited::JOB.exchange()]).await;
}
