//! The seed scenario's job: an uploaded file, copied to object storage.
//!
//! Two binaries use it: `upload-server` (the demo, which enqueues four uploads and runs them)
//! and `upload-worker` (a worker an operator deploys: `jobs_worker::main`).

use jobs_core::{JobContext, JobError, job};

/// An uploaded file to transfer to object storage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferFile {
    /// Where the upload server stored it.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its size in bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// Copies one uploaded file to object storage.
///
/// # Errors
///
/// A fatal error for an empty file, which no retry can fix; a retryable one when the storage
/// service times out (here: the first attempt at any `.flaky` file).
#[job(
    exchange = "uploadserver.trans",
    routing_key = "oss",
    queue = "uploadserver.trans.oss",
    retries = 3,
    backoff = "1s, 5s, 30s",
    timeout = "30s"
)]
pub async fn transfer_to_oss(file: TransferFile, ctx: JobContext) -> Result<(), JobError> {
    if file.size == 0 {
        return Err(JobError::fatal(format!(
            "{} is empty: nothing to transfer",
            file.path
        )));
    }
    if file.path.ends_with(".flaky") && ctx.attempt() == 1 {
        // Stands in for a storage service that times out now and then.
        return Err(JobError::retry("object storage timed out"));
    }
    Ok(())
}
