//! Each exchange type routes jobs as RabbitMQ documents, on the broker.

use std::sync::Arc;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::routing;

/// One test, so the scenarios never share the jobs' queues with another engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exchange_kind_routes_as_rabbitmq_documents() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let transport = Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let routed = routing::Routing::start(transport.clone()).await;
    routing::direct_routes_on_the_exact_key(&routed).await;
    routing::topic_patterns_match_one_word_and_zero_or_more(&routed).await;
    routing::two_jobs_on_a_fanout_exchange_both_receive_one_message(&routed).await;
    routing::headers_bindings_match_all_or_any(&routed).await;
    routing::a_headers_message_matching_no_binding_is_unroutable(&routed).await;
    routed.finish(&*transport).await;
    // The eight jobs' queues go: the suite must not leave every job's queues on the broker.
    jobs_core::testing::delete_job_queues(&url, &routing::JOBS)
        .await
        .expect("the queues deleted");
}
