//! `errors list|show|replay|purge`: the messages in error queues (`Q.err`).
//!
//! A queue argument is a job name, a work queue `Q` or an error queue `Q.err`; a name that is
//! neither a job nor a known queue and does not end in `.err` is taken as a work queue.
//!
//! Every read goes through [`ErrorQueue::walk`]: `list` and `show` visit every message once, in
//! order, keeping each (a copy to the back, then the ack), so the queue ends as it was and no
//! read counts toward a quorum queue's delivery limit; at most 256 messages are held at once.
//! `replay` publishes each message to its job's own work queue (never the exchange it came
//! from, where other jobs would run it too), at attempt 1, and removes it once the broker
//! confirms; a message whose replay fails stays in the error queue, and the command exits 1.
//!
//! Progress: `list`, `show` and `replay` report `read N/TOTAL` or `replayed N/TOTAL` on stderr
//! every [`PROGRESS_EVERY`](super::PROGRESS_EVERY) messages or every second when stderr is a
//! terminal; otherwise only the summary on `out`. `purge` is one broker operation, so it has
//! no progress to report.
//!
//! Everything printed from a message (ids, job names, errors, headers) has its control
//! characters escaped, so a message cannot write to the operator's terminal.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jobs_core::error_queue::{Action, ErrorQueue, Walked};
use jobs_core::{FailedJob, Job, JobSettings};

use super::jobs::write_table;
use super::{OpsContext, Progress, printable};

/// Inspects, replays or purges error queues.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ErrorsArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: ErrorsAction,
}

/// The `errors` actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub(crate) enum ErrorsAction {
    /// One line per message: id, job, failure kind, attempt, failed-at, first line of the error.
    List {
        /// Which error queues.
        #[command(flatten)]
        queues: Queues,
        /// Lists at most this many messages per queue.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Every property and header of one message, and its body.
    Show {
        /// The message id.
        id: String,
        /// The queue to look in (a job, `Q` or `Q.err`); every job's error queue by default.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Publishes messages to their job's work queue (attempt 1, failure headers removed) and,
    /// once the broker confirms, removes them from the error queue.
    Replay {
        /// The queue: a job, `Q` or `Q.err`.
        #[arg(required_unless_present = "all_jobs", conflicts_with = "all_jobs")]
        queue: Option<String>,
        /// Every job's error queue.
        #[arg(long)]
        all_jobs: bool,
        /// Replays at most this many messages per queue.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        count: Option<u64>,
        /// Replays every message.
        #[arg(long)]
        all: bool,
    },
    /// Removes every message; refuses without `--yes`, saying how many would go.
    Purge {
        /// Which error queues.
        #[command(flatten)]
        queues: Queues,
        /// Really purge.
        #[arg(long)]
        yes: bool,
    },
}

/// One error queue, or every job's.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Queues {
    /// The queue: a job, `Q` or `Q.err`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) queue: Option<String>,
    /// Every job's error queue.
    #[arg(long)]
    pub(crate) all: bool,
}

