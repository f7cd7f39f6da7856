//! The RabbitMQ broker of tests that need one, or the reason they skip.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::transport::redact_url;

/// The broker tests use when `JOBS_AMQP_URL` is not set: the local one, as guest.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The URL of the broker for a test (`JOBS_AMQP_URL`, or [`DEFAULT_BROKER_URL`]) when it
/// answers; otherwise the test should skip: this prints why and returns `None`.
///
/// With `JOBS_REQUIRE_BROKER` set (CI sets it) a missing broker is a failure instead, so a
/// suite can never pass by skipping its broker tests.
///
/// ```no_run
/// #[tokio::test]
/// async fn roundtrip_on_rabbitmq() {
///     let Some(url) = jobs_core::testing::broker_url() else { return };
///     // … connect to `url` …
/// }
/// ```
///
/// # Panics
///
/// When no broker answers and `JOBS_REQUIRE_BROKER` is set.
#[must_use]
pub fn broker_url() -> Option<String> {
    let url = std::env::var("JOBS_AMQP_URL").unwrap_or_else(|_| DEFAULT_BROKER_URL.to_owned());
    if answers(&url) {
        return Some(url);
    }
    let shown = redact_url(&url);
    assert!(
        std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
        "no RabbitMQ answers at {shown} and JOBS_REQUIRE_BROKER is set"
    );
    eprintln!("skipped: no RabbitMQ answers at {shown} (set JOBS_AMQP_URL, or run scripts/test)");
    None
}

/// Whether something accepts TCP connections at the URL's host and port.
fn answers(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let address = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok())
}
