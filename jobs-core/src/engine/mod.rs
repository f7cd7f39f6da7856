//! The worker engine: serves jobs over any [`Transport`].
//!
//! For each job it keeps one consumer attached to the job's queue, with the job's concurrency
//! as its prefetch (or a larger [`EngineBuilder::prefetch`], handlers still bounded by the
//! concurrency), and runs each delivery as a task: decode, run the handler with its deadline
//! and panic capture, then settle by these rules:
//!
//! | outcome | what the engine does, in order |
//! | --- | --- |
//! | success | ack |
//! | retryable failure, attempts left | publish to `Q.retry.N` with attempt + 1 (or, for a handler's `retry_after`, to the delay cascade), await the confirm, ack |
//! | fatal failure, attempts exhausted | publish to `Q.err` with failure headers, await the confirm, ack |
//! | undecodable body, unknown job name, body over the size limit | publish to `Q.err` on the first delivery, ack |
//! | handler panic | a failure like any other; the worker keeps running |
//! | the retry or error publish fails | hold the delivery and publish again with a growing pause; a retry not published within [`EngineBuilder::outcome_publish_timeout`] goes to `Q.err` instead; only when `Q.err` takes nothing in that time either, requeue as failed, as below (the decision is remembered, so the handler does not run again here) |
//! | anything panics outside the handler | requeue as failed, counted toward the delivery limit (`basic.nack`, or `basic.reject` on RabbitMQ 4.3 and later, which no longer counts a nack): every delivery is settled exactly once |
//! | shutdown aborts the task, or a delivery is given up unrun | nack with requeue |
//!
//! Acks are not awaited by handlers: they go through a settle pipeline per consumer that
//! coalesces contiguous delivery tags into one `multiple` ack. A consumer whose channel
//! refuses a settlement ends and is attached again; deliveries still waiting for a handler slot
//! when their consumer ends are dropped unrun, since the broker has already requeued them.
//!
//! A job with a schedule also gets a scheduler (see [`crate::schedule`]), which every engine
//! serving it runs and the broker lets one at a time act.

pub(crate) mod classify;
mod consumer;
mod deadline;
mod dispatch;
mod durable;
mod events;
mod failure;
mod handlers;
mod kill_switch;
mod pauses;
mod rate;
mod reply;
mod settle;
mod slots;

pub(crate) use consumer::StopSignal;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use events::{Event, EventKind, Observer};

use self::dispatch::JobRuntime;
use crate::context::{ContextShared, StateMap};
use crate::error::Result;
use crate::job::Job;
use crate::producer::{Producer, ProducerOptions};
use crate::schedule::{Schedule, Scheduler};
use crate::settings::{JobDefaults, JobSettings};
use crate::topology::Topology;
use crate::transport::{Declare, Transport};

/// A running engine. Stop it with [`Engine::shutdown`]; dropping it stops its consumers at
/// once, and the broker redelivers whatever they held.
///
/// An engine is also a producer: `my_job::enqueue(&engine, msg)` publishes through it.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use jobs_core::engine::Engine;
/// use jobs_core::transport::memory::MemoryTransport;
/// use jobs_core::{job, JobError};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// pub struct Resize {
///     #[prost(uint32, tag = "1")]
///     pub width: u32,
/// }
///
/// #[job(exchange = "docs.engine.resize", routing_key = "resize")]
/// async fn resize(_: Resize) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let engine = Engine::builder(Arc::new(MemoryTransport::new()))
///     .job(&resize::JOB)
///     .start()
///     .await?;
/// assert!(engine.is_ready());
/// resize::enqueue(&engine, Resize { width: 640 }).await?;
/// // Stops taking deliveries and lets running handlers finish, for at most 5 s.
/// engine.shutdown(Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
pub struct Engine {
    producer: Producer,
    jobs: Vec<JobSettings>,
    stop: watch::Sender<Option<Instant>>,
    consumers: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// The schedulers and the rate keepers.
    schedulers: Vec<JoinHandle<()>>,
    /// Whether each job is paused, as this engine last read it.
    paused: pauses::Paused,
}

