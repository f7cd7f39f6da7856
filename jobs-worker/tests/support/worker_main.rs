//! `jobs-test-worker`: a worker binary linking the test jobs, run by the tests as a child
//! process. Built only with the `test-worker` feature.

#[path = "jobs.rs"]
mod jobs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
