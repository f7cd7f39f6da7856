//! A worker with `--outbox-url` relays the jobs applications commit to their outbox, and
//! handles them: the rolled-back ones never reach the broker; its `/metrics` and its
//! dashboard report the relay.
//!
//! Needs RabbitMQ (`JOBS_AMQP_URL`) and PostgreSQL (`JOBS_POSTGRES_URL`); without them the test
//! skips, unless `JOBS_REQUIRE_BROKER` or `JOBS_REQUIRE_POSTGRES` makes it fail.

mod support;

use std::sync::Arc;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, job};
use jobs_outbox::OutboxEnqueue as _;
use jobs_worker::WorkerConfig;
use sqlx::postgres::PgPoolOptions;
use support::{Running, WAIT, delete_job_queues, delete_queues, free_addr, get};

#[derive(Clone, PartialEq, prost::Message)]
struct Order {
    #[prost(uint32, tag = "1")]
    n: u32,
}

#[job(
    exchange = "jobs-worker.outbox",
    routing_key = "ship",
    queue = "jobs-worker.outbox.ship"
)]
async fn ship_from_outbox(_order: Order) -> Result<(), JobError> {
    Ok(())
}

const WORK: &str = "jobs-worker.outbox.ship";
const SCHEMA: &str = "worker_outbox";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_relays_committed_jobs_and_handles_them() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    // The outbox in a schema of its own, which the worker's relay and the test both reach
    // through its URL.
    let Some(outbox_url) = jobs_outbox::testing::fresh_schema(SCHEMA).await else {
        return;
    };
    delete_queues(&[WORK, &format!("{WORK}.err")]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&outbox_url)
        .await
        .unwrap();
    jobs_outbox::migrate(&pool).await.unwrap();
    for n in 0..20 {
        let mut tx = pool.begin().await.unwrap();
        ship_from_outbox::with(Order { n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        if n % 2 == 0 {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }

    let addr = free_addr();
    let config = WorkerConfig::default()
        .with_url(url.clone())
        .with_metrics_addr(addr)
        .with_connection_name("outbox-test")
        .with_outbox_url(outbox_url);
    let broker = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    let worker = Running::start(config, &ship_from_outbox::JOB, &broker, WORK).await;

    let handled = metrics_with(
        addr,
        "jobs_succeeded_total{job=\"ship_from_outbox\"} 10\n",
        "the 10 committed jobs handled",
    )
    .await;
    assert!(!handled.contains("jobs_failed_total{job=\"ship_from_outbox\"} 1"));
    // A row is deleted in the relay's commit after its confirm, which a fast handler can
    // beat: wait for it, bounded.
    let emptied = tokio::time::timeout(WAIT, async {
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs_outbox")
                .fetch_one(&pool)
                .await
                .unwrap();
            if left == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(emptied.is_ok(), "every relayed row is deleted");
    // The relay's metrics: its count goes up just after its commit, so waited for, bounded.
    let metrics = metrics_with(
        addr,
        "\njobs_outbox_published_total 10\n",
        "the relay's count of published jobs",
    )
    .await;
    for line in [
        "\njobs_outbox_up 1\n",
        "\njobs_outbox_oldest_seconds 0\n",
        "\njobs_outbox_pushed_back_total 0\n",
    ] {
        assert!(metrics.contains(line), "{line:?} in {metrics}");
    }
    // The dashboard's overview shows the same reading.
    let overview: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/overview").await).expect("the overview's JSON");
    assert_eq!(
        overview["outbox"],
        serde_json::json!({
            "connected": true,
            "up": true,
            "oldest_seconds": 0.0,
            "published": 10,
            "pushed_back": 0,
        }),
        "{overview}"
    );
    worker.stop().await;
    delete_job_queues(&url, &ship_from_outbox::JOB).await;
}

/// The worker's `/metrics` once they contain `line`, waited for at most [`WAIT`].
async fn metrics_with(addr: std::net::SocketAddr, line: &str, what: &str) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let metrics = get(addr, "/metrics").await;
            if metrics.contains(line) {
                return metrics;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: {line:?} not in /metrics within {WAIT:?}"))
}
