//! Running scenarios on RabbitMQ, on real time.
//!
//! Scenarios run side by side, one per lane ([`LANES`]): each lane has its own copy of the
//! jobs and its own engines, so they share nothing but the broker and the delay cascade.
//!
//! The jobs' queues are named by `#[job]`, so every run uses the same ones. An [`AmqpRun`]
//! makes them its own: it holds the lock queue [`LOCK_QUEUE`] as its exclusive consumer for as
//! long as it lives (a second run at the same time is refused, naming the queue). The broker
//! ends the hold when the lock queue is deleted (by hand, or by a sweep of every queue), and
//! another run may then take the lock and the queues: the run checks its hold before and after
//! each batch of scenarios, takes the lock again when it is free, and voids a batch during which
//! it lost it, rather than report what another run did as a divergence. It also deletes the
//! jobs' queues it finds left over (a run killed before its clean-up, or one with other
//! backoffs), purges them after each scenario, and deletes them, the lock queue and the jobs'
//! exchange when it closes. The delay cascade (`jobs.delay.*`) is shared by every user of the
//! broker and stays; a copy of a job still waiting there reaches a later scenario, whose
//! observation leaves it out by its message id.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use jobs_core::engine::Engine;
use jobs_core::testing::Recorder;
use jobs_core::topology::{QueueSpec, Topology, argument};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, ReplyStream, Settlement, Transport};
use jobs_core::{FailedJob, Headers};
use lapin::options::ExchangeDeleteOptions;
use lapin::{Connection, ConnectionProperties};

use super::handlers::{EXCHANGE, JobKind, LANES};
use super::observe::Observation;
use super::run::{self, Harness, RunError};
use super::scenario::Scenario;

/// The queue a run holds as its exclusive consumer while it uses the jobs' queues.
pub const LOCK_QUEUE: &str = "jobs.differential.jobs.lock";

/// The connection name the broker shows for the run's connections.
const CONNECTION_NAME: &str = "jobs-differential-jobs";

/// How long a run waits, after its last operation, for every job to end: far past the
/// longest scenario's (a 2 s delay, then three attempts with deadlines and backoffs).
const WITHIN: Duration = Duration::from_secs(60);

/// How long reading an error queue may take.
const READ_WITHIN: Duration = Duration::from_secs(10);

/// How long closing a transport's connections may take: lapin's close waits for the broker's
/// `close-ok`, and once (in about two thousand abrupt restarts) never got it, the consuming
/// connection's socket gone already. Past this, the connections go with the transport.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// How long one scenario's run may take in all, far past any scenario's own bounds: a run
/// stuck anyway fails as a run error rather than hang the campaign.
const RUN_WITHIN: Duration = Duration::from_secs(300);

/// Scenarios on one RabbitMQ broker, one at a time, with the jobs' queues to themselves.
pub struct AmqpRun {
    url: String,
    runtime: tokio::runtime::Runtime,
    /// Reads and purges the queues, and holds the lock.
    admin: AmqpTransport,
    /// The lock: the exclusive consumer of [`LOCK_QUEUE`], while the run holds it.
    lock: Mutex<Option<ReplyStream>>,
    /// Taken by each engine start: lanes declare their topology (with the whole delay
    /// cascade) one at a time, as workers starting one by one would, rather than contend for
    /// the broker's metadata store at once.
    starting: tokio::sync::Mutex<()>,
}

