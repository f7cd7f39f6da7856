//! The operator's dashboard, served at `/` of the worker's HTTP address: its page, and the
//! JSON API the page reads and acts through (see `docs/dashboard.md`).
//!
//! It shows the fleet, not only this worker: queue counts come from the broker, counters and
//! rates from every worker's reports ([`Fleet`]), paused states from the broker. Read-only
//! endpoints are open; every action needs the dashboard token ([`guard`]).

mod errors;
mod guard;
mod overview;
mod shared_read;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobs_core::JobSettings;
use jobs_core::transport::Transport;

use crate::config::DashboardToken;
use crate::fleet::Fleet;

/// The page: one file, its styles and scripts inline, so it works offline.
const PAGE: &str = include_str!("page.html");
/// The largest action body read.
const MAX_BODY: usize = 16 * 1024;

/// What the dashboard serves from.
#[derive(Debug)]
pub(crate) struct Dashboard {
    /// The jobs this worker serves, with their options resolved.
    pub(crate) jobs: Vec<JobSettings>,
    /// The broker, once connected.
    pub(crate) transport: Arc<OnceLock<Arc<dyn Transport>>>,
    /// The token actions need; none turns them off.
    pub(crate) token: Option<DashboardToken>,
    /// The fleet's reports.
    pub(crate) fleet: Arc<Fleet>,
    /// This worker's connection name.
    pub(crate) name: String,
    /// Error-queue reads and actions, one at a time.
    pub(crate) errors: errors::Errors,
    /// The last overview, shared by every viewer for a moment; cleared by each action.
    overview: shared_read::SharedRead,
    /// The outbox relay the worker runs, if it runs one.
    #[cfg(feature = "outbox")]
    outbox: Option<Arc<crate::outbox::RelayStatus>>,
}

impl Dashboard {
    /// A dashboard of `jobs`, reading the broker through `transport` once it is set.
    pub(crate) fn new(
        jobs: Vec<JobSettings>,
        transport: Arc<OnceLock<Arc<dyn Transport>>>,
        token: Option<DashboardToken>,
        fleet: Arc<Fleet>,
        name: String,
    ) -> Self {
        Self {
            jobs,
            transport,
            token,
            fleet,
            name,
            errors: errors::Errors::default(),
            overview: shared_read::SharedRead::default(),
            #[cfg(feature = "outbox")]
            outbox: None,
        }
    }

    /// This dashboard showing the outbox relay `status` beside the jobs.
    #[cfg(feature = "outbox")]
    pub(crate) fn with_outbox(mut self, status: Option<Arc<crate::outbox::RelayStatus>>) -> Self {
        self.outbox = status;
        self
    }

    /// The broker, or a 503 while the worker is not connected yet.
    fn broker(&self) -> Result<Arc<dyn Transport>, ApiError> {
        self.transport.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker is not connected to the broker yet",
            )
        })
    }

    /// The served job named `name`, or a 404.
    fn job(&self, name: &str) -> Result<&JobSettings, ApiError> {
        self.jobs
            .iter()
            .find(|settings| settings.job().name() == name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such job on this worker"))
    }
}

/// The dashboard's routes: the page and the API.
pub(crate) fn routes(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/overview", get(overview::overview))
        .route("/api/errors", get(errors::groups))
        .route("/api/errors/messages", get(errors::messages))
        .route("/api/errors/message", get(errors::message))
        .route("/api/errors/replay", post(errors::replay))
        .route("/api/errors/delete", post(errors::delete))
        .route("/api/errors/purge", post(errors::purge))
        .route("/api/jobs/pause", post(overview::pause))
        .route("/api/jobs/resume", post(overview::resume))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(dashboard)
}

/// The page, with headers that keep it from being framed or loading anything from elsewhere.
async fn page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An API error: a status and `{"error": text}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    text: String,
}

impl ApiError {
    /// An error with `status` saying `text`.
    pub(crate) fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            text: text.into(),
        }
    }

    /// A 502 for a broker operation that failed.
    pub(crate) fn broker(doing: &str, err: &jobs_core::Error) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, format!("{doing}: {err}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.text })),
        )
            .into_response()
    }
}

/// The JSON body of an action, read by hand so that every refusal is an [`ApiError`].
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected content-type: application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, format!("bad request body: {err}")))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .unwrap_or(0)
}
