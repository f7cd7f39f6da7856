//! The job: an uploaded file, copied to object storage.

use std::path::Path;
use std::sync::Arc;

use jobs_core::{JobContext, JobError, State, job};

use crate::storage::{ObjectStorage, StorageError};
use crate::uploads::TransferFile;

/// Copies one uploaded file into the bucket, under the name the upload server gave it.
///
/// The file stays where the server stored it: a job replayed from the error queue, or
/// delivered twice, finds it again and puts the same object.
///
/// # Errors
///
/// Fatal, straight to the error queue: an empty file (no retry can fix it), a file that is
/// not there any more (the reason names its path), a path without a file name. Retryable:
/// the storage timing out (here, the first attempt at any `.flaky` file) or failing to write.
#[job(
    exchange = "uploadserver.trans",
    routing_key = "oss",
    queue = "uploadserver.trans.oss",
    retries = 3,
    backoff = "1s, 5s, 30s",
    timeout = "30s"
)]
pub async fn transfer_to_oss(
    file: TransferFile,
    storage: State<Arc<ObjectStorage>>,
    ctx: JobContext,
) -> Result<(), JobError> {
    if file.size == 0 {
        return Err(JobError::fatal(format!(
            "{} is empty: nothing to transfer",
            file.path
        )));
    }
    let path = Path::new(&file.path);
    // The server's unique name for the upload: never the client's name, which two clients
    // can share.
    let Some(key) = path.file_name().and_then(|name| name.to_str()) else {
        return Err(JobError::fatal(format!(
            "`{}` does not name a file",
            file.path
        )));
    };
    let flaky = Path::new(&file.name)
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("flaky"));
    if flaky && ctx.attempt() == 1 {
        // Stands in for a store that times out now and then.
        return Err(JobError::retry(StorageError::TimedOut));
    }
    match storage.put(key, path).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_retryable() => Err(JobError::retry(err)),
        Err(err) => Err(JobError::fatal(err)),
    }
}
