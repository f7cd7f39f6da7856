//! The outbox relay (the `jobs-outbox` crate) run by the worker with `--outbox-url`, beside
//! its jobs, or alone with the `outbox-relay` command.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jobs_core::Producer;
use jobs_core::transport::redact_url;
use jobs_outbox::Relay;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The wait before the relay connects to PostgreSQL again after it could not.
const RECONNECT: Duration = Duration::from_secs(5);
/// How long `/metrics` waits for the outbox's oldest row before reporting the database down.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

/// What `/metrics` reports of the relay: its counters, and the outbox's lag read from the
/// database at each scrape. Empty until the relay has connected.
#[derive(Debug, Default)]
pub(crate) struct RelayStatus(Mutex<Option<(Relay, PgPool)>>);

impl RelayStatus {
    /// Whether the relay has connected to the database (and made its tables).
    fn connected(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// One reading of the relay: its counters, and the outbox's lag read from the database,
    /// waiting for it at most [`LAG_TIMEOUT`] (a database that hangs reads as down).
    pub(crate) async fn read(&self) -> RelayReading {
        let relay = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some((relay, pool)) = relay else {
            return RelayReading::default();
        };
        let oldest = tokio::time::timeout(LAG_TIMEOUT, jobs_outbox::oldest_waiting(&pool))
            .await
            .ok()
            .and_then(Result::ok);
        RelayReading {
            connected: true,
            up: oldest.is_some(),
            oldest_seconds: oldest.map(|oldest| oldest.unwrap_or_default().as_secs_f64()),
            published: relay.published(),
            pushed_back: relay.pushed_back(),
        }
    }

    /// The relay's gauges and counters in the Prometheus text format: `jobs_outbox_up` (the
    /// database answered this scrape), `jobs_outbox_oldest_seconds` (the outbox's lag),
    /// `jobs_outbox_published_total` and `jobs_outbox_pushed_back_total`.
    pub(crate) async fn render(&self) -> String {
        let reading = self.read().await;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "jobs_outbox_up",
            "gauge",
            "1 when the outbox's database answered this scrape; 0 before the relay connects or while the database does not answer.",
            u8::from(reading.up).to_string(),
        );
        if let Some(oldest) = reading.oldest_seconds {
            metric(
                "jobs_outbox_oldest_seconds",
                "gauge",
                "How long the oldest job in the outbox has waited to be relayed; 0 when it is empty.",
                oldest.to_string(),
            );
        }
        if reading.connected {
            metric(
                "jobs_outbox_published_total",
                "counter",
                "Jobs the relay published with a confirm and deleted from the outbox.",
                reading.published.to_string(),
            );
            metric(
                "jobs_outbox_pushed_back_total",
                "counter",
                "Outbox rows whose publish failed for a reason of their own, kept to be tried again later.",
                reading.pushed_back.to_string(),
            );
        }
        out
    }
}

/// What the relay's metrics and the dashboard show of it at one moment.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RelayReading {
    /// Whether the relay has connected to the database (and made its tables).
    pub(crate) connected: bool,
    /// Whether the database answered this reading.
    pub(crate) up: bool,
    /// How long the oldest row has waited, in seconds (0 when the outbox is empty); `None`
    /// when the database did not answer.
    pub(crate) oldest_seconds: Option<f64>,
    /// Rows published with a confirm and deleted since the relay started.
    pub(crate) published: u64,
    /// Rows whose publish failed for a reason of their own, kept to be tried again.
    pub(crate) pushed_back: u64,
}

/// The routes of the relay run alone (`outbox-relay`): `/healthz`, `/readyz` (200 once the
/// relay has connected to the database) and `/metrics` (the relay's, as a worker adds them to
/// its own).
pub(crate) fn router(status: Arc<RelayStatus>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(status)
}

async fn readyz(State(status): State<Arc<RelayStatus>>) -> impl IntoResponse {
    if status.connected() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(status): State<Arc<RelayStatus>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        status.render().await,
    )
}

/// Relays the outbox at `url` with `producer` until `shutdown` completes. A database that
/// cannot be reached or migrated is logged and tried again every few seconds: the worker's
/// jobs go on meanwhile, and the rows wait in the outbox.
pub(crate) async fn relay(
    url: String,
    prune_after: Duration,
    producer: Producer,
    status: &RelayStatus,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let shown = redact_url(&url);
    loop {
        let connecting = async {
            // One connection for the pass's transaction, one to listen, one for `/metrics`.
            let pool = PgPoolOptions::new()
                .max_connections(3)
                .connect(&url)
                .await?;
            jobs_outbox::migrate(&pool).await?;
            Ok::<_, jobs_outbox::Error>(pool)
        };
        let pool = tokio::select! {
            () = &mut shutdown => return,
            connected = connecting => match connected {
                Ok(pool) => pool,
                Err(error) => {
                    let error = jobs_core::transport::redact_text(&error.to_string());
                    tracing::warn!(url = %shown, %error, "outbox relay: cannot use the database; trying again");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(RECONNECT) => continue,
                    }
                }
            },
        };
        tracing::info!(url = %shown, "outbox relay: relaying");
        let relay = Relay::new(pool.clone(), producer.clone()).prune_after(prune_after);
        *status.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((relay.clone(), pool));
        // `run` only returns when shut down: it logs and rides out database and broker errors.
        if let Err(error) = relay.run(&mut shutdown).await {
            tracing::warn!(%error, "outbox relay stopped");
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use jobs_core::transport::memory::MemoryTransport;
    use tower::ServiceExt as _;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_relay_alone_is_ready_once_connected_and_serves_its_metrics() {
        let status = Arc::new(RelayStatus::default());
        let router = router(Arc::clone(&status));
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (code, metrics) = get(&router, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(metrics.contains("\njobs_outbox_up 0\n"), "{metrics}");

        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy("postgres://jobs@127.0.0.1:1/outbox")
            .unwrap();
        let producer = Producer::new(Arc::new(MemoryTransport::new()));
        *status.0.lock().unwrap() = Some((Relay::new(pool.clone(), producer), pool));
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        let (_, metrics) = get(&router, "/metrics").await;
        assert!(
            metrics.contains("\njobs_outbox_published_total 0\n"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn an_outbox_not_connected_or_not_answering_is_reported_down_without_a_lag() {
        let status = RelayStatus::default();
        let before = status.render().await;
        assert!(before.contains("\njobs_outbox_up 0\n"), "{before}");
        assert!(!before.contains("jobs_outbox_oldest_seconds"), "{before}");
        assert!(!before.contains("jobs_outbox_published_total"), "{before}");

        // Nothing listens on port 1: each look at the database fails at once.
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy("postgres://jobs@127.0.0.1:1/outbox")
            .unwrap();
        let producer = Producer::new(Arc::new(MemoryTransport::new()));
        *status.0.lock().unwrap() = Some((Relay::new(pool.clone(), producer), pool));
        let down = status.render().await;
        assert!(down.contains("\njobs_outbox_up 0\n"), "{down}");
        assert!(!down.contains("jobs_outbox_oldest_seconds"), "{down}");
        assert!(down.contains("\njobs_outbox_published_total 0\n"), "{down}");
        assert!(
            down.contains("\njobs_outbox_pushed_back_total 0\n"),
            "{down}"
        );
    }
}
