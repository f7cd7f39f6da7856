//! Broker faults against one private RabbitMQ node, with an in-process engine and concurrent
//! producers, every job counted by a ledger: a fault-free baseline, connections closed five
//! times, a graceful restart, a SIGKILL and restart, and retries waiting in their delay queues
//! across a restart.
//!
//! The scenarios share one node (a node boots in about ten seconds) and run one after another in
//! one test, each on its own engine and ledger, with the queues purged in between.

mod nodes_support;

use std::time::{Duration, Instant};

use jobs_faults::scenario::{sized, until};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use nodes_support::{
    DEAD_LETTER_IN_FLIGHT, IN_FLIGHT, Producers, Queue, RETRY_QUEUES, all_settled, engine,
};

/// Concurrent producers in every scenario.
const PRODUCERS: usize = 8;
/// The longest a scenario's jobs may take to settle after its last fault.
const SETTLE: Duration = Duration::from_secs(120);
/// The producer's confirm timeout: a publish stuck on a dead connection fails after this.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_lose_no_confirmed_job() {
    if skip_without_rabbitmq() {
        return;
    }
    let started = Instant::now();
    let mut node = PrivateNode::start_new()
        .await
        .expect("the private node starts");
    eprintln!("node {} up in {:?}", node.name(), started.elapsed());

    baseline(&node).await;
    connections_closed_five_times(&node).await;
    graceful_restart(&mut node).await;
    sigkill_and_restart(&mut node).await;
    retries_across_a_restart(&mut node, Queue::Quorum, false).await;
    retries_across_a_restart(&mut node, Queue::Classic, false).await;
    // Retry queues are quorum queues for classic jobs too, dead-lettering at least once: the
    // hop back to the work queue survives a crash whatever the work queue's type.
    retries_across_a_restart(&mut node, Queue::Quorum, true).await;
    retries_across_a_restart(&mut node, Queue::Classic, true).await;
    eprintln!("broker faults done in {:?}", started.elapsed());
}

/// No fault: every job handled exactly once.
async fn baseline(node: &PrivateNode) {
    let scenario = "baseline";
    let total = sized(10_000, 100_000);
    let ledger = Ledger::new();
    let engine = engine(&node.url(), scenario, &ledger, CONFIRM_TIMEOUT).await;
    let started = Instant::now();
    let producers = Producers::start(
        engine.producer(),
        &ledger,
        Queue::Quorum,
        PRODUCERS,
        total,
        0,
        0,
    );
    let produced = producers.finish(Duration::from_secs(600)).await;
    all_settled(&ledger, Duration::from_secs(600)).await;
    eprintln!(
        "{scenario}: {total} jobs in {:?}, {} failed enqueues",
        started.elapsed(),
        produced.transient_failures
    );
    assert_eq!(
        produced.transient_failures, 0,
        "no enqueue fails without a fault"
    );
    assert_eq!(ledger.confirmed_count(), total);
    engine.shutdown(Duration::from_secs(10)).await;
    // No fault, so no redelivery: the bound is 0.
    ledger.report().check(scenario, 0);
}

/// `close_all_connections` on the node five times while producers and the worker run.
async fn connections_closed_five_times(node: &PrivateNode) {
    let scenario = "connections closed 5x";
    let total = sized(5_000, 50_000);
    let ledger = Ledger::new();
    let engine = engine(&node.url(), scenario, &ledger, CONFIRM_TIMEOUT).await;
    let producers = Producers::start(
        engine.producer(),
        &ledger,
        Queue::Quorum,
        PRODUCERS,
        total,
        1_000_000_000,
        0,
    );
    for round in 1..=5 {
        let mark = round * total / 6;
        until(
            &format!("{scenario}: {mark} jobs handled before cut {round}"),
            SETTLE,
            || ledger.settled() >= mark,
        )
        .await;
        let closed = node
            .close_all_connections()
            .await
            .expect("the node closes its connections");
        eprintln!("{scenario}: cut {round}: {}", closed.trim());
    }
    let produced = producers.finish(SETTLE).await;
    all_settled(&ledger, SETTLE).await;
    eprintln!(
        "{scenario}: {} enqueues failed with a transient error",
        produced.transient_failures
    );
    engine.shutdown(Duration::from_secs(10)).await;
    // Each cut can redeliver the deliveries the worker had in flight (handled, not yet acked).
    ledger.report().check(scenario, IN_FLIGHT * 5);
}

