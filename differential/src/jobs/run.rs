//! Running a scenario through the engine, written once for both transports: each gives a
//! [`Harness`] that starts engines, stops one as a crashed process would, and reads the error
//! queues.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::{FailedJob, MessageId};

use super::handlers::lane_jobs;
use super::observe::Observation;
use super::scenario::{JobSpec, Op, Restart, Scenario};
use super::script::Script;

/// How long a graceful shutdown lets running handlers finish: well past the longest attempt
/// (a 300 ms deadline) and its outcome's publish, so a graceful restart never cuts one off.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// A run could not be carried out (the broker refused a connection, an enqueue failed): not a
/// divergence, but no result either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

impl From<jobs_core::Error> for RunError {
    /// With the error's causes: "broker connection failed" alone does not say why.
    fn from(error: jobs_core::Error) -> Self {
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(next) = cause {
            text.push_str(": ");
            text.push_str(&next.to_string());
            cause = next.source();
        }
        Self(text)
    }
}

impl From<std::io::Error> for RunError {
    fn from(error: std::io::Error) -> Self {
        Self(error.to_string())
    }
}

/// What a run needs of its transport.
pub(crate) trait Harness {
    /// The lane whose jobs the run enqueues and its engines serve (see
    /// [`LANES`](super::handlers::LANES)).
    fn lane(&self) -> usize;

    /// Starts an engine serving both scenario jobs, reporting to `recorder`: at the start, and
    /// after each restart (on RabbitMQ, on a new connection, as a new worker process would).
    async fn start(&mut self, recorder: &Arc<Recorder>) -> Result<Engine, RunError>;

    /// The engine was shut down gracefully: let go of its connection.
    async fn stopped(&mut self);

    /// Stops `engine` as a crashed worker process stops: dropped mid-run, its connection cut.
    async fn crash(&mut self, engine: Engine);

    /// How long to wait, once every operation is done, for every job to reach a final place.
    fn within(&self) -> Duration;

    /// Once every job has a final place, and before the engine stops: waits for whatever else
    /// is still in flight, where the transport can tell.
    async fn settle(&self);

    /// Once the last engine stopped: every message in the jobs' error queues, read (and taken)
    /// from them.
    async fn letters(&mut self) -> Result<Vec<FailedJob>, RunError>;
}

/// Runs `scenario` on `harness` and observes it.
///
/// Each job's message id is the run's own id and the job's number, so that jobs of another
/// run (a copy redelivered after this one started) never count.
///
/// # Errors
///
/// [`RunError`] when an engine cannot start or an enqueue fails.
pub(crate) async fn run(
    harness: &mut impl Harness,
    scenario: &Scenario,
) -> Result<Observation, RunError> {
    let run_id = MessageId::generate();
    let ids: Vec<String> = (0..scenario.job_count())
        .map(|job| format!("{run_id}-{job}"))
        .collect();
    let recorder = Arc::new(Recorder::new());
    let mut engine = harness.start(&recorder).await?;
    let mut next = ids.iter();
    for op in &scenario.ops {
        match op {
            Op::Enqueue(spec) => {
                let id = next
                    .next()
                    .ok_or_else(|| RunError("more enqueues than jobs".into()))?;
                enqueue(&engine, spec, harness.lane(), id).await?;
            }
            Op::Pause(pause) => tokio::time::sleep(*pause).await,
            Op::Restart(Restart::Graceful) => {
                engine.shutdown(GRACE).await;
                harness.stopped().await;
                engine = harness.start(&recorder).await?;
            }
            Op::Restart(Restart::Abrupt) => {
                harness.crash(engine).await;
                engine = harness.start(&recorder).await?;
            }
        }
    }
    // A job that never ends shows as such in the comparison: the wait's end is no error.
    let _ = recorder
        .wait_until(harness.within(), || {
            all_ended(&recorder, &ids).then_some(())
        })
        .await;
    harness.settle().await;
    engine.shutdown(GRACE).await;
    harness.stopped().await;
    let letters = harness.letters().await?;
    Ok(Observation::new(&recorder.events(), &letters, &ids))
}

async fn enqueue(engine: &Engine, spec: &JobSpec, lane: usize, id: &str) -> Result<(), RunError> {
    let mut enqueue = jobs_core::Enqueue::new(spec.kind.job(lane), Script::new(&spec.steps))
        .message_id(id.to_owned());
    if let Some(delay) = spec.delay {
        enqueue = enqueue.delay(delay);
    }
    enqueue.enqueue(engine).await?;
    Ok(())
}

/// Whether every job's events hold a success or a move to the error queue.
fn all_ended(recorder: &Recorder, ids: &[String]) -> bool {
    let events = recorder.events();
    ids.iter().all(|id| {
        events.iter().any(|event| {
            event.message_id.as_deref() == Some(id)
                && matches!(event.outcome, Outcome::Succeeded | Outcome::Failed { .. })
        })
    })
}

/// An engine serving both scenario jobs of `lane` on `transport`, reporting to `recorder`.
pub(crate) async fn start_engine(
    transport: Arc<dyn jobs_core::transport::Transport>,
    recorder: &Arc<Recorder>,
    lane: usize,
) -> Result<Engine, RunError> {
    let engine = Engine::builder(transport)
        .jobs(lane_jobs(lane))
        .name("jobs-differential")
        .observer(Arc::clone(recorder) as _)
        .start()
        .await?;
    Ok(engine)
}
