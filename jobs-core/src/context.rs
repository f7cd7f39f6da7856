//! What a running handler knows about its delivery, and what it can reach.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::envelope::header::TRACEPARENT;
use crate::envelope::{Envelope, Headers};
use crate::job_error::JobError;
use crate::producer::Producer;
use crate::trace::TraceContext;

/// The context of one handler run: the delivery's attempt, id and headers, a producer for
/// follow-up jobs, and the worker's shared state.
///
/// A job fn takes it as its optional second argument:
///
/// ```
/// use jobs_core::{job, testing::TestApp, JobContext, JobError};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// pub struct Ping {}
///
/// struct Storage { bucket: String }
///
/// #[job(exchange = "docs.context", routing_key = "ping")]
/// async fn ping(_: Ping, ctx: JobContext) -> Result<(), JobError> {
///     let storage = ctx.state::<Storage>()?; // fatal if the worker has no `Storage`
///     println!("attempt {} of {:?} into {}", ctx.attempt(), ctx.message_id(), storage.bucket);
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let app = TestApp::builder()
///     .job(&ping::JOB)
///     .state(Storage { bucket: "uploads".into() })
///     .build()?;
/// ping::enqueue(&app, Ping {}).await?;
/// app.run_until_idle().await;
/// assert_eq!(app.succeeded(&ping::JOB), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JobContext {
    shared: Arc<Shared>,
    envelope: Arc<Envelope>,
    job: Option<&'static crate::Job>,
    attempt: u32,
    redelivered: bool,
    trace: TraceContext,
}

/// What every context of one worker shares.
#[derive(Debug)]
struct Shared {
    producer: Producer,
    state: StateMap,
}

impl JobContext {
    /// A context builder, for calling a job fn directly in a test.
    #[must_use]
    pub fn builder(producer: Producer) -> JobContextBuilder {
        JobContextBuilder {
            producer,
            state: StateMap::new(),
            envelope: Envelope::default(),
            job: None,
            attempt: 1,
        }
    }

    pub(crate) fn new(
        shared: &ContextShared,
        envelope: Arc<Envelope>,
        job: Option<&'static crate::Job>,
        attempt: u32,
        redelivered: bool,
    ) -> Self {
        let trace = envelope
            .properties
            .headers
            .get_str(TRACEPARENT)
            .and_then(TraceContext::parse)
            .unwrap_or_else(TraceContext::new_root);
        Self {
            shared: Arc::clone(&shared.0),
            envelope,
            job,
            attempt,
            redelivered,
            trace,
        }
    }

    /// The delivery's trace context: from its `traceparent` header, or a new trace when it
    /// has none. Jobs enqueued while the handler runs continue this trace. With the `otel`
    /// feature and a tracer set, it is the attempt's consumer span: the same trace, the span's
    /// id.
    #[must_use]
    pub fn traceparent(&self) -> TraceContext {
        self.trace
    }

    /// Makes `trace` the handler's trace context: the attempt's consumer span's.
    #[cfg_attr(
        not(feature = "otel"),
        allow(dead_code, reason = "only a span sets it")
    )]
    pub(crate) fn set_traceparent(&mut self, trace: TraceContext) {
        self.trace = trace;
    }

    /// Which attempt this is: 1 for the first, 2 for the first retry, and so on.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The name of the job handling this delivery. A job bound to another job's exchange (a
    /// fanout, a topic pattern) has its own name here, not the publisher's; a context built
    /// without a job falls back to the message's `type` property.
    #[must_use]
    pub fn job_name(&self) -> Option<&str> {
        self.job
            .map(crate::Job::name)
            .or(self.envelope.properties.kind.as_deref())
    }

    /// The message id, kept across retries.
    #[must_use]
    pub fn message_id(&self) -> Option<&str> {
        self.envelope.properties.message_id.as_deref()
    }

    /// The message's headers.
    #[must_use]
    pub fn headers(&self) -> &Headers {
        &self.envelope.properties.headers
    }

    /// Whether the broker delivered this message before without an ack (a worker died or shut
    /// down holding it).
    #[must_use]
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// A producer, for follow-up jobs.
    #[must_use]
    pub fn producer(&self) -> &Producer {
        &self.shared.producer
    }

    /// The worker's shared value of type `T`. A job fn can take it as an argument instead,
    /// `db: State<T>`, which the worker checks for before it starts.
    ///
    /// # Errors
    ///
    /// A fatal [`JobError`] when the worker was given no `T`: retrying cannot fix a missing
    /// piece of configuration.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.shared.state.get::<T>().ok_or_else(|| {
            JobError::fatal(format!(
                "the worker has no state of type `{}`",
                type_name::<T>()
            ))
        })
    }
}

impl AsRef<Producer> for JobContext {
    fn as_ref(&self) -> &Producer {
        self.producer()
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("message_id", &self.message_id())
            .field("attempt", &self.attempt)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// The part of every context that one engine shares: built once, cloned per delivery.
#[derive(Clone, Debug)]
pub(crate) struct ContextShared(Arc<Shared>);

impl ContextShared {
    pub(crate) fn new(producer: Producer, state: StateMap) -> Self {
        Self(Arc::new(Shared { producer, state }))
    }
}

/// Builds a [`JobContext`] for calling a job fn directly.
#[derive(Debug)]
pub struct JobContextBuilder {
    producer: Producer,
    state: StateMap,
    envelope: Envelope,
    job: Option<&'static crate::Job>,
    attempt: u32,
}

impl JobContextBuilder {
    /// Sets the attempt number (default 1).
    #[must_use]
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the job handling the delivery, as the engine does.
    #[must_use]
    pub fn job(mut self, job: &'static crate::Job) -> Self {
        self.job = Some(job);
        self
    }

    /// Sets the message id.
    #[must_use]
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.envelope.properties.message_id = Some(id.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<crate::HeaderValue>) -> Self {
        self.envelope.properties.headers.insert(name.into(), value);
        self
    }

    /// Adds a shared value, reachable with [`JobContext::state`] and [`State`](crate::State)
    /// arguments.
    #[must_use]
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// The context.
    #[must_use]
    pub fn build(self) -> JobContext {
        let shared = ContextShared::new(self.producer, self.state);
        JobContext::new(
            &shared,
            Arc::new(self.envelope),
            self.job,
            self.attempt,
            false,
        )
    }
}

/// Values shared by every handler of a worker, one per type: database pools, clients,
/// configuration. Handlers reach them with [`State`](crate::State) arguments or
/// [`JobContext::state`].
#[derive(Default)]
pub(crate) struct StateMap(HashMap<TypeId, (&'static str, Arc<dyn Any + Send + Sync>)>);

impl StateMap {
    /// No values.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `value`, replacing any value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0
            .insert(TypeId::of::<T>(), (type_name::<T>(), Arc::new(value)));
    }

    /// The value of type `T`.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast_ref())
    }

    /// Whether a value of the type with this id is there.
    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.0.contains_key(&id)
    }

    /// The names of the types it holds, sorted.
    pub(crate) fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.0.values().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.type_names()).finish()
    }
}
