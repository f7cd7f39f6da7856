//! RabbitMQ 4 safety on the in-memory broker emulating each version of the matrix: error
//! queues that never drop a message, a crash-loop backstop that counts on 4.3, and jobs that
//! could outlast the broker's consumer timeout refused at start.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jobs_core::broker::{BrokerVersion, DEFAULT_CONSUMER_TIMEOUT};
use jobs_core::engine::{Engine, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::topology::{QueueSpec, Topology, argument};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Declare, Settlement, Transport};
use jobs_core::{
    Envelope, Error, FailedJob, FailureKind, Headers, JobDefaults, JobError, JobSettings,
    ProducerOptions, job,
};
use support::broker::to_queue;
use support::faulty::Faulty;

/// The versions of the matrix.
const VERSIONS: [&str; 6] = ["3.10.0", "3.13.7", "4.0.0", "4.1.3", "4.2.0", "4.3.0"];

fn version(text: &str) -> BrokerVersion {
    BrokerVersion::parse(text).unwrap()
}

#[derive(Clone, PartialEq, prost::Message)]
struct Work {}

#[job(exchange = "rabbitmq4.jobs", routing_key = "doomed", retries = 0)]
async fn doomed(_: Work) -> Result<(), JobError> {
    Err(JobError::fatal("never works"))
}

#[job(exchange = "rabbitmq4.jobs", routing_key = "slow", timeout = "30m")]
async fn slow(_: Work) -> Result<(), JobError> {
    Ok(())
}

#[job(
    exchange = "rabbitmq4.jobs",
    routing_key = "almost",
    timeout = "29m59s"
)]
async fn almost(_: Work) -> Result<(), JobError> {
    Ok(())
}

