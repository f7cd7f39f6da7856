//! The error queue as operators use it, on a private RabbitMQ node, every job counted by a
//! ledger:
//!
//! * a replay of one job's failures on a fanout exchange with two jobs bound runs only that
//!   job's handler, never the other's;
//! * `errors list`, run a hundred times through the worker binary on a quorum error queue whose
//!   policy sets a delivery limit, loses nothing (reading that gives messages back would count
//!   each read toward the limit; a control message read that way is dropped).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use jobs_core::engine::Engine;
use jobs_core::error_queue::{Action, ErrorQueue};
use jobs_core::topology::{QueueSpec, Topology, argument};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Publish, Settlement, Transport};
use jobs_core::{Envelope, Headers, JobContext, JobError, job};
use jobs_faults::scenario::{drain, full, until};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use prost::Message as _;

/// The fault worker binary: its `errors` commands are the operator's.
const WORKER: &str = env!("CARGO_BIN_EXE_jobs-fault-worker");

/// A job the ledgers follow.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    /// Its ledger id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// Whether `fan_failing` fails: until the test flips it.
static FAN_FAILS: AtomicBool = AtomicBool::new(true);

/// The two ledgers of the fanout scenario: one per job.
#[derive(Clone, Debug, Default)]
struct Ledgers {
    failing: Ledger,
    steady: Ledger,
}

/// Fails fatally while `FAN_FAILS` holds, on a fanout exchange it shares with `fan_steady`.
#[job(
    exchange = "faults.fanout",
    kind = "fanout",
    routing_key = "",
    queue = "faults.fanout.failing",
    concurrency = 16
)]
async fn fan_failing(item: Item, ctx: JobContext) -> Result<(), JobError> {
    if FAN_FAILS.load(Ordering::SeqCst) {
        return Err(JobError::fatal("the downstream service is down"));
    }
    ctx.state::<Ledgers>()?.failing.handled(item.id);
    Ok(())
}

/// Always succeeds; bound to the same fanout exchange.
#[job(
    exchange = "faults.fanout",
    kind = "fanout",
    routing_key = "",
    queue = "faults.fanout.steady",
    concurrency = 16
)]
async fn fan_steady(item: Item, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Ledgers>()?.steady.handled(item.id);
    Ok(())
}

/// Fails fatally, every time: its error queue is the one listed.
#[job(
    exchange = "faults.listed",
    routing_key = "listed",
    queue = "faults.listed",
    queue_type = "quorum",
    concurrency = 16
)]
async fn listed(_item: Item) -> Result<(), JobError> {
    Err(JobError::fatal("kept for listing"))
}

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_queue_operations_touch_only_what_they_should() {
    if skip_without_rabbitmq() {
        return;
    }
    let node = PrivateNode::start_new()
        .await
        .expect("the private node starts");
    replay_on_a_fanout_exchange_runs_only_the_failed_job(&node).await;
    listing_under_a_delivery_limit_policy_loses_nothing(&node).await;
}

async fn connect(node: &PrivateNode, name: &str) -> AmqpTransport {
    AmqpTransport::builder(node.url())
        .connection_name(format!("jobs-faults-{name}-{}", std::process::id()))
        .connect()
        .await
        .expect("connected to the private node")
}

