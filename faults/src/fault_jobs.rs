//! The jobs of the fault worker (`jobs-fault-worker`), shared with the tests that enqueue them.
//!
//! Not a module of the library: a `#[job]` registers itself in every binary that links it, and
//! an in-process engine serving "every linked job" must never pick up a job that aborts its
//! process. The worker binary and the tests include this file by path instead.
//!
//! Each scenario has its own job, so its own queues, and the scenarios run in parallel against
//! one broker. Handlers record what they did as `id\n` lines in files named by environment
//! variables, one `write` per line on a file opened for appending, so the lines of concurrent
//! handlers never interleave and a SIGKILL leaves at most a torn last line, which
//! `Ledger::load_handled` skips.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobs_core::envelope::header;
use jobs_core::{HeaderValue, JobContext, JobError, job};

/// The file a handler appends the id of each job it completed to.
pub(crate) const HANDLED_FILE: &str = "JOBS_FAULTS_HANDLED";
/// The file the poison job appends the id of each run to.
pub(crate) const RUNS_FILE: &str = "JOBS_FAULTS_RUNS";

/// The exchange of every fault job.
pub(crate) const EXCHANGE: &str = "jobs_faults.workers";

/// A job the ledger counts: about 100 bytes on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tracked {
    /// The ledger's id of the job.
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    /// How long the handler sleeps, so that hundreds can be in flight at once.
    #[prost(uint32, tag = "2")]
    pub(crate) sleep_ms: u32,
    /// Filler that brings the message to the size of a typical small job.
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) padding: Vec<u8>,
}

impl Tracked {
    /// Job `id`, sleeping `sleep_ms` in its handler, encoded in about 100 bytes.
    pub(crate) fn new(id: u64, sleep_ms: u32) -> Self {
        Self {
            id,
            sleep_ms,
            padding: vec![b'.'; 84],
        }
    }
}

/// The message of the bad-input job: a string field and a nested (recursive) field.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Document {
    /// Text, which protobuf requires to be UTF-8.
    #[prost(string, tag = "1")]
    pub(crate) text: String,
    /// A nested document; the decoder refuses nesting past its recursion limit.
    #[prost(message, optional, boxed, tag = "2")]
    pub(crate) child: Option<Box<Document>>,
    /// The ledger's id of the job.
    #[prost(uint64, tag = "3")]
    pub(crate) id: u64,
}

/// The message of the periodic job: nothing, as a periodic job's message is its default.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Beat {}

/// Appends `id\n` to the file named by the environment variable `var`, with one `write`.
fn record(var: &str, id: u64) -> Result<(), JobError> {
    append(var, &format!("{id}\n"))
}

/// Appends `line` (ending in a newline) to the file named by the environment variable `var`,
/// with one `write`.
fn append(var: &str, line: &str) -> Result<(), JobError> {
    let Some(path) = std::env::var_os(var) else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(JobError::retry)?;
    // One write of a few bytes to a file opened with O_APPEND: atomic with respect to the
    // other handlers' lines. A short write would tear the line; fail the attempt instead.
    let written = file.write(line.as_bytes()).map_err(JobError::retry)?;
    if written == line.len() {
        Ok(())
    } else {
        Err(JobError::retry(format!(
            "recorded {written} of {} bytes",
            line.len()
        )))
    }
}

async fn sleep_and_record(job: Tracked) -> Result<(), JobError> {
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(job.sleep_ms))).await;
    }
    record(HANDLED_FILE, job.id)
}

/// The SIGKILL scenario's job: hundreds in flight when the worker is killed.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "kill",
    queue = "jobs_faults.workers.kill",
    timeout = "60s",
    concurrency = 300
)]
pub(crate) async fn tracked_kill(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    sleep_and_record(job).await
}

/// The SIGTERM drain scenario's job.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "term",
    queue = "jobs_faults.workers.term",
    timeout = "60s",
    concurrency = 100
)]
pub(crate) async fn tracked_term(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    sleep_and_record(job).await
}

