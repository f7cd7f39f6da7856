//! The seed scenario: an upload server hands each uploaded file to a `transfer_to_oss` job,
//! which copies it to object storage.
//!
//! Some transfers succeed, one fails once and is retried, and one is fatal and lands in the
//! error queue `uploadserver.trans.oss.err`.
//!
//! `cargo run -p upload-server` runs it on the in-memory broker, with no RabbitMQ. With
//! `JOBS_AMQP_URL` set (`JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p
//! upload-server`) it runs on that RabbitMQ instead: same code, same outcomes. With the argument
//! `enqueue` it only enqueues the uploads, for the `upload-worker` binary to serve.
#![allow(clippy::print_stdout, reason = "an example that reports what happened")]

use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::{Engine, Event, EventKind, Observer};
use jobs_core::testing::Recorder;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_url};
use jobs_core::{FailedJob, Producer};
use upload_server::{TransferFile, transfer_to_oss};

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
            EventKind::Failed { kind, error, .. } => {
                format!("moved to the error queue [{kind}]: {error}")
            }
            EventKind::Requeued { error, .. } => format!("requeued: {error}"),
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
    let memory = MemoryTransport::new();
    let transport: Arc<dyn Transport> = match std::env::var("JOBS_AMQP_URL") {
        Ok(url) => {
            println!("on RabbitMQ at {}", redact_url(&url));
            Arc::new(AmqpTransport::connect(&url).await?)
        }
        Err(_) => {
            println!("on the in-memory broker (set JOBS_AMQP_URL to use RabbitMQ)");
            Arc::new(memory.clone())
        }
    };
    let uploads = [
        ("report.pdf", 52_113),
        ("photo.jpg", 2_048_000),
        ("backup.tar.flaky", 9_000),
        ("empty.txt", 0),
    ];
    let files = uploads.map(|(path, size)| TransferFile {
        path: path.to_owned(),
        size,
    });

    if std::env::args().nth(1).as_deref() == Some("enqueue") {
        // Only produce, for a worker running elsewhere (`upload-worker`) to serve.
        let producer = Producer::new(transport);
        for file in files {
            let path = file.path.clone();
            let id = transfer_to_oss::enqueue(&producer, file).await?;
            println!("enqueued {path} as {id}");
        }
        return Ok(());
    }

    let recorder = Arc::new(Recorder::new());
    let worker = Engine::builder(transport)
        .job(&transfer_to_oss::JOB)
        .observer(Arc::new(Report))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await?;

    let mut ids = Vec::new();
    for file in files {
        let path = file.path.clone();
        let id = transfer_to_oss::enqueue(&worker, file).await?;
        println!("enqueued {path} as {id}");
        ids.push(id);
    }

    for id in &ids {
        if recorder
            .finished(id.as_str(), Duration::from_secs(60))
            .await
            .is_err()
        {
            println!("{id} did not finish within a minute");
        }
    }

    println!("\nerror queue {}:", transfer_to_oss::ERROR_QUEUE);
    for letter in memory
        .messages(transfer_to_oss::ERROR_QUEUE)
        .into_iter()
        .map(FailedJob::new)
    {
        let kind = letter.kind().map_or("?", |k| k.as_str());
        println!(
            "  {} [{kind}] {}",
            letter.message_id().unwrap_or("-"),
            letter.error().unwrap_or("")
        );
    }
    if std::env::var_os("JOBS_AMQP_URL").is_some() {
        println!("  (on RabbitMQ: the failed job waits in that queue, with its failure headers)");
    }
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