/// Runs an `errors` action.
///
/// # Errors
///
/// Broker and connection errors (a missing queue among them), and when writing to `out`
/// fails.
pub(crate) async fn run(
    args: ErrorsArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    // A queue that does not exist is reported and skipped, so `--all` goes on past it; the
    // exit code then says something was missing.
    let mut problem = false;
    match args.action {
        ErrorsAction::List { queues, limit } => {
            for queue in resolve_all(ctx, queues.queue.as_deref(), queues.all) {
                if exists(&queue, out).await? {
                    problem |= !list(&queue, limit, out).await?;
                } else {
                    problem = true;
                }
            }
        }
        ErrorsAction::Show { id, queue } => {
            let queues = resolve_all(ctx, queue.as_deref(), queue.is_none());
            for queue in &queues {
                if exists(queue, out).await? && show(queue, &id, &ctx.jobs, out).await? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let names: Vec<&str> = queues.iter().map(ErrorQueue::name).collect();
            writeln!(
                out,
                "no message `{}` in {}",
                printable(&id),
                names.join(", ")
            )?;
            problem = true;
        }
        ErrorsAction::Replay {
            queue,
            all_jobs,
            count,
            all,
        } => {
            let limit = if all { None } else { count };
            for queue in resolve_all(ctx, queue.as_deref(), all_jobs) {
                if exists(&queue, out).await? {
                    problem |= !replay(&queue, limit, out).await?;
                } else {
                    problem = true;
                }
            }
        }
        ErrorsAction::Purge { queues, yes } => {
            for queue in resolve_all(ctx, queues.queue.as_deref(), queues.all) {
                if exists(&queue, out).await? {
                    problem |= !purge(&queue, yes, out).await?;
                } else {
                    problem = true;
                }
            }
        }
    }
    Ok(if problem {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether `queue` exists; when it does not, says so on `out`.
async fn exists(queue: &ErrorQueue, out: &mut (dyn Write + Send)) -> anyhow::Result<bool> {
    match queue.len().await {
        Ok(_) => Ok(true),
        Err(jobs_core::Error::NotFound { .. }) => {
            writeln!(out, "{}: no such queue", queue.name())?;
            Ok(false)
        }
        Err(err) => {
            Err(anyhow::Error::new(err).context(format!("cannot read queue `{}`", queue.name())))
        }
    }
}

/// The error queues named: `queue`, or with `all` every job's.
fn resolve_all(ctx: &OpsContext, queue: Option<&str>, all: bool) -> Vec<ErrorQueue> {
    match queue {
        Some(queue) if !all => vec![resolve(ctx, queue)],
        _ => ctx
            .jobs
            .iter()
            .map(|settings| ErrorQueue::new(ctx.transport.clone(), settings.job().queue()))
            .collect(),
    }
}

/// The error queue of a job name, a work queue or an error queue.
pub(crate) fn resolve(ctx: &OpsContext, name: &str) -> ErrorQueue {
    let known = ctx.jobs.iter().find(|settings| {
        let job = settings.job();
        job.name() == name || job.queue() == name || settings.error_queue() == name
    });
    let work_queue = match known {
        Some(settings) => settings.job().queue(),
        None => name.strip_suffix(".err").unwrap_or(name),
    };
    ErrorQueue::new(ctx.transport.clone(), work_queue)
}

/// Lists up to `limit` messages of `queue`; they all stay in the queue, in order. Returns
/// whether the walk went through.
async fn list(
    queue: &ErrorQueue,
    limit: u64,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    let count = queue
        .len()
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    let mut rows = Vec::new();
    let mut progress = Progress::new("read", count);
    let mut read = 0;
    let walked = queue
        .walk(None, |letter| {
            if read < limit {
                rows.push(row(letter));
            }
            read += 1;
            progress.tick(read);
            Action::Keep
        })
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    writeln!(out, "{}: {count} message(s)", queue.name())?;
    if !rows.is_empty() {
        let header = ["ID", "JOB", "KIND", "ATTEMPT", "FAILED AT", "ERROR"];
        write_table(out, &header, &rows)?;
    }
    if u64::try_from(rows.len()).unwrap_or(u64::MAX) < count {
        writeln!(out, "(showing {} of {count}; see --limit)", rows.len())?;
    }
    report_stop(&walked, out)
}

/// Says on `out` why a walk stopped early, if it did; returns whether it went through.
fn report_stop(walked: &Walked, out: &mut (dyn Write + Send)) -> anyhow::Result<bool> {
    match &walked.stopped {
        None => Ok(true),
        Some(error) => {
            writeln!(
                out,
                "stopped after {} message(s): {}",
                walked.visited,
                printable(&error.to_string())
            )?;
            Ok(false)
        }
    }
}

fn row(letter: &FailedJob) -> [String; 6] {
    let missing = || "-".to_owned();
    let text = |value: &str| printable(value).into_owned();
    [
        letter.message_id().map_or_else(missing, text),
        letter.job().map_or_else(missing, text),
        letter.kind().map_or_else(missing, |kind| kind.to_string()),
        letter
            .attempt()
            .map_or_else(missing, |attempt| attempt.to_string()),
        letter.failed_at().map_or_else(missing, format_time),
        letter.error_line().map_or_else(missing, text),
    ]
}

/// Unix seconds as RFC 3339 UTC, or the number when it is out of range.
fn format_time(seconds: i64) -> String {
    u64::try_from(seconds)
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .map_or_else(
            || seconds.to_string(),
            |time: SystemTime| humantime::format_rfc3339_seconds(time).to_string(),
        )
}

/// Shows message `id` of `queue` if it is there; every message stays in the queue, in order.
async fn show(
    queue: &ErrorQueue,
    id: &str,
    jobs: &[JobSettings],
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    let count = queue
        .len()
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    let mut found = None;
    let mut progress = Progress::new("read", count);
    let mut read = 0;
    let walked = queue
        .walk(None, |letter| {
            if found.is_none() && letter.message_id() == Some(id) {
                found = Some(letter.clone());
            }
            read += 1;
            progress.tick(read);
            Action::Keep
        })
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    if let Some(letter) = &found {
        let job = job_of(letter, queue, jobs);
        describe(queue.name(), letter, job, out)?;
    }
    report_stop(&walked, out)?;
    Ok(found.is_some())
}

/// The job a failed message belongs to: the one its `type` names, or, without a `type`, the
/// one that serves the queue it failed in.
fn job_of(letter: &FailedJob, queue: &ErrorQueue, jobs: &[JobSettings]) -> Option<&'static Job> {
    let job = match letter.envelope().properties.kind.as_deref() {
        Some(name) => jobs.iter().find(|settings| settings.job().name() == name),
        None => jobs
            .iter()
            .find(|settings| settings.job().queue() == queue.work_queue()),
    };
    job.map(JobSettings::job)
}

fn describe(
    queue: &str,
    letter: &FailedJob,
    job: Option<&'static Job>,
    out: &mut (dyn Write + Send),
) -> std::io::Result<()> {
    let envelope = letter.envelope();
    let properties = &envelope.properties;
    writeln!(out, "queue: {queue}")?;
    let optional = |value: Option<&str>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:?}"));
    writeln!(
        out,
        "message id: {}",
        optional(properties.message_id.as_deref())
    )?;
    writeln!(out, "type: {}", optional(properties.kind.as_deref()))?;
    writeln!(
        out,
        "content type: {}",
        optional(properties.content_type.as_deref())
    )?;
    writeln!(
        out,
        "correlation id: {}",
        optional(properties.correlation_id.as_deref())
    )?;
    writeln!(
        out,
        "reply to: {}",
        optional(properties.reply_to.as_deref())
    )?;
    writeln!(
        out,
        "timestamp: {}",
        properties.timestamp.map_or_else(
            || "-".to_owned(),
            |t| format_time(i64::try_from(t).unwrap_or(i64::MAX))
        )
    )?;
    writeln!(out, "persistent: {}", properties.persistent)?;
    writeln!(out, "headers:")?;
    for (name, value) in properties.headers.iter() {
        writeln!(
            out,
            "  {}: {}",
            printable(name),
            printable(&value.to_string())
        )?;
    }
    let size = envelope.body.len();
    // Decoded as the job's message when the job is known: its fields, not its bytes.
    match job.and_then(|job| Some((job, job.describe(&envelope.body)?))) {
        Some((job, Ok(fields))) => {
            writeln!(out, "body: {size} bytes, a `{}`:", job.message_type())?;
            for line in fields.lines() {
                writeln!(out, "  {}", printable(line))?;
            }
            return Ok(());
        }
        Some((job, Err(err))) => writeln!(
            out,
            "body: {size} bytes, not a valid `{}` ({err}):",
            job.message_type()
        )?,
        None => writeln!(out, "body: {size} bytes (no job of this worker reads it):")?,
    }
    let mut hex = String::new();
    for (i, chunk) in envelope.body.chunks(16).enumerate() {
        hex.clear();
        for byte in chunk {
            let _ = write!(hex, "{byte:02x} ");
        }
        writeln!(out, "  {:08x}  {}", i * 16, hex.trim_end())?;
    }
    Ok(())
}

/// Replays up to `limit` (or every) message of `queue`; returns whether every one went.
async fn replay(
    queue: &ErrorQueue,
    limit: Option<u64>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    let count = queue
        .len()
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    let total = limit.map_or(count, |limit| limit.min(count));
    let mut progress = Progress::new("replayed", total);
    let mut visited = 0;
    let walked = queue
        .walk(Some(total), |_| {
            visited += 1;
            progress.tick(visited);
            Action::Replay
        })
        .await
        .with_context(|| format!("cannot read queue `{}`", queue.name()))?;
    for (id, error) in &walked.not_replayed {
        let id = id
            .as_deref()
            .map_or(std::borrow::Cow::Borrowed("(no id)"), printable);
        writeln!(out, "not replayed: {id}: {}", printable(&error.to_string()))?;
    }
    let failed = u64::try_from(walked.not_replayed.len()).unwrap_or(u64::MAX);
    let left = total.saturating_sub(walked.replayed + failed);
    write!(
        out,
        "{}: replayed {}, failed {failed}",
        queue.name(),
        walked.replayed
    )?;
    if left > 0 {
        write!(out, ", {left} not attempted")?;
    }
    writeln!(out)?;
    let went_through = report_stop(&walked, out)?;
    Ok(went_through && failed == 0 && left == 0)
}

/// Purges `queue` with `yes`; without, says how many messages would go and returns `false`.
async fn purge(
    queue: &ErrorQueue,
    yes: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    let name = queue.name();
    if !yes {
        let count = queue
            .len()
            .await
            .with_context(|| format!("cannot read queue `{name}`"))?;
        writeln!(
            out,
            "would purge {count} message(s) from {name}; pass --yes to purge"
        )?;
        return Ok(false);
    }
    let purged = queue
        .purge()
        .await
        .with_context(|| format!("cannot purge queue `{name}`"))?;
    writeln!(out, "{name}: purged {purged} message(s)")?;
    Ok(true)
}