impl AmqpRun {
    /// Connects to the broker at `url`, takes the lock and deletes the jobs' leftover queues.
    /// Call it outside any tokio runtime: the run has its own.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the broker cannot be reached, another run holds the lock, or the
    /// leftovers cannot be deleted.
    pub fn open(url: &str) -> Result<Self, RunError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (admin, lock) = runtime.block_on(async {
            let admin = AmqpTransport::builder(url)
                .connection_name(CONNECTION_NAME)
                .connect()
                .await?;
            let lock = take_lock(&admin).await?;
            for queue in JobKind::all_queues() {
                admin.delete_queue(&queue).await?;
            }
            Ok::<_, RunError>((admin, lock))
        })?;
        Ok(Self {
            url: url.to_owned(),
            runtime,
            admin,
            lock: Mutex::new(Some(lock)),
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the run holds its lock now, taking it again when it was lost and is free.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the lock is lost and cannot be taken again.
    fn hold_lock(&self) -> Result<(), RunError> {
        if self.still_locked() {
            return Ok(());
        }
        let lock = self.runtime.block_on(take_lock(&self.admin))?;
        *self.lock.lock().unwrap_or_else(PoisonError::into_inner) = Some(lock);
        Ok(())
    }

    /// Whether the hold taken last is still there: its stream ends when the broker cancels
    /// it (the lock queue was deleted) or its connection is lost.
    fn still_locked(&self) -> bool {
        let _context = self.runtime.enter();
        let mut lock = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let ended = lock
            .as_mut()
            .is_none_or(|hold| matches!(hold.next().now_or_never(), Some(None)));
        if ended {
            *lock = None;
        }
        !ended
    }

    /// Runs `scenario` and observes it; then purges its lane's queues for the next one.
    ///
    /// # Errors
    ///
    /// [`RunError`] when an engine cannot start, an enqueue fails or an error queue cannot be
    /// read.
    pub fn run(&self, scenario: &Scenario) -> Result<Observation, RunError> {
        let mut observed = self.run_many(std::slice::from_ref(scenario));
        observed
            .pop()
            .unwrap_or_else(|| Err(RunError("no run for the scenario".into())))
    }

    /// Runs `scenarios`, up to [`LANES`] at a time side by side, and observes each; a result
    /// per scenario, in order. A batch during which the run did not hold its lock throughout
    /// gives an error for each of its scenarios.
    pub fn run_many(&self, scenarios: &[Scenario]) -> Vec<Result<Observation, RunError>> {
        let mut results = Vec::with_capacity(scenarios.len());
        for batch in scenarios.chunks(LANES) {
            if let Err(error) = self.hold_lock() {
                results.extend(batch.iter().map(|_| Err(error.clone())));
                continue;
            }
            let runs = batch
                .iter()
                .enumerate()
                .map(|(lane, scenario)| self.run_on(lane, scenario));
            let observed = self.runtime.block_on(join_all(runs));
            if self.still_locked() {
                results.extend(observed);
            } else {
                let lost = RunError(format!(
                    "the run lost its lock `{LOCK_QUEUE}` (the queue was deleted) while it ran: \
                     another run may have used the jobs' queues meanwhile"
                ));
                results.extend(batch.iter().map(|_| Err(lost.clone())));
            }
        }
        results
    }

    async fn run_on(&self, lane: usize, scenario: &Scenario) -> Result<Observation, RunError> {
        let mut harness = AmqpHarness {
            url: &self.url,
            admin: &self.admin,
            starting: &self.starting,
            lane,
            current: None,
        };
        let observed = tokio::time::timeout(RUN_WITHIN, run::run(&mut harness, scenario))
            .await
            .unwrap_or_else(|_| {
                Err(RunError(format!(
                    "the run did not end within {RUN_WITHIN:?}"
                )))
            });
        harness.stopped().await;
        // Whatever a run leaves (an abrupt restart's extra copies) must not reach the next.
        for kind in JobKind::ALL {
            for queue in kind.queues(lane) {
                let _ = self.admin.purge(&queue).await;
            }
        }
        observed
    }

    /// Deletes the jobs' queues, their exchange and the lock queue, and closes the
    /// connection.
    ///
    /// # Errors
    ///
    /// [`RunError`] when the broker refuses a deletion.
    pub fn close(self) -> Result<(), RunError> {
        let lock = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.runtime.block_on(async {
            for queue in JobKind::all_queues() {
                self.admin.delete_queue(&queue).await?;
            }
            drop(lock);
            self.admin.delete_queue(LOCK_QUEUE).await?;
            // `Transport` deletes no exchange: a connection of its own does.
            let connection = Connection::connect(&self.url, ConnectionProperties::default())
                .await
                .map_err(|error| RunError(format!("connecting to delete `{EXCHANGE}`: {error}")))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| RunError(format!("a channel to delete `{EXCHANGE}`: {error}")))?;
            channel
                .exchange_delete(EXCHANGE.into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|error| RunError(format!("deleting `{EXCHANGE}`: {error}")))?;
            let _ = tokio::time::timeout(CLOSE_WITHIN, connection.close(200, "cleaned up".into()))
                .await;
            let _ = tokio::time::timeout(CLOSE_WITHIN, self.admin.close()).await;
            Ok(())
        })
    }
}

impl std::fmt::Debug for AmqpRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpRun")
            .field("url", &jobs_core::transport::redact_url(&self.url))
            .field("locked", &self.still_locked())
            .finish_non_exhaustive()
    }
}

