//! The seed scenario: an upload server hands each uploaded file to a `transfer_to_oss` job,
//! which copies it to object storage.
//!
//! Some transfers succeed, one fails once and is retried, and one is fatal and lands in the
//! error queue `uploadserver.trans.oss.err`. It runs on the in-memory broker, so it needs no
//! RabbitMQ: `cargo run -p upload-server`.
#![allow(clippy::print_stdout, reason = "an example that reports what happened")]

use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::{Engine, Event, EventKind, Observer};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{DeadLetter, JobContext, JobError, job};

/// An uploaded file to transfer to object storage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferFile {
    /// Where the upload server stored it.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its size in bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// Copies one uploaded file to object storage.
#[job(
    exchange = "uploadserver.trans",
    routing_key = "oss",
    queue = "uploadserver.trans.oss",
    retries = 3,
    backoff = "1s, 5s, 30s",
    timeout = "30s"
)]
async fn transfer_to_oss(file: TransferFile, ctx: JobContext) -> Result<(), JobError> {
    if file.size == 0 {
        return Err(JobError::fatal(format!(
            "{} is empty: nothing to transfer",
            file.path
        )));
    }
    if file.path.ends_with(".flaky") && ctx.attempt() == 1 {
        // Stands in for a storage service that times out now and then.
        return Err(JobError::retry("object storage timed out"));
    }
    Ok(())
}

/// Prints every job event as it happens.
struct Report;

impl Observer for Report {
    fn on_event(&self, event: &Event<'_>) {
        let id = event.message_id.unwrap_or("-");
        let what = match event.kind {
            EventKind::Started => return,
            EventKind::Succeeded { .. } => "succeeded".to_owned(),
            EventKind::Retried { error, delay, .. } => {
                format!("failed ({error}); retry in {delay:?}")
            }
            EventKind::DeadLettered { kind, error } => {
                format!("moved to the error queue [{kind}]: {error}")
            }
            EventKind::Requeued { error } => format!("requeued: {error}"),
            _ => format!("{:?}", event.kind),
        };
        println!(
            "{} {id} attempt {}: {what}",
            event.job.name(),
            event.attempt
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> jobs_core::Result<()> {
    let broker = MemoryTransport::new();
    let worker = Engine::builder(Arc::new(broker.clone()))
        .job(&transfer_to_oss::JOB)
        .observer(Arc::new(Report))
        .start()
        .await?;

    let uploads = [
        ("report.pdf", 52_113),
        ("photo.jpg", 2_048_000),
        ("backup.tar.flaky", 9_000),
        ("empty.txt", 0),
    ];
    for (path, size) in uploads {
        let file = TransferFile {
            path: path.to_owned(),
            size,
        };
        let id = transfer_to_oss::with(file)
            .message_id(path)
            .enqueue(&worker)
            .await?;
        println!("enqueued {id}");
    }

    broker.until_idle().await;

    println!("\nerror queue {}:", transfer_to_oss::ERROR_QUEUE);
    for letter in broker
        .messages(transfer_to_oss::ERROR_QUEUE)
        .into_iter()
        .map(DeadLetter::new)
    {
        let kind = letter.kind().map_or("?", |k| k.as_str());
        println!(
            "  {} [{kind}] {}",
            letter.message_id().unwrap_or("-"),
            letter.error().unwrap_or("")
        );
    }
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
