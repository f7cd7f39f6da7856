//! `errors list|show|replay|purge`: the messages in error queues (`Q.err`).
//!
//! A queue argument is a job name, a work queue `Q` or an error queue `Q.err`; a name that is
//! neither a job nor a known queue and does not end in `.err` is taken as a work queue.
//!
//! Reading (`list`, `show`) consumes the error queue with manual acks, reads at most as many
//! messages as the queue held when the command started, and drops the consumer without acking:
//! the broker puts them back, so nothing is lost. RabbitMQ puts them back in their place on a
//! classic queue; each return counts as a delivery on a quorum queue (and is `redelivered` on
//! the next read). `replay` acks a message only after its replay publish is confirmed; one
//! whose publish fails stays in the error queue. A replayed message keeps its id and headers,
//! less the failure headers and those the broker added (`x-delivery-count`, `x-death`,
//! `x-first-death-*`, `x-last-death-*`), and starts again at attempt 1.
//!
//! Progress: `replay` reports `replayed N/TOTAL` on stderr every
//! [`PROGRESS_EVERY`](super::PROGRESS_EVERY) messages or every second when stderr is a
//! terminal; otherwise only the summary on `out`. `purge` is one broker operation, so it has
//! no progress to report.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use jobs_core::transport::{Consumer, Delivery, Settlement};
use jobs_core::{DeadLetter, Producer};

use super::jobs::write_table;
use super::{OpsContext, Progress};

/// How long to wait for the next message of a queue that said it has more.
const NEXT_MESSAGE: Duration = Duration::from_secs(10);
/// Messages in flight to this command at once, at most.
const MAX_PREFETCH: u64 = 256;
/// Replay publishes awaiting their confirm at once, at most.
const REPLAY_WINDOW: u64 = 64;

/// Inspects, replays or purges error queues.
#[derive(Debug, Clone, clap::Args)]
pub struct ErrorsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ErrorsAction,
}

/// The `errors` actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ErrorsAction {
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
    /// Publishes messages back to their original exchange and routing key (attempt 1, failure
    /// headers removed) and, once the broker confirms, removes them from the error queue.
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
pub struct Queues {
    /// The queue: a job, `Q` or `Q.err`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub queue: Option<String>,
    /// Every job's error queue.
    #[arg(long)]
    pub all: bool,
}