impl Engine {
    /// An engine builder over `transport`.
    pub fn builder(transport: Arc<dyn Transport>) -> EngineBuilder {
        EngineBuilder::new().transport(transport)
    }

    /// The producer the engine publishes retries with; handlers get it in their context.
    #[must_use]
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The jobs it serves, with their resolved settings.
    #[must_use]
    pub fn jobs(&self) -> &[JobSettings] {
        &self.jobs
    }

    /// Whether `job` is paused ([`crate::control`]), as this engine last heard: its consumer is
    /// then cancelled or on its way to be. `false` for a job it does not serve.
    #[must_use]
    pub fn is_paused(&self, job: &Job) -> bool {
        self.paused
            .get(job.name())
            .is_some_and(|paused| *paused.borrow())
    }

    /// Whether every job's consumer is attached (a paused job's counts as attached).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.consumers
            .iter()
            .all(|(ready, _)| ready.load(Ordering::Acquire))
    }

    /// Stops taking deliveries, lets running handlers finish until `timeout`, then requeues
    /// what is left and returns.
    pub async fn shutdown(mut self, timeout: Duration) {
        self.stop.send_replace(Some(Instant::now() + timeout));
        for (_, task) in std::mem::take(&mut self.consumers) {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "consumer task failed");
            }
        }
        // A scheduler stops at once: an unacked tick goes back to the queue for another.
        for task in std::mem::take(&mut self.schedulers) {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "scheduler task failed");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.send_replace(Some(Instant::now()));
    }
}

impl AsRef<Producer> for Engine {
    fn as_ref(&self) -> &Producer {
        &self.producer
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field(
                "jobs",
                &self.jobs.iter().map(|s| s.job().name()).collect::<Vec<_>>(),
            )
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Configures and starts an [`Engine`].
///
/// ```
/// use std::sync::Arc;
/// use jobs_core::engine::Engine;
/// use jobs_core::transport::memory::MemoryTransport;
/// use jobs_core::{job, JobError, State};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// pub struct Ping {}
///
/// struct Db;
///
/// #[job(exchange = "docs.engine", routing_key = "ping")]
/// async fn ping(_: Ping, _db: State<Arc<Db>>) -> Result<(), JobError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let engine = Engine::builder(Arc::new(MemoryTransport::new()))
///     .job(&ping::JOB)
///     .state(Arc::new(Db))
///     .concurrency(8)
///     .start()
///     .await?;
/// ping::enqueue(&engine, Ping {}).await?;
/// engine.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct EngineBuilder {
    transport: Option<Arc<dyn Transport>>,
    jobs: Option<Vec<&'static Job>>,
    defaults: JobDefaults,
    concurrency: Option<u16>,
    prefetch: Option<u16>,
    state: StateMap,
    observers: Vec<Arc<dyn Observer>>,
    producer_options: ProducerOptions,
    declare: Declare,
    outcome_publish_timeout: Duration,
    name: Option<String>,
    broker_consumer_timeout: Duration,
}

/// The default of [`EngineBuilder::outcome_publish_timeout`].
pub const DEFAULT_OUTCOME_PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for EngineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineBuilder {
    /// A builder without its transport yet, given later with
    /// [`transport`](Self::transport): for a runtime that gathers the engine's options before it
    /// connects, and checks them with [`check`](Self::check) first.
    pub fn new() -> Self {
        Self {
            transport: None,
            jobs: None,
            defaults: JobDefaults::default(),
            concurrency: None,
            prefetch: None,
            state: StateMap::new(),
            observers: Vec::new(),
            producer_options: ProducerOptions::default(),
            declare: Declare::Create,
            outcome_publish_timeout: DEFAULT_OUTCOME_PUBLISH_TIMEOUT,
            name: None,
            broker_consumer_timeout: crate::broker::DEFAULT_CONSUMER_TIMEOUT,
        }
    }

    /// The name this engine goes by where it leaves a trace for operators (the record of each
    /// scheduled slot it fires), with its host and process id: `NAME on HOST (pid N)`. A
    /// worker gives its connection name; `jobs` by default.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The broker to run on.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Serves `job`. Without any `job` or `jobs` call, the engine serves every job linked into
    /// the binary.
    pub fn job(mut self, job: &'static Job) -> Self {
        self.jobs.get_or_insert_with(Vec::new).push(job);
        self
    }

    /// Serves `jobs`.
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = &'static Job>) -> Self {
        self.jobs.get_or_insert_with(Vec::new).extend(jobs);
        self
    }

