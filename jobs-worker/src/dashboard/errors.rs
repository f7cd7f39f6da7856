//! The error queues on the dashboard: failures grouped by job, kind and error; one failure in
//! full; replay, delete and purge.
//!
//! Every read and action is an [`ErrorQueue::walk`], which never gives a message back to the
//! broker (so reading counts toward no delivery limit) and acks a replayed message only after
//! the broker confirmed its replay; messages that arrive during a walk are left for the next.
//! Walks of this worker run one at a time, so two tabs cannot split a queue between them. A
//! listing is kept while its queue's count is unchanged, for [`FRESH_FOR`] at most, so a page
//! polling every few seconds does not rewrite the queue each time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use jobs_core::error_queue::{Action, ErrorQueue, Walked};
use jobs_core::{FailedJob, JobSettings};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{ApiError, Dashboard, guard, json_body};

/// The most messages of one queue a listing reads.
const MAX_LISTED: u64 = 10_000;
/// The most messages one `messages` answer holds.
const MAX_MESSAGES: usize = 500;
/// How long an unchanged queue's listing is reused.
const FRESH_FOR: Duration = Duration::from_secs(30);
/// The most characters of an error's first line kept in a listing.
const MAX_ERROR_CHARS: usize = 300;

/// The listings, behind the lock every walk of this worker takes.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    listings: Mutex<HashMap<String, Listing>>,
}

#[derive(Debug, Clone)]
struct Listing {
    len: u64,
    at: Instant,
    messages: Vec<Summary>,
    truncated: bool,
}

/// One failure, as a listing shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Summary {
    id: Option<String>,
    job: String,
    kind: String,
    /// The error's first line.
    error: String,
    attempt: Option<u32>,
    /// Unix milliseconds.
    failed_at: Option<i64>,
}

impl Summary {
    fn of(failed: &FailedJob, settings: &JobSettings) -> Self {
        Self {
            id: failed.message_id().map(str::to_owned),
            job: failed
                .job()
                .unwrap_or_else(|| settings.job().name())
                .to_owned(),
            kind: kind_of(failed).to_owned(),
            error: first_line(failed),
            attempt: failed.attempt(),
            failed_at: failed.failed_at().map(|secs| secs.saturating_mul(1000)),
        }
    }
}

fn kind_of(failed: &FailedJob) -> &'static str {
    failed.kind().map_or("unknown", |kind| kind.as_str())
}

fn first_line(failed: &FailedJob) -> String {
    failed
        .error_line()
        .unwrap_or("")
        .chars()
        .take(MAX_ERROR_CHARS)
        .collect()
}

impl Errors {
    /// The listing of `queue`, read again when its count changed or it is old.
    async fn listing(
        listings: &mut HashMap<String, Listing>,
        queue: &ErrorQueue,
        settings: &JobSettings,
    ) -> Result<Listing, ApiError> {
        let len = match queue.len().await {
            Ok(len) => len,
            // Not declared yet: nothing failed.
            Err(jobs_core::Error::NotFound { .. }) => 0,
            Err(err) => return Err(ApiError::broker("cannot count the error queue", &err)),
        };
        if let Some(listing) = listings.get(queue.name())
            && listing.len == len
            && listing.at.elapsed() < FRESH_FOR
        {
            return Ok(listing.clone());
        }
        let mut messages = Vec::new();
        if len > 0 {
            let walked = queue
                .walk(Some(MAX_LISTED), |failed| {
                    messages.push(Summary::of(failed, settings));
                    Action::Keep
                })
                .await
                .map_err(|err| ApiError::broker("cannot read the error queue", &err))?;
            stopped(&walked)?;
        }
        let listing = Listing {
            len,
            at: Instant::now(),
            truncated: len > MAX_LISTED,
            messages,
        };
        listings.insert(queue.name().to_owned(), listing.clone());
        Ok(listing)
    }
}

/// A walk that stopped early is an error: a copy the broker refused went back to the queue.
fn stopped(walked: &Walked) -> Result<(), ApiError> {
    match &walked.stopped {
        Some(err) => Err(ApiError::broker("the error queue's walk stopped", err)),
        None => Ok(()),
    }
}

/// The served job whose error queue is `name` (its settings), and that queue.
fn error_queue(dashboard: &Dashboard, name: &str) -> Result<(ErrorQueue, JobSettings), ApiError> {
    let transport = dashboard.broker()?;
    let settings = dashboard
        .jobs
        .iter()
        .find(|settings| settings.error_queue() == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not the error queue of a job of this worker",
            )
        })?;
    Ok((
        ErrorQueue::new(transport, settings.job().queue()),
        settings.clone(),
    ))
}

/// A group of failures.
#[derive(Debug, Serialize)]
pub(super) struct Group {
    job: String,
    queue: String,
    kind: String,
    error: String,
    count: u64,
}

/// The groups of every error queue.
#[derive(Debug, Serialize)]
pub(super) struct Groups {
    groups: Vec<Group>,
    total: u64,
    truncated: bool,
}

