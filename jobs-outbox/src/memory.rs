//! The outbox and inbox in memory, for tests without PostgreSQL: the same rules on a
//! [`TestApp`](jobs_core::testing::TestApp) or any producer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jobs_core::{Producer, registry};

use crate::enqueue::OutboxTx;
use crate::inbox::InboxStore;
use crate::row::Row;
use crate::{Error, Result};

/// An outbox and inbox in memory. [`begin`](Self::begin) gives a transaction to
/// [`enqueue_in`](crate::OutboxEnqueue::enqueue_in); [`relay`](Self::relay) publishes what
/// committed; `ctx.inbox(&outbox)` records handled messages. Clones share the store.
///
/// ```
/// # use jobs_core::{job, JobError, testing::TestApp};
/// use jobs_outbox::{MemoryOutbox, OutboxEnqueue as _};
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Invoice { #[prost(uint64, tag = "1")] pub order: u64 }
/// # #[job(exchange = "docs.memory_outbox", routing_key = "invoice")]
/// # async fn send_invoice(_: Invoice) -> Result<(), JobError> { Ok(()) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = TestApp::builder().job(&send_invoice::JOB).build()?;
/// let outbox = MemoryOutbox::new();
///
/// let mut tx = outbox.begin();
/// send_invoice::with(Invoice { order: 1 }).enqueue_in(&mut tx).await?;
/// drop(tx); // rolled back: never published
///
/// let mut tx = outbox.begin();
/// send_invoice::with(Invoice { order: 2 }).enqueue_in(&mut tx).await?;
/// tx.commit();
///
/// assert_eq!(outbox.relay(app.producer()).await?, 1);
/// app.run_until_idle().await;
/// assert_eq!(app.succeeded(&send_invoice::JOB), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryOutbox {
    store: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    /// Committed rows, in commit order.
    rows: Vec<Row>,
    /// Unique keys held, with their job's message id.
    unique: HashMap<String, String>,
    /// (message id, job) pairs handled.
    handled: HashSet<(String, String)>,
    /// A lock per (message id, job) pair, held by the inbox transaction handling it: a second
    /// delivery waits for the first to end, as on PostgreSQL's row lock.
    handling: HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A transaction: rows written to it count only once it [commits](MemoryTx::commit).
    pub fn begin(&self) -> MemoryTx {
        MemoryTx {
            outbox: self.clone(),
            rows: Vec::new(),
        }
    }

    /// Committed rows not published yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.lock().rows.len()
    }

    /// Whether `message_id` was handled by the job named `job` (through the inbox).
    #[must_use]
    pub fn handled(&self, message_id: &str, job: &str) -> bool {
        self.lock()
            .handled
            .contains(&(message_id.to_owned(), job.to_owned()))
    }

    /// Publishes every committed row with `producer`, as the PostgreSQL relay does, and
    /// returns how many were published; a row whose publish fails stays for the next call.
    ///
    /// # Errors
    ///
    /// The first publish error, after every row was tried.
    pub async fn relay(&self, producer: &Producer) -> Result<usize> {
        let rows = std::mem::take(&mut self.lock().rows);
        let mut published = 0;
        let mut first_error = None;
        let mut kept = Vec::new();
        for row in rows {
            match publish(producer, &row).await {
                Ok(()) => published += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                    kept.push(row);
                }
            }
        }
        let mut store = self.lock();
        kept.append(&mut store.rows);
        store.rows = kept;
        match first_error {
            Some(error) => Err(error),
            None => Ok(published),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // The store's data stays consistent across a panic elsewhere: each change is one step.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn publish(producer: &Producer, row: &Row) -> Result<()> {
    let publish = row.to_publish()?;
    if let Some(job) = registry::find(&row.job) {
        producer.declare(job).await?;
    }
    producer.publish(publish).await?;
    Ok(())
}

/// A transaction of a [`MemoryOutbox`]: dropped without [`commit`](Self::commit), it rolls
/// back.
#[derive(Debug)]
#[must_use = "a transaction rolls back unless committed"]
pub struct MemoryTx {
    outbox: MemoryOutbox,
    rows: Vec<Row>,
}

impl MemoryTx {
    /// Makes the rows written in this transaction visible to the relay.
    pub fn commit(mut self) {
        let rows = std::mem::take(&mut self.rows);
        self.outbox.lock().rows.extend(rows);
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        // A rollback: release the unique keys this transaction claimed.
        if self.rows.is_empty() {
            return;
        }
        let mut store = self.outbox.lock();
        for row in &self.rows {
            if let Some(key) = &row.unique_key
                && store.unique.get(key) == Some(&row.message_id)
            {
                store.unique.remove(key);
            }
        }
    }
}

impl OutboxTx for MemoryTx {
    async fn write(&mut self, row: Row) -> Result<()> {
        if let Some(key) = &row.unique_key {
            let mut store = self.outbox.lock();
            if let Some(message_id) = store.unique.get(key) {
                return Err(Error::Duplicate {
                    key: key.clone(),
                    message_id: message_id.clone(),
                });
            }
            store.unique.insert(key.clone(), row.message_id.clone());
        }
        self.rows.push(row);
        Ok(())
    }
}

/// A handler's transaction on a [`MemoryOutbox`]: [`commit`](Self::commit) records the message
/// as handled and frees its unique key; dropped, it records nothing. While it is open, another
/// delivery of the same message waits in [`InboxExt::inbox`](crate::InboxExt::inbox).
#[derive(Debug)]
#[must_use = "the message counts as handled only once committed"]
pub struct MemoryInboxTx {
    outbox: MemoryOutbox,
    pair: (String, String),
    _handling: tokio::sync::OwnedMutexGuard<()>,
}

impl MemoryInboxTx {
    /// Records the message as handled and frees its unique key.
    pub fn commit(self) {
        let mut store = self.outbox.lock();
        let message_id = &self.pair.0;
        store.unique.retain(|_, id| id != message_id);
        // Later deliveries find the pair handled without its lock; one waiting now holds a
        // clone of it.
        store.handling.remove(&self.pair);
        store.handled.insert(self.pair.clone());
    }
}

impl InboxStore for MemoryOutbox {
    type Tx = MemoryInboxTx;

    async fn begin_handling(&self, message_id: &str, job: &str) -> Result<Option<MemoryInboxTx>> {
        let pair = (message_id.to_owned(), job.to_owned());
        let lock = Arc::clone(self.lock().handling.entry(pair.clone()).or_default());
        let handling = lock.lock_owned().await;
        if self.lock().handled.contains(&pair) {
            return Ok(None);
        }
        Ok(Some(MemoryInboxTx {
            outbox: self.clone(),
            pair,
            _handling: handling,
        }))
    }
}
