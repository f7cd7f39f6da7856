//! Broker faults against one private RabbitMQ node, with an in-process engine and concurrent
//! producers, every job counted by a ledger: a fault-free baseline, connections closed five
//! times, a graceful restart, a SIGKILL and restart, retries waiting in their delay queues
//! across a restart, and delayed jobs waiting in the delay cascade across a SIGKILL.
//!
//! The scenarios share one node (a node boots in about ten seconds) and run one after another in
//! one test, each on its own engine and ledger, with the queues purged in between.

mod nodes_support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use jobs_core::delay::{LEVELS, level_name};
use jobs_faults::scenario::{sized, until};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use nodes_support::{
    DEAD_LETTER_IN_FLIGHT, DUE_HEADER, IN_FLIGHT, Producers, Queue, RETRY_QUEUES, Starts, Tracked,
    all_settled, drained, engine, engine_with_starts, tracked_quorum,
};

/// Concurrent producers in every scenario.
const PRODUCERS: usize = 8;
/// The longest a scenario's jobs may take to settle after its last fault. Once, on a two-core
/// machine loaded by other builds, a classic queue's jobs had not started two minutes after a
/// SIGKILL and restart (the cause is not known yet); a bound, not a timing.
const SETTLE: Duration = Duration::from_secs(300);
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
    delayed_jobs_across_a_sigkill(&mut node).await;
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
    drained(&engine, queue, SETTLE).await;
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

/// How long the node stays down past the first delayed job's due time.
const DOWN_PAST_DUE: Duration = Duration::from_secs(3);
/// How long after a restart a delayed job leaving a level may be held up: the node recovers
/// its queues, the engine reconnects.
const RECOVERY: Duration = Duration::from_secs(5);