/// Waits until `queue` holds `n` ready messages.
async fn ready(transport: &AmqpTransport, queue: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = transport.message_count(queue).await.expect("a count");
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {now}, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both jobs take every message; the failing one's go to its error queue. Replayed from there,
/// each is handled by the failing job once more, and the steady job never sees it again.
async fn replay_on_a_fanout_exchange_runs_only_the_failed_job(node: &PrivateNode) {
    let total = if full() { 5_000 } else { 500 };
    let transport = connect(node, "fanout").await;
    let ledgers = Ledgers::default();
    let engine = Engine::builder(Arc::new(transport.clone()))
        .job(&fan_failing::JOB)
        .job(&fan_steady::JOB)
        .state(ledgers.clone())
        .start()
        .await
        .expect("the engine starts");
    for id in 0..total {
        for ledger in [&ledgers.failing, &ledgers.steady] {
            ledger.attempted(id);
        }
        fan_failing::enqueue(&engine, Item { id })
            .await
            .expect("a confirmed enqueue");
        for ledger in [&ledgers.failing, &ledgers.steady] {
            ledger.confirmed(id);
        }
    }
    let error_queue = format!("{}.err", fan_failing::QUEUE);
    ready(&transport, &error_queue, total).await;
    until("the steady job handled every message", WAIT, || {
        ledgers.steady.report().handled == usize::try_from(total).unwrap_or(usize::MAX)
    })
    .await;

    FAN_FAILS.store(false, Ordering::SeqCst);
    let errors = ErrorQueue::new(Arc::new(transport.clone()), fan_failing::QUEUE);
    let walked = errors
        .walk(None, |_| Action::Replay)
        .await
        .expect("the replay walks the error queue");
    assert_eq!(walked.replayed, total, "{walked:?}");
    until("the failing job handled every replay", WAIT, || {
        ledgers.failing.report().lost.is_empty()
    })
    .await;
    engine.shutdown(Duration::from_secs(10)).await;
    ready(&transport, fan_steady::QUEUE, 0).await;

    // The steady job ran each message exactly once: a duplicate would be the replay reaching
    // it through the exchange.
    ledgers
        .steady
        .report()
        .check("replay on a fanout: the other job", 0);
    ledgers
        .failing
        .report()
        .check("replay on a fanout: the failed job", 0);
    transport.close().await;
}

/// A hundred `errors list` runs of the worker binary on a quorum error queue under a policy
/// with `delivery-limit: 2`: every message is still there, with no delivery count. A control
/// message in a queue under the same policy, read by giving it back (nack with requeue) three
/// times, is dropped: the policy bites, and a read that gives messages back would lose them.
async fn listing_under_a_delivery_limit_policy_loses_nothing(node: &PrivateNode) {
    let scenario = "100 lists of a quorum error queue with delivery-limit 2";
    let (total, lists) = (if full() { 500 } else { 50 }, 100);
    let transport = connect(node, "listed").await;
    node.ctl(&[
        "set_policy",
        "faults-limit",
        r"^faults\.listed.*\.err$",
        r#"{"delivery-limit":2}"#,
        "--apply-to",
        "queues",
    ])
    .await
    .expect("the policy is set");
    let ledger = Ledger::new();
    let engine = Engine::builder(Arc::new(transport.clone()))
        .job(&listed::JOB)
        .start()
        .await
        .expect("the engine starts");
    for id in 0..total {
        ledger.attempted(id);
        listed::enqueue(&engine, Item { id })
            .await
            .expect("a confirmed enqueue");
        ledger.confirmed(id);
    }
    let error_queue = format!("{}.err", listed::QUEUE);
    ready(&transport, &error_queue, total).await;
    engine.shutdown(Duration::from_secs(10)).await;

    control_message_is_dropped_by_the_policy(&transport).await;

    let url = node.url();
    for run in 0..lists {
        let output = Command::new(Path::new(WORKER))
            .args(["errors", "list", &error_queue, "--limit", "5"])
            .env("JOBS_AMQP_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the worker binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "list {run} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{error_queue}: {total} message(s)\n")),
            "list {run}: {stdout}"
        );
    }

    let total_usize = usize::try_from(total).expect("a count");
    for delivery in drain(&transport, &error_queue, total_usize, WAIT).await {
        let headers = &delivery.envelope.properties.headers;
        assert_eq!(
            headers.get("x-delivery-count"),
            None,
            "no read counted as a delivery"
        );
        let id = Item::decode(delivery.envelope.body.clone()).map_or(u64::MAX, |item| item.id);
        ledger.failed(id);
    }
    node.ctl(&["clear_policy", "faults-limit"])
        .await
        .expect("the policy is cleared");
    ledger.report().check(scenario, 0);
    transport.close().await;
}

/// One message in a quorum queue under the delivery-limit policy, read the way `errors list`
/// used to (consume, nack with requeue) until it is gone: the policy is what drops it.
async fn control_message_is_dropped_by_the_policy(transport: &AmqpTransport) {
    let queue = "faults.listed.control.err";
    let topology = Topology {
        queues: vec![QueueSpec {
            name: queue.to_owned(),
            arguments: Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]),
        }],
        ..Topology::default()
    };
    transport
        .declare(&topology, Declare::Create)
        .await
        .expect("declared");
    transport.purge(queue).await.expect("purged");
    let publish = Publish {
        exchange: "".into(),
        routing_key: queue.into(),
        mandatory: true,
        envelope: Envelope::default(),
    };
    transport.publish(publish.clone()).await.expect("published");
    let mut consumer = transport.consume(queue, 1).await.expect("a consumer");
    let mut next = async || {
        tokio::time::timeout(WAIT, consumer.deliveries.next())
            .await
            .expect("a delivery in time")
            .expect("the consumer goes on")
    };
    // Delivered, and given back, three times: the third return is past the limit of 2.
    for read in 1..=3 {
        let delivery = next().await;
        assert_eq!(delivery.redelivered, read > 1);
        let nack = Settlement::Nack {
            tag: delivery.tag,
            multiple: false,
            requeue: true,
        };
        consumer.settler.settle(nack).await.expect("a nack");
    }
    // A marker behind it: the next delivery is the marker only if the control message is gone.
    let mut marker = publish;
    marker.envelope.properties.message_id = Some("marker".to_owned());
    transport.publish(marker).await.expect("published");
    let delivery = next().await;
    assert_eq!(
        delivery.envelope.properties.message_id.as_deref(),
        Some("marker"),
        "read three times by giving it back, the control message was dropped"
    );
    drop(consumer);
}
