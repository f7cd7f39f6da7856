//! The worker's HTTP server: `/healthz`, `/readyz`, `/metrics` and the dashboard, axum's
//! router on hyper's HTTP/1.1 connections.
//!
//! Limits, so that no client holds the worker's resources: at most [`MAX_CONNECTIONS`]
//! connections at once (more are closed at once), a request head of at most [`MAX_HEAD`] bytes
//! read within [`HEAD_TIMEOUT`], and [`CONNECTION_DEADLINE`] for a connection as a whole,
//! keep-alive included. Request bodies (the dashboard's actions) are bounded by the dashboard.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::future::join_all;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jobs_core::JobSettings;
use jobs_core::transport::Transport;
use tokio::net::TcpListener;

use crate::dashboard::{self, Dashboard};
use crate::metrics::Metrics;
use crate::queues;

/// The largest request head read.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long a client has to send a request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; probes, a scraper and a few dashboards need a handful.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long one connection may stay open, its requests and responses together: long enough
/// for a dashboard action walking a large error queue.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(120);
/// How long the broker's queue counts are reused by `/metrics`.
const GAUGES_FRESH_FOR: Duration = Duration::from_secs(1);
/// How long `/metrics` waits for the broker's queue counts before leaving them out.
const COUNTS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probes and `/metrics` report.
#[derive(Clone)]
pub(crate) struct Probes {
    /// Whether the worker is ready (every consumer attached).
    pub(crate) ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Each job served, and whether it is paused (`jobs_core::control`).
    pub(crate) paused: Arc<dyn Fn() -> Vec<(&'static str, bool)> + Send + Sync>,
    /// The jobs served, whose queues' counts `/metrics` reads from the broker.
    pub(crate) jobs: Arc<Vec<JobSettings>>,
    /// The broker, once connected.
    pub(crate) transport: Arc<OnceLock<Arc<dyn Transport>>>,
    /// The last queue gauges read from the broker, and when.
    pub(crate) gauges: Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, String)>>>,
    /// The outbox relay the worker runs, if it runs one.
    #[cfg(feature = "outbox")]
    pub(crate) outbox: Option<Arc<crate::outbox::RelayStatus>>,
}

/// The routes: the probes, the metrics, and the dashboard when there is one.
pub(crate) fn router(probes: Probes, dashboard: Option<Arc<Dashboard>>) -> Router {
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes);
    match dashboard {
        Some(dashboard) => probes.merge(dashboard::routes(dashboard)),
        None => probes,
    }
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    if (probes.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    let mut body = probes.metrics.render() + &crate::metrics::paused_gauge(&(probes.paused)());
    // Read at once: a broker and a database that do not answer take 5 s each at most, and
    // together not twice that.
    let outbox = async {
        #[cfg(feature = "outbox")]
        if let Some(outbox) = &probes.outbox {
            return outbox.render().await;
        }
        String::new()
    };
    let (queues, outbox) = tokio::join!(queue_gauges(&probes), outbox);
    body.push_str(&queues);
    body.push_str(&outbox);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// The queue gauges, read from the broker at most once per [`GAUGES_FRESH_FOR`]: a client
/// polling `/metrics` fast costs the broker a passive declare per queue once a second, not on
/// every request. Scrapes at once wait for one read.
async fn queue_gauges(probes: &Probes) -> String {
    let Some(transport) = probes.transport.get() else {
        return String::new();
    };
    let mut last = probes.gauges.lock().await;
    if let Some((at, gauges)) = last.as_ref()
        && at.elapsed() < GAUGES_FRESH_FOR
    {
        return gauges.clone();
    }
    let counts = join_all(
        probes
            .jobs
            .iter()
            .map(|settings| queues::read(transport.as_ref(), settings)),
    );
    // A broker that does not answer leaves the gauges out, never the scrape.
    let Ok(counts) = tokio::time::timeout(COUNTS_TIMEOUT, counts).await else {
        return String::new();
    };
    let named: Vec<(&str, Vec<queues::QueueCounts>)> = probes
        .jobs
        .iter()
        .map(|settings| settings.job().name())
        .zip(counts)
        .collect();
    let gauges = crate::metrics::queue_gauges(&named);
    *last = Some((tokio::time::Instant::now(), gauges.clone()));
    gauges
}

/// Serves `router` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "http server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("http server: {MAX_CONNECTIONS} connections open; closing a new one");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(error = %err, "http server: connection failed"),
                Err(_) => tracing::debug!("http server: a connection ran past its deadline"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    fn probes(ready: Arc<dyn Fn() -> bool + Send + Sync>) -> Probes {
        Probes {
            ready,
            metrics: Arc::new(Metrics::new(std::iter::empty())),
            paused: Arc::new(Vec::new),
            jobs: Arc::new(Vec::new()),
            transport: Arc::new(OnceLock::new()),
            gauges: Arc::default(),
            #[cfg(feature = "outbox")]
            outbox: None,
        }
    }

    #[tokio::test]
    async fn answers_probes_and_rejects_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let probes = probes(Arc::new(move || {
            flag.load(std::sync::atomic::Ordering::Relaxed)
        }));
        let server = tokio::spawn(serve(listener, router(probes, None)));

        let close = "Connection: close\r\n\r\n";
        let request = |line: &str| format!("{line}\r\n{close}").into_bytes();
        assert!(
            get(addr, &request("GET /healthz HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get(addr, &request("GET /readyz HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 503")
        );
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            get(addr, &request("GET /readyz HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        let metrics = get(addr, b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await;
        assert!(metrics.contains("version=0.0.4"), "{metrics}");
        assert!(
            get(addr, &request("GET /nope HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get(addr, &request("POST /healthz HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            get(addr, b"\xff\xfe garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        // A head over the limit is refused, not read on.
        let mut big = TcpStream::connect(addr).await.unwrap();
        let mut huge = b"GET /healthz HTTP/1.1\r\nx-big: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1024));
        let _ = big.write_all(&huge).await;
        let mut out = Vec::new();
        let _ = big.read_to_end(&mut out).await;
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // Still serving after all that; without the dashboard, `/` is not served.
        assert!(
            get(addr, &request("GET /healthz HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get(addr, &request("GET / HTTP/1.1"))
                .await
                .starts_with("HTTP/1.1 404")
        );
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_hold_a_bounded_number_of_connections_for_a_bounded_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, router(probes(Arc::new(|| true)), None)));
        // Clients that connect and never send a byte.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // On the paused clock this returns once the server has taken them all, well before the
        // head timeout.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        refused.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty(), "over the bound, closed without an answer");

        // Past the head timeout each idle connection is closed; then others are served.
        for stream in &mut idle {
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out).await;
            assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
        }
        drop(idle);
        assert!(
            get(addr, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        server.abort();
    }
}
