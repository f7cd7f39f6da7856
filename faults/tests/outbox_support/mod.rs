//! What the outbox scenarios share: the job whose handler makes its effect through the inbox,
//! the record of every delivery, the application's transactions and the engine; the database
//! ([`database`]), the relays ([`relays`]) and the end of a scenario ([`checks`]).

mod checks;
mod database;
mod relays;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub(crate) use checks::{all_handled, check_effects, settle};
pub(crate) use database::Database;
use futures_util::StreamExt as _;
use jobs_core::engine::Engine;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobContext, JobDefaults, JobError, JobSettings, State, job};
use jobs_faults::Ledger;
use jobs_outbox::{InboxExt as _, OutboxEnqueue as _};
pub(crate) use relays::{
    InProcessRelay, Moment, kill_in_pass, reports_an_empty_outbox, start_relay, start_relay_at,
    stop, terminate, wait_in_pass,
};
use sqlx::PgPool;

/// The longest a scenario may wait for anything: a bound, not a timing. A publish that failed
/// while the node was down waits up to a minute (the relay's backoff) before it is tried again.
pub(crate) const SETTLE: Duration = Duration::from_secs(300);

/// The rows a relay locks and publishes in one pass (`Relay`'s default batch, which the
/// worker keeps): what a relay killed between its confirms and its commit leaves to be
/// published again.
pub(crate) const BATCH: u64 = 200;

/// Deliveries the engine holds unacked at once: the job's concurrency (= prefetch).
pub(crate) const IN_FLIGHT: u64 = 32;

/// The message of the outbox's job: the id of the transaction that wrote it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Numbered {
    /// The ledger's id: the transaction's, and its order's.
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
}

/// Records each delivery (before the inbox, so that a row published twice shows), then makes
/// its effect, a row of `faults_effects`, in the inbox's transaction: once per message id
/// however often the message comes. Every handling that completes counts in the ledger.
#[job(
    exchange = "faults.outbox",
    routing_key = "effect",
    queue = "faults.outbox.effect",
    queue_type = "quorum",
    retries = 3,
    backoff = "200ms, 500ms, 1s",
    timeout = "60s",
    concurrency = 32
)]
pub(crate) async fn outbox_effect(
    job: Numbered,
    ctx: JobContext,
    seen: State<Seen>,
    pool: State<PgPool>,
) -> Result<(), JobError> {
    let message_id = ctx.message_id().unwrap_or_default().to_owned();
    seen.delivered(
        job.id,
        Delivery {
            message_id: message_id.clone(),
            redelivered: ctx.redelivered(),
        },
    );
    if let Some(mut tx) = ctx.inbox(&*pool).await.map_err(JobError::retry)? {
        sqlx::query("INSERT INTO faults_effects (id, message_id) VALUES ($1, $2)")
            .bind(i64::try_from(job.id).map_err(JobError::fatal)?)
            .bind(&message_id)
            .execute(&mut *tx)
            .await
            .map_err(JobError::retry)?;
        tx.commit().await.map_err(JobError::retry)?;
    }
    seen.ledger.handled(job.id);
    Ok(())
}

/// One delivery of the outbox's job, as its handler saw it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Delivery {
    /// Its message id.
    pub(crate) message_id: String,
    /// Whether the broker delivered it before (its consumer went without acking it); a row
    /// that a relay published again comes as a new message, not redelivered.
    pub(crate) redelivered: bool,
}

/// What the consumer saw: every delivery, by the job's id, and the ledger of completed
/// handlings. Cheap to clone: clones share the record.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// The scenario's ledger.
    ledger: Ledger,
    /// Each id's deliveries, duplicates included.
    deliveries: Arc<Mutex<HashMap<u64, Vec<Delivery>>>>,
}

impl Seen {
    /// A record whose handlings go to `ledger`.
    pub(crate) fn new(ledger: &Ledger) -> Self {
        Self {
            ledger: ledger.clone(),
            deliveries: Arc::default(),
        }
    }

    /// `delivery` of job `id` reached the handler.
    fn delivered(&self, id: u64, delivery: Delivery) {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default()
            .push(delivery);
    }

    /// Every delivery so far, by the job's id.
    pub(crate) fn deliveries(&self) -> HashMap<u64, Vec<Delivery>> {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the application's transactions did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// The committed transactions' ids, each with the message id `enqueue_in` returned.
    pub(crate) committed: BTreeMap<u64, String>,
    /// The rolled-back transactions' ids.
    pub(crate) rolled_back: BTreeSet<u64>,
}

/// Runs one transaction per id of `ids`, `concurrency` at a time, as an application would:
/// each inserts order `id` and writes its job with `enqueue_in`, then commits when
/// `commit(id)` holds and rolls back otherwise. The ledger records each transaction as
/// attempted before it begins, and as confirmed once its commit returned.
pub(crate) async fn transactions(
    pool: PgPool,
    ledger: Ledger,
    ids: Range<u64>,
    commit: fn(u64) -> bool,
    concurrency: usize,
) -> Written {
    let outcomes: Vec<(u64, Option<String>)> = futures_util::stream::iter(ids)
        .map(|id| {
            let (pool, ledger) = (pool.clone(), ledger.clone());
            async move {
                ledger.attempted(id);
                let mut tx = pool.begin().await.expect("a transaction");
                sqlx::query("INSERT INTO faults_orders (id) VALUES ($1)")
                    .bind(i64::try_from(id).expect("an id in range"))
                    .execute(&mut *tx)
                    .await
                    .expect("the order");
                let message_id = outbox_effect::with(Numbered { id })
                    .enqueue_in(&mut tx)
                    .await
                    .expect("the job is written to the outbox");
                if commit(id) {
                    tx.commit().await.expect("the commit");
                    ledger.confirmed(id);
                    (id, Some(message_id.to_string()))
                } else {
                    tx.rollback().await.expect("the rollback");
                    (id, None)
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut written = Written::default();
    for (id, message_id) in outcomes {
        match message_id {
            Some(message_id) => {
                written.committed.insert(id, message_id);
            }
            None => {
                written.rolled_back.insert(id);
            }
        }
    }
    written
}

/// An engine on the node at `url` serving the outbox's job, its handlers recording in `seen`
/// and making their effects in `db`. The job's queues are purged first: a scenario starts
/// from nothing, whatever an earlier one left.
pub(crate) async fn engine(url: &str, scenario: &str, seen: &Seen, db: &Database) -> Engine {
    let transport = AmqpTransport::builder(url)
        .connection_name(format!(
            "jobs-faults-outbox-{scenario}-{}",
            std::process::id()
        ))
        .connect()
        .await
        .expect("the engine's transport connects to the private node");
    let engine = Engine::builder(Arc::new(transport))
        .job(&outbox_effect::JOB)
        .state(seen.clone())
        .state(db.pool().clone())
        .start()
        .await
        .expect("the engine starts on the private node");
    for queue in queues() {
        engine
            .producer()
            .transport()
            .purge(&queue)
            .await
            .expect("a queue of the outbox's job is purged");
    }
    engine
}

/// The outbox job's work queue, then its retry queues and its error queue.
pub(crate) fn queues() -> Vec<String> {
    let settings = JobSettings::resolve(&outbox_effect::JOB, &JobDefaults::default());
    std::iter::once(settings.job().queue().to_owned())
        .chain(settings.retry_queues().iter().cloned())
        .chain(std::iter::once(settings.error_queue().to_owned()))
        .collect()
}

/// `n` with a comma between thousands: 10,000.
pub(crate) fn thousands(n: u64) -> String {
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