    /// Defaults for the options jobs leave unset.
    pub fn defaults(mut self, defaults: JobDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// Overrides every job's concurrency (its consumer's prefetch).
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// Sets every consumer's prefetch apart from the concurrency: up to `prefetch` deliveries
    /// are held per job, while at most its concurrency run at once. Below the concurrency it
    /// has no effect. Default: the concurrency.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// Adds a value handlers take as a [`State<T>`](crate::State) argument, or reach with
    /// [`JobContext::state`](crate::JobContext::state); one per type.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Adds an observer of every job event.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The size limit and confirm timeout of the engine's producer; the size limit also
    /// bounds the bodies the engine accepts.
    pub fn producer_options(mut self, options: ProducerOptions) -> Self {
        self.producer_options = options;
        self
    }

    /// Whether to create the topology or only check it (for a broker user that may not
    /// configure). Default: create.
    pub fn declare(mut self, mode: Declare) -> Self {
        self.declare = mode;
        self
    }

    /// How long the retry or error-queue publish of a failed attempt is tried again, the
    /// delivery held meanwhile, before the engine falls back: a retry goes to the error queue
    /// instead (its error says why), and an error-queue message that cannot be published in
    /// that time either goes back to the work queue. Default 2 minutes; with the handler's
    /// timeout, keep twice this well under RabbitMQ's consumer timeout (30 minutes by default).
    pub fn outcome_publish_timeout(mut self, timeout: Duration) -> Self {
        self.outcome_publish_timeout = timeout;
        self
    }

    /// The broker's consumer timeout (`consumer_timeout` in `rabbitmq.conf`): how long a
    /// delivery may stay unacked before the broker takes it back. A job whose timeout is at or
    /// above it (or above its queue's `x-consumer-timeout`, where one is declared) is refused
    /// at start with [`Error::ConsumerTimeout`](crate::Error::ConsumerTimeout). The broker does
    /// not tell its clients; default RabbitMQ's 30 minutes
    /// ([`DEFAULT_CONSUMER_TIMEOUT`](crate::broker::DEFAULT_CONSUMER_TIMEOUT)).
    pub fn broker_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.broker_consumer_timeout = timeout;
        self
    }

    /// The jobs to serve, with their options resolved.
    #[must_use]
    pub fn settings(&self) -> Vec<JobSettings> {
        let jobs = self
            .jobs
            .clone()
            .unwrap_or_else(crate::registry::registered);
        self.jobs_settings(&jobs)
    }

