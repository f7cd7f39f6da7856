//! The stand-alone `jobs-worker` binary: the operator commands, for what needs no job code.
//!
//! It links no jobs, so `run` has nothing to serve; a worker is a binary of your own whose
//! `main` calls [`jobs_worker::main`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
