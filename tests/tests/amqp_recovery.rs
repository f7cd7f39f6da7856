//! Connections closed under a running worker are recovered: consumption and publishing resume.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, MessageId, job};
use jobs_tests::broker::{close_connections_named, delete_job_queues};

/// A ping.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    /// Which one.
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

#[job(
    exchange = "tests.recovery",
    routing_key = "ping",
    queue = "tests.recovery.ping"
)]
async fn recovery_ping(_: Ping) -> Result<(), JobError> {
    Ok(())
}

/// Enqueues, retrying while the publishing connection comes back: a publish in flight when
/// the connection dies fails with a connection error, and the caller decides to retry.
async fn enqueue(engine: &Engine, n: u32) -> MessageId {
    for _ in 0..50 {
        match recovery_ping::enqueue(engine, Ping { n }).await {
            Ok(id) => return id,
            Err(err) => {
                assert!(err.is_transient(), "{err:?}");
                // The transport backs off after a failed reconnect; give it that long.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("the producer did not recover");
}

async fn handled(recorder: &Recorder, id: &MessageId) {
    let events = recorder
        .finished(id.as_str(), Duration::from_secs(30))
        .await
        .expect("handled");
    assert_eq!(events.last().map(|e| &e.outcome), Some(&Outcome::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_connections_are_closed_five_times_keeps_consuming() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let name = format!("jobs-test-recovery-{}", MessageId::generate());
    let transport = AmqpTransport::builder(url.as_str())
        .connection_name(name)
        .connect()
        .await
        .expect("connected");
    let names = transport.connection_names().map(str::to_owned);
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::new(transport))
        .job(&recovery_ping::JOB)
        .observer(Arc::clone(&recorder) as _)
        .start()
        .await
        .expect("started");

    let first = enqueue(&engine, 0).await;
    handled(&recorder, &first).await;
    for round in 1..=5 {
        let closed: usize = names.iter().map(|name| close_connections_named(name)).sum();
        assert!(closed >= 1, "round {round}: our connections were open");
        // The supervisor attaches a new consumer and the producer reconnects: jobs enqueued
        // after the cut are handled.
        let id = enqueue(&engine, round).await;
        handled(&recorder, &id).await;
    }
    engine.shutdown(Duration::from_secs(5)).await;
    // A run leaves the shared broker as it found it.
    delete_job_queues(&url, &[&recovery_ping::JOB]).await;
}
