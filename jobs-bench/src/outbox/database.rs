//! The outbox measure's PostgreSQL: a schema of its own with the outbox's tables, a pool for
//! the application's transactions and one for the relay.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use futures_util::future::try_join_all;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, PgPool};
use tokio::time::Instant;

/// The schema of the benchmark's tables, set as every connection's `search_path`: the tests
/// of `jobs-outbox` each use a schema of their own, so the benchmark never reads their rows,
/// nor they its.
pub const SCHEMA: &str = "jobs_bench";

/// How often [`Database::until_empty`] looks.
const POLL: Duration = Duration::from_millis(10);

/// The two pools of the measure, on [`SCHEMA`].
#[derive(Debug)]
pub(super) struct Database {
    /// The application's: one connection per concurrent writer.
    writers: PgPool,
    /// The relay's: one connection for its passes, one to listen, as the worker gives it.
    relay: PgPool,
}

impl Database {
    /// Creates [`SCHEMA`] and the outbox's tables in it if missing, empties them (rows a
    /// stopped run left would be published into the next measurement), and opens `writers`
    /// connections for the application's transactions.
    pub(super) async fn connect(url: &str, writers: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse().context("not a PostgreSQL URL")?;
        let mut admin = options.connect().await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {SCHEMA}"
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        let options = options.options([("search_path", SCHEMA)]);
        let relay = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        jobs_outbox::migrate(&relay).await?;
        sqlx::query("TRUNCATE jobs_outbox, jobs_unique, jobs_inbox")
            .execute(&relay)
            .await?;
        let writers_pool = PgPoolOptions::new()
            .max_connections(writers)
            .connect_with(options)
            .await?;
        // Every writer's connection opened now, held at once, so that no measurement pays for
        // opening one.
        let held = try_join_all((0..writers).map(|_| writers_pool.acquire())).await?;
        drop(held);
        Ok(Self {
            writers: writers_pool,
            relay,
        })
    }

    /// The pool of the application's transactions.
    pub(super) fn writers(&self) -> &PgPool {
        &self.writers
    }

    /// The pool of the relay.
    pub(super) fn relay(&self) -> PgPool {
        self.relay.clone()
    }

    /// Rows in the outbox: written and not yet published, or published and not yet deleted.
    pub(super) async fn pending(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM jobs_outbox")
            .fetch_one(&self.relay)
            .await?)
    }

    /// Waits until the relay has deleted every row, at most until `deadline`: it deletes a
    /// pass's rows after their confirms, so after their handlers may have run.
    pub(super) async fn until_empty(&self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let pending = self.pending().await?;
            if pending == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{pending} rows left in {SCHEMA}.jobs_outbox"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Closes both pools.
    pub(super) async fn close(self) {
        self.writers.close().await;
        self.relay.close().await;
    }
}
