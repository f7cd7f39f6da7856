//! Every key at once.

use std::time::Duration;

use jobs_core::schedule::Missed;
use jobs_core::{Backoff, ExchangeKind, HeaderMatch, JobContext, JobError, QueueType, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Report {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[job(
    exchange = "reports",
    routing_key = "reports.pdf",
    kind = "topic",
    binding = "reports.*",
    queue = "reports.render",
    name = "render-report",
    retries = 7,
    backoff = "exp(250ms, x4, 10m)",
    timeout = "2m30s",
    concurrency = 65535,
    queue_type = "classic",
    schedule = "0 0 3 * * *",
    timezone = "Europe/Paris",
    missed = "skip",
    crate = "::jobs_core"
)]
async fn render(report: Report, ctx: JobContext) -> Result<(), JobError> {
    let _ = (report, ctx);
    Ok(())
}

#[job(
    exchange = "reports.by-header",
    routing_key = "",
    kind = "headers",
    headers(match = "all", format = "pdf", "paper size" = "a4", r#type = "report"),
    backoff = "1s, 10s, 1m",
)]
async fn archive(_: Report) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "broadcast", routing_key = "", kind = "fanout")]
async fn broadcast(_: Report) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    let job = &render::JOB;
    assert_eq!(job.name(), "render-report");
    assert_eq!(job.kind(), ExchangeKind::Topic);
    assert_eq!(job.binding(), "reports.*");
    assert_eq!(render::QUEUE, "reports.render");
    assert_eq!(render::ERROR_QUEUE, "reports.render.err");
    let options = job.options();
    assert_eq!(options.retries, Some(7));
    assert_eq!(
        options.backoff,
        Some(Backoff::Exponential {
            initial: Duration::from_millis(250),
            factor: 4,
            max: Duration::from_secs(600),
        })
    );
    assert_eq!(options.timeout, Some(Duration::from_secs(150)));
    assert_eq!(options.concurrency, Some(65535));
    assert_eq!(options.queue_type, Some(QueueType::Classic));
    let schedule = options.schedule.unwrap();
    assert_eq!(schedule.cron, Some("0 0 3 * * *"));
    assert_eq!(schedule.timezone, "Europe/Paris");
    assert_eq!(schedule.missed, Missed::Skip);

    let headers = archive::JOB.header_binding().unwrap();
    assert_eq!(headers.matching, HeaderMatch::All);
    assert_eq!(
        headers.values,
        &[("format", "pdf"), ("paper size", "a4"), ("type", "report")]
    );
    let Some(Backoff::Steps(steps)) = archive::JOB.options().backoff else {
        panic!("steps expected");
    };
    assert_eq!(
        steps,
        &[
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60)
        ]
    );

    assert_eq!(broadcast::JOB.kind(), ExchangeKind::Fanout);
    assert_eq!(broadcast::QUEUE, "broadcast.broadcast");
}