/// Runs an `errors` action.
///
/// # Errors
///
/// Broker and connection errors (a missing queue among them), and when writing to `out`
/// fails.
pub async fn run(
    args: ErrorsArgs,
    ctx: &OpsContext,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    // A queue that does not exist is reported and skipped, so `--all` goes on past it; the
    // exit code then says something was missing.
    let mut problem = false;
    match args.action {
        ErrorsAction::List { queues, limit } => {
            for queue in resolve_all(ctx, queues.queue.as_deref(), queues.all) {
                if exists(ctx, &queue, out).await? {
                    list(ctx, &queue, limit, out).await?;
                } else {
                    problem = true;
                }
            }
        }
        ErrorsAction::Show { id, queue } => {
            let queues = resolve_all(ctx, queue.as_deref(), queue.is_none());
            for queue in &queues {
                if exists(ctx, queue, out).await? && show(ctx, queue, &id, out).await? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            writeln!(out, "no message `{id}` in {}", queues.join(", "))?;
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
                if exists(ctx, &queue, out).await? {
                    problem |= replay(ctx, &queue, limit, out).await? > 0;
                } else {
                    problem = true;
                }
            }
        }
        ErrorsAction::Purge { queues, yes } => {
            for queue in resolve_all(ctx, queues.queue.as_deref(), queues.all) {
                if exists(ctx, &queue, out).await? {
                    problem |= !purge(ctx, &queue, yes, out).await?;
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
async fn exists(ctx: &OpsContext, queue: &str, out: &mut dyn Write) -> anyhow::Result<bool> {
    match ctx.transport.message_count(queue).await {
        Ok(_) => Ok(true),
        Err(jobs_core::Error::NotFound { .. }) => {
            writeln!(out, "{queue}: no such queue")?;
            Ok(false)
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!("cannot read queue `{queue}`"))),
    }
}

/// The error queues named: `queue`, or with `all` every job's.
fn resolve_all(ctx: &OpsContext, queue: Option<&str>, all: bool) -> Vec<String> {
    match queue {
        Some(queue) if !all => vec![resolve(ctx, queue)],
        _ => ctx
            .jobs
            .iter()
            .map(|settings| settings.error_queue().to_owned())
            .collect(),
    }
}

/// The error queue of a job name, a work queue or an error queue.
pub fn resolve(ctx: &OpsContext, name: &str) -> String {
    let known = ctx.jobs.iter().find(|settings| {
        let job = settings.job();
        job.name() == name || job.queue() == name || settings.error_queue() == name
    });
    match known {
        Some(settings) => settings.error_queue().to_owned(),
        None if name.ends_with(".err") => name.to_owned(),
        None => format!("{name}.err"),
    }
}

/// A consumer on an error queue and how many messages it may read.
struct Reader {
    consumer: Consumer,
    remaining: u64,
}

impl Reader {
    /// Starts reading at most `limit` (or every) message of `queue`, as many as it holds now.
    ///
    /// A reader that `acks` frees prefetch credit as it goes and takes at most
    /// [`MAX_PREFETCH`] at once; one that does not needs credit for everything it reads.
    async fn open(
        ctx: &OpsContext,
        queue: &str,
        limit: Option<u64>,
        acks: bool,
    ) -> anyhow::Result<(Self, u64)> {
        let count = ctx
            .transport
            .message_count(queue)
            .await
            .with_context(|| format!("cannot read queue `{queue}`"))?;
        let remaining = limit.map_or(count, |limit| limit.min(count));
        let prefetch = if acks {
            u16::try_from(remaining.clamp(1, MAX_PREFETCH)).unwrap_or(1)
        } else {
            // 0 is no limit: for more than a consumer's largest prefetch.
            u16::try_from(remaining.max(1)).unwrap_or(0)
        };
        let consumer = ctx
            .transport
            .consume(queue, prefetch)
            .await
            .with_context(|| format!("cannot consume queue `{queue}`"))?;
        Ok((
            Self {
                consumer,
                remaining,
            },
            count,
        ))
    }

    /// The next message, or `None` when the limit is reached or none comes in time (another
    /// consumer took the rest).
    async fn next(&mut self) -> Option<Delivery> {
        if self.remaining == 0 {
            return None;
        }
        let delivery = tokio::time::timeout(NEXT_MESSAGE, self.consumer.deliveries.next())
            .await
            .ok()
            .flatten()?;
        self.remaining -= 1;
        Some(delivery)
    }

    async fn settle(&self, settlement: Settlement) -> jobs_core::Result<()> {
        self.consumer.settler.settle(settlement).await
    }

    /// Cancels the consumer and returns every message it still holds to the queue. Closing
    /// the channel would too, but later: this way a command that reads the queue next finds
    /// them there.
    async fn release(self) {
        let Consumer {
            deliveries,
            settler,
        } = self.consumer;
        drop(deliveries);
        let everything = Settlement::Nack {
            tag: 0,
            multiple: true,
            requeue: true,
        };
        if let Err(err) = settler.settle(everything).await {
            tracing::debug!(error = %err, "returning read messages failed; closing the channel returns them");
        }
    }
}

/// Lists up to `limit` messages of `queue`; they all stay in the queue.
async fn list(
    ctx: &OpsContext,
    queue: &str,
    limit: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (mut reader, count) = Reader::open(ctx, queue, Some(limit), false).await?;
    let mut rows = Vec::new();
    while let Some(delivery) = reader.next().await {
        rows.push(row(&DeadLetter::new(delivery.envelope)));
    }
    reader.release().await;
    writeln!(out, "{queue}: {count} message(s)")?;
    if !rows.is_empty() {
        let header = ["ID", "JOB", "KIND", "ATTEMPT", "FAILED AT", "ERROR"];
        write_table(out, &header, &rows)?;
    }
    if u64::try_from(rows.len()).unwrap_or(u64::MAX) < count {
        writeln!(out, "(showing {} of {count}; see --limit)", rows.len())?;
    }
    Ok(())
}

fn row(letter: &DeadLetter) -> [String; 6] {
    let missing = || "-".to_owned();
    [
        letter.message_id().map_or_else(missing, str::to_owned),
        letter.job().map_or_else(missing, str::to_owned),
        letter.kind().map_or_else(missing, |kind| kind.to_string()),
        letter
            .attempt()
            .map_or_else(missing, |attempt| attempt.to_string()),
        letter.failed_at().map_or_else(missing, format_time),
        letter
            .error()
            .and_then(|error| error.lines().next())
            .map_or_else(missing, str::to_owned),
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

/// Shows message `id` of `queue` if it is there; it stays in the queue.
async fn show(
    ctx: &OpsContext,
    queue: &str,
    id: &str,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (mut reader, _) = Reader::open(ctx, queue, None, false).await?;
    loop {
        let Some(delivery) = reader.next().await else {
            reader.release().await;
            return Ok(false);
        };
        if delivery.envelope.properties.message_id.as_deref() == Some(id) {
            reader.release().await;
            describe(queue, &delivery, out)?;
            return Ok(true);
        }
    }
}

fn describe(queue: &str, delivery: &Delivery, out: &mut dyn Write) -> std::io::Result<()> {
    let envelope = &delivery.envelope;
    let properties = &envelope.properties;
    writeln!(out, "queue: {queue}")?;
    writeln!(out, "exchange: {:?}", delivery.exchange)?;
    writeln!(out, "routing key: {:?}", delivery.routing_key)?;
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
        writeln!(out, "  {name}: {value}")?;
    }
    writeln!(out, "body: {} bytes", envelope.body.len())?;
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

/// Replays up to `limit` (or every) message of `queue`; returns how many failed.
async fn replay(
    ctx: &OpsContext,
    queue: &str,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let (mut reader, _) = Reader::open(ctx, queue, limit, true).await?;
    let total = reader.remaining;
    let producer = Producer::new(ctx.transport.clone());
    let mut progress = Progress::new("replayed", total);
    let (mut replayed, mut failed) = (0u64, 0u64);
    // Failed messages stay unacked until the end, so they are not delivered again to this
    // consumer; they hold its prefetch credit, so once it is all held the replay stops.
    let mut held = 0u64;
    let prefetch = total.clamp(1, MAX_PREFETCH);
    // Publishes in flight at once, each acked once confirmed, in delivery order.
    let mut in_flight = FuturesOrdered::new();
    let mut exhausted = false;
    loop {
        while !exhausted
            && held + u64::try_from(in_flight.len()).unwrap_or(u64::MAX)
                < prefetch.min(REPLAY_WINDOW)
        {
            match reader.next().await {
                Some(delivery) => in_flight.push_back(replay_one(&producer, delivery)),
                None => exhausted = true,
            }
        }
        let Some((tag, id, outcome)) = in_flight.next().await else {
            break;
        };
        match outcome {
            Ok(()) => {
                reader
                    .settle(Settlement::Ack {
                        tag,
                        multiple: false,
                    })
                    .await
                    .with_context(|| format!("acking a replayed message of `{queue}` failed"))?;
                replayed += 1;
            }
            Err(error) => {
                failed += 1;
                held += 1;
                let id = id.as_deref().unwrap_or("(no id)");
                writeln!(out, "not replayed: {id}: {error}")?;
            }
        }
        progress.tick(replayed + failed);
        if held >= prefetch {
            exhausted = true;
        }
    }
    let left = total - replayed - failed;
    // The failed messages go back to the queue.
    reader.release().await;
    write!(out, "{queue}: replayed {replayed}, failed {failed}")?;
    if left > 0 {
        write!(out, ", {left} not attempted")?;
    }
    writeln!(out)?;
    Ok(failed + left)
}

/// Publishes the replay of one error-queue message: its delivery tag, message id and outcome.
async fn replay_one(
    producer: &Producer,
    delivery: Delivery,
) -> (u64, Option<String>, Result<(), String>) {
    let letter = DeadLetter::new(delivery.envelope);
    let id = letter.message_id().map(str::to_owned);
    let outcome = match letter.replay() {
        Some(publish) => producer
            .publish(publish)
            .await
            .map_err(|err| err.to_string()),
        None => Err("the message does not say where it came from".to_owned()),
    };
    (delivery.tag, id, outcome)
}

/// Purges `queue` with `yes`; without, says how many messages would go and returns `false`.
async fn purge(
    ctx: &OpsContext,
    queue: &str,
    yes: bool,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    if !yes {
        let count = ctx
            .transport
            .message_count(queue)
            .await
            .with_context(|| format!("cannot read queue `{queue}`"))?;
        writeln!(
            out,
            "would purge {count} message(s) from {queue}; pass --yes to purge"
        )?;
        return Ok(false);
    }
    let purged = ctx
        .transport
        .purge(queue)
        .await
        .with_context(|| format!("cannot purge queue `{queue}`"))?;
    writeln!(out, "{queue}: purged {purged} message(s)")?;
    Ok(true)
}
