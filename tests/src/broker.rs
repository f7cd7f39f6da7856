//! The RabbitMQ broker of the `amqp_*` tests, or the reason they skip.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The default broker: the one on loopback, as guest.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL (`JOBS_AMQP_URL`, or [`DEFAULT_URL`]) when it answers.
///
/// When it does not answer, the test skips: this prints why and returns `None`. With
/// `JOBS_REQUIRE_BROKER` set (CI sets it) it panics instead, so that CI can never go green by
/// skipping broker tests.
///
/// # Panics
///
/// When no broker answers and `JOBS_REQUIRE_BROKER` is set.
#[must_use]
pub fn url_or_skip() -> Option<String> {
    let url = std::env::var("JOBS_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    if answers(&url) {
        Some(url)
    } else if std::env::var_os("JOBS_REQUIRE_BROKER").is_some() {
        panic!(
            "no RabbitMQ answers at {} and JOBS_REQUIRE_BROKER is set",
            redact(&url)
        );
    } else {
        eprintln!(
            "skipped: no RabbitMQ answers at {} (set JOBS_AMQP_URL, or run scripts/test)",
            redact(&url)
        );
        None
    }
}

/// `url` with its password replaced by `**`.
#[must_use]
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:**@{host}")
        }
        None => url.to_owned(),
    }
}

fn answers(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_only() {
        assert_eq!(
            redact("amqp://guest:s3cret@host:5672/%2f"),
            "amqp://guest:**@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host/%2f"), "amqp://host/%2f");
    }
}
