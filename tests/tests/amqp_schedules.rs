//! The schedule scenarios on RabbitMQ: the same outcomes as on the in-memory broker, each run
//! starting within 1.5 s after its slot.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::broker::delete_job_queues;
use jobs_tests::schedules::{self, ScheduleSuite};

/// One test, so the scenarios never share the job's queues with another pair of engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_scenarios_give_the_same_outcomes_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    // Both engines share the connection, each scheduler on its own channel: the broker moves
    // the single active consumer when the active one's engine stops. (Worker processes killed
    // outright are a scenario of the fault battery.)
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    let mut suite = ScheduleSuite::start(Arc::new(transport), Duration::from_millis(1500)).await;
    schedules::each_slot_runs_once_on_time(&suite).await;
    schedules::the_other_worker_takes_over(&mut suite).await;
    suite.shutdown().await;
    // With the schedule's tick and last-fired queues: a run leaves the broker as it found it.
    delete_job_queues(&url, &[&schedules::every_second::JOB]).await;
}
