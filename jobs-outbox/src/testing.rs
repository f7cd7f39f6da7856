//! The PostgreSQL of tests that need one, or the reason they skip.

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
    use super::host_port;

    #[test]
    fn the_address_leaves_out_the_credentials() {
        assert_eq!(host_port("postgres://u:secret@db:6543/app"), "db:6543");
        assert_eq!(host_port("postgres://db/app?sslmode=disable"), "db:5432");
    }
}
