//! A worker on RabbitMQ: after 50 failures, the queue gauges of `/metrics` equal the broker's
//! own counts, and the dashboard's overview has the fleet's counters from the worker's reports.
//!
//! `JOBS_AMQP_URL`, or the local default; without a broker the test skips, unless
//! `JOBS_REQUIRE_BROKER` is set, when it fails.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::Transport;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, Producer, job};
use jobs_worker::{DashboardToken, WorkerConfig};
use support::{Running, WAIT, count_becomes, delete_job_queues, delete_queues, free_addr, get};

#[derive(Clone, PartialEq, prost::Message)]
struct Order {
    #[prost(uint32, tag = "1")]
    n: u32,
}

#[job(
    exchange = "jobs-worker.gauges",
    routing_key = "doomed",
    queue = "jobs-worker.gauges.doomed"
)]
async fn doomed(order: Order) -> Result<(), JobError> {
    Err(JobError::fatal(format!(
        "order {} cannot be served",
        order.n
    )))
}

const WORK: &str = "jobs-worker.gauges.doomed";
const ERR: &str = "jobs-worker.gauges.doomed.err";

/// The value of the sample of `metric` whose labels contain `labels`.
fn sample(metrics: &str, metric: &str, labels: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|line| line.starts_with(&format!("{metric}{{")) && line.contains(labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_equal_the_brokers_counts_and_the_fleet_reports_its_counters() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    delete_queues(&[WORK, ERR]);
    let addr = free_addr();
    let config = WorkerConfig::default()
        .with_url(url.clone())
        .with_metrics_addr(addr)
        .with_connection_name("gauges-test")
        .with_dashboard_token(DashboardToken::new("a-token-of-24-characters").unwrap());
    let broker = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    let worker = Running::start(config, &doomed::JOB, &broker, WORK).await;

    let producer = Producer::new(broker.clone());
    for n in 0..50 {
        doomed::enqueue(&producer, Order { n }).await.unwrap();
    }
    count_becomes(&broker, ERR, 50).await;

    let metrics = get(addr, "/metrics").await;
    let error_stats = broker.queue_stats(ERR).await.unwrap();
    let work_stats = broker.queue_stats(WORK).await.unwrap();
    assert_eq!(error_stats.ready, 50);
    assert_eq!(
        sample(
            &metrics,
            "jobs_queue_ready",
            &format!("queue=\"{ERR}\",role=\"error\"")
        ),
        Some(error_stats.ready),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "jobs_queue_ready",
            &format!("queue=\"{WORK}\",role=\"work\"")
        ),
        Some(work_stats.ready),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "jobs_queue_consumers",
            &format!("queue=\"{WORK}\",role=\"work\"")
        ),
        work_stats.consumers.map(u64::from),
        "{metrics}"
    );

    // The worker's report reaches the dashboard through the broker within a report or two.
    let reported = tokio::time::timeout(WAIT, async {
        loop {
            let overview: serde_json::Value =
                serde_json::from_str(&get(addr, "/api/overview").await).unwrap();
            if overview["jobs"][0]["totals"]["failed"] == 50 {
                return overview;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let overview = reported.expect("the fleet's counters never reached the overview");
    assert_eq!(overview["workers"][0]["name"], "gauges-test", "{overview}");
    // The node it is on, its password hidden.
    let node = overview["workers"][0]["nodes"][0]
        .as_str()
        .unwrap_or_default();
    assert_eq!(node, jobs_core::transport::redact_url(&url), "{overview}");
    let error_queue = overview["jobs"][0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["role"] == "error")
        .cloned()
        .unwrap();
    assert_eq!(error_queue["ready"], 50, "{overview}");

    worker.stop().await;
    broker.close().await;
    delete_job_queues(&url, &doomed::JOB).await;
}
