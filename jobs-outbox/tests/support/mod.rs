//! A database of its own for each test: a fresh schema, the outbox's tables in it.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A pool whose connections work in schema `name`, dropped and created anew with the outbox's
/// tables, or `None` when no PostgreSQL answers (the test skips, see `postgres_url`).
pub(crate) async fn fresh_pool(name: &str) -> Option<PgPool> {
    let url = jobs_outbox::testing::fresh_schema(name).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
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
