//! The PostgreSQL of tests that need one, or the reason they skip, and a schema of a test's own
//! on it.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The database tests use when `JOBS_POSTGRES_URL` is not set: the local one, as `postgres`.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the PostgreSQL for a test (`JOBS_POSTGRES_URL`, or [`DEFAULT_POSTGRES_URL`])
/// when it answers; otherwise the test should skip: this prints why and returns `None`.
///
/// # Panics
///
/// When none answers and `JOBS_REQUIRE_POSTGRES` is set (CI sets it), so that a suite can never
/// pass by skipping its database tests.
#[must_use]
pub fn postgres_url() -> Option<String> {
    let url =
        std::env::var("JOBS_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let address = host_port(&url);
    let answers = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if answers {
        return Some(url);
    }
    assert!(
        std::env::var_os("JOBS_REQUIRE_POSTGRES").is_none(),
        "no PostgreSQL answers at {address} and JOBS_REQUIRE_POSTGRES is set"
    );
    eprintln!(
        "skipped: no PostgreSQL answers at {address} (set JOBS_POSTGRES_URL, or run scripts/postgres)"
    );
    None
}

/// Drops schema `schema` on the PostgreSQL at `url`, with everything in it, and creates it
/// anew: a test's own, empty.
///
/// # Panics
///
/// When the server refuses the connection or the statements (a test has nothing to go on).
pub async fn reset_schema(url: &str, schema: &str) {
    let admin = sqlx::PgPool::connect(url)
        .await
        .expect("PostgreSQL accepts a connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    )))
    .execute(&admin)
    .await
    .expect("a fresh schema");
    admin.close().await;
}

/// `url` with `schema` as its connections' `search_path`: what a pool, the worker's
/// `--outbox-url` or a relay connects with to find the outbox's tables there.
#[must_use]
pub fn schema_url(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// The URL of schema `name` of the test's PostgreSQL ([`postgres_url`]), dropped and created
/// anew ([`reset_schema`], [`schema_url`]), or `None` when no PostgreSQL answers: the test
/// skips.
///
/// # Panics
///
/// As [`postgres_url`] and [`reset_schema`] do.
pub async fn fresh_schema(name: &str) -> Option<String> {
    let url = postgres_url()?;
    reset_schema(&url, name).await;
    Some(schema_url(&url, name))
}

/// `host:port` of a `postgres://` URL (the port 5432 when it has none); no credentials.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

#[cfg(test)]
mod tests {
    use super::{host_port, schema_url};

    #[test]
    fn a_schema_url_adds_its_search_path_to_the_query() {
        assert_eq!(
            schema_url("postgres://db/app", "s1"),
            "postgres://db/app?options=-csearch_path%3Ds1"
        );
        assert_eq!(
            schema_url("postgres://db/app?sslmode=disable", "s1"),
            "postgres://db/app?sslmode=disable&options=-csearch_path%3Ds1"
        );
    }

    #[test]
    fn the_address_leaves_out_the_credentials() {
        assert_eq!(host_port("postgres://u:secret@db:6543/app"), "db:6543");
        assert_eq!(host_port("postgres://db/app?sslmode=disable"), "db:5432");
    }
}
