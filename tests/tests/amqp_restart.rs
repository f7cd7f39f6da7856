//! A worker restarted mid-run loses nothing: every confirmed job is handled at least once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, job};
use jobs_tests::broker::delete_job_queues;

/// A unit of simulated work.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Step {
    /// How long the work takes.
    #[prost(uint32, tag = "1")]
    pub millis: u32,
}

#[job(
    exchange = "tests.restart",
    routing_key = "work",
    queue = "tests.restart.work",
    concurrency = 20
)]
async fn restart_work(step: Step) -> Result<(), JobError> {
    // The work itself, so that deliveries are in flight when the worker stops.
    tokio::time::sleep(Duration::from_millis(step.millis.into())).await;
    Ok(())
}

async fn worker(url: &str, recorder: &Arc<Recorder>) -> Engine {
    let transport = AmqpTransport::connect(url).await.expect("connected");
    Engine::builder(Arc::new(transport))
        .job(&restart_work::JOB)
        .observer(Arc::clone(recorder) as _)
        .start()
        .await
        .expect("started")
}

fn succeeded(recorder: &Recorder) -> Vec<String> {
    recorder
        .events()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_run_loses_no_confirmed_job() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let recorder = Arc::new(Recorder::new());
    let first = worker(&url, &recorder).await;

    let enqueues = (0..300).map(|_| restart_work::enqueue(&first, Step { millis: 20 }));
    let ids: Vec<String> = join_all(enqueues)
        .await
        .into_iter()
        .map(|id| id.expect("confirmed").to_string())
        .collect();

    // Stop the first worker with deliveries in flight: unfinished ones go back to the queue.
    recorder
        .wait_until(Duration::from_secs(30), || {
            (succeeded(&recorder).len() >= 50).then_some(())
        })
        .await
        .expect("the first worker handles some jobs");
    first.shutdown(Duration::ZERO).await;
    let before_restart = succeeded(&recorder).len();
    assert!(before_restart < ids.len(), "the restart happens mid-run");

    let second = worker(&url, &recorder).await;
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let all_handled = || {
        let done: HashSet<String> = succeeded(&recorder).into_iter().collect();
        wanted
            .iter()
            .all(|id| done.contains(*id))
            .then_some(done.len())
    };
    let handled = recorder
        .wait_until(Duration::from_secs(60), all_handled)
        .await;
    assert!(
        handled.is_ok(),
        "every confirmed job is handled at least once"
    );
    // At most the deliveries in flight at the stop run twice.
    let runs = succeeded(&recorder)
        .iter()
        .filter(|id| wanted.contains(id.as_str()))
        .count();
    assert!(
        runs - ids.len() <= 20,
        "{} duplicates, over the 20 in flight",
        runs - ids.len()
    );
    second.shutdown(Duration::from_secs(5)).await;
    // A run leaves the shared broker as it found it.
    delete_job_queues(&url, &[&restart_work::JOB]).await;
}
