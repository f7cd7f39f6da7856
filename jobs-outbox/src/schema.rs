//! The tables: [`migrate`] creates them.

use sqlx::PgPool;

/// The SQL that creates the outbox's tables, trigger and indexes. Idempotent; copy it into an
/// application's own migrations to manage it there instead of calling [`migrate`].
pub const SCHEMA: &str = include_str!("schema.sql");

/// A lock key of its own, so that relays starting together apply the schema one at a time
/// (`CREATE ... IF NOT EXISTS` alone races on PostgreSQL's catalogs).
const MIGRATE_LOCK: i64 = 0x6a6f_6273_6f75_7462; // "jobsoutb"

/// Creates the outbox's tables in `pool`'s database if they are missing: `jobs_outbox`,
/// `jobs_unique`, `jobs_inbox` and the trigger that wakes the relays. Safe to call from every
/// process at start, at once.
///
/// # Errors
///
/// When the database refuses the statements (for example, the role may not create tables).
pub async fn migrate(pool: &PgPool) -> crate::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
