//! The inbox: a handler's database work and the record that it handled the message, in one
//! transaction, skipped when the message was handled before.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use jobs_core::JobContext;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{Error, Result};

/// A store of handled messages: PostgreSQL ([`PgPool`]) or, in tests, a
/// [`MemoryOutbox`](crate::MemoryOutbox).
pub trait InboxStore: Sync {
    /// The transaction a handler does its work in.
    type Tx: Send;

    /// Begins a transaction that records `message_id` as handled by `job`, or `None` when it
    /// already was (then nothing is held).
    ///
    /// # Errors
    ///
    /// The store's errors.
    fn begin_handling(
        &self,
        message_id: &str,
        job: &str,
    ) -> impl Future<Output = Result<Option<Self::Tx>>> + Send;
}

/// `ctx.inbox(&pool)`: `use jobs_outbox::InboxExt` in a handler.
///
/// ```no_run
/// # use jobs_core::{job, JobContext, JobError, State};
/// use jobs_outbox::InboxExt as _;
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Invoice { #[prost(uint64, tag = "1")] pub order: u64 }
/// #[job(exchange = "billing", routing_key = "invoice")]
/// async fn send_invoice(
///     invoice: Invoice,
///     ctx: JobContext,
///     pool: State<sqlx::PgPool>,
/// ) -> Result<(), JobError> {
///     let Some(mut tx) = ctx.inbox(&*pool).await.map_err(JobError::retry)? else {
///         return Ok(()); // handled before: a redelivery after a lost ack
///     };
///     sqlx::query("UPDATE orders SET invoiced = true WHERE id = $1")
///         .bind(invoice.order as i64)
///         .execute(&mut *tx)
///         .await
///         .map_err(JobError::retry)?;
///     tx.commit().await.map_err(JobError::retry)?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub trait InboxExt {
    /// Begins the handler's transaction in `store`, recording this delivery's message as
    /// handled by this job; `None` when it already was, so the handler does nothing again.
    /// The record, and the release of the job's unique key, commit with the handler's work
    /// or not at all. A second delivery of the message running at the same time waits for
    /// this transaction, then gets `None` if it committed.
    ///
    /// # Errors
    ///
    /// [`Error::NoMessageId`] for a delivery without a message id, and the store's errors.
    fn inbox<S: InboxStore>(&self, store: &S)
    -> impl Future<Output = Result<Option<S::Tx>>> + Send;
}

impl InboxExt for JobContext {
    async fn inbox<S: InboxStore>(&self, store: &S) -> Result<Option<S::Tx>> {
        let message_id = self.message_id().ok_or(Error::NoMessageId)?;
        store
            .begin_handling(message_id, self.job_name().unwrap_or_default())
            .await
    }
}

/// A handler's PostgreSQL transaction from [`InboxExt::inbox`]: run queries on `&mut *tx`,
/// then [`commit`](Self::commit). Dropped without a commit, it rolls back, and the message
/// counts as not handled.
#[derive(Debug)]
pub struct InboxTx {
    tx: Transaction<'static, Postgres>,
}

impl InboxTx {
    /// Commits the handler's work and the record that the message was handled.
    ///
    /// # Errors
    ///
    /// When the commit fails: then nothing of it happened.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    /// The transaction itself, for APIs that take a [`Transaction`].
    pub fn transaction(&mut self) -> &mut Transaction<'static, Postgres> {
        &mut self.tx
    }
}

impl Deref for InboxTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for InboxTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl InboxStore for PgPool {
    type Tx = InboxTx;

    async fn begin_handling(&self, message_id: &str, job: &str) -> Result<Option<InboxTx>> {
        let mut tx = self.begin().await?;
        // A concurrent delivery of the same message blocks on this row until that transaction
        // ends: it then conflicts (handled) or inserts (the other rolled back).
        let recorded = sqlx::query(
            "INSERT INTO jobs_inbox (message_id, job) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(message_id)
        .bind(job)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query("DELETE FROM jobs_unique WHERE message_id = $1")
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        Ok(Some(InboxTx { tx }))
    }
}

/// Deletes inbox records and unique keys older than `age`, and returns how many. A message
/// redelivered after its record was pruned runs again, so keep `age` well beyond how long a
/// job can wait in a queue, a retry or the error queue. A [`Relay`](crate::Relay) does this
/// with [`prune_after`](crate::Relay::prune_after).
///
/// # Errors
///
/// When the database fails.
pub async fn prune(pool: &PgPool, age: Duration) -> Result<u64> {
    let seconds = age.as_secs_f64();
    let inbox =
        sqlx::query("DELETE FROM jobs_inbox WHERE handled_at < now() - make_interval(secs => $1)")
            .bind(seconds)
            .execute(pool)
            .await?
            .rows_affected();
    let unique =
        sqlx::query("DELETE FROM jobs_unique WHERE created_at < now() - make_interval(secs => $1)")
            .bind(seconds)
            .execute(pool)
            .await?
            .rows_affected();
    Ok(inbox + unique)
}
