//! The worker an operator deploys for the upload server: it serves `transfer_to_oss`, copying
//! each upload into the bucket, and is the operator's tool (`run`, `jobs`, `topology`,
//! `errors`).
//!
//! The bucket is the directory `UPLOAD_BUCKET_DIR` (default `upload-server/bucket` under the
//! temporary directory); the broker is `JOBS_AMQP_URL`, as for every worker. The job reads each
//! file at the path `upload-server serve` stored it under, so run both on one host or share
//! the upload directory.
//!
//! ```sh
//! JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p upload-server --bin upload-worker
//! cargo run -p upload-server --bin upload-worker -- errors list transfer_to_oss
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use jobs_worker::Worker;
use upload_server::ObjectStorage;

#[tokio::main]
async fn main() -> ExitCode {
    let bucket = std::env::var_os("UPLOAD_BUCKET_DIR").map_or_else(
        || std::env::temp_dir().join("upload-server").join("bucket"),
        PathBuf::from,
    );
    // The handle every `transfer_to_oss` takes as `State<Arc<ObjectStorage>>`; the worker
    // refuses to start without it.
    let worker = Worker::builder().state(Arc::new(ObjectStorage::new(bucket)));
    jobs_worker::main_with(worker).await
}
