//! The shared outcome scenarios on the in-memory broker, on virtual time.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::memory::MemoryTransport;
use jobs_tests::scenarios::{self, Suite};

async fn suite() -> Suite {
    Suite::start(Arc::new(MemoryTransport::new()), Duration::ZERO).await
}

macro_rules! on_memory {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $scenario() {
            scenarios::$scenario(&suite().await).await;
        }
    )*};
}

on_memory!(
    success,
    retried_then_succeeds,
    exhausted_into_the_error_queue,
    fatal_goes_straight_to_the_error_queue,
    timeout_is_a_retryable_failure,
    panic_is_a_failure_and_the_worker_goes_on,
    undecodable_body_goes_to_the_error_queue_at_once,
    unknown_job_goes_to_the_error_queue_at_once,
    unroutable_enqueue_fails,
    too_large_is_refused,
);

#[tokio::test(start_paused = true)]
async fn high_priority_jobs_overtake_the_backlog() {
    jobs_tests::priorities::high_priority_jobs_overtake_the_backlog(Arc::new(
        MemoryTransport::new(),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_every_worker_until_resumed() {
    jobs_tests::pauses::a_pause_holds_every_worker_until_resumed(
        Arc::new(MemoryTransport::new()),
        Duration::from_millis(100),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn failing_half_its_attempts_trips_the_switch_and_a_probe_closes_it() {
    jobs_tests::kill_switch::failing_half_its_attempts_trips_the_switch_and_a_probe_closes_it(
        Arc::new(MemoryTransport::new()),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn three_workers_never_run_more_than_the_limit() {
    let broker = MemoryTransport::new();
    jobs_tests::limits::three_workers_never_run_more_than_the_limit(|| {
        let broker = broker.clone();
        async move { Arc::new(broker) as Arc<dyn jobs_core::transport::Transport> }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn three_workers_keep_to_the_rate() {
    let broker = MemoryTransport::new();
    jobs_tests::rates::three_workers_keep_to_the_rate(
        || {
            let broker = broker.clone();
            async move { Arc::new(broker) as Arc<dyn jobs_core::transport::Transport> }
        },
        1_000,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_enqueued_whole_and_a_refused_job_is_named() {
    jobs_tests::batches::a_batch_is_enqueued_whole_and_a_refused_job_is_named(Arc::new(
        MemoryTransport::new(),
    ))
    .await;
}
