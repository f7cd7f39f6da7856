//! A database of its own for each test: a fresh schema, the outbox's tables in it.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A pool whose connections work in schema `name`, dropped and created anew with the outbox's
/// tables, or `None` when no PostgreSQL answers (the test skips, see `postgres_url`).
pub(crate) async fn fresh_pool(name: &str) -> Option<PgPool> {
    let url = jobs_outbox::testing::postgres_url()?;
    let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("PostgreSQL accepts a connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name};"
    )))
    .execute(&admin)
    .await
    .expect("a fresh schema");
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", name)]))
        .await
        .expect("PostgreSQL accepts connections");
    jobs_outbox::migrate(&pool)
        .await
        .expect("the outbox's tables");
    Some(pool)
}

/// Rows left in the outbox.
pub(crate) async fn outbox_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs_outbox")
        .fetch_one(pool)
        .await
        .expect("count")
}
