//! The relay: publishes the outbox's rows with confirms, and deletes each only after its
//! confirm.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::join_all;
use jobs_core::{Producer, registry};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row as _};

use crate::Result;
use crate::row::Row;

/// The channel the outbox's trigger notifies on commit.
pub(crate) const CHANNEL: &str = "jobs_outbox";

/// Publishes the jobs written to the outbox, as soon as their transactions commit.
///
/// Each pass locks up to [`batch`](Self::batch) due rows with `FOR UPDATE SKIP LOCKED` (so
/// relays running at once share the rows rather than publish one twice), publishes them all
/// with confirms, and in the same transaction deletes those confirmed and pushes back those
/// that failed. A relay that dies between a confirm and its commit leaves the row for the next
/// pass, which publishes it again with the same message id: at least once, never lost.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool, producer: jobs_core::Producer) -> jobs_outbox::Result<()> {
/// jobs_outbox::migrate(&pool).await?;
/// let relay = jobs_outbox::Relay::new(pool, producer);
/// relay.run(std::future::pending()).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Relay {
    pool: PgPool,
    producer: Producer,
    options: RelayOptions,
    published: Arc<AtomicU64>,
    pushed_back: Arc<AtomicU64>,
}

/// How a [`Relay`] works.
#[derive(Clone, Debug)]
struct RelayOptions {
    batch: i64,
    poll: Duration,
    fast_poll: Duration,
    max_backoff: Duration,
    prune_after: Option<Duration>,
}

/// How often a relay prunes the inbox, when it does.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often a relay reads whether the outbox's trigger notifies ([`crate::set_notify`]).
const NOTIFY_CHECK_EVERY: Duration = Duration::from_secs(30);

impl Relay {
    /// A relay of `pool`'s outbox publishing with `producer`.
    #[must_use]
    pub fn new(pool: PgPool, producer: Producer) -> Self {
        Self {
            pool,
            producer,
            options: RelayOptions {
                batch: 200,
                poll: Duration::from_secs(5),
                fast_poll: Duration::from_millis(100),
                max_backoff: Duration::from_secs(60),
                prune_after: None,
            },
            published: Arc::default(),
            pushed_back: Arc::default(),
        }
    }

    /// Rows locked and published per pass (default 200, at least 1).
    #[must_use]
    pub fn batch(mut self, rows: u32) -> Self {
        self.options.batch = i64::from(rows.max(1));
        self
    }

