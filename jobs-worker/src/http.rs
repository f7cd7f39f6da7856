//! A small HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`.
//!
//! Only `GET` (and `HEAD`) of those three paths; every response closes its connection. A
//! request that is malformed, too large or too slow gets a 400 or just a closed socket; nothing
//! a client sends can panic the worker. At most [`MAX_CONNECTIONS`] connections are served at
//! once (more are closed at once), and each has [`CONNECTION_DEADLINE`] for its request and
//! response together, so a client that never sends or never reads holds nothing for long.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; probes and a scraper need a handful.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long one connection may take, request and response together.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// What the endpoints report.
#[derive(Clone)]
pub(crate) struct Probes {
    /// Whether the worker is ready (every consumer attached).
    pub(crate) ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Each job served, and whether it is paused (`jobs_core::control`).
    pub(crate) paused: Arc<dyn Fn() -> Vec<(&'static str, bool)> + Send + Sync>,
}

/// Serves `probes` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, probes: Probes) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(
                "metrics server: {MAX_CONNECTIONS} connections open; closing a new one"
            );
            drop(stream);
            continue;
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_DEADLINE, respond(stream, &probes)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(error = %err, "metrics server: connection failed"),
                Err(_) => tracing::debug!("metrics server: a connection ran past its deadline"),
            }
        });
    }
}

async fn respond(mut stream: TcpStream, probes: &Probes) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut head)).await;
    let (status, content_type, body, head_only) = match read {
        Ok(Ok(true)) => route(&head, probes),
        Ok(Ok(false)) => (400, "text/plain", "bad request\n".to_owned(), false),
        Ok(Err(err)) => return Err(err),
        Err(_) => (408, "text/plain", "request timeout\n".to_owned(), false),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads until the end of the request head; `false` when it is too large or the client
/// closed first.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buf = [0_u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(true);
        }
        if head.len() > MAX_HEAD {
            return Ok(false);
        }
    }
}

fn route(head: &[u8], probes: &Probes) -> (u16, &'static str, String, bool) {
    let Ok(head) = std::str::from_utf8(head) else {
        return (400, "text/plain", "bad request\n".to_owned(), false);
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (400, "text/plain", "bad request\n".to_owned(), false);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return (400, "text/plain", "bad request\n".to_owned(), false);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (405, "text/plain", "method not allowed\n".to_owned(), false),
    };
    let path = target.split('?').next().unwrap_or(target);
    let (status, content_type, body) = match path {
        "/healthz" => (200, "text/plain", "ok\n".to_owned()),
        "/readyz" if (probes.ready)() => (200, "text/plain", "ready\n".to_owned()),
        "/readyz" => (503, "text/plain", "not ready\n".to_owned()),
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            probes.metrics.render() + &crate::metrics::paused_gauge(&(probes.paused)()),
        ),
        _ => (404, "text/plain", "not found\n".to_owned()),
    };
    (status, content_type, body, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_probes_and_rejects_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let probes = Probes {
            ready: Arc::new(move || flag.load(std::sync::atomic::Ordering::Relaxed)),
            metrics: Arc::new(Metrics::new(std::iter::empty())),
            paused: Arc::new(Vec::new),
        };
        let server = tokio::spawn(serve(listener, probes));

        assert!(
            get(addr, b"GET /healthz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get(addr, b"GET /readyz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 503")
        );
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            get(addr, b"GET /readyz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        let metrics = get(addr, b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await;
        assert!(metrics.contains("version=0.0.4"), "{metrics}");
        assert!(
            get(addr, b"GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get(addr, b"POST /healthz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(addr, b"\xff\xfe garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(get(addr, b"GET\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        let mut big = TcpStream::connect(addr).await.unwrap();
        let _ = big.write_all(&[b'a'; 9_000]).await;
        let mut out = Vec::new();
        let _ = big.read_to_end(&mut out).await;
        // Still serving after all that.
        assert!(
            get(addr, b"GET /healthz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_hold_a_bounded_number_of_connections_for_a_bounded_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probes = Probes {
            ready: Arc::new(|| true),
            metrics: Arc::new(Metrics::new(std::iter::empty())),
            paused: Arc::new(Vec::new),
        };
        let server = tokio::spawn(serve(listener, probes));
        // Clients that connect and never send a byte.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // On the paused clock this returns once the server has taken them all, well before the
        // read timeout.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        refused.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty(), "over the bound, closed without an answer");

        // Past the deadline each idle connection is answered and closed; then others are served.
        for stream in &mut idle {
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out).await;
            assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        }
        drop(idle);
        assert!(
            get(addr, b"GET /healthz HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        server.abort();
    }
}
