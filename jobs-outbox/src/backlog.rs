//! What waits in the outbox, for monitoring: the age of its oldest row, the lag an alert
//! watches (rows pile up when no relay runs or the broker refuses them).

use std::time::Duration;

use sqlx::PgPool;

use crate::Result;

/// How long the oldest job in `pool`'s outbox has waited, by the database's clock; `None`
/// when the outbox is empty. One index lookup (the oldest row is the one with the lowest
/// id), whatever the backlog: cheap enough for every scrape.
///
/// # Errors
///
/// A database error.
pub async fn oldest_waiting(pool: &PgPool) -> Result<Option<Duration>> {
    let age: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - created_at), 0)::float8 \
         FROM jobs_outbox ORDER BY id LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(age.map(|seconds| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)))
}
