//! The demo: the worker engine, the HTTP server and its uploads in one process.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use jobs_core::engine::{Engine, Observer};
use jobs_core::error_queue::{Action, ErrorQueue};
use jobs_core::testing::{Outcome, Recorded, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_url};
use jobs_core::{FailureKind, Producer};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use upload_server::http::{Accepted, AppState, router};
use upload_server::{ObjectStorage, transfer_to_oss};

use crate::client;
use crate::report::Report;

/// The demo server's upload limit: the photo fits, the oversized file does not.
const LIMIT: u64 = 3 * 1024 * 1024;
/// How long one upload may take to end: the flaky one waits a second for its retry.
const WITHIN: Duration = Duration::from_secs(60);
/// How long running jobs get to finish at shutdown.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// How an upload should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Transferred,
    TransferredOnRetry,
    Fatal,
}

impl Ending {
    /// How the events of one job ended, if it ended in one of the known ways.
    fn of(events: &[Recorded]) -> Option<Self> {
        let retried = events
            .iter()
            .any(|e| matches!(e.outcome, Outcome::Retried { .. }));
        match (&events.last()?.outcome, retried) {
            (Outcome::Succeeded, false) => Some(Self::Transferred),
            (Outcome::Succeeded, true) => Some(Self::TransferredOnRetry),
            (
                Outcome::Failed {
                    kind: FailureKind::Fatal,
                    ..
                },
                false,
            ) => Some(Self::Fatal),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Transferred => "transferred",
            Self::TransferredOnRetry => "transferred on a retry",
            Self::Fatal => "fatal: in the error queue",
        }
    }
}

/// A file the demo uploads.
struct Sample {
    name: &'static str,
    content_type: &'static str,
    size: usize,
    expect: Ending,
}

impl Sample {
    fn content(&self) -> Vec<u8> {
        b"upload-server "
            .iter()
            .copied()
            .cycle()
            .take(self.size)
            .collect()
    }
}

const SAMPLES: [Sample; 4] = [
    Sample {
        name: "report.pdf",
        content_type: "application/pdf",
        size: 52_113,
        expect: Ending::Transferred,
    },
    Sample {
        name: "photo.jpg",
        content_type: "image/jpeg",
        size: 2_048_000,
        expect: Ending::Transferred,
    },
    Sample {
        name: "backup.tar.flaky",
        content_type: "application/x-tar",
        size: 9_000,
        expect: Ending::TransferredOnRetry,
    },
    Sample {
        name: "empty.txt",
        content_type: "text/plain",
        size: 0,
        expect: Ending::Fatal,
    },
];

/// Where the jobs run.
enum Broker {
    Memory(MemoryTransport),
    RabbitMq(Arc<AmqpTransport>),
}

impl Broker {
    /// RabbitMQ when `JOBS_AMQP_URL` is set, the in-memory broker otherwise.
    async fn from_env() -> anyhow::Result<Self> {
        match std::env::var_os("JOBS_AMQP_URL").map(OsString::into_string) {
            None => {
                println!("on the in-memory broker (set JOBS_AMQP_URL to use RabbitMQ)");
                Ok(Self::Memory(MemoryTransport::new()))
            }
            Some(Err(_)) => bail!("JOBS_AMQP_URL is not UTF-8"),
            Some(Ok(url)) => {
                let shown = redact_url(&url);
                println!("on RabbitMQ at {shown}");
                let transport = AmqpTransport::builder(url.as_str())
                    .connection_name("upload-server-demo")
                    .connect()
                    .await
                    .with_context(|| format!("could not connect to RabbitMQ at {shown}"))?;
                Ok(Self::RabbitMq(Arc::new(transport)))
            }
        }
    }

    fn transport(&self) -> Arc<dyn Transport> {
        match self {
            Self::Memory(memory) => Arc::new(memory.clone()),
            Self::RabbitMq(amqp) => Arc::clone(amqp) as Arc<dyn Transport>,
        }
    }

    async fn close(&self) {
        if let Self::RabbitMq(amqp) = self {
            amqp.close().await;
        }
    }
}

