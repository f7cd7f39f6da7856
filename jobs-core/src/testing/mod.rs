//! Unit-testing jobs without a broker: the real engine on the in-memory transport.
//!
//! [`TestApp`] runs the same dispatch, retry and error-queue code as production, over
//! [`MemoryTransport`]. Under `#[tokio::test(start_paused = true)]` time is virtual: retry
//! delays and handler deadlines pass instantly and deterministically, and
//! [`TestApp::run_until_idle`] returns once nothing is left to happen.
//!
//! A paused clock needs tokio's `test-util` feature; without it `start_paused` does not
//! compile. In the crate that tests its jobs:
//!
//! ```toml
//! [dev-dependencies]
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] }
//! ```
//!
//! A handler that takes [`State<T>`](crate::State) gets it from
//! [`TestAppBuilder::state`], as a worker gets it from its builder; a missing one makes
//! [`TestAppBuilder::build`] fail, naming the job and the type.
//!
//! ```
//! use jobs_core::{job, testing::TestApp, FailureKind, JobError};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! pub struct TransferFile {
//!     #[prost(string, tag = "1")] pub path: String,
//!     #[prost(uint64, tag = "2")] pub size: u64,
//! }
//!
//! #[job(exchange = "uploadserver.trans", routing_key = "oss", queue = "uploadserver.trans.oss")]
//! async fn transfer_to_oss(file: TransferFile) -> Result<(), JobError> {
//!     if file.size == 0 {
//!         return Err(JobError::fatal("empty file"));
//!     }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let app = TestApp::builder().job(&transfer_to_oss::JOB).build().unwrap();
//! transfer_to_oss::enqueue(&app, TransferFile { path: "a".into(), size: 0 }).await.unwrap();
//! app.run_until_idle().await;
//!
//! let failed = app.error_queue(transfer_to_oss::QUEUE);
//! assert_eq!(failed.len(), 1);
//! assert_eq!(failed[0].kind(), Some(FailureKind::Fatal));
//! assert_eq!(failed[0].error(), Some("empty file"));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use futures_util::FutureExt;

use crate::context::JobContext;
use crate::engine::{Engine, EngineBuilder, Observer};
use crate::error::{Error, Result};
use crate::failed_job::FailedJob;
use crate::job::Job;
use crate::producer::Producer;
use crate::settings::{JobDefaults, error_queue_name};
use crate::transport::Publish;
use crate::transport::memory::MemoryTransport;

mod broker_url;
mod classify;
#[cfg(feature = "amqp")]
mod cleanup;
mod recorder;

// The framework's own test harness (its broker tests and its fuzz target), not part of the
// API an application tests its jobs with.
#[doc(hidden)]
pub use broker_url::{DEFAULT_BROKER_URL, broker_url};
#[doc(hidden)]
pub use classify::{Classification, classify};
#[cfg(feature = "amqp")]
pub use cleanup::delete_job_queues;
pub use recorder::{Outcome, Recorded, Recorder, TimedOut};