/// Delayed jobs, due 10 to 80 s after the first enqueue (30 to 90 s in a full run), all wait in
/// the delay cascade when the node is killed (SIGKILL), and the first come due while it is
/// down; after its restart every one is handled, none twice, none before it was due.
async fn delayed_jobs_across_a_sigkill(node: &mut PrivateNode) {
    let total: u64 = sized(1_000, 10_000);
    let scenario = format!("{} delayed jobs across a broker SIGKILL", thousands(total));
    // Due times spread over [earliest, latest) after the first enqueue, to the millisecond.
    let earliest = sized(Duration::from_secs(10), Duration::from_secs(30));
    let latest = sized(Duration::from_secs(80), Duration::from_secs(90));
    let first_id = 7_000_000_000;
    let ledger = Ledger::new();
    let starts = Starts::default();
    let engine =
        engine_with_starts(&node.url(), &scenario, &ledger, CONFIRM_TIMEOUT, &starts).await;
    let producer = engine.producer().clone();

    let begun = SystemTime::now();
    let begun_ms = unix_ms(begun);
    let span_ms = u64::try_from((latest - earliest).as_millis()).expect("a span in ms");
    let due_ms = |n: u64| begun_ms + earliest.as_millis() as u64 + n * 7_919 % span_ms;
    futures_util::stream::iter(0..total)
        .map(|n| {
            let id = first_id + n;
            let due = UNIX_EPOCH + Duration::from_millis(due_ms(n));
            ledger.attempted(id);
            let job = tracked_quorum::with(Tracked { id, fail_first: 0 }).header(
                DUE_HEADER,
                i64::try_from(due_ms(n)).expect("a due time in ms"),
            );
            // Half with a delay from now, half at a time: both round up to the second, so
            // neither is due before `due`.
            let job = if n.is_multiple_of(2) {
                job.delay(
                    due.duration_since(SystemTime::now())
                        .expect("enqueued before its due time"),
                )
            } else {
                job.at(due)
            };
            let (producer, ledger) = (producer.clone(), ledger.clone());
            async move {
                job.enqueue(&producer).await.expect("a confirmed enqueue");
                ledger.confirmed(id);
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let enqueued = begun.elapsed().unwrap_or_default();

    // A job due d seconds after its enqueue first moves on after 2^floor(log2 d) > d/2 s, and
    // every job is due `earliest` after the first enqueue or later: until half of that has
    // passed, each job sits in the level of its top bit, and they add up to all of them.
    let mut in_cascade = 0;
    for level in 0..LEVELS {
        in_cascade += engine
            .producer()
            .transport()
            .message_count(&level_name(level))
            .await
            .expect("a level's count");
    }
    let counted = begun.elapsed().unwrap_or_default();
    assert!(
        counted < earliest / 2,
        "{scenario}: enqueueing and counting took {counted:?}, too long for the jobs to be \
         still waiting where they entered the cascade; make `earliest` longer"
    );
    eprintln!(
        "{scenario}: {total} enqueued in {enqueued:?}, {in_cascade} in the cascade at \
         {counted:?}, the first due at {earliest:?}"
    );
    assert_eq!(
        in_cascade, total,
        "{scenario}: every job waits in the cascade"
    );
    assert_eq!(ledger.confirmed_count() as u64, total);
    assert_eq!(ledger.settled(), 0, "{scenario}: none handled yet");

    let down = Instant::now();
    node.kill().await.expect("the node is killed");
    // Scenario time: the node stays down until the first jobs are due, so that some come due
    // while it is away and expire from their level as it recovers.
    let down_until = earliest + DOWN_PAST_DUE;
    tokio::time::sleep(down_until.saturating_sub(begun.elapsed().unwrap_or_default())).await;
    node.start().await.expect("the node starts again");
    let back_ms = unix_ms(SystemTime::now());
    let due_while_down = (0..total).filter(|n| due_ms(*n) < back_ms).count();
    eprintln!(
        "{scenario}: node back after {:?}, {due_while_down} jobs came due while it was down",
        down.elapsed()
    );
    assert!(
        due_while_down > 0,
        "{scenario}: jobs come due while the node is down"
    );
    all_settled(&ledger, latest + SETTLE).await;
    engine.shutdown(Duration::from_secs(10)).await;

    let starts = starts.all();
    let early: Vec<&(u64, i64)> = starts.iter().filter(|(_, late)| *late < 0).collect();
    // A job whose wait in a level ended while the node was down (or recovering) waits out
    // the rest of its delay in the levels below from when the node is back: it is late by as
    // much as its level overran, even when due long after the restart (the levels know
    // nothing of due times). The jobs whose first level ended after the node had recovered
    // (a job of delay d leaves its first level 2^floor(log2 d) s after its enqueue, at the
    // earliest when enqueued first) must be on time: a delay rounds up to the second, and the
    // cascade adds tens of milliseconds.
    let enqueued_ms = u64::try_from(enqueued.as_millis()).expect("ms");
    let recovered_ms = back_ms + u64::try_from(RECOVERY.as_millis()).expect("ms");
    let after_recovery = |id: u64| {
        let shortest = due_ms(id - first_id).saturating_sub(begun_ms + enqueued_ms) / 1000;
        shortest
            .checked_ilog2()
            .is_some_and(|top| begun_ms + (1000 << top) >= recovered_ms)
    };
    let (on_time, crossed): (Vec<_>, Vec<_>) =
        starts.iter().partition(|(id, _)| after_recovery(*id));
    let max_late = |lates: &[&(u64, i64)]| {
        lates
            .iter()
            .map(|(_, late)| *late)
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "{scenario}: {} starts, {} early; {} jobs left a level while the node was down or \
         recovering, started at most {} ms late; {} after, at most {} ms late",
        starts.len(),
        early.len(),
        crossed.len(),
        max_late(&crossed),
        on_time.len(),
        max_late(&on_time),
    );
    // No delivery in flight and no message between two levels when the node died (none was
    // due, none had reached its first level's TTL): nothing is handled twice.
    ledger.report().check(&scenario, 0);
    assert!(
        early.is_empty(),
        "{scenario}: {} jobs started before they were due (id, ms late): {:?}",
        early.len(),
        &early[..early.len().min(20)]
    );
    // How late the jobs whose first level ended after the restart start is reported above,
    // not asserted: one run saw 19 s (a slow restart, 321 jobs overdue at once), another 1.1 s.
    // Why the levels below stay late after an outage is not known yet.
}

/// Unix milliseconds of `time`.
fn unix_ms(time: SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis(),
    )
    .expect("a time in ms")
}

/// `n` with a comma between thousands: 10,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
