//! `jobs-fault-worker`: the worker runtime with the fault battery's jobs linked in, run by the
//! fault scenarios as a child process that they signal, kill and measure.

#[path = "../fault_jobs.rs"]
#[allow(dead_code, reason = "the tests use what builds their messages")]
mod fault_jobs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
