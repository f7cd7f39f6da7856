//! The kill switch scenario, written once and run on every transport: a handler failing half
//! its attempts trips the switch, nothing starts while it is open, one probe runs after the
//! cool-down, and once it succeeds every job runs to success without having spent a retry
//! while the switch was open.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jobs_core::engine::{Engine, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::Transport;
use jobs_core::{JobDefaults, JobError, KillSwitch, State, job};

/// A numbered job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    /// Its number: the odd ones fail while the dependency is down.
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

/// Whether the dependency the job calls is down.
#[derive(Debug)]
pub struct Dependency {
    down: AtomicBool,
}

/// Fails the odd jobs while the dependency is down: half its attempts.
#[job(
    exchange = "tests.kill_switch",
    routing_key = "call",
    queue = "tests.kill_switch.call",
    concurrency = 4,
    retries = 3,
    backoff = "1s"
)]
pub async fn call_dependency(
    call: Call,
    dependency: State<Arc<Dependency>>,
) -> Result<(), JobError> {
    if call.n % 2 == 1 && dependency.down.load(Ordering::Relaxed) {
        return Err(JobError::retry("the dependency is down"));
    }
    Ok(())
}

/// Jobs enqueued.
const JOBS: u32 = 40;

/// The switch of the scenario: half of at least 20 attempts, and `cool_down`.
#[must_use]
pub fn switch(cool_down: Duration) -> KillSwitch {
    KillSwitch {
        failure_ratio: 0.5,
        min_attempts: 20,
        window: Duration::from_secs(60),
        cool_down,
    }
}

/// Runs the scenario on `transport` with a switch cooling down for `cool_down`.
pub async fn failing_half_its_attempts_trips_the_switch_and_a_probe_closes_it(
    transport: Arc<dyn Transport>,
    cool_down: Duration,
) {
    let within = Duration::from_secs(60);
    let dependency = Arc::new(Dependency {
        down: AtomicBool::new(true),
    });
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::clone(&transport))
        .job(&call_dependency::JOB)
        .state(Arc::clone(&dependency))
        .defaults(JobDefaults {
            kill_switch: Some(switch(cool_down)),
            ..JobDefaults::default()
        })
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await
        .expect("the engine starts");
    // Whatever an earlier run left.
    let settings = &engine.jobs()[0];
    for queue in std::iter::once(settings.job().queue())
        .chain(settings.retry_queues().iter().map(String::as_str))
        .chain(std::iter::once(settings.error_queue()))
    {
        transport.purge(queue).await.expect("purged");
    }

    for n in 0..JOBS {
        call_dependency::enqueue(&engine, Call { n })
            .await
            .expect("enqueued");
    }
    let tripped = |o: &Outcome| matches!(o, Outcome::SwitchTripped { .. });
    recorder
        .wait_until(within, || {
            (recorder.count(&call_dependency::JOB, tripped) > 0).then_some(())
        })
        .await
        .expect("the switch trips");
    // The dependency is back: the probe will succeed.
    dependency.down.store(false, Ordering::Relaxed);
    recorder
        .wait_until(within, || {
            (recorder.count(&call_dependency::JOB, |o| *o == Outcome::SwitchClosed) > 0)
                .then_some(())
        })
        .await
        .expect("a probe closes the switch");
    recorder
        .wait_until(within, || {
            (recorder.count(&call_dependency::JOB, |o| *o == Outcome::Succeeded) == JOBS as usize)
                .then_some(())
        })
        .await
        .expect("every job succeeds");

    // The events in order: the first trip, then the first close.
    let events = recorder.events();
    let trip = events
        .iter()
        .position(|e| tripped(&e.outcome))
        .expect("a trip");
    let closed = events
        .iter()
        .position(|e| e.outcome == Outcome::SwitchClosed)
        .expect("closed");
    assert!(
        matches!(events[trip].outcome, Outcome::SwitchTripped { attempts, failures } if attempts >= 20 && f64::from(failures) >= 0.5 * f64::from(attempts)),
        "{:?}",
        events[trip]
    );
    let starts: Vec<_> = events[trip..closed]
        .iter()
        .filter(|e| e.outcome == Outcome::Started)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "one probe between the trip and the close: {events:#?}"
    );
    assert!(
        starts[0].at >= events[trip].at + cool_down,
        "nothing starts while the switch is open: {events:#?}"
    );
    assert_eq!(
        recorder.count(&call_dependency::JOB, |o| matches!(
            o,
            Outcome::Failed { .. }
        )),
        0,
        "no job ran out of retries"
    );
    engine.shutdown(Duration::from_secs(5)).await;
}
