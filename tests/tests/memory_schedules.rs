//! The schedule scenarios on the in-memory broker, on virtual time: runs start on their slot,
//! and a month of a schedule passes in moments.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::schedule::{self, run_id};
use jobs_core::testing::{Outcome, Recorder, TestApp};
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, job};
use jobs_tests::schedules::{self, Beat, ScheduleSuite};

async fn suite() -> ScheduleSuite {
    ScheduleSuite::start(Arc::new(MemoryTransport::new()), Duration::ZERO).await
}

#[tokio::test(start_paused = true)]
async fn each_slot_runs_once_on_time() {
    let suite = suite().await;
    schedules::each_slot_runs_once_on_time(&suite).await;
    suite.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_other_worker_takes_over() {
    let mut suite = suite().await;
    schedules::the_other_worker_takes_over(&mut suite).await;
    suite.shutdown().await;
}

/// Every five minutes, on the clock.
#[job(
    exchange = "tests.schedules",
    routing_key = "five-minutes",
    schedule = "0 */5 * * * *"
)]
async fn five_minutes(_: Beat) -> Result<(), JobError> {
    Ok(())
}

/// Every hour, with missed slots skipped.
#[job(
    exchange = "tests.schedules",
    routing_key = "hourly-skip",
    every = "1h",
    missed = "skip"
)]
async fn hourly_skip(_: Beat) -> Result<(), JobError> {
    Ok(())
}

/// Every hour, with the latest missed slot fired once (the default).
#[job(exchange = "tests.schedules", routing_key = "hourly", every = "1h")]
async fn hourly(_: Beat) -> Result<(), JobError> {
    Ok(())
}

/// The slots a recorder saw run, as their ids, in order.
fn ran(recorder: &Recorder, job: &'static str) -> Vec<String> {
    recorder
        .events()
        .into_iter()
        .filter(|e| e.job == job && e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_month_of_a_five_minute_schedule_runs_every_slot_once() {
    let app = TestApp::builder().job(&five_minutes::JOB).build().unwrap();
    let start = app.transport().now();
    tokio::time::sleep(Duration::from_secs(30 * 24 * 3600)).await;
    let end = app.transport().now();

    let schedule =
        schedule::Schedule::parse(five_minutes::JOB.options().schedule.unwrap()).unwrap();
    let mut expected = Vec::new();
    let mut slot = schedule.next_after(start).unwrap();
    while slot <= end {
        expected.push(run_id(&five_minutes::JOB, slot));
        slot = schedule.next_after(slot).unwrap();
    }
    assert_eq!(expected.len(), 30 * 24 * 12);
    assert_eq!(ran(app.recorder(), five_minutes::JOB.name()), expected);
    let ticks = schedule::tick_queue(&five_minutes::JOB);
    assert_eq!(app.transport().unacked(&ticks), 0, "no tick waits unacked");
}

#[tokio::test(start_paused = true)]
async fn slots_missed_while_no_worker_ran_fire_once_or_are_skipped() {
    let transport = MemoryTransport::new();
    let recorder = Arc::new(Recorder::new());
    let start = || {
        Engine::builder(Arc::new(transport.clone()))
            .job(&hourly::JOB)
            .job(&hourly_skip::JOB)
            .observer(Arc::clone(&recorder) as _)
            .start()
    };
    let first = start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(ran(&recorder, hourly::JOB.name()).len(), 2);
    assert_eq!(ran(&recorder, hourly_skip::JOB.name()).len(), 2);

    // Five slots pass with no worker; then one starts, 30 minutes into an hour.
    tokio::time::sleep(Duration::from_secs(5 * 3600 + 1800)).await;
    let now = transport.now();
    let second = start().await.unwrap();
    recorder
        .wait_until(Duration::from_secs(60), || {
            (ran(&recorder, hourly::JOB.name()).len() > 2).then_some(())
        })
        .await
        .expect("the missed slot fires at start");
    let schedule = schedule::Schedule::parse(hourly::JOB.options().schedule.unwrap()).unwrap();
    let latest = schedule.latest_at_or_before(now).unwrap();
    let fired = ran(&recorder, hourly::JOB.name());
    assert_eq!(fired.len(), 3, "the latest missed slot, once: {fired:?}");
    assert_eq!(fired[2], run_id(&hourly::JOB, latest));
    assert_eq!(ran(&recorder, hourly_skip::JOB.name()).len(), 2, "skipped");

    // Both go on with the next slot.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(ran(&recorder, hourly::JOB.name()).len(), 4);
    assert_eq!(ran(&recorder, hourly_skip::JOB.name()).len(), 3);
    second.shutdown(Duration::from_secs(5)).await;
}