/// Always fails, retryably: 3 attempts 100 ms apart, then the error queue.
/// Tracked jobs for the concurrency-limit scenario: three workers of 32 handlers, four
/// handlers at once across them.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "limited",
    queue = "jobs_faults.workers.limited",
    timeout = "60s",
    concurrency = 32,
    max_running = 4
)]
pub(crate) async fn tracked_limited(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    sleep_and_record(job).await
}

/// Tracked jobs for the rate-limit scenario: three workers of 32 handlers, fifty starts a
/// second across them.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "paced",
    queue = "jobs_faults.workers.paced",
    timeout = "60s",
    concurrency = 32,
    rate = "50/s"
)]
pub(crate) async fn tracked_paced(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    sleep_and_record(job).await
}

/// Tracked jobs for the pause scenario: three workers, 32 handlers each.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "pause",
    queue = "jobs_faults.workers.pause",
    timeout = "60s",
    concurrency = 32
)]
pub(crate) async fn tracked_pause(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    sleep_and_record(job).await
}

#[job(
    exchange = "jobs_faults.workers",
    routing_key = "poison",
    queue = "jobs_faults.workers.poison",
    retries = 2,
    backoff = "100ms, 100ms",
    timeout = "10s",
    concurrency = 16
)]
pub(crate) async fn poison(job: Tracked, ctx: JobContext) -> Result<(), JobError> {
    record(RUNS_FILE, job.id)?;
    Err(JobError::retry(format!(
        "poison job {} refused on attempt {}",
        job.id,
        ctx.attempt()
    )))
}

/// Kills its own worker on every delivery. Its quorum queue's `x-delivery-limit` (the worker
/// default, 10: `#[job]` has no key for it) dead-letters it to the error queue in the end.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "abort",
    queue = "jobs_faults.workers.abort",
    queue_type = "quorum",
    timeout = "10s",
    concurrency = 1
)]
pub(crate) async fn aborts_worker(job: Tracked, _ctx: JobContext) -> Result<(), JobError> {
    // Not a panic, which the engine would catch: the whole process goes, as on an OOM kill.
    let _ = job;
    std::process::abort()
}

/// The target of the bad inputs. A classic queue: the scenario pushes many megabytes of
/// oversized bodies through it, which a classic queue pages to disk cheaply.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "bad",
    queue = "jobs_faults.workers.bad",
    queue_type = "classic",
    retries = 0,
    timeout = "10s",
    concurrency = 4
)]
pub(crate) async fn bad_input(doc: Document, _ctx: JobContext) -> Result<(), JobError> {
    record(HANDLED_FILE, doc.id)
}

/// Runs every second, on the schedule's slots. Each run appends `ID SLOT STARTED_MS PID R\n`
/// to the handled file: its message id (`fault_schedule@<slot time>`), its `x-jobs-slot` header
/// (Unix seconds, `-` when missing), when it started (Unix milliseconds), the worker's pid,
/// and `1` when the broker redelivered the run (a worker died with it unacked), else `0`.
/// A worker of the schedule scenario serves it, and all three run its scheduler.
#[job(
    exchange = "jobs_faults.workers",
    routing_key = "schedule",
    queue = "jobs_faults.workers.schedule",
    every = "1s",
    timeout = "10s",
    concurrency = 4
)]
pub(crate) async fn fault_schedule(_: Beat, ctx: JobContext) -> Result<(), JobError> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let slot = ctx
        .headers()
        .get(header::SLOT)
        .and_then(HeaderValue::as_i64)
        .map_or_else(|| "-".to_owned(), |slot| slot.to_string());
    let id = ctx.message_id().unwrap_or("-");
    append(
        HANDLED_FILE,
        &format!(
            "{id} {slot} {started} {} {}\n",
            std::process::id(),
            u8::from(ctx.redelivered())
        ),
    )
}