/// The node shut down gracefully and started again on its data while jobs flow.
async fn graceful_restart(node: &mut PrivateNode) {
    restart(node, "broker graceful restart", false, 2_000_000_000).await;
}

/// The node's VM killed with SIGKILL and started again on its data while jobs flow.
async fn sigkill_and_restart(node: &mut PrivateNode) {
    restart(node, "broker SIGKILL + restart", true, 3_000_000_000).await;
}

async fn restart(node: &mut PrivateNode, scenario: &str, kill: bool, first_id: u64) {
    let total = sized(10_000, 100_000);
    let ledger = Ledger::new();
    let engine = engine(&node.url(), scenario, &ledger, CONFIRM_TIMEOUT).await;
    let producers = Producers::start(
        engine.producer(),
        &ledger,
        Queue::Quorum,
        PRODUCERS,
        total,
        first_id,
        0,
    );
    // On confirms, not handlings: the producers must still be at work when the node goes.
    until(&format!("{scenario}: a fifth confirmed"), SETTLE, || {
        ledger.confirmed_count() >= total / 5
    })
    .await;
    let down = Instant::now();
    if kill {
        node.kill().await.expect("the node is killed");
    } else {
        node.stop().await.expect("the node stops");
    }
    node.start().await.expect("the node starts again");
    eprintln!("{scenario}: node back after {:?}", down.elapsed());
    let produced = producers.finish(SETTLE).await;
    all_settled(&ledger, SETTLE).await;
    eprintln!(
        "{scenario}: {} enqueues failed with a transient error",
        produced.transient_failures
    );
    engine.shutdown(Duration::from_secs(10)).await;
    // One fault: at most the deliveries in flight when it hit come again.
    ledger.report().check(scenario, IN_FLIGHT);
}

/// Jobs that fail their first two attempts sit in the delay queues (300 ms, 600 ms) when the
/// node restarts; every one is handled after.
async fn retries_across_a_restart(node: &mut PrivateNode, queue: Queue, kill: bool) {
    let scenario = match (queue, kill) {
        (Queue::Quorum, false) => "retries across a restart (quorum)",
        (Queue::Classic, false) => "retries across a restart (classic)",
        (Queue::Quorum, true) => "retries across a SIGKILL + restart (quorum)",
        (Queue::Classic, true) => "retries across a SIGKILL + restart (classic)",
    };
    let total = sized(1_000, 10_000);
    let ledger = Ledger::new();
    let engine = engine(&node.url(), scenario, &ledger, CONFIRM_TIMEOUT).await;
    let first_id = match (queue, kill) {
        (Queue::Quorum, false) => 4_000_000_000,
        (Queue::Classic, false) => 5_000_000_000,
        (Queue::Quorum, true) => 5_500_000_000,
        (Queue::Classic, true) => 6_000_000_000,
    };
    let producers = Producers::start(
        engine.producer(),
        &ledger,
        queue,
        PRODUCERS,
        total,
        first_id,
        2,
    );
    let produced = producers.finish(SETTLE).await;
    // All confirmed, none handled yet: each job's first attempt fails, so right after the
    // producers finish most of them are waiting in a retry queue.
    let waiting: u64 = {
        let transport = engine.producer().transport();
        let mut sum = 0;
        for name in queue.queues().iter().filter(|q| q.contains(".retry.")) {
            sum += transport.message_count(name).await.unwrap_or(0);
        }
        sum
    };
    eprintln!("{scenario}: {waiting} jobs in the delay queues at the restart");
    assert!(waiting > 0, "{scenario}: jobs wait in the delay queues");
    if kill {
        node.kill().await.expect("the node is killed");
    } else {
        node.stop().await.expect("the node stops");
    }
    node.start().await.expect("the node starts again");
    all_settled(&ledger, SETTLE).await;
    assert_eq!(
        produced.transient_failures, 0,
        "all enqueued before the restart"
    );
    engine.shutdown(Duration::from_secs(10)).await;
    // One fault: the deliveries in flight at the restart may run again, and so may the
    // at-least-once dead-letter hops from each (quorum) retry queue back to the work queue that
    // the restart caught unconfirmed (seen: 46 duplicates in one run).
    ledger
        .report()
        .check(scenario, IN_FLIGHT + RETRY_QUEUES * DEAD_LETTER_IN_FLIGHT);
}
