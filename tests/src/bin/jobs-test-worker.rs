//! `jobs-test-worker`: a worker binary linking the test jobs, run by `worker_process` as a
//! child process.

#[path = "../../tests/support/worker_jobs.rs"]
mod jobs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
