//! Pointing a broker URL at the proxy.

use std::net::SocketAddr;

/// `url` with its `host:port` replaced by `addr`, keeping the scheme, credentials, vhost and
/// query: `amqp://guest:guest@127.0.0.1:5672/%2f` through `127.0.0.1:40000` is
/// `amqp://guest:guest@127.0.0.1:40000/%2f`.
#[must_use]
pub fn url_through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let credentials = authority
        .rsplit_once('@')
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{credentials}{addr}{tail}")
}

/// The `host:port` a broker URL points at (port 5672 when it names none).
#[must_use]
pub fn target_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_everything_but_the_address() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        assert_eq!(
            url_through("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=2", addr),
            "amqp://guest:guest@127.0.0.1:40000/%2f?heartbeat=2"
        );
        assert_eq!(
            url_through("amqp://localhost", addr),
            "amqp://127.0.0.1:40000"
        );
        assert_eq!(target_of("amqp://u:p@broker/%2f"), "broker:5672");
        assert_eq!(target_of("amqp://u:p@127.0.0.1:5673/x"), "127.0.0.1:5673");
    }
}
