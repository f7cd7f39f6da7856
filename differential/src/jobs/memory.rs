//! Running a scenario on the in-memory broker, on a paused clock: backoffs, delays, deadlines
//! and pauses pass instantly, and the run is the same every time.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::FailedJob;
use jobs_core::engine::Engine;
use jobs_core::testing::Recorder;
use jobs_core::transport::memory::MemoryTransport;

use super::handlers::JobKind;
use super::observe::Observation;
use super::run::{self, Harness, RunError};
use super::scenario::Scenario;

/// The longest a run waits on virtual time for its jobs: far past any scenario's.
const WITHIN: Duration = Duration::from_secs(3600);

/// Runs `scenario` on a fresh in-memory broker, on a runtime of its own with a paused clock.
/// Call it outside any tokio runtime.
///
/// # Errors
///
/// [`RunError`] when the runtime cannot be built, an engine cannot start or an enqueue fails.
pub fn run_memory(scenario: &Scenario) -> Result<Observation, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        let mut harness = MemoryHarness {
            broker: MemoryTransport::new(),
        };
        run::run(&mut harness, scenario).await
    })
}

/// One broker for the whole run: it outlives the engines, as RabbitMQ outlives workers.
struct MemoryHarness {
    broker: MemoryTransport,
}

impl Harness for MemoryHarness {
    /// Lane 0: the broker is the run's own.
    fn lane(&self) -> usize {
        0
    }

    async fn start(&mut self, recorder: &Arc<Recorder>) -> Result<Engine, RunError> {
        run::start_engine(Arc::new(self.broker.clone()), recorder, 0).await
    }

    async fn stopped(&mut self) {}

    /// The broker's `disconnect` is the lost connection: every unacked delivery goes back to
    /// its queue, redelivered, at once; the engine's tasks then end on their stop signal.
    async fn crash(&mut self, engine: Engine) {
        drop(engine);
        self.broker.disconnect();
    }

    fn within(&self) -> Duration {
        WITHIN
    }

    /// Until the broker is idle, so every copy an abrupt restart made has ended too.
    async fn settle(&self) {
        let _ = tokio::time::timeout(WITHIN, self.broker.until_idle()).await;
    }

    async fn letters(&mut self) -> Result<Vec<FailedJob>, RunError> {
        Ok(JobKind::ALL
            .into_iter()
            .flat_map(|kind| self.broker.messages(kind.settings(0).error_queue()))
            .map(FailedJob::new)
            .collect())
    }
}
