//! The delay scenarios on RabbitMQ: the same outcomes as on the in-memory broker, each job
//! starting within 1.5 s after it is due.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::delays::{self, DelaySuite};

/// One test, so the scenarios never share the job's queue with another engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_scenarios_give_the_same_outcomes_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    let suite = DelaySuite::start(Arc::new(transport), Duration::from_millis(1500)).await;

    delays::delayed_jobs_start_when_due(&suite).await;
    delays::many_delays_each_start_on_time(&suite).await;
    delays::the_longest_level_takes_its_delay(&suite).await;
    delays::retry_after_waits_its_delay(&suite).await;
    delays::the_same_level_five_times_never_drops_the_job(&suite).await;

    suite.engine.shutdown(Duration::from_secs(5)).await;
    jobs_tests::broker::delete_job_queues(&url, &[&delays::later::JOB]).await;
}
