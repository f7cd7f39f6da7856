//! The HTTP side: `POST /files` stores an upload and enqueues its transfer; `GET /healthz`.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /files`, a `multipart/form-data` body with one `file` field | `202 Accepted`, [`Accepted`] as JSON: the job's message id, where the file is stored, its size |
//! | the file over the limit ([`AppState::with_max_upload`]) | `413 Payload Too Large` |
//! | not multipart, a malformed form, no `file` field, two of them | `400 Bad Request` |
//! | the broker does not take the job | `503 Service Unavailable` |
//! | `GET /healthz` | `200 OK` |
//!
//! Every answer but the `202` is a line of text saying why, and leaves nothing behind: no
//! file stored, no job enqueued.

mod error;
mod file_name;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use jobs_core::Producer;
use serde::{Deserialize, Serialize};

pub use error::UploadError;

/// The largest file accepted by default: 10 MiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 10 * 1024 * 1024;

/// Room for the form around the file (boundaries, part headers, other small fields) in the
/// request's body limit: the file itself is held to the upload limit byte for byte.
const FORM_OVERHEAD: u64 = 64 * 1024;

/// What the server's handlers share: the producer that enqueues transfers, and where uploads
/// are stored.
#[derive(Clone, Debug)]
pub struct AppState {
    producer: Producer,
    upload_dir: Arc<Path>,
    max_upload: u64,
}

impl AppState {
    /// Enqueues through `producer` and stores uploads in `upload_dir`, with the default limit
    /// ([`DEFAULT_MAX_UPLOAD`]).
    ///
    /// The job reads each file at the path the server stored it under, so the directory must
    /// exist and be the same path for the workers (the same host, or a shared volume): give an
    /// absolute path.
    pub fn new(producer: Producer, upload_dir: impl Into<PathBuf>) -> Self {
        Self {
            producer,
            upload_dir: upload_dir.into().into(),
            max_upload: DEFAULT_MAX_UPLOAD,
        }
    }

    /// Refuses files over `bytes` with `413 Payload Too Large`.
    #[must_use]
    pub fn with_max_upload(mut self, bytes: u64) -> Self {
        self.max_upload = bytes;
        self
    }

    /// The directory uploads are stored in.
    #[must_use]
    pub fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    /// The largest file accepted, in bytes.
    #[must_use]
    pub fn max_upload(&self) -> u64 {
        self.max_upload
    }
}

/// The body of a `202 Accepted` answer to `POST /files`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The transfer job's message id (also the start of the stored file's name).
    pub id: String,
    /// Where the server stored the file.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The upload server's routes over `state`: `POST /files` and `GET /healthz`.
///
/// ```
/// use std::sync::Arc;
/// use jobs_core::Producer;
/// use jobs_core::transport::memory::MemoryTransport;
/// use upload_server::http::{AppState, router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let producer = Producer::new(Arc::new(MemoryTransport::new()));
/// let app = router(AppState::new(producer, dir.path()).with_max_upload(1024 * 1024));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = tokio::spawn(axum::serve(listener, app).into_future());
/// # server.abort();
/// # Ok(())
/// # }
/// ```
pub fn router(state: AppState) -> Router {
    // The extractor's limit covers the whole form; the handler holds the file itself to
    // `max_upload` exactly as it streams it.
    let body_limit =
        usize::try_from(state.max_upload.saturating_add(FORM_OVERHEAD)).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/files",
            post(upload::upload).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The server runs: it needs nothing else to answer.
async fn healthz() -> &'static str {
    "ok\n"
}