/// Consumes `queue` and gives its one message back `times` times with a requeueing reject,
/// which every version counts toward a delivery limit; stops early when the broker
/// dead-letters it. The consumer is cancelled before the last return, so the message ends
/// ready in the queue, not delivered again.
async fn return_often(broker: &MemoryTransport, queue: &str, times: u32) {
    let mut consumer = broker.consume(queue, 1).await.unwrap();
    for n in 1..=times {
        let delivery = consumer.deliveries.next().await.unwrap();
        if n == times {
            consumer.settler.cancel().await.unwrap();
        }
        let reject = Settlement::Reject {
            tag: delivery.tag,
            requeue: true,
        };
        consumer.settler.settle(reject).await.unwrap();
        if broker.unacked(queue) == 0 && broker.queue_len(queue) == Some(0) {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_queue_keeps_its_message_however_often_it_goes_back_on_every_version() {
    let settings = JobSettings::resolve(&doomed::JOB, &JobDefaults::default());
    let topology = Topology::for_jobs([&settings]).unwrap();
    let error_queue = settings.error_queue().to_owned();
    for text in VERSIONS {
        let broker = MemoryTransport::emulating(version(text));
        broker.declare(&topology, Declare::Create).await.unwrap();
        broker
            .publish(to_queue(&error_queue, Envelope::default()))
            .await
            .unwrap();
        // Well past RabbitMQ 4's default limit of 20.
        return_often(&broker, &error_queue, 30).await;
        assert_eq!(broker.queue_len(&error_queue), Some(1), "{text}");
        assert_eq!(broker.returns(&error_queue), [30], "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_quorum_queue_without_a_limit_of_its_own_has_rabbitmq_4s_default_of_20() {
    // A quorum queue that dead-letters somewhere is declared as it is: on 4.x it has the
    // broker's default limit, which an error queue would meet as well without its -1.
    let mut arguments = Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]);
    arguments.insert(argument::DEAD_LETTER_EXCHANGE, "");
    arguments.insert(argument::DEAD_LETTER_ROUTING_KEY, "rabbitmq4.sink");
    let topology = Topology {
        queues: vec![
            QueueSpec {
                name: "rabbitmq4.limited".to_owned(),
                arguments,
            },
            QueueSpec {
                name: "rabbitmq4.sink".to_owned(),
                arguments: Headers::from_iter([(argument::QUEUE_TYPE, "classic")]),
            },
        ],
        ..Topology::default()
    };
    for (text, dead_lettered) in VERSIONS.map(|text| (text, text.starts_with('4'))) {
        let broker = MemoryTransport::emulating(version(text));
        broker.declare(&topology, Declare::Create).await.unwrap();
        broker
            .publish(to_queue("rabbitmq4.limited", Envelope::default()))
            .await
            .unwrap();
        return_often(&broker, "rabbitmq4.limited", 30).await;
        let sink = broker.queue_len("rabbitmq4.sink");
        assert_eq!(sink, Some(usize::from(dead_lettered)), "{text}");
        if dead_lettered {
            let died = FailedJob::new(broker.messages("rabbitmq4.sink")[0].clone());
            assert_eq!(died.kind(), Some(FailureKind::DeliveryLimit), "{text}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_requeueing_nack_stops_counting_on_4_3_and_a_reject_never_does() {
    let topology = Topology {
        queues: vec![QueueSpec {
            name: "rabbitmq4.counted".to_owned(),
            arguments: Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]),
        }],
        ..Topology::default()
    };
    for text in VERSIONS {
        let broker = MemoryTransport::emulating(version(text));
        broker.declare(&topology, Declare::Create).await.unwrap();
        broker
            .publish(to_queue("rabbitmq4.counted", Envelope::default()))
            .await
            .unwrap();
        let mut consumer = broker.consume("rabbitmq4.counted", 1).await.unwrap();
        let first = consumer.deliveries.next().await.unwrap();
        let nack = Settlement::Nack {
            tag: first.tag,
            multiple: false,
            requeue: true,
        };
        consumer.settler.settle(nack).await.unwrap();
        let second = consumer.deliveries.next().await.unwrap();
        assert!(second.redelivered, "{text}");
        // Cancelled first, so that the message stays ready rather than come back here.
        consumer.settler.cancel().await.unwrap();
        let reject = Settlement::Reject {
            tag: second.tag,
            requeue: true,
        };
        consumer.settler.settle(reject).await.unwrap();
        drop(consumer);
        let nack_counted = !text.starts_with("4.3");
        assert_eq!(
            broker.returns("rabbitmq4.counted"),
            [1 + u32::from(nack_counted)],
            "{text}"
        );
    }
}

/// The engine's crash-loop backstop: a delivery whose outcome can never be made durable goes
/// back as failed, each return counted, until the work queue's delivery limit dead-letters it.
/// On 4.3 a nack would not count, and it would go round for ever.
#[tokio::test(start_paused = true)]
async fn a_delivery_given_back_as_failed_meets_the_delivery_limit_on_every_version() {
    for text in VERSIONS {
        let faulty = Arc::new(Faulty::on(MemoryTransport::emulating(version(text))));
        let recorder = Arc::new(Recorder::new());
        let defaults = JobDefaults {
            delivery_limit: 3,
            ..JobDefaults::default()
        };
        let engine = Engine::builder(Arc::clone(&faulty) as Arc<dyn Transport>)
            .job(&doomed::JOB)
            .defaults(defaults)
            .outcome_publish_timeout(Duration::from_secs(1))
            .producer_options(ProducerOptions {
                declare: false,
                ..ProducerOptions::default()
            })
            .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
            .start()
            .await
            .unwrap();
        let error_queue = format!("{}.err", doomed::QUEUE);
        // The error queue refuses the engine's publishes, not the broker's dead-lettering.
        faulty.refuse(&error_queue);
        doomed::enqueue(&engine, Work {}).await.unwrap();
        let broker = &faulty.broker;
        let arrived = recorder
            .wait_until(Duration::from_secs(3600), || {
                (broker.queue_len(&error_queue) == Some(1)).then_some(())
            })
            .await;
        assert!(
            arrived.is_ok(),
            "{text}: the delivery went round for an hour"
        );
        let died = FailedJob::new(broker.messages(&error_queue)[0].clone());
        assert_eq!(died.kind(), Some(FailureKind::DeliveryLimit), "{text}");
        // Three counted returns, and the fourth dead-letters.
        let requeued = recorder.count(&doomed::JOB, |o| matches!(o, Outcome::Requeued { .. }));
        assert_eq!(requeued, 4, "{text}");
        engine.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_that_could_outlast_the_consumer_timeout_is_refused_at_start() {
    let start = |job, timeout: Option<Duration>| {
        let mut builder = Engine::builder(Arc::new(MemoryTransport::new())).job(job);
        if let Some(timeout) = timeout {
            builder = builder.broker_consumer_timeout(timeout);
        }
        builder.start()
    };
    let Err(err) = start(&slow::JOB, None).await else {
        panic!("a 30-minute job started under a 30-minute consumer timeout");
    };
    let Error::ConsumerTimeout {
        job,
        timeout,
        consumer_timeout,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (*job, *timeout, *consumer_timeout),
        ("slow", Duration::from_secs(1800), DEFAULT_CONSUMER_TIMEOUT)
    );
    assert!(err.to_string().contains("1800s"), "{err}");
    // Under the default it starts; so does the slow one under a broker set to an hour.
    let engine = start(&almost::JOB, None).await.unwrap();
    engine.shutdown(Duration::from_secs(1)).await;
    let engine = start(&slow::JOB, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    engine.shutdown(Duration::from_secs(1)).await;
    // A broker set lower refuses the one that fits the default.
    let err = start(&almost::JOB, Some(Duration::from_secs(600)))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::ConsumerTimeout { job: "almost", .. }),
        "{err}"
    );
}