/// `GET /api/errors`.
pub(super) async fn groups(
    State(dashboard): State<Arc<Dashboard>>,
) -> Result<Json<Groups>, ApiError> {
    let transport = dashboard.broker()?;
    let mut listings = dashboard.errors.listings.lock().await;
    let mut groups = Vec::new();
    let (mut total, mut truncated) = (0, false);
    for settings in &dashboard.jobs {
        let queue = ErrorQueue::new(Arc::clone(&transport), settings.job().queue());
        let listing = Errors::listing(&mut listings, &queue, settings).await?;
        total += listing.len;
        truncated |= listing.truncated;
        let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for message in &listing.messages {
            *counts
                .entry((&message.job, &message.kind, &message.error))
                .or_default() += 1;
        }
        groups.extend(counts.into_iter().map(|((job, kind, error), count)| Group {
            job: job.to_owned(),
            queue: queue.name().to_owned(),
            kind: kind.to_owned(),
            error: error.to_owned(),
            count,
        }));
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.job.cmp(&b.job)));
    Ok(Json(Groups {
        groups,
        total,
        truncated,
    }))
}

/// Which messages of a queue: the query of `messages`.
#[derive(Debug, Deserialize)]
pub(super) struct Filter {
    queue: String,
    kind: Option<String>,
    error: Option<String>,
}

/// The messages of one queue, or one group of it.
#[derive(Debug, Serialize)]
pub(super) struct Messages {
    messages: Vec<Summary>,
    truncated: bool,
}

/// `GET /api/errors/messages?queue=Q.err&kind=K&error=E`.
pub(super) async fn messages(
    State(dashboard): State<Arc<Dashboard>>,
    Query(filter): Query<Filter>,
) -> Result<Json<Messages>, ApiError> {
    let (queue, settings) = error_queue(&dashboard, &filter.queue)?;
    let mut listings = dashboard.errors.listings.lock().await;
    let listing = Errors::listing(&mut listings, &queue, &settings).await?;
    let mut matching = listing.messages.into_iter().filter(|message| {
        filter
            .kind
            .as_ref()
            .is_none_or(|kind| *kind == message.kind)
            && filter
                .error
                .as_ref()
                .is_none_or(|error| *error == message.error)
    });
    let messages: Vec<Summary> = matching.by_ref().take(MAX_MESSAGES).collect();
    let truncated = listing.truncated || matching.next().is_some();
    Ok(Json(Messages {
        messages,
        truncated,
    }))
}

/// Which message: the query of `message`.
#[derive(Debug, Deserialize)]
pub(super) struct Which {
    queue: String,
    id: String,
}

/// One failure in full.
#[derive(Debug, Serialize)]
pub(super) struct Detail {
    id: Option<String>,
    job: String,
    queue: String,
    kind: String,
    error: String,
    attempt: Option<u32>,
    failed_at: Option<i64>,
    worker: Option<String>,
    headers: Vec<(String, String)>,
    properties: Vec<(&'static str, String)>,
    body: Option<String>,
    body_note: Option<String>,
    body_bytes: usize,
}

/// `GET /api/errors/message?queue=Q.err&id=X`.
pub(super) async fn message(
    State(dashboard): State<Arc<Dashboard>>,
    Query(which): Query<Which>,
) -> Result<Json<Detail>, ApiError> {
    let (queue, settings) = error_queue(&dashboard, &which.queue)?;
    let _walking = dashboard.errors.listings.lock().await;
    let mut found = None;
    let walked = queue
        .walk(None, |failed| {
            if found.is_none() && failed.message_id() == Some(which.id.as_str()) {
                found = Some(failed.clone());
            }
            Action::Keep
        })
        .await
        .map_err(|err| ApiError::broker("cannot read the error queue", &err))?;
    stopped(&walked)?;
    let failed = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no message with this id in the queue",
        )
    })?;
    Ok(Json(detail(&failed, queue.name(), &settings)))
}

fn detail(failed: &FailedJob, queue: &str, settings: &JobSettings) -> Detail {
    let envelope = failed.envelope();
    let p = &envelope.properties;
    let mut properties = Vec::new();
    let mut property = |name, value: Option<String>| {
        if let Some(value) = value {
            properties.push((name, value));
        }
    };
    property("message_id", p.message_id.clone());
    property("type", p.kind.as_deref().map(str::to_owned));
    property("content_type", p.content_type.as_deref().map(str::to_owned));
    property("correlation_id", p.correlation_id.clone());
    property("reply_to", p.reply_to.clone());
    property("timestamp", p.timestamp.map(|t| t.to_string()));
    property("priority", p.priority.map(|n| n.to_string()));
    property("persistent", Some(p.persistent.to_string()));
    let job = settings.job();
    let (body, body_note) = match job.describe(&envelope.body) {
        Some(Ok(text)) => (Some(text), None),
        Some(Err(err)) => (
            None,
            Some(format!("not a valid `{}`: {err}", job.message_type())),
        ),
        None => (None, Some("no job of this worker reads it".to_owned())),
    };
    Detail {
        id: failed.message_id().map(str::to_owned),
        job: failed.job().unwrap_or_else(|| job.name()).to_owned(),
        queue: queue.to_owned(),
        kind: kind_of(failed).to_owned(),
        error: failed.error().unwrap_or("").to_owned(),
        attempt: failed.attempt(),
        failed_at: failed.failed_at().map(|secs| secs.saturating_mul(1000)),
        worker: failed.host().map(str::to_owned),
        headers: p
            .headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_string()))
            .collect(),
        properties,
        body,
        body_note,
        body_bytes: envelope.body.len(),
    }
}

