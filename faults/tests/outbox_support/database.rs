//! A PostgreSQL schema of the scenario's own: the outbox's tables, the application's orders and
//! the handler's effects, and the counts the scenario reads from them.

use std::collections::BTreeSet;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The application's table (`faults_orders`, the data a job is about) and the handler's
/// (`faults_effects`, one row per effect). The effects have no unique key on purpose: an
/// effect made twice must show as two rows, not as a failed insert.
const TABLES: &str = "CREATE TABLE faults_orders (id bigint PRIMARY KEY);
    CREATE TABLE faults_effects (id bigint NOT NULL, message_id text NOT NULL);";

/// A fresh schema on the test's PostgreSQL, with the outbox's tables (`jobs_outbox::migrate`)
/// and the scenario's. Its connections find the tables through `search_path`.
#[derive(Debug)]
pub(crate) struct Database {
    /// The schema's name.
    schema: String,
    /// The server's URL, without the schema.
    url: String,
    /// Connections in the schema, for the application, the handlers and the checks.
    pool: PgPool,
}

impl Database {
    /// Drops and creates schema `name_<pid>` (the pid, so that two runs on one server never
    /// share it), or `None` when no PostgreSQL answers: the test skips, as
    /// `jobs_outbox::testing::postgres_url` says (or it panics under `JOBS_REQUIRE_POSTGRES`).
    pub(crate) async fn fresh(name: &str) -> Option<Self> {
        let url = jobs_outbox::testing::postgres_url()?;
        let schema = format!("{name}_{}", std::process::id());
        jobs_outbox::testing::reset_schema(&url, &schema).await;
        let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        // The application's transactions and the handlers (32 at once) share these.
        let pool = PgPoolOptions::new()
            .max_connections(24)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .expect("PostgreSQL accepts connections");
        jobs_outbox::migrate(&pool)
            .await
            .expect("the outbox's tables");
        sqlx::raw_sql(TABLES)
            .execute(&pool)
            .await
            .expect("the scenario's tables");
        Some(Self { schema, url, pool })
    }

    /// The pool of connections in the schema.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The URL a relay process connects with: the schema as its `search_path`, and
    /// `application` as its sessions' `application_name`.
    pub(crate) fn url_for(&self, application: &str) -> String {
        let join = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{join}options%5Bsearch_path%5D={}&application_name={application}",
            self.url, self.schema
        )
    }

    /// The server's `host:port`, for a proxy in front of it.
    pub(crate) fn server(&self) -> String {
        let options: PgConnectOptions = self.url.parse().expect("a PostgreSQL URL");
        format!("{}:{}", options.get_host(), options.get_port())
    }

    /// A pool of `connections` in the schema, for an in-process relay: its own connections,
    /// as a relay process would have.
    pub(crate) async fn relay_pool(&self, application: &str, connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(connections)
            .connect(&self.url_for(application))
            .await
            .expect("PostgreSQL accepts the relay's connections")
    }

    /// Whether a session of `application` listens for the outbox's notifications: a relay
    /// listens before its first pass, once connected to both the broker and the database.
    pub(crate) async fn listening(&self, application: &str) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE 'LISTEN%')",
        )
        .bind(application)
        .fetch_one(&self.pool)
        .await
        .expect("pg_stat_activity")
    }

    /// Whether a session of `application` is in the middle of a relay's pass: in a
    /// transaction that has locked rows (`FOR UPDATE` gives it a transaction id; a pass that
    /// found none has none) and waits on its client, which publishes them.
    pub(crate) async fn in_pass(&self, application: &str) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'idle in transaction' AND backend_xid IS NOT NULL)",
        )
        .bind(application)
        .fetch_one(&self.pool)
        .await
        .expect("pg_stat_activity")
    }

    /// Makes every delete from the outbox wait while [`hold_deletes`](Self::hold_deletes)
    /// holds: a relay that has its confirms then stops before it deletes the rows and commits,
    /// to be killed just there. A trigger of the scenario's schema, taking the shared side of
    /// an advisory lock that the holder takes exclusively.
    pub(crate) async fn install_hold(&self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE FUNCTION faults_hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN OLD; END $$; \
             CREATE TRIGGER faults_hold_delete BEFORE DELETE ON jobs_outbox \
             FOR EACH ROW EXECUTE FUNCTION faults_hold_delete();",
            key = hold_key()
        )))
        .execute(&self.pool)
        .await
        .expect("the trigger that holds deletes");
    }

    /// Holds every delete from the outbox (see [`install_hold`](Self::install_hold)) until
    /// the returned hold is released.
    pub(crate) async fn hold_deletes(&self) -> Hold {
        let mut connection = self.pool.acquire().await.expect("a connection");
        // A session lock, on a connection kept out of the pool until released.
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(hold_key())
            .execute(&mut *connection)
            .await
            .expect("the hold's lock");
        Hold { connection }
    }

    /// Whether a session of `application` waits on the hold: a relay with its confirms, before
    /// its commit.
    pub(crate) async fn held(&self, application: &str) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory')",
        )
        .bind(application)
        .fetch_one(&self.pool)
        .await
        .expect("pg_stat_activity")
    }

    /// Rows in the outbox: committed jobs the relays have not deleted yet.
    pub(crate) async fn outbox_rows(&self) -> u64 {
        self.count("SELECT count(*) FROM jobs_outbox").await
    }

    /// Committed orders.
    pub(crate) async fn orders(&self) -> u64 {
        self.count("SELECT count(*) FROM faults_orders").await
    }

    /// Rows in the inbox: messages recorded as handled.
    pub(crate) async fn inbox_rows(&self) -> u64 {
        self.count("SELECT count(*) FROM jobs_inbox").await
    }

    /// The handler's effects: how many rows, and the distinct ids they are about.
    pub(crate) async fn effects(&self) -> (u64, BTreeSet<u64>) {
        let rows = self.count("SELECT count(*) FROM faults_effects").await;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT id FROM faults_effects")
            .fetch_all(&self.pool)
            .await
            .expect("the effects' ids");
        let ids = ids
            .into_iter()
            .map(|id| u64::try_from(id).expect("ids are positive"))
            .collect();
        (rows, ids)
    }

    /// Drops the schema and closes the pool.
    pub(crate) async fn remove(self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await
        .expect("the schema is dropped");
        self.pool.close().await;
    }

    async fn count(&self, query: &'static str) -> u64 {
        let count: i64 = sqlx::query_scalar(query)
            .fetch_one(&self.pool)
            .await
            .expect("a count");
        u64::try_from(count).expect("a count is positive")
    }
}

/// The deletes from the outbox held: [`Database::hold_deletes`].
#[derive(Debug)]
pub(crate) struct Hold {
    /// The session holding the advisory lock.
    connection: PoolConnection<Postgres>,
}

impl Hold {
    /// Lets the deletes go on.
    pub(crate) async fn release(mut self) {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(hold_key())
            .execute(&mut *self.connection)
            .await
            .expect("the hold's lock is released");
    }
}

/// The advisory lock of the hold: advisory locks are the whole server's, so the test's pid
/// is in it.
fn hold_key() -> i64 {
    0x6661_756c_7473_0000 ^ i64::from(std::process::id())
}