/// One scenario's engines, each on a connection of its own.
struct AmqpHarness<'a> {
    url: &'a str,
    admin: &'a AmqpTransport,
    starting: &'a tokio::sync::Mutex<()>,
    lane: usize,
    /// The running engine's transport, closed when it stops.
    current: Option<AmqpTransport>,
}

impl Harness for AmqpHarness<'_> {
    fn lane(&self) -> usize {
        self.lane
    }

    async fn start(&mut self, recorder: &Arc<Recorder>) -> Result<Engine, RunError> {
        let _turn = self.starting.lock().await;
        let transport = AmqpTransport::builder(self.url)
            .connection_name(format!("{CONNECTION_NAME}.lane{}", self.lane))
            .connect()
            .await?;
        self.current = Some(transport.clone());
        run::start_engine(Arc::new(transport), recorder, self.lane).await
    }

    async fn stopped(&mut self) {
        if let Some(transport) = self.current.take() {
            let _ = tokio::time::timeout(CLOSE_WITHIN, transport.close()).await;
        }
    }

    /// Dropping the engine stops its consumers without waiting for their handlers; closing
    /// its connections right after is the dead process's: the broker requeues every unacked
    /// delivery, and publishes in flight may or may not have reached it.
    async fn crash(&mut self, engine: Engine) {
        drop(engine);
        self.stopped().await;
    }

    fn within(&self) -> Duration {
        WITHIN
    }

    async fn settle(&self) {}

    async fn letters(&mut self) -> Result<Vec<FailedJob>, RunError> {
        let mut letters = Vec::new();
        for kind in JobKind::ALL {
            let queue = kind.settings(self.lane).error_queue().to_owned();
            letters.extend(read_all(self.admin, &queue).await?);
        }
        Ok(letters)
    }
}

/// Declares the lock queue and holds it.
///
/// # Errors
///
/// [`RunError`] when another run holds it, or the broker refuses.
async fn take_lock(admin: &AmqpTransport) -> Result<ReplyStream, RunError> {
    let lock_queue = Topology {
        queues: vec![QueueSpec {
            name: LOCK_QUEUE.to_owned(),
            arguments: Headers::from_iter([(argument::QUEUE_TYPE, "classic")]),
        }],
        ..Topology::default()
    };
    admin.declare(&lock_queue, Declare::Create).await?;
    admin.hold(LOCK_QUEUE).await?.ok_or_else(|| {
        RunError(format!(
            "another job-level differential run holds `{LOCK_QUEUE}` on this broker; wait for \
             it to end"
        ))
    })
}

/// Takes every message of `queue`, which nothing publishes to any more: as many as its
/// count said before reading. The consumer goes without waiting for its acks to be applied
/// ([`Settle::finish`](jobs_core::transport::Settle::finish)): the run purges the queue next.
async fn read_all(admin: &AmqpTransport, queue: &str) -> Result<Vec<FailedJob>, RunError> {
    let count = usize::try_from(admin.message_count(queue).await?).unwrap_or(usize::MAX);
    if count == 0 {
        return Ok(Vec::new());
    }
    let prefetch = u16::try_from(count).unwrap_or(u16::MAX);
    let mut consumer = admin.consume(queue, prefetch).await?;
    let mut letters = Vec::with_capacity(count);
    let read = tokio::time::timeout(READ_WITHIN, async {
        while letters.len() < count {
            let Some(delivery) = consumer.deliveries.next().await else {
                break;
            };
            let acked = consumer.settler.settle(Settlement::Ack {
                tag: delivery.tag,
                multiple: false,
            });
            acked.await?;
            letters.push(FailedJob::new(Arc::unwrap_or_clone(delivery.envelope)));
        }
        Ok::<_, RunError>(())
    })
    .await;
    drop(consumer);
    match read {
        Ok(Ok(())) if letters.len() == count => Ok(letters),
        Ok(Err(error)) => Err(error),
        _ => Err(RunError(format!(
            "read {} of the {count} messages of `{queue}` within {READ_WITHIN:?}",
            letters.len()
        ))),
    }
}

impl Drop for AmqpRun {
    /// A run dropped without [`close`](Self::close) (a test that panicked) still deletes
    /// its queues, when it is not inside a runtime that forbids waiting.
    fn drop(&mut self) {
        let Some(lock) = self
            .lock
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        self.runtime.block_on(async {
            for queue in JobKind::all_queues() {
                let _ = self.admin.delete_queue(&queue).await;
            }
            drop(lock);
            let _ = self.admin.delete_queue(LOCK_QUEUE).await;
        });
    }
}
