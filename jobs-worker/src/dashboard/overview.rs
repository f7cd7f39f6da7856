//! `GET /api/overview` (every job, its queues, the fleet's counters and rates, pause and kill
//! switch, schedule; the delay levels; the outbox relay) and the pause and resume actions.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse as _, Response};
use futures_util::future::join_all;
use jobs_core::JobSettings;
use jobs_core::control;
use jobs_core::schedule::Schedule;
use jobs_core::transport::Transport;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{ApiError, Dashboard, guard, json_body, unix_ms};
use crate::fleet::{Rates, Totals, WorkerView};
use crate::queues::{self, DelayLevel, QueueCounts};

/// The overview.
#[derive(Debug, Serialize)]
pub(super) struct Overview {
    worker: WorkerInfo,
    now: i64,
    jobs: Vec<JobInfo>,
    workers: Vec<WorkerView>,
    /// The levels of the delay cascade that hold delayed jobs (every job's: the levels are
    /// shared).
    delayed: Vec<Delayed>,
    /// The outbox relay this worker runs; absent when it runs none.
    #[cfg(feature = "outbox")]
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<crate::outbox::RelayReading>,
}

#[derive(Debug, Serialize)]
struct Delayed {
    queue: String,
    /// How long a message waits in this level.
    wait_ms: u64,
    waiting: u64,
}

impl From<DelayLevel> for Delayed {
    fn from(level: DelayLevel) -> Self {
        Self {
            queue: level.queue,
            wait_ms: u64::try_from(level.wait.as_millis()).unwrap_or(u64::MAX),
            waiting: level.waiting,
        }
    }
}

#[derive(Debug, Serialize)]
struct WorkerInfo {
    name: String,
    /// Whether actions are on (a token is configured).
    actions: bool,
}

#[derive(Debug, Serialize)]
struct JobInfo {
    name: &'static str,
    exchange: &'static str,
    kind: &'static str,
    binding: &'static str,
    queue: &'static str,
    queue_type: &'static str,
    /// `None` when the broker could not be asked.
    paused: Option<bool>,
    tripped: bool,
    queues: Vec<QueueCounts>,
    in_flight: i64,
    totals: Totals,
    rates: Rates,
    schedule: Option<ScheduleInfo>,
}

#[derive(Debug, Serialize)]
struct ScheduleInfo {
    spec: String,
    /// The next slot, in Unix milliseconds; `None` when there is none.
    next: Option<i64>,
}

/// `GET /api/overview`: one reading of the broker serves every viewer for a moment (see
/// [`SharedRead`](super::shared_read::SharedRead)).
pub(super) async fn overview(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let body = dashboard
        .overview
        .get(async || match serde_json::to_vec(&read(&dashboard).await) {
            Ok(json) => Bytes::from(json),
            Err(err) => {
                // Strings, numbers and lists: not expected to happen.
                tracing::error!(error = %err, "dashboard: the overview did not serialize");
                Bytes::from_static(b"{}")
            }
        })
        .await;
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Reads the overview from the broker and the fleet's reports.
async fn read(dashboard: &Dashboard) -> Overview {
    let transport = dashboard.transport.get().cloned();
    let now = Instant::now();
    let jobs = join_all(
        dashboard
            .jobs
            .iter()
            .map(|settings| job_info(dashboard, transport.as_deref(), settings, now)),
    );
    let wall = transport
        .as_ref()
        .map_or_else(std::time::SystemTime::now, |transport| transport.now());
    let delayed = async {
        match &transport {
            // A count the broker refused leaves the levels out of this poll.
            Some(transport) => queues::delayed(transport.as_ref())
                .await
                .map(|levels| levels.into_iter().map(Delayed::from).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    // The outbox beside the broker: a database that hangs costs the page its bound once, not
    // on top of the broker's reads.
    #[cfg(feature = "outbox")]
    let (jobs, delayed, outbox) = tokio::join!(jobs, delayed, outbox(dashboard));
    #[cfg(not(feature = "outbox"))]
    let (jobs, delayed) = tokio::join!(jobs, delayed);
    Overview {
        worker: WorkerInfo {
            name: dashboard.name.clone(),
            actions: dashboard.token.is_some(),
        },
        now: unix_ms(wall),
        jobs,
        workers: dashboard.fleet.workers(now),
        delayed,
        #[cfg(feature = "outbox")]
        outbox,
    }
}

/// The outbox relay's reading, when the worker runs one.
#[cfg(feature = "outbox")]
async fn outbox(dashboard: &Dashboard) -> Option<crate::outbox::RelayReading> {
    match &dashboard.outbox {
        Some(status) => Some(status.read().await),
        None => None,
    }
}

async fn job_info(
    dashboard: &Dashboard,
    transport: Option<&dyn Transport>,
    settings: &JobSettings,
    now: Instant,
) -> JobInfo {
    let job = settings.job();
    let (queues, paused) = match transport {
        Some(transport) => {
            let (queues, paused) = tokio::join!(
                queues::read(transport, settings),
                control::is_paused(transport, job.name())
            );
            (queues, paused.ok())
        }
        None => (
            queues::of(settings)
                .into_iter()
                .map(|(role, name)| QueueCounts {
                    role,
                    name,
                    ready: None,
                    consumers: None,
                })
                .collect(),
            None,
        ),
    };
    let fleet = dashboard.fleet.job(job.name(), now);
    let schedule = job
        .options()
        .schedule
        .and_then(|spec| Schedule::parse(spec).ok())
        .map(|schedule| {
            let wall = transport.map_or_else(std::time::SystemTime::now, Transport::now);
            ScheduleInfo {
                spec: schedule.to_string(),
                next: schedule.next_after(wall).map(unix_ms),
            }
        });
    JobInfo {
        name: job.name(),
        exchange: job.exchange(),
        kind: job.kind().as_str(),
        binding: job.binding(),
        queue: job.queue(),
        queue_type: settings.queue_type().as_str(),
        paused,
        tripped: fleet.tripped,
        queues,
        in_flight: fleet.in_flight,
        totals: fleet.totals,
        rates: fleet.rates,
        schedule,
    }
}

/// The body of a pause or resume.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobAction {
    job: String,
}

/// `POST /api/jobs/pause`.
pub(super) async fn pause(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&dashboard, &headers, &body, true).await
}

/// `POST /api/jobs/resume`.
pub(super) async fn resume(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&dashboard, &headers, &body, false).await
}

async fn set_paused(
    dashboard: &Dashboard,
    headers: &HeaderMap,
    body: &[u8],
    paused: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    guard::authorize(dashboard, headers)?;
    let JobAction { job } = json_body(headers, body)?;
    let name = dashboard.job(&job)?.job().name();
    let transport = dashboard.broker()?;
    let changed = if paused {
        control::pause(transport.as_ref(), name).await
    } else {
        control::resume(transport.as_ref(), name).await
    };
    changed.map_err(|err| ApiError::broker("cannot change the job's state", &err))?;
    dashboard.overview.clear();
    tracing::info!(job = name, paused, "dashboard: job state changed");
    Ok(Json(serde_json::json!({ "paused": paused })))
}