/// What to replay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    queue: Option<String>,
    id: Option<String>,
    kind: Option<String>,
    error: Option<String>,
    #[serde(default)]
    all: bool,
}

/// What a replay did.
#[derive(Debug, Serialize)]
pub(super) struct Replayed {
    replayed: u64,
    not_replayed: u64,
}

/// `POST /api/errors/replay`: one message, a group, a queue, or every queue.
pub(super) async fn replay(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Replayed>, ApiError> {
    guard::authorize(&dashboard, &headers)?;
    let body: ReplayBody = json_body(&headers, &body)?;
    let queues: Vec<String> = match (&body.queue, body.all) {
        (None, true) if body.id.is_none() && body.kind.is_none() && body.error.is_none() => {
            dashboard
                .jobs
                .iter()
                .map(|settings| settings.error_queue().to_owned())
                .collect()
        }
        (Some(queue), false) => vec![queue.clone()],
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "expected {\"queue\": …} with an optional id, kind and error, or {\"all\": true}",
            ));
        }
    };
    let mut listings = dashboard.errors.listings.lock().await;
    let mut replayed = Replayed {
        replayed: 0,
        not_replayed: 0,
    };
    for name in queues {
        let (queue, _) = error_queue(&dashboard, &name)?;
        let walked = queue
            .walk(None, |failed| {
                let chosen = body
                    .id
                    .as_ref()
                    .is_none_or(|id| failed.message_id() == Some(id.as_str()))
                    && body
                        .kind
                        .as_ref()
                        .is_none_or(|kind| kind == kind_of(failed))
                    && body
                        .error
                        .as_ref()
                        .is_none_or(|error| *error == first_line(failed));
                if chosen { Action::Replay } else { Action::Keep }
            })
            .await;
        listings.remove(&name);
        dashboard.overview.clear();
        let walked = match walked {
            Ok(walked) => walked,
            Err(jobs_core::Error::NotFound { .. }) => continue,
            Err(err) => return Err(ApiError::broker("cannot read the error queue", &err)),
        };
        replayed.replayed += walked.replayed;
        replayed.not_replayed += u64::try_from(walked.not_replayed.len()).unwrap_or(u64::MAX);
        stopped(&walked)?;
    }
    tracing::info!(
        replayed = replayed.replayed,
        not_replayed = replayed.not_replayed,
        "dashboard: replayed failures"
    );
    Ok(Json(replayed))
}

/// One message to delete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteBody {
    queue: String,
    id: String,
}

/// `POST /api/errors/delete`: removes the first message with the id.
pub(super) async fn delete(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    guard::authorize(&dashboard, &headers)?;
    let DeleteBody { queue: name, id } = json_body(&headers, &body)?;
    let (queue, _) = error_queue(&dashboard, &name)?;
    let mut listings = dashboard.errors.listings.lock().await;
    let mut done = false;
    let walked = queue
        .walk(None, |failed| {
            if !done && failed.message_id() == Some(id.as_str()) {
                done = true;
                Action::Remove
            } else {
                Action::Keep
            }
        })
        .await
        .map_err(|err| ApiError::broker("cannot read the error queue", &err))?;
    listings.remove(&name);
    dashboard.overview.clear();
    stopped(&walked)?;
    if walked.removed == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no message with this id in the queue",
        ));
    }
    tracing::info!(queue = %name, "dashboard: deleted one failure");
    Ok(Json(serde_json::json!({ "removed": walked.removed })))
}

/// A queue to purge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeBody {
    queue: String,
}

/// `POST /api/errors/purge`: removes every message of one error queue.
pub(super) async fn purge(
    State(dashboard): State<Arc<Dashboard>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    guard::authorize(&dashboard, &headers)?;
    let PurgeBody { queue: name } = json_body(&headers, &body)?;
    let (queue, _) = error_queue(&dashboard, &name)?;
    let mut listings = dashboard.errors.listings.lock().await;
    let purged = queue
        .purge()
        .await
        .map_err(|err| ApiError::broker("cannot purge the error queue", &err))?;
    listings.remove(&name);
    dashboard.overview.clear();
    tracing::info!(queue = %name, purged, "dashboard: purged an error queue");
    Ok(Json(serde_json::json!({ "purged": purged })))
}
