//! The dashboard replays a group of failures on RabbitMQ while new failures keep arriving in the
//! same error queue, and the ledger holds: every replayed job ran exactly once, and every other
//! failure, old or new, is still in the error queue, once.
//!
//! `JOBS_AMQP_URL`, or the local default; without a broker the test skips, unless
//! `JOBS_REQUIRE_BROKER` is set, when it fails.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use jobs_core::error_queue::{Action, ErrorQueue};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobContext, JobError, Producer, job};
use jobs_worker::{DashboardToken, WorkerConfig};
use support::{Running, WAIT, count_becomes, delete_job_queues, delete_queues, free_addr, request};

const TOKEN: &str = "a-token-of-24-characters";
const WORK: &str = "jobs-worker.replay-ledger";
const ERR: &str = "jobs-worker.replay-ledger.err";

#[derive(Clone, PartialEq, prost::Message)]
struct Task {
    #[prost(string, tag = "1")]
    cause: String,
}

/// The causes that no longer fail.
static HEALED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// The message ids of every run that succeeded: the ledger.
static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[job(
    exchange = "jobs-worker.replay-ledger",
    routing_key = "task",
    queue = "jobs-worker.replay-ledger"
)]
async fn ledgered(task: Task, ctx: JobContext) -> Result<(), JobError> {
    let healed = HEALED
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|healed| healed.contains(&task.cause));
    if !healed {
        return Err(JobError::fatal(format!("{} down", task.cause)));
    }
    HANDLED
        .lock()
        .unwrap()
        .push(ctx.message_id().unwrap_or_default().to_owned());
    Ok(())
}

async fn enqueue(producer: &Producer, cause: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let task = Task {
            cause: cause.to_owned(),
        };
        ids.push(ledgered::enqueue(producer, task).await.unwrap().to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_group_while_failures_arrive_loses_and_repeats_nothing() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    delete_queues(&[WORK, ERR]);
    let addr = free_addr();
    let config = WorkerConfig::default()
        .with_url(url.clone())
        .with_metrics_addr(addr)
        .with_dashboard_token(DashboardToken::new(TOKEN).unwrap());
    let broker = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    let worker = Running::start(config, &ledgered::JOB, &broker, WORK).await;

    let producer = Producer::new(broker.clone());
    let replayed_ids = enqueue(&producer, "a", 100).await;
    let mut kept_ids = enqueue(&producer, "b", 100).await;
    count_becomes(&broker, ERR, 200).await;

    // `a` is healed; its group is replayed while 200 more `b` failures arrive.
    HEALED
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert("a".to_owned());
    let auth = format!("Bearer {TOKEN}");
    let body = format!(r#"{{"queue": "{ERR}", "kind": "fatal", "error": "a down"}}"#);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let replay = request(addr, "POST", "/api/errors/replay", &headers, &body);
    let ((status, answer), more) = tokio::join!(replay, enqueue(&producer, "b", 200));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer, r#"{"replayed":100,"not_replayed":0}"#,
        "every `a` replayed"
    );
    kept_ids.extend(more);

    count_becomes(&broker, ERR, 300).await;
    let handled_all = tokio::time::timeout(WAIT, async {
        while HANDLED.lock().unwrap().len() < 100 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(handled_all.is_ok(), "the replayed jobs never all ran");

    // The ledger: each replayed job ran once, and each other failure is in the queue once.
    let handled = HANDLED.lock().unwrap().clone();
    assert_eq!(handled.len(), 100, "no replayed job ran twice");
    assert_eq!(
        handled.iter().cloned().collect::<BTreeSet<_>>(),
        replayed_ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    let mut in_queue = Vec::new();
    let walked = ErrorQueue::new(broker.clone(), WORK)
        .walk(None, |failed| {
            in_queue.push(failed.message_id().unwrap_or_default().to_owned());
            Action::Keep
        })
        .await
        .unwrap();
    assert!(walked.stopped.is_none());
    assert_eq!(in_queue.len(), 300, "nothing lost, nothing doubled");
    assert_eq!(
        in_queue.into_iter().collect::<BTreeSet<_>>(),
        kept_ids.into_iter().collect::<BTreeSet<_>>()
    );

    worker.stop().await;
    broker.close().await;
    delete_job_queues(&url, &ledgered::JOB).await;
}
