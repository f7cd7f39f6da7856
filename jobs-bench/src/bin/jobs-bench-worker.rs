//! `jobs-bench-worker`: the worker runtime serving the scale-out measure's job, started by
//! `jobs-bench --measures scale-out` as 1, 2 or 4 competing processes on one queue, and the
//! growth measure's jobs, started by `jobs-bench --measures growth` with `--jobs` naming the
//! ones a row serves.

#[path = "../message.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the worker decodes the message; the benchmark's helpers around it go unused"
)]
mod message;

#[path = "../scale_out/job.rs"]
#[allow(dead_code, reason = "the benchmark uses the sleep variable's name")]
mod job;

#[path = "../growth/job.rs"]
#[allow(dead_code, reason = "the benchmark uses the list of job types")]
mod growth_job;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    jobs_worker::main().await
}
