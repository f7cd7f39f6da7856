//! The tables: [`migrate`] creates them.

use sqlx::PgPool;

/// The SQL that creates the outbox's tables, trigger and indexes. Idempotent; copy it into an
/// application's own migrations to manage it there instead of calling [`migrate`].
pub const SCHEMA: &str = include_str!("schema.sql");

/// A lock key of its own, so that relays starting together apply the schema one at a time
/// (`CREATE ... IF NOT EXISTS` alone races on PostgreSQL's catalogs).
const MIGRATE_LOCK: i64 = 0x6a6f_6273_6f75_7462; // "jobsoutb"

/// Whether every object of [`SCHEMA`] is in the schema it creates them in (the first of the
/// search path), read from the catalog alone: no lock on the tables.
const PRESENT: &str = "SELECT \
    (SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
       AND relname IN ('jobs_outbox', 'jobs_outbox_due', 'jobs_unique', \
                       'jobs_unique_message_id', 'jobs_inbox', 'jobs_inbox_handled_at')) = 6 \
    AND EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = current_schema()::regnamespace \
       AND proname = 'jobs_outbox_notify') \
    AND EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
       WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'jobs_outbox' \
       AND t.tgname = 'jobs_outbox_notify')";

/// Creates the outbox's tables in `pool`'s database if they are missing: `jobs_outbox`,
/// `jobs_unique`, `jobs_inbox` and the trigger that wakes the relays. Safe to call from every
/// process at start, at once, and beside a running application: when everything is there it
/// only reads the catalog. (Applying [`SCHEMA`] again locks the three tables, in an order
/// opposite to a handler's inbox transaction's: a relay starting beside busy handlers
/// deadlocked with them, PostgreSQL aborting some of their transactions and the relay's
/// migration, and it held up the application's writes while it waited.)
///
/// # Errors
///
/// When the database refuses the statements (for example, the role may not create tables).
pub async fn migrate(pool: &PgPool) -> crate::Result<()> {
    let present: Option<bool> = sqlx::query_scalar(PRESENT).fetch_one(pool).await?;
    if present == Some(true) {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Turns on or off the trigger's notification at each commit that writes jobs (on after
/// [`migrate`]). A notifying commit takes a lock that PostgreSQL holds through the commit's
/// flush, for the whole cluster, so commits that write jobs one at a time are serialised: on
/// the development machine, 32 writers of one job per transaction committed 1,800 a second
/// with it and 3,400 without. Off, relays poll instead, every
/// [`fast_poll_every`](crate::Relay::fast_poll_every) (100 ms by default), so a job waits for
/// the next poll after its commit (70 ms at the median there, against 4 ms). Relays read the
/// setting every 30 s. It is a table setting (`ALTER TABLE … DISABLE TRIGGER`), kept across
/// restarts and [`migrate`].
///
/// # Errors
///
/// When the database refuses (the role must own the table).
pub async fn set_notify(pool: &PgPool, on: bool) -> crate::Result<()> {
    let statement = if on {
        "ALTER TABLE jobs_outbox ENABLE TRIGGER jobs_outbox_notify"
    } else {
        "ALTER TABLE jobs_outbox DISABLE TRIGGER jobs_outbox_notify"
    };
    sqlx::query(statement).execute(pool).await?;
    Ok(())
}

/// Whether the outbox's trigger notifies: present and not disabled.
pub(crate) async fn notifies(pool: &PgPool) -> crate::Result<bool> {
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT t.tgenabled <> 'D' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'jobs_outbox' \
         AND t.tgname = 'jobs_outbox_notify'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(enabled.unwrap_or(false))
}
