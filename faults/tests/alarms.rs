//! Resource alarms on a private RabbitMQ node: while the memory or the disk alarm is on, a
//! publish fails with a typed `Timeout` within the producer's confirm timeout and never hangs;
//! the worker keeps handling what is already queued; after the alarm clears every confirmed job
//! is handled.

mod nodes_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{Error, Producer, ProducerOptions};
use jobs_faults::scenario::{sized, until};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use nodes_support::{Gate, Producers, Queue, Tracked, all_settled, connection_name, engine_with};

/// The producer's confirm timeout during an alarm: what a blocked publish must end within.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// What the end of a blocked publish may overrun the confirm timeout by on a loaded machine.
const SLACK: Duration = Duration::from_secs(1);
const SETTLE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Alarm {
    Memory,
    Disk,
}

impl Alarm {
    async fn set(self, node: &PrivateNode, on: bool) {
        match self {
            Self::Memory => node.memory_alarm(on).await,
            Self::Disk => node.disk_alarm(on).await,
        }
        .expect("the alarm is set");
        let resource = match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        };
        // The node raises and clears alarms asynchronously: poll its alarm list.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alarms = node.alarms().await.expect("the node lists its alarms");
            if alarms.contains(resource) == on {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {resource} alarm is not {} : {alarms}",
                if on { "on" } else { "off" }
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_block_publishes_with_a_typed_error_and_lose_nothing() {
    if skip_without_rabbitmq() {
        return;
    }
    let started = Instant::now();
    let node = PrivateNode::start_new()
        .await
        .expect("the private node starts");
    alarm_scenario(&node, Alarm::Memory, 6_000_000_000).await;
    alarm_scenario(&node, Alarm::Disk, 7_000_000_000).await;
    eprintln!("alarms done in {:?}", started.elapsed());
}

async fn alarm_scenario(node: &PrivateNode, alarm: Alarm, first_id: u64) {
    let scenario = match alarm {
        Alarm::Memory => "memory alarm",
        Alarm::Disk => "disk alarm",
    };
    let queued = sized(2_000, 20_000);
    let ledger = Ledger::new();
    let gate = Gate::closed();
    let engine = engine_with(
        &node.url(),
        scenario,
        &ledger,
        CONFIRM_TIMEOUT,
        Some(gate.clone()),
    )
    .await;
    // A producer of its own, as an application enqueueing from elsewhere would have.
    let transport = AmqpTransport::builder(node.url())
        .connection_name(connection_name(&format!("{scenario}-producer")))
        .connect()
        .await
        .expect("the producer connects");
    let producer = Producer::with_options(
        Arc::new(transport),
        ProducerOptions {
            confirm_timeout: CONFIRM_TIMEOUT,
            ..ProducerOptions::default()
        },
    );

    // Jobs queued behind handlers held at the gate, all confirmed before the alarm.
    Producers::start(&producer, &ledger, Queue::Quorum, 4, queued, first_id, 0)
        .finish(SETTLE)
        .await;
    assert_eq!(ledger.confirmed_count(), queued);

    alarm.set(node, true).await;
    // Publishes now block: each ends with a typed timeout within the confirm timeout.
    let blocked: Vec<_> = (0..4u64)
        .map(|n| {
            let producer = producer.clone();
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let id = first_id + 900_000_000 + n;
                ledger.attempted(id);
                let start = Instant::now();
                let result = Queue::Quorum
                    .enqueue(&producer, Tracked { id, fail_first: 0 })
                    .await;
                (result, start.elapsed())
            })
        })
        .collect();
    for task in blocked {
        let (result, elapsed) = task.await.expect("the publish task does not panic");
        assert!(
            matches!(result, Err(Error::Timeout { after }) if after == CONFIRM_TIMEOUT),
            "{scenario}: a publish under the alarm ends with a timeout, got {result:?}"
        );
        assert!(
            elapsed <= CONFIRM_TIMEOUT + SLACK,
            "{scenario}: a blocked publish took {elapsed:?}"
        );
    }

    // The worker keeps consuming and acking under the alarm: its consuming connection never
    // publishes, so the broker does not block it.
    gate.open();
    until(
        &format!("{scenario}: the queued jobs handled under the alarm"),
        SETTLE,
        || ledger.settled() >= queued,
    )
    .await;
    let alarms = node.alarms().await.expect("the node lists its alarms");
    assert_ne!(alarms.trim(), "[]", "{scenario}: still on while handling");

    alarm.set(node, false).await;
    // Publishing resumes: more jobs, all confirmed and handled. The publishes that timed out
    // may arrive too, as unconfirmed but handled.
    Producers::start(
        &producer,
        &ledger,
        Queue::Quorum,
        4,
        500,
        first_id + 1_000_000,
        0,
    )
    .finish(SETTLE)
    .await;
    all_settled(&ledger, SETTLE).await;
    engine.shutdown(Duration::from_secs(10)).await;
    // No connection is lost and nothing is redelivered: no duplicates.
    ledger.report().check(scenario, 0);
}
