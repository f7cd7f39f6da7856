//! The worker an operator deploys for the seed scenario: it serves `transfer_to_oss` and is the
//! operator's tool (`run`, `jobs`, `topology`, `errors`).
//!
//! `JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p upload-server --bin upload-worker`

// Links the job into this binary, where the worker finds it at run time.
use upload_server as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
