//! The call scenarios on RabbitMQ, with two worker replicas: the same outcomes as on the
//! in-memory broker, 10,000 of them concurrent.

use std::sync::Arc;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::calls::{self, CallSuite};

/// One test, so the scenarios never share the job's queue with another suite's workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_scenarios_give_the_same_outcomes_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    let suite = CallSuite::start(Arc::new(transport), 2).await;
    calls::concurrent_calls_each_get_their_reply(&suite, 10_000).await;
    calls::failures_reach_the_caller_typed(&suite).await;
    calls::bad_requests_get_failure_replies(&suite).await;
    calls::a_call_nobody_can_receive_is_unroutable(&suite).await;
    calls::a_late_reply_is_dropped(&suite).await;
    suite.shutdown().await;
    jobs_tests::broker::delete_job_queues(&url, &[&calls::answer::JOB]).await;
}