    /// `jobs`, with their options resolved as this builder would: its defaults, its
    /// concurrency.
    #[must_use]
    pub fn jobs_settings(&self, jobs: &[&'static Job]) -> Vec<JobSettings> {
        jobs.iter()
            .map(|&job| {
                let settings = JobSettings::resolve(job, &self.defaults);
                match self.concurrency {
                    Some(concurrency) => settings.with_concurrency(concurrency),
                    None => settings,
                }
            })
            .collect()
    }

    /// Checks what needs no broker: every `State<T>` the jobs take is there, the jobs agree
    /// about the topology, and none may run as long as the broker's consumer timeout.
    /// [`start`](Self::start) checks the same first.
    ///
    /// # Errors
    ///
    /// [`Error::MissingState`](crate::Error::MissingState),
    /// [`Error::Topology`](crate::Error::Topology) and
    /// [`Error::ConsumerTimeout`](crate::Error::ConsumerTimeout), as [`start`](Self::start).
    pub fn check(&self) -> Result<Topology> {
        self.checked().map(|checked| checked.topology)
    }

    /// What [`check`](Self::check) checks, and what [`start`](Self::start) goes on with.
    fn checked(&self) -> Result<Checked> {
        let jobs = self.settings();
        self.check_state(&jobs)?;
        let schedules = schedules(&jobs)?;
        let topology = Topology::for_jobs(&jobs)?;
        crate::broker::check_consumer_timeout(&jobs, &topology, self.broker_consumer_timeout)?;
        Ok(Checked {
            jobs,
            schedules,
            topology,
        })
    }

    /// Checks that every `State<T>` the jobs take is there, before anything touches the broker.
    fn check_state(&self, jobs: &[JobSettings]) -> Result<()> {
        for settings in jobs {
            let job = settings.job();
            for needed in job.state_types() {
                if !self.state.contains(needed.id()) {
                    let has: Vec<String> = self
                        .state
                        .type_names()
                        .into_iter()
                        .map(crate::extract::short_type_name)
                        .map(|name| format!("`{name}`"))
                        .collect();
                    return Err(crate::Error::MissingState {
                        job: job.name(),
                        needs: needed.short_name(),
                        has: if has.is_empty() {
                            "none".to_owned()
                        } else {
                            has.join(", ")
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// Declares (or checks) the topology and attaches a consumer for every job; when it
    /// returns, every consumer is attached.
    ///
    /// # Errors
    ///
    /// [`Error::MissingState`](crate::Error::MissingState) when a job takes a `State<T>` the
    /// builder was not given, [`Error::Topology`](crate::Error::Topology) when the jobs
    /// disagree about the topology, [`Error::ConsumerTimeout`](crate::Error::ConsumerTimeout)
    /// when a job's timeout reaches the broker's consumer timeout,
    /// [`Error::Config`](crate::Error::Config) without a
    /// transport, and whatever the transport's
    /// [`declare`](Transport::declare) and [`consume`](Transport::consume) report.
    pub async fn start(self) -> Result<Engine> {
        let Checked {
            jobs,
            schedules,
            topology,
        } = self.checked()?;
        let Some(transport) = self.transport else {
            return Err(crate::Error::Config(
                "the engine has no transport: give it one with `EngineBuilder::transport`".into(),
            ));
        };
        transport.declare(&topology, self.declare).await?;

        // Passive or verifying, the topology is managed elsewhere: the producer declares
        // nothing either.
        let options = ProducerOptions {
            declare: self.producer_options.declare && self.declare == Declare::Create,
            ..self.producer_options.clone()
        };
        let producer = Producer::for_engine(
            Arc::clone(&transport),
            options,
            &self.defaults,
            jobs.iter().map(JobSettings::job),
        );
        let context = ContextShared::new(producer.clone(), self.state);
        let observers: Arc<[Arc<dyn Observer>]> = self.observers.into();
        let host: Arc<str> = gethostname::gethostname().to_string_lossy().into();
        let (stop, stop_rx) = watch::channel(None);
        let names: Vec<&'static str> = jobs.iter().map(|s| s.job().name()).collect();
        let paused = pauses::start(&transport, &names, stop_rx.clone()).await?;
        let known: Vec<&'static Job> = crate::registry::registered()
            .into_iter()
            .chain(jobs.iter().map(JobSettings::job))
            .collect();
        let mut consumers = Vec::with_capacity(jobs.len());
        let mut keepers = Vec::new();
        for settings in &jobs {
            let job = settings.job();
            let mut accepted_names = vec![job.name()];
            for other in &known {
                if other.exchange() == job.exchange() && !accepted_names.contains(&other.name()) {
                    accepted_names.push(other.name());
                }
            }
            // Attached before `start` returns, so a job enqueued right after is delivered.
            let prefetch = self
                .prefetch
                .map_or(settings.concurrency(), |p| p.max(settings.concurrency()));
            let permits = (prefetch > settings.concurrency()).then(|| {
                Arc::new(tokio::sync::Semaphore::new(usize::from(
                    settings.concurrency(),
                )))
            });
            // A job without a state never pauses (its sender is gone, so nothing changes it).
            let paused = paused
                .get(job.name())
                .cloned()
                .unwrap_or_else(|| watch::channel(false).1);
            // The consumer stops while the job is paused or its kill switch is open.
            let (switch, paused) = match settings.kill_switch() {
                Some(config) => {
                    let (switch, open) = kill_switch::Switch::new(config);
                    (Some(switch), pauses::either(paused, open, stop_rx.clone()))
                }
                None => (None, paused),
            };
            // A job with `max_running` attaches once it holds a slot (its supervisor takes them).
            let first = if *paused.borrow() || settings.max_running().is_some() {
                None
            } else {
                Some(transport.consume(settings.job().queue(), prefetch).await?)
            };
            let runtime = Arc::new(JobRuntime {
                settings: settings.clone(),
                producer: producer.clone(),
                context: context.clone(),
                observers: Arc::clone(&observers),
                host: Arc::clone(&host),
                max_message_size: self.producer_options.max_message_size,
                accepted_names: accepted_names.into(),
                prefetch,
                permits,
                outcome_publish_timeout: self.outcome_publish_timeout,
                decisions: durable::Decisions::default(),
                switch,
                tickets: settings
                    .rate()
                    .map(|_| rate::Tickets::new(Arc::clone(&transport), job.name())),
            });
            if let Some(rate) = settings.rate() {
                keepers.push(tokio::spawn(rate::keep(
                    Arc::clone(&transport),
                    job.name(),
                    rate,
                    stop_rx.clone(),
                )));
            }
            let ready = Arc::new(AtomicBool::new(true));
            let task = tokio::spawn(consumer::supervise(
                Arc::clone(&transport),
                runtime,
                first,
                stop_rx.clone(),
                Arc::clone(&ready),
                paused,
            ));
            consumers.push((ready, task));
        }
        let identity: Arc<str> = format!(
            "{} on {host} (pid {})",
            self.name.as_deref().unwrap_or("jobs"),
            std::process::id()
        )
        .into();
        // Schedulers and rate keepers stop at the stop signal.
        let schedulers = schedules
            .into_iter()
            .map(|(job, schedule)| {
                let scheduler = Scheduler {
                    job,
                    schedule,
                    transport: Arc::clone(&transport),
                    producer: producer.clone(),
                    identity: Arc::clone(&identity),
                };
                tokio::spawn(scheduler.supervise(stop_rx.clone()))
            })
            .chain(keepers)
            .collect();
        Ok(Engine {
            producer,
            jobs,
            stop,
            consumers,
            schedulers,
            paused,
        })
    }
}

/// The schedules of `jobs` that have one, checked.
/// The jobs of an engine about to start, checked.
struct Checked {
    jobs: Vec<JobSettings>,
    /// The periodic jobs and their schedules.
    schedules: Vec<(&'static Job, Schedule)>,
    topology: Topology,
}

fn schedules(jobs: &[JobSettings]) -> Result<Vec<(&'static Job, Schedule)>> {
    jobs.iter()
        .filter_map(|settings| {
            let job = settings.job();
            let spec = job.options().schedule?;
            Some(
                Schedule::parse(spec)
                    .map(|schedule| (job, schedule))
                    .map_err(|err| crate::Error::Config(format!("job `{}`: {err}", job.name()))),
            )
        })
        .collect()
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("transport", &self.transport)
            .field("jobs", &self.jobs)
            .field("defaults", &self.defaults)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("observers", &self.observers.len())
            .field("producer_options", &self.producer_options)
            .field("declare", &self.declare)
            .field("outcome_publish_timeout", &self.outcome_publish_timeout)
            .field("broker_consumer_timeout", &self.broker_consumer_timeout)
            .finish_non_exhaustive()
    }
}
