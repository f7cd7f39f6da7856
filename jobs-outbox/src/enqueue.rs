//! Writing a job into the outbox, inside the application's transaction.

use std::future::Future;

use jobs_core::{Enqueue, JobMessage, MessageId, ProducerOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::row::Row;
use crate::{Error, Result};

/// Where [`enqueue_in`](OutboxEnqueue::enqueue_in) writes: a PostgreSQL transaction (or
/// connection), or an in-memory outbox's [`MemoryTx`](crate::MemoryTx) in tests.
pub trait OutboxTx: Send {
    /// Writes `row`, first claiming its unique key if it has one.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when the key is held by a pending job (nothing written), and the
    /// store's errors.
    fn write(&mut self, row: Row) -> impl Future<Output = Result<()>> + Send;
}

impl OutboxTx for PgConnection {
    async fn write(&mut self, row: Row) -> Result<()> {
        if let Some(key) = &row.unique_key {
            // ON CONFLICT rather than catching a unique violation: a failed statement would
            // abort the application's whole transaction. A second writer of the same key waits
            // here until the first commits (then it is a duplicate) or rolls back.
            let claimed = sqlx::query(
                "INSERT INTO jobs_unique (key, message_id) VALUES ($1, $2) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(&row.message_id)
            .execute(&mut *self)
            .await?
            .rows_affected();
            if claimed == 0 {
                let message_id: Option<String> =
                    sqlx::query_scalar("SELECT message_id FROM jobs_unique WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut *self)
                        .await?;
                return Err(Error::Duplicate {
                    key: key.clone(),
                    message_id: message_id.unwrap_or_default(),
                });
            }
        }
        sqlx::query(
            "INSERT INTO jobs_outbox (message_id, job, exchange, routing_key, properties, body) \
             VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        )
        .bind(&row.message_id)
        .bind(&row.job)
        .bind(&row.exchange)
        .bind(&row.routing_key)
        .bind(&row.properties)
        .bind(&row.body)
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

impl OutboxTx for Transaction<'_, Postgres> {
    async fn write(&mut self, row: Row) -> Result<()> {
        (**self).write(row).await
    }
}

/// Enqueueing through the outbox: `use jobs_outbox::OutboxEnqueue` and every job's `with(msg)`
/// gains [`enqueue_in`](Self::enqueue_in) and [`unique_key`](Self::unique_key).
///
/// ```no_run
/// # use jobs_core::{job, JobError};
/// use jobs_outbox::OutboxEnqueue as _;
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Invoice { #[prost(uint64, tag = "1")] pub order: u64 }
/// # #[job(exchange = "billing", routing_key = "invoice")]
/// # async fn send_invoice(_: Invoice) -> Result<(), JobError> { Ok(()) }
/// # async fn place(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
/// send_invoice::with(Invoice { order: 42 }).enqueue_in(&mut tx).await?;
/// tx.commit().await?; // the relay publishes the job now, and only if this commits
/// # Ok(())
/// # }
/// # fn main() {}
/// ```
pub trait OutboxEnqueue: Sized {
    /// Writes the job, exactly as [`Enqueue::enqueue`] would publish it, into the outbox
    /// inside `tx`: the relay publishes it once `tx` commits, and never if it rolls back. The
    /// returned message id is the one the job keeps, however often the relay publishes it.
    ///
    /// # Errors
    ///
    /// [`Error::Job`] when the job is over the default size limit or has a priority it does
    /// not declare, [`Error::Duplicate`] for a [`unique_key`](Self::unique_key) already held,
    /// and database errors.
    fn enqueue_in<T: OutboxTx>(self, tx: &mut T) -> impl Future<Output = Result<MessageId>> + Send;

    /// Makes the job unique by `key` among pending jobs: from its enqueue until its handler's
    /// inbox transaction commits ([`crate::InboxExt::inbox`]), a second job with the same key
    /// is refused with [`Error::Duplicate`]. See the guide for what frees a key.
    fn unique_key(self, key: impl Into<String>) -> Unique<Self>;
}

impl<M: JobMessage + Send> OutboxEnqueue for Enqueue<M> {
    async fn enqueue_in<T: OutboxTx>(self, tx: &mut T) -> Result<MessageId> {
        write(self, None, tx).await
    }

    fn unique_key(self, key: impl Into<String>) -> Unique<Self> {
        Unique {
            enqueue: self,
            key: key.into(),
        }
    }
}

/// A job made unique by a key: [`OutboxEnqueue::unique_key`].
#[derive(Debug)]
#[must_use = "a `Unique` does nothing until `.enqueue_in(&mut tx)` is awaited"]
pub struct Unique<E> {
    enqueue: E,
    key: String,
}

impl<M: JobMessage + Send> Unique<Enqueue<M>> {
    /// Writes the job into the outbox inside `tx`, holding its key: see
    /// [`OutboxEnqueue::enqueue_in`].
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when a pending job holds the key (nothing is written), and the
    /// errors of [`OutboxEnqueue::enqueue_in`].
    pub async fn enqueue_in<T: OutboxTx>(self, tx: &mut T) -> Result<MessageId> {
        write(self.enqueue, Some(self.key), tx).await
    }
}

async fn write<M: JobMessage + Send, T: OutboxTx>(
    enqueue: Enqueue<M>,
    unique_key: Option<String>,
    tx: &mut T,
) -> Result<MessageId> {
    let prepared = enqueue.prepare(ProducerOptions::default().max_message_size)?;
    let id = prepared.id.clone();
    tx.write(Row::new(prepared, unique_key)?).await?;
    Ok(id)
}
