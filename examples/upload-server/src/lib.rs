//! The seed scenario as an application: an HTTP upload server that stores each uploaded file
//! and hands it to the `transfer_to_oss` job, which copies it to object storage.
//!
//! # Overview
//!
//! * [`uploads`] holds the job's message, [`TransferFile`], generated at build time from
//!   `proto/uploads.proto` by protox and prost-build (no system `protoc`). That file is the
//!   wire contract: producers in other languages generate their code from it.
//! * [`transfer_to_oss()`] is the job. It takes its storage client from the worker's state
//!   (`State<Arc<ObjectStorage>>`): a fatal error for an empty or missing file, a retry when
//!   the store times out.
//! * [`ObjectStorage`] stands in for an object store (OSS, S3): a bucket kept in a directory.
//! * [`http::router`] is the server: `POST /files` streams a multipart upload to the upload
//!   directory, enqueues the transfer through a [`Producer`](jobs_core::Producer) and answers
//!   `202 Accepted` with the job's id; `413` over the size limit, `400` for a malformed
//!   request, `503` when the broker does not take the job.
//!
//! Three ways to run it (see `docs/upload-server.md`):
//!
//! * `cargo run -p upload-server`: the whole demo in one process, on the in-memory broker (or
//!   on RabbitMQ when `JOBS_AMQP_URL` is set): the engine, the server, and four uploads posted
//!   to it over HTTP.
//! * `upload-server serve`: the HTTP server only, enqueuing into RabbitMQ.
//! * `upload-worker`: the worker that serves `transfer_to_oss` into the bucket
//!   (`UPLOAD_BUCKET_DIR`), and the operator's tool (`upload-worker errors list
//!   transfer_to_oss`).
//!
//! # Example
//!
//! The job on the in-memory broker, without the server:
//!
//! ```
//! use std::sync::Arc;
//! use jobs_core::testing::TestApp;
//! use upload_server::{ObjectStorage, TransferFile, transfer_to_oss};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let upload = dir.path().join("0190-report.pdf");
//! std::fs::write(&upload, b"%PDF-1.7")?;
//!
//! let bucket = Arc::new(ObjectStorage::new(dir.path().join("bucket")));
//! let app = TestApp::builder()
//!     .job(&transfer_to_oss::JOB)
//!     .state(Arc::clone(&bucket))
//!     .build()?;
//! let file = TransferFile {
//!     path: upload.to_string_lossy().into_owned(),
//!     size: 8,
//!     name: "report.pdf".into(),
//!     content_type: "application/pdf".into(),
//! };
//! transfer_to_oss::enqueue(&app, file).await?;
//! app.run_until_idle().await;
//!
//! assert_eq!(app.succeeded(&transfer_to_oss::JOB), 1);
//! assert_eq!(bucket.list().await?[0].key, "0190-report.pdf");
//! # Ok(())
//! # }
//! ```

pub mod http;
mod job;
mod storage;

/// The job messages of `proto/uploads.proto` (protobuf package `uploads`), generated at build
/// time.
pub mod uploads {
    include!(concat!(env!("OUT_DIR"), "/uploads.rs"));
}

pub use http::{Accepted, AppState, router};
pub use job::transfer_to_oss;
pub use storage::{ObjectStorage, StorageError, StoredObject};
pub use uploads::TransferFile;