/// The engine on an in-memory broker, with a record of everything that happened.
///
/// ```
/// use jobs_core::{job, testing::TestApp, JobContext, JobError};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// pub struct Charge {
///     #[prost(uint64, tag = "1")]
///     pub cents: u64,
/// }
///
/// #[job(exchange = "docs.testapp", routing_key = "charge", retries = 2)]
/// async fn charge(_: Charge, ctx: JobContext) -> Result<(), JobError> {
///     if ctx.attempt() == 1 {
///         return Err(JobError::retry("gateway timed out"));
///     }
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> jobs_core::Result<()> {
/// let app = TestApp::builder().job(&charge::JOB).build()?;
/// charge::enqueue(&app, Charge { cents: 995 }).await?;
/// app.run_until_idle().await; // the retry delay passes on the paused clock
/// assert_eq!((app.retried(&charge::JOB), app.succeeded(&charge::JOB)), (1, 1));
/// # Ok(())
/// # }
/// ```
pub struct TestApp {
    transport: MemoryTransport,
    engine: Engine,
    log: Arc<Recorder>,
}

impl TestApp {
    /// Serves every job linked into the test binary.
    ///
    /// # Panics
    ///
    /// When the registered jobs disagree about the topology (two jobs giving one exchange
    /// different types, or sharing a queue); use [`TestApp::builder`] to pick jobs.
    #[must_use]
    pub fn new() -> Self {
        match Self::builder().build() {
            Ok(app) => app,
            Err(err) => panic!("cannot serve the registered jobs: {err}"),
        }
    }

    /// A builder, to pick jobs, state and defaults.
    pub fn builder() -> TestAppBuilder {
        let transport = MemoryTransport::recording();
        TestAppBuilder {
            engine: Engine::builder(Arc::new(transport.clone())),
            transport,
        }
    }

    /// Waits until every job has run to its end: handled, waiting in no retry queue, and no
    /// delivery in flight. On a paused clock, retry delays pass instantly.
    pub async fn run_until_idle(&self) {
        self.transport.until_idle().await;
    }

    /// The producer; `my_job::enqueue(&app, msg)` uses it through `AsRef`.
    #[must_use]
    pub fn producer(&self) -> &Producer {
        self.engine.producer()
    }

    /// The in-memory broker, to inspect queues or publish raw messages.
    #[must_use]
    pub fn transport(&self) -> &MemoryTransport {
        &self.transport
    }

    /// The running engine.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A context for calling a job fn directly, sharing this app's producer.
    #[must_use]
    pub fn context(&self) -> JobContext {
        JobContext::builder(self.producer().clone()).build()
    }

    /// The messages in the error queue of work queue `queue`, oldest first.
    #[must_use]
    pub fn error_queue(&self, queue: &str) -> Vec<FailedJob> {
        self.transport
            .messages(&error_queue_name(queue))
            .into_iter()
            .map(FailedJob::new)
            .collect()
    }

    /// What producers published for `job` (retries and error-queue moves excluded).
    #[must_use]
    pub fn enqueued(&self, job: &Job) -> Vec<Publish> {
        self.transport
            .published()
            .into_iter()
            .filter(|p| {
                p.exchange == job.exchange()
                    && p.envelope.properties.kind.as_deref() == Some(job.name())
            })
            .collect()
    }

    /// The record of every event so far.
    #[must_use]
    pub fn recorder(&self) -> &Recorder {
        &self.log
    }

    /// Every event so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<Recorded> {
        self.log.events()
    }

    /// The events of one message, in order.
    #[must_use]
    pub fn events_of(&self, message_id: &str) -> Vec<Recorded> {
        self.log.events_of(message_id)
    }

    /// How many runs of `job` succeeded.
    #[must_use]
    pub fn succeeded(&self, job: &Job) -> usize {
        self.log.count(job, |o| matches!(o, Outcome::Succeeded))
    }

    /// How many failed attempts of `job` were scheduled for a retry.
    #[must_use]
    pub fn retried(&self, job: &Job) -> usize {
        self.log
            .count(job, |o| matches!(o, Outcome::Retried { .. }))
    }

    /// How many messages of `job` went to its error queue.
    #[must_use]
    pub fn failed(&self, job: &Job) -> usize {
        self.log.count(job, |o| matches!(o, Outcome::Failed { .. }))
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl AsRef<Producer> for TestApp {
    fn as_ref(&self) -> &Producer {
        self.producer()
    }
}

impl fmt::Debug for TestApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestApp")
            .field("engine", &self.engine)
            .field("events", &self.log.events().len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`TestApp`].
#[derive(Debug)]
#[must_use]
pub struct TestAppBuilder {
    transport: MemoryTransport,
    engine: EngineBuilder,
}

impl TestAppBuilder {
    /// Serves `job`; without any `job` call, every registered job.
    pub fn job(mut self, job: &'static Job) -> Self {
        self.engine = self.engine.job(job);
        self
    }

    /// Adds a value handlers take as a [`State<T>`](crate::State) argument (or reach with
    /// [`JobContext::state`]), one per type.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.engine = self.engine.state(value);
        self
    }

    /// Defaults for the options jobs leave unset.
    pub fn defaults(mut self, defaults: JobDefaults) -> Self {
        self.engine = self.engine.defaults(defaults);
        self
    }

    /// Adds an observer of every job event, besides the app's own record.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.engine = self.engine.observer(observer);
        self
    }

    /// Declares the jobs' topology and starts the engine.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] when the jobs disagree about the topology, and
    /// [`Error::MissingState`] when a job takes a [`State<T>`](crate::State) this builder was
    /// not given.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<TestApp> {
        let log = Arc::new(Recorder::new());
        let starting = self
            .engine
            .observer(Arc::clone(&log) as Arc<dyn Observer>)
            .start();
        // Every step of starting on the in-memory broker completes at once; this keeps
        // `TestApp::new` a plain constructor.
        let engine = starting
            .now_or_never()
            .ok_or_else(|| Error::Broker("the in-memory broker did not start at once".into()))??;
        Ok(TestApp {
            transport: self.transport,
            engine,
            log,
        })
    }
}