    /// How long the relay waits for a notification before it looks anyway (default 5 s): the
    /// backstop for a notification missed while its listening connection was down.
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.options.poll = every;
        self
    }

    /// How often the relay looks when the outbox's trigger does not notify
    /// ([`set_notify`](crate::set_notify) off; default 100 ms): then only polling finds jobs.
    #[must_use]
    pub fn fast_poll_every(mut self, every: Duration) -> Self {
        self.options.fast_poll = every;
        self
    }

    /// The longest wait before a row whose publish failed is tried again (default 60 s; the
    /// wait doubles from 1 s with each failure).
    #[must_use]
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.options.max_backoff = wait;
        self
    }

    /// Prunes inbox rows and unique keys older than `age` once an hour while it runs
    /// ([`crate::prune`]); off by default.
    #[must_use]
    pub fn prune_after(mut self, age: Duration) -> Self {
        self.options.prune_after = Some(age);
        self
    }

    /// Jobs this relay has published and deleted from the outbox since it was made.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Publishes that failed for a reason of their own (no queue bound, a message too large),
    /// each pushing its row back to be tried again later, since it was made. Rows the broker
    /// could not take at all (unreachable, slow) are not counted: they stay due, untouched.
    #[must_use]
    pub fn pushed_back(&self) -> u64 {
        self.pushed_back.load(Ordering::Relaxed)
    }

    /// Runs until `shutdown` completes: a pass whenever a transaction that wrote jobs commits,
    /// at once again while passes find full batches, and at the latest every
    /// [`poll_every`](Self::poll_every). With the trigger's notifications off
    /// ([`set_notify`](crate::set_notify)), which it reads every 30 s, it polls every
    /// [`fast_poll_every`](Self::fast_poll_every) instead. Database and broker errors are
    /// logged and the relay goes on; nothing is deleted unless confirmed.
    ///
    /// # Errors
    ///
    /// None so far: the `Result` leaves room for errors that should stop the process.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut listener = None;
        let mut failures = 0_u32;
        let mut pruned_at: Option<tokio::time::Instant> = None;
        let mut notifying = (true, None::<tokio::time::Instant>);
        loop {
            if notifying
                .1
                .is_none_or(|at| at.elapsed() >= NOTIFY_CHECK_EVERY)
            {
                // On an error, as before: the pass below reports the database's state.
                let now = crate::schema::notifies(&self.pool)
                    .await
                    .unwrap_or(notifying.0);
                if now != notifying.0 {
                    tracing::info!(
                        notifying = now,
                        "outbox relay: the trigger's notifications changed"
                    );
                }
                notifying = (now, Some(tokio::time::Instant::now()));
            }
            if listener.is_none() && notifying.0 {
                listener = self.listen().await;
            }
            if let Some(age) = self.options.prune_after
                && pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            {
                match crate::prune(&self.pool, age).await {
                    Ok(rows) => tracing::debug!(rows, "outbox relay: pruned the inbox"),
                    Err(error) => tracing::warn!(%error, "outbox relay: pruning failed"),
                }
                pruned_at = Some(tokio::time::Instant::now());
            }
            let wait = match self.run_once().await {
                // A full batch: more may be due, so look again at once (after the shutdown
                // check below, which a relay under constant load must still reach).
                Ok(rows) if rows as i64 >= self.options.batch => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(_) => {
                    failures = 0;
                    if notifying.0 {
                        self.options.poll
                    } else {
                        self.options.fast_poll
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures, self.options.poll);
                    tracing::warn!(%error, ?wait, "outbox relay: a pass failed");
                    wait
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                woken = wake(listener.as_mut(), wait) => {
                    if let Err(error) = woken {
                        tracing::warn!(%error, "outbox relay: listening failed; polling until it listens again");
                        listener = None;
                    }
                }
            }
        }
    }

    /// One pass: publishes up to one batch of the rows due now, and returns how many it locked
    /// (published, or pushed back for an error of their own such as no queue bound for them).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`](crate::Error::Unavailable) when the broker could not take some
    /// rows (they stay due; the others were published and deleted), and database errors (rows
    /// published before one were confirmed, and the next pass publishes them again with their
    /// message ids).
    pub async fn run_once(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, message_id, job, exchange, routing_key, properties::text AS properties, body \
             FROM jobs_outbox WHERE next_attempt_at <= now() \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.options.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let rows = rows.iter().map(read_row).collect::<Result<Vec<_>>>()?;
        let outcomes = join_all(rows.iter().map(|row| self.publish(row))).await;
        let mut done = Vec::with_capacity(rows.len());
        // The broker unreachable or slow is no fault of the rows: they stay due, untouched, and
        // the pass as a whole backs off (a few seconds at most), so that they go as soon as the
        // broker is back rather than each after its own growing wait.
        let mut unavailable = None;
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Ok(()) => done.push(row.id),
                Err(crate::Error::Job(error)) if error.is_transient() => {
                    unavailable.get_or_insert(error);
                }
                Err(error) => {
                    tracing::warn!(
                        message_id = row.message_id,
                        job = row.job,
                        %error,
                        "outbox relay: publish failed; the row stays and is tried again"
                    );
                    sqlx::query(
                        "UPDATE jobs_outbox SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = now() + make_interval(secs => \
                         LEAST(power(2, attempts), $3)) WHERE id = $1",
                    )
                    .bind(row.id)
                    .bind(error.to_string())
                    .bind(self.options.max_backoff.as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
                    self.pushed_back.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        sqlx::query("DELETE FROM jobs_outbox WHERE id = ANY($1)")
            .bind(&done)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.published
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        match unavailable {
            Some(error) => Err(crate::Error::Unavailable {
                unpublished: rows.len() - done.len(),
                source: error,
            }),
            None => Ok(rows.len()),
        }
    }

    /// Publishes one row and waits for its confirm, its job's topology declared first when
    /// this binary knows the job.
    async fn publish(&self, row: &Row) -> Result<()> {
        let publish = row.to_publish()?;
        if let Some(job) = registry::find(&row.job) {
            self.producer.declare(job).await?;
        }
        self.producer.publish(publish).await?;
        Ok(())
    }

    /// A listener on the outbox's channel, or `None` (logged) when it cannot listen now.
    async fn listen(&self) -> Option<PgListener> {
        let listening = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "outbox relay: cannot listen; polling meanwhile");
                None
            }
        }
    }
}

/// Waits for a notification on `listener`, or `wait` at most (only `wait` without one).
async fn wake(listener: Option<&mut PgListener>, wait: Duration) -> Result<(), sqlx::Error> {
    if wait.is_zero() {
        return Ok(());
    }
    let Some(listener) = listener else {
        tokio::time::sleep(wait).await;
        return Ok(());
    };
    match tokio::time::timeout(wait, listener.recv()).await {
        Ok(Ok(_)) => {
            // Every commit that wrote jobs notifies, and those that came during the last pass
            // are queued on the socket: one pass serves them all, so take them now rather than
            // run an empty pass for each. (Reading is cancel-safe: an unfinished message stays
            // in sqlx's buffer.)
            while let Some(Ok(Some(_))) = listener.try_recv().now_or_never() {}
            Ok(())
        }
        Err(_) => Ok(()),
        Ok(Err(error)) => Err(error),
    }
}

/// The wait after `failures` failed passes in a row: 1 s doubling, up to `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(16)).min(max)
}

fn read_row(row: &PgRow) -> Result<Row> {
    Ok(Row {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        job: row.try_get("job")?,
        exchange: row.try_get("exchange")?,
        routing_key: row.try_get("routing_key")?,
        properties: row.try_get("properties")?,
        body: row.try_get("body")?,
        unique_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_backoff_doubles_from_a_second_up_to_its_cap() {
        let max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX, max), max);
    }
}
