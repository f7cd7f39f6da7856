//! The code `#[job]` generates must be lint-clean in crates that deny warnings, pedantic clippy
//! lints and missing docs: `cargo clippy --all-targets -- -D warnings` fails here otherwise.
#![deny(
    warnings,
    unused_qualifications,
    unreachable_pub,
    missing_docs,
    clippy::all,
    clippy::pedantic
)]

use std::time::Duration;

use jobs_core::{
    Backoff, Enqueue, ExchangeKind, HeaderMatch, JobContext, JobError, MessageId, Producer,
    QueueType, job,
};

/// A file to upload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferFile {
    /// Where the file is.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its size in bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// A report to render.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Report {
    /// The report's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// Uploads a file, with the context.
///
/// # Errors
///
/// A fatal error for an empty file on a retry.
#[job(
    exchange = "uploads",
    routing_key = "oss",
    retries = 3,
    backoff = "1s, 5s, 30s",
    timeout = "1m30s"
)]
pub async fn transfer_to_oss(file: TransferFile, ctx: JobContext) -> Result<(), JobError> {
    if file.size == 0 && ctx.attempt() > 1 {
        return Err(JobError::fatal("empty file"));
    }
    Ok(())
}

/// Renders a report, without the context; private, so its producer goes unused.
#[job(
    exchange = "reports",
    routing_key = "",
    kind = "headers",
    headers(match = "any", format = "pdf", content-kind = "report"),
    queue_type = "classic",
    concurrency = 4
)]
async fn render(report: Report) -> Result<(), JobError> {
    if report.id == 0 {
        return Err(JobError::fatal("no report"));
    }
    Ok(())
}

/// Audits every upload, on a topic exchange.
#[job(
    exchange = "events",
    routing_key = "uploads.oss.done",
    kind = "topic",
    binding = "uploads.#",
    name = "audit-upload",
    backoff = "exp(500ms, x3, 1h)"
)]
pub(crate) async fn audit(file: TransferFile, _ctx: JobContext) -> Result<(), std::io::Error> {
    let _ = file;
    Ok(())
}

#[test]
fn names_default_from_the_exchange_and_the_fn() {
    assert_eq!(transfer_to_oss::JOB.name(), "transfer_to_oss");
    assert_eq!(transfer_to_oss::JOB.queue(), "uploads.transfer_to_oss");
    assert_eq!(transfer_to_oss::QUEUE, "uploads.transfer_to_oss");
    assert_eq!(transfer_to_oss::ERROR_QUEUE, "uploads.transfer_to_oss.err");
    assert_eq!(transfer_to_oss::JOB.exchange(), "uploads");
    assert_eq!(transfer_to_oss::JOB.kind(), ExchangeKind::Direct);
    assert_eq!(transfer_to_oss::JOB.routing_key(), "oss");
    assert_eq!(transfer_to_oss::JOB.binding(), "oss");
    assert_eq!(transfer_to_oss::JOB.header_binding(), None);
    assert_eq!(transfer_to_oss::JOB.message_type(), "TransferFile");
}

#[test]
fn options_hold_only_what_the_attribute_sets() {
    const STEPS: &[Duration] = &[
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ];
    let options = transfer_to_oss::JOB.options();
    assert_eq!(options.retries, Some(3));
    assert_eq!(options.backoff, Some(Backoff::Steps(STEPS)));
    assert_eq!(options.timeout, Some(Duration::from_secs(90)));
    assert_eq!(options.concurrency, None);
    assert_eq!(options.queue_type, None);

    let options = render::JOB.options();
    assert_eq!(options.retries, None);
    assert_eq!(options.backoff, None);
    assert_eq!(options.timeout, None);
    assert_eq!(options.concurrency, Some(4));
    assert_eq!(options.queue_type, Some(QueueType::Classic));

    assert_eq!(
        audit::JOB.options().backoff,
        Some(Backoff::Exponential {
            initial: Duration::from_millis(500),
            factor: 3,
            max: Duration::from_hours(1),
        })
    );
}

#[test]
fn headers_and_topic_bindings_are_kept() {
    let binding = render::JOB.header_binding().expect("a header binding");
    assert_eq!(binding.matching, HeaderMatch::Any);
    assert_eq!(
        binding.values,
        &[("format", "pdf"), ("content-kind", "report")]
    );
    assert_eq!(render::JOB.kind(), ExchangeKind::Headers);
    assert_eq!(render::JOB.routing_key(), "");

    assert_eq!(audit::JOB.name(), "audit-upload");
    assert_eq!(audit::JOB.kind(), ExchangeKind::Topic);
    assert_eq!(audit::JOB.binding(), "uploads.#");
    assert_eq!(audit::QUEUE, "events.audit");
}

#[test]
fn every_job_is_registered() {
    let names: Vec<&str> = jobs_core::registry::registered()
        .iter()
        .map(|job| job.name())
        .collect();
    assert_eq!(names, ["audit-upload", "render", "transfer_to_oss"]);
    let render = jobs_core::registry::find("render").expect("registered");
    assert_eq!(render.queue(), render::QUEUE);
}

/// Enqueues a file through the typed producer.
async fn send(producer: &Producer) -> jobs_core::Result<MessageId> {
    transfer_to_oss::enqueue(producer, TransferFile::default()).await
}

#[test]
fn producers_are_typed() {
    let enqueue: Enqueue<Report> = render::with(Report { id: 1 }).header("tenant", "acme");
    drop(enqueue);
    let _ = send;
}