/// Runs the demo; an error when something failed or an upload did not end as it should.
pub(crate) async fn run() -> anyhow::Result<()> {
    let broker = Broker::from_env().await?;
    // Removed when dropped, whichever way this returns.
    let scratch = tempfile::Builder::new()
        .prefix("upload-server-demo-")
        .tempdir()
        .context("could not create a temporary directory")?;
    let upload_dir = scratch.path().join("uploads");
    tokio::fs::create_dir(&upload_dir)
        .await
        .with_context(|| format!("could not create {}", upload_dir.display()))?;
    let storage = Arc::new(ObjectStorage::new(scratch.path().join("bucket")));

    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(broker.transport())
        .job(&transfer_to_oss::JOB)
        .state(Arc::clone(&storage))
        .observer(Arc::new(Report))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await
        .context("could not start the worker engine")?;

    let app = AppState::new(Producer::new(broker.transport()), &upload_dir).with_max_upload(LIMIT);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("could not listen on a loopback port")?;
    let base = format!(
        "http://{}",
        listener.local_addr().context("no local address")?
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    println!("upload server on {base}");
    println!("  uploads in {}", upload_dir.display());
    println!("  bucket in  {}", storage.dir().display());

    let outcome = exercise(&base, &broker, &recorder, &storage).await;

    // A send fails only when the server has already ended; how it ended is checked below.
    let _ = stop.send(());
    let server_ended = server.await;
    engine.shutdown(SHUTDOWN).await;
    broker.close().await;
    outcome?;
    server_ended
        .context("the server task failed")?
        .context("the server failed")?;
    println!("\ndone");
    Ok(())
}

/// Posts the samples and the refused requests, waits for the jobs and reports.
async fn exercise(
    base: &str,
    broker: &Broker,
    recorder: &Recorder,
    storage: &ObjectStorage,
) -> anyhow::Result<()> {
    let client = client::new()?;
    let uploads = post_samples(&client, base).await?;
    // Everything that is not as it should be, reported together at the end.
    let mut wrong = post_refused(&client, base).await?;
    wrong.extend(wait_for_endings(&uploads, broker, recorder).await?);

    let names: HashMap<&str, &str> = uploads
        .iter()
        .map(|(sample, accepted)| (accepted.id.as_str(), sample.name))
        .collect();
    print_error_queue(broker, &names).await?;
    print_bucket(storage).await?;

    if wrong.is_empty() {
        Ok(())
    } else {
        bail!("not as expected:\n  {}", wrong.join("\n  "))
    }
}

/// Posts the four samples; each must be accepted.
async fn post_samples(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Vec<(&'static Sample, Accepted)>> {
    println!("\nPOST {base}/files, four uploads:");
    let mut uploads = Vec::new();
    for sample in &SAMPLES {
        let answer = client::post_file(
            client,
            base,
            sample.name,
            sample.content_type,
            sample.content(),
        )
        .await?;
        println!(
            "  {} ({} bytes) -> {} {}",
            sample.name,
            sample.size,
            answer.status,
            answer.body.trim()
        );
        if answer.status != StatusCode::ACCEPTED {
            bail!("{} was refused: {}", sample.name, answer.status);
        }
        let accepted: Accepted = serde_json::from_str(&answer.body)
            .with_context(|| format!("the answer for {} is not the JSON expected", sample.name))?;
        uploads.push((sample, accepted));
    }
    Ok(uploads)
}

/// Posts a file over the limit and a body that is not a form; returns what was not refused
/// as it should be.
async fn post_refused(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    println!("\ntwo requests the server refuses:");
    let mut wrong = Vec::new();
    let too_large = usize::try_from(LIMIT + 1).context("the limit is over the address space")?;
    let answer = client::post_file(
        client,
        base,
        "huge.bin",
        "application/octet-stream",
        vec![0; too_large],
    )
    .await?;
    println!(
        "  huge.bin ({too_large} bytes) -> {} {}",
        answer.status,
        answer.body.trim()
    );
    if answer.status != StatusCode::PAYLOAD_TOO_LARGE {
        wrong.push(format!("huge.bin got {}, not 413", answer.status));
    }
    let answer = client::post_raw(client, base, "text/plain", "not a form").await?;
    println!(
        "  a text/plain body -> {} {}",
        answer.status,
        answer.body.trim()
    );
    if answer.status != StatusCode::BAD_REQUEST {
        wrong.push(format!(
            "the text/plain body got {}, not 400",
            answer.status
        ));
    }
    Ok(wrong)
}

/// Waits for each upload's job to end; returns the ones that did not end as expected.
async fn wait_for_endings(
    uploads: &[(&Sample, Accepted)],
    broker: &Broker,
    recorder: &Recorder,
) -> anyhow::Result<Vec<String>> {
    println!("\nhow each upload ended:");
    let mut wrong = Vec::new();
    for (sample, accepted) in uploads {
        let events = recorder
            .finished(&accepted.id, WITHIN)
            .await
            .map_err(|timed_out| {
                let hint = match broker {
                    Broker::RabbitMq(_) => {
                        "; is another worker (upload-worker) consuming uploadserver.trans.oss?"
                    }
                    Broker::Memory(_) => "",
                };
                anyhow!(
                    "{} ({}) did not end within {WITHIN:?}{hint}; its events: {:?}",
                    sample.name,
                    accepted.id,
                    timed_out.0
                )
            })?;
        let ended = Ending::of(&events);
        println!(
            "  {:<17} {}",
            sample.name,
            ended.map_or("ended unexpectedly", Ending::describe)
        );
        if ended != Some(sample.expect) {
            wrong.push(format!(
                "{} should have been {}: {events:?}",
                sample.name,
                sample.expect.describe()
            ));
        }
    }
    Ok(wrong)
}

/// Prints this run's failed jobs, read without taking them out of the error queue.
async fn print_error_queue(broker: &Broker, names: &HashMap<&str, &str>) -> anyhow::Result<()> {
    let queue = ErrorQueue::new(broker.transport(), transfer_to_oss::QUEUE);
    println!("\nerror queue {}:", queue.name());
    let mut earlier = 0u64;
    queue
        .walk(None, |failed| {
            let name = failed.message_id().and_then(|id| names.get(id));
            match name {
                Some(name) => println!(
                    "  {name} {} [{}] {}",
                    failed.message_id().unwrap_or("-"),
                    failed.kind().map_or("?", FailureKind::as_str),
                    failed.error().unwrap_or_default()
                ),
                None => earlier += 1,
            }
            Action::Keep
        })
        .await
        .context("could not read the error queue")?;
    if earlier > 0 {
        println!(
            "  (and {earlier} from earlier runs: `upload-worker errors list transfer_to_oss`)"
        );
    }
    if let Broker::RabbitMq(_) = broker {
        println!("  (on RabbitMQ the failed job stays there, with its failure headers)");
    }
    Ok(())
}

/// Prints what the bucket holds.
async fn print_bucket(storage: &ObjectStorage) -> anyhow::Result<()> {
    println!("\nbucket {}:", storage.dir().display());
    for object in storage.list().await.context("could not list the bucket")? {
        println!("  {:>9} bytes  {}", object.size, object.key);
    }
    Ok(())
}
