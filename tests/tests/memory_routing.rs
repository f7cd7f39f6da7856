//! Each exchange type routes jobs to the right queues, on the in-memory broker.

use jobs_tests::routing::{self, Routing};

macro_rules! on_memory {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $scenario() {
            routing::$scenario(&Routing::on_memory().await).await;
        }
    )*};
}

on_memory!(
    direct_routes_on_the_exact_key,
    topic_patterns_match_one_word_and_zero_or_more,
    two_jobs_on_a_fanout_exchange_both_receive_one_message,
    headers_bindings_match_all_or_any,
    a_headers_message_matching_no_binding_is_unroutable,
);
