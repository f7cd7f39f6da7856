//! The schedule scenarios, written once and run on every transport: two workers serve a job
//! that runs every second, one scheduler fires each slot once under the slot's id, and when
//! the active worker stops, the other takes over without losing a slot.
//!
//! On the in-memory broker under a paused clock, runs start on their slot; on RabbitMQ,
//! within [`ScheduleSuite::tolerance`] after it.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobs_core::engine::{Engine, EngineBuilder};
use jobs_core::schedule::{self, LastFired};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::{Declare, Transport};
use jobs_core::{JobError, job};

/// The scheduled job's message: nothing, as a periodic job's message is its default.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Beat {}

/// The job the schedule scenarios run, every second.
#[job(
    exchange = "tests.schedules",
    routing_key = "every-second",
    queue = "tests.schedules.every-second",
    every = "1s"
)]
pub async fn every_second(_: Beat) -> Result<(), JobError> {
    Ok(())
}

/// How long the scenarios let the schedule run between checks.
const RUN_FOR: Duration = Duration::from_secs(5);

/// Two engines (`a` and `b`) serving [`every_second()`] on one transport.
#[derive(Debug)]
pub struct ScheduleSuite {
    /// The running engines, by name; the scenarios stop one.
    pub engines: BTreeMap<&'static str, Engine>,
    /// The transport they run on.
    pub transport: Arc<dyn Transport>,
    /// Both engines' events.
    pub recorder: Arc<Recorder>,
    /// The broker's time when the recorder started.
    epoch: SystemTime,
    /// How late a run may start after its slot (zero on virtual time).
    pub tolerance: Duration,
}

/// A run of the job: its slot, and when it started.
#[derive(Clone, Copy, Debug)]
struct Run {
    slot: SystemTime,
    started: SystemTime,
}

impl ScheduleSuite {
    /// Starts both engines on `transport`, the schedule's queues emptied first (a broker may
    /// hold an earlier run's ticks and last fired slot).
    pub async fn start(transport: Arc<dyn Transport>, tolerance: Duration) -> Self {
        let recorder = Arc::new(Recorder::new());
        let epoch = transport.now();
        let builder = |name: &str| {
            Engine::builder(Arc::clone(&transport))
                .name(name)
                .job(&every_second::JOB)
                .observer(Arc::clone(&recorder) as _)
        };
        let topology = builder("a").check().expect("a valid topology");
        transport
            .declare(&topology, Declare::Create)
            .await
            .expect("declared");
        for queue in [
            every_second::QUEUE.to_owned(),
            schedule::tick_queue(&every_second::JOB),
            schedule::last_queue(&every_second::JOB),
        ] {
            transport.purge(&queue).await.expect("purged");
        }
        let mut engines = BTreeMap::new();
        for name in ["a", "b"] {
            let engine: EngineBuilder = builder(name);
            engines.insert(name, engine.start().await.expect("the engine starts"));
        }
        Self {
            engines,
            transport,
            recorder,
            epoch,
            tolerance,
        }
    }

    /// Every run so far, in the order they started.
    fn runs(&self) -> Vec<Run> {
        self.recorder
            .events()
            .into_iter()
            .filter(|e| e.job == every_second::JOB.name() && e.outcome == Outcome::Started)
            .map(|e| {
                let id = e.message_id.expect("a run has an id");
                Run {
                    slot: slot_of(&id),
                    started: self.epoch + e.at,
                }
            })
            .collect()
    }

    /// Waits until `slots` more slots have run.
    async fn run_slots(&self, slots: usize) {
        let before = self.runs().len();
        let within = RUN_FOR + self.tolerance + Duration::from_secs(30);
        self.recorder
            .wait_until(within, || {
                (self.runs().len() >= before + slots).then_some(())
            })
            .await
            .unwrap_or_else(|_| panic!("{slots} slots ran within {within:?}"));
    }

    /// The last slot fired, and by whom.
    async fn last_fired(&self) -> LastFired {
        schedule::last_fired(self.transport.as_ref(), &every_second::JOB)
            .await
            .expect("the record is read")
            .expect("a slot was fired")
    }

    /// Stops both engines.
    pub async fn shutdown(self) {
        for engine in self.engines.into_values() {
            engine.shutdown(Duration::from_secs(5)).await;
        }
    }
}

/// The slot a run's id names: `every-second@2026-11-30T07:40:00Z`.
fn slot_of(id: &str) -> SystemTime {
    let (job, time) = id.split_once('@').expect("job@slot");
    assert_eq!(job, every_second::JOB.name());
    let time = chrono::DateTime::parse_from_rfc3339(time).expect("an RFC 3339 slot");
    let seconds = u64::try_from(time.timestamp()).expect("after the epoch");
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Checks that every slot from the first run to the last ran, at most `duplicates` of them
/// twice (each under its slot's id, by construction of the id), each on time.
fn assert_every_slot_ran(runs: &[Run], duplicates: usize, tolerance: Duration) {
    let mut slots: Vec<SystemTime> = runs.iter().map(|r| r.slot).collect();
    slots.sort();
    let total = slots.len();
    slots.dedup();
    assert!(
        total - slots.len() <= duplicates,
        "{} slots ran twice, at most {duplicates} may: {runs:?}",
        total - slots.len()
    );
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]).ok(),
            Some(Duration::from_secs(1)),
            "a slot is missing: {runs:?}"
        );
    }
    for run in runs {
        let late = run
            .started
            .duration_since(run.slot)
            .unwrap_or_else(|early| panic!("a run started {:?} before its slot", early.duration()));
        assert!(
            late <= tolerance,
            "a run started {late:?} after its slot (tolerance {tolerance:?})"
        );
    }
}

/// With two workers serving the job, each slot runs once, on time, fired by one of them.
pub async fn each_slot_runs_once_on_time(suite: &ScheduleSuite) {
    suite.run_slots(RUN_FOR.as_secs() as usize).await;
    let runs = suite.runs();
    assert_every_slot_ran(&runs, 0, suite.tolerance);
    let last = suite.last_fired().await;
    assert!(
        runs.iter().any(|r| r.slot == last.slot),
        "the record names a slot that ran"
    );
    assert!(
        last.by.starts_with("a on ") || last.by.starts_with("b on "),
        "{last:?}"
    );
}

/// When the active scheduler's worker stops, the other fires the next slots: none is lost,
/// and a slot fired twice in the takeover carries one id.
pub async fn the_other_worker_takes_over(suite: &mut ScheduleSuite) {
    suite.run_slots(2).await;
    let active = suite.last_fired().await;
    let (name, other) = if active.by.starts_with("a on ") {
        ("a", "b on ")
    } else {
        ("b", "a on ")
    };
    let before = suite.runs().len();
    let engine = suite.engines.remove(name).expect("the active engine");
    engine.shutdown(Duration::from_secs(5)).await;
    suite.run_slots(RUN_FOR.as_secs() as usize).await;

    let runs = suite.runs();
    // A slot the stopped worker fired but did not record fires again: once at most.
    assert_every_slot_ran(&runs, 1, suite.tolerance);
    assert!(runs.len() > before);
    let last = suite.last_fired().await;
    assert!(last.by.starts_with(other), "{last:?} after {name} stopped");
}
