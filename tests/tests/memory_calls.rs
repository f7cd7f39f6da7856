//! The call scenarios on the in-memory broker, on virtual time, and what only it can do at
//! will: drop the connection under a call in flight.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::testing::TestApp;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{CallError, FailureKind};
use jobs_tests::calls::{self, CallSuite, Question, answer};

async fn suite(broker: &MemoryTransport) -> CallSuite {
    CallSuite::start(Arc::new(broker.clone()), 2).await
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_each_get_their_reply() {
    let suite = suite(&MemoryTransport::new()).await;
    calls::concurrent_calls_each_get_their_reply(&suite, 10_000).await;
    suite.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failures_reach_the_caller_typed() {
    let suite = suite(&MemoryTransport::new()).await;
    calls::failures_reach_the_caller_typed(&suite).await;
    calls::bad_requests_get_failure_replies(&suite).await;
    suite.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_nobody_can_receive_is_unroutable() {
    let suite = suite(&MemoryTransport::new()).await;
    calls::a_call_nobody_can_receive_is_unroutable(&suite).await;
    suite.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_is_dropped() {
    let suite = suite(&MemoryTransport::new()).await;
    calls::a_late_reply_is_dropped(&suite).await;
    suite.shutdown().await;
}

/// A lost connection fails every call in flight at once, and the next call opens a new reply
/// channel.
#[tokio::test(start_paused = true)]
async fn a_lost_connection_fails_the_calls_in_flight() {
    let broker = MemoryTransport::new();
    let suite = suite(&broker).await;
    let slow = |n| {
        answer::call(
            &suite.producer,
            Question {
                ask: "slow".into(),
                n,
            },
        )
    };
    let (first, second, ()) = tokio::join!(slow(1).into_future(), slow(2).into_future(), async {
        // Both calls' jobs running (their handlers take `SLOW`): then the connection goes.
        let running = async {
            // A millisecond of virtual time per look, so the bound below can pass.
            while broker.unacked(answer::QUEUE) < 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(calls::SLOW, running)
            .await
            .expect("both calls reach a worker before their handlers end");
        broker.disconnect();
    });
    for result in [first, second] {
        assert!(matches!(result, Err(CallError::Disconnected)), "{result:?}");
    }
    let reply = answer::call(
        &suite.producer,
        Question {
            ask: "echo".into(),
            n: 3,
        },
    )
    .await
    .expect("a new reply channel");
    assert_eq!(reply.n, 3);
    suite.shutdown().await;
}

/// A unit test of a job that answers, as an application writes one: `TestApp` serves the call,
/// and its failures come back typed, on the paused clock.
#[tokio::test(start_paused = true)]
async fn a_test_app_serves_calls() {
    let app = TestApp::builder().job(&answer::JOB).build().unwrap();
    let reply = answer::call(
        &app,
        Question {
            ask: "flaky".into(),
            n: 7,
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.text, "second", "answered by its retry");
    assert_eq!(reply.n, 7);
    let refused = answer::call(
        &app,
        Question {
            ask: "fatal".into(),
            n: 8,
        },
    )
    .await;
    assert!(
        matches!(&refused, Err(CallError::Failed { kind: FailureKind::Fatal, error }) if error == "refused for good"),
        "{refused:?}"
    );
    app.run_until_idle().await;
    assert_eq!(
        (app.retried(&answer::JOB), app.succeeded(&answer::JOB)),
        (1, 1)
    );
    assert_eq!(app.error_queue(answer::QUEUE).len(), 1);
}
