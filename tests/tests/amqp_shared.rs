//! The shared outcome scenarios on RabbitMQ: the same outcomes as on the in-memory broker.
//!
//! Each test's job is its own in this binary, so each test deletes its job's queues once its
//! engines have stopped: a run leaves the shared broker as it found it.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::broker::delete_job_queues;
use jobs_tests::scenarios::{self, Suite};

/// One test, so the scenarios never share the job's queue with another engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_scenarios_give_the_same_outcomes_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    // The broker expires a retry queue's head on its own timer: allow for it.
    let suite = Suite::start(Arc::new(transport), Duration::from_secs(1)).await;

    scenarios::success(&suite).await;
    scenarios::retried_then_succeeds(&suite).await;
    scenarios::exhausted_into_the_error_queue(&suite).await;
    scenarios::fatal_goes_straight_to_the_error_queue(&suite).await;
    scenarios::timeout_is_a_retryable_failure(&suite).await;
    scenarios::panic_is_a_failure_and_the_worker_goes_on(&suite).await;
    scenarios::undecodable_body_goes_to_the_error_queue_at_once(&suite).await;
    scenarios::unknown_job_goes_to_the_error_queue_at_once(&suite).await;
    scenarios::unroutable_enqueue_fails(&suite).await;
    scenarios::too_large_is_refused(&suite).await;

    suite.engine.shutdown(Duration::from_secs(5)).await;
    delete_job_queues(&url, &[&scenarios::shared_work::JOB]).await;
}

/// On its own queue, so beside the shared scenarios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_enqueued_whole_and_a_refused_job_is_named_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    jobs_tests::batches::a_batch_is_enqueued_whole_and_a_refused_job_is_named(Arc::new(transport))
        .await;
    jobs_core::testing::delete_job_queues(&url, &[&jobs_tests::batches::line::JOB])
        .await
        .expect("the scenario's queues deleted");
}

/// On its own queue, so beside the shared scenarios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_jobs_overtake_the_backlog_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    jobs_tests::priorities::high_priority_jobs_overtake_the_backlog(Arc::new(transport)).await;
    delete_job_queues(&url, &[&jobs_tests::priorities::ranked::JOB]).await;
}

/// On its own queue, so beside the shared scenarios. The bound: every worker stops
/// within 2 s of the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_every_worker_until_resumed_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    jobs_tests::pauses::a_pause_holds_every_worker_until_resumed(
        Arc::new(transport),
        Duration::from_secs(2),
    )
    .await;
    delete_job_queues(&url, &[&jobs_tests::pauses::pausable::JOB]).await;
}

/// On its own queue, so beside the shared scenarios; a short cool-down, on real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_half_its_attempts_trips_the_switch_and_a_probe_closes_it_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    jobs_tests::kill_switch::failing_half_its_attempts_trips_the_switch_and_a_probe_closes_it(
        Arc::new(transport),
        Duration::from_secs(2),
    )
    .await;
    delete_job_queues(&url, &[&jobs_tests::kill_switch::call_dependency::JOB]).await;
}

/// On its own queue, so beside the shared scenarios; a connection per engine, as per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_never_run_more_than_the_limit_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    jobs_tests::limits::three_workers_never_run_more_than_the_limit(|| {
        let url = url.clone();
        async move {
            Arc::new(AmqpTransport::connect(&url).await.expect("connected"))
                as Arc<dyn jobs_core::transport::Transport>
        }
    })
    .await;
    // With the slot queues of its `max_running`.
    delete_job_queues(&url, &[&jobs_tests::limits::limited::JOB]).await;
}
