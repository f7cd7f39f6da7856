//! Publish/subscribe on a fanout exchange: an event is published once, and every job bound to
//! the exchange gets its own copy.
//!
//! Two jobs subscribe to the fanout exchange `uploads.events`, each with its own queue:
//! `make_thumbnail` (queue `uploads.events.make_thumbnail`) and `index_upload` (queue
//! `uploads.events.index_upload`). The program publishes three `UploadEvent`s, one publish each,
//! and each job runs three times: a fanout exchange ignores the routing key and copies every
//! message to every queue bound to it. A new subscriber is a new job on the exchange; the
//! publisher does not change.
//!
//! It prints which jobs handled each event and how often each job ran, and exits 1 if any job
//! missed an event or ran twice for one.
//!
//! `cargo run -p pubsub-fanout` runs it on the in-memory broker, with no RabbitMQ. With
//! `JOBS_AMQP_URL` set (`JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p
//! pubsub-fanout`) it runs on that RabbitMQ instead: same code, same outcomes.
#![allow(clippy::print_stdout, reason = "an example that reports what happened")]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::{Engine, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_url};
use jobs_core::{Job, JobError, job};

/// A file was uploaded: the event both jobs subscribe to.
#[derive(Clone, PartialEq, prost::Message)]
struct UploadEvent {
    /// Where the upload is stored.
    #[prost(string, tag = "1")]
    path: String,
    /// Its size in bytes.
    #[prost(uint64, tag = "2")]
    size: u64,
}

/// Makes a thumbnail of an upload. Gets a copy of every event on `uploads.events`.
#[job(exchange = "uploads.events", kind = "fanout", routing_key = "")]
async fn make_thumbnail(_upload: UploadEvent) -> Result<(), JobError> {
    // A real handler would read the file at `path` and store a small copy beside it.
    Ok(())
}

/// Adds an upload to the search index. Gets a copy of every event on `uploads.events`.
#[job(exchange = "uploads.events", kind = "fanout", routing_key = "")]
async fn index_upload(_upload: UploadEvent) -> Result<(), JobError> {
    // A real handler would extract the file's text and metadata and index them.
    Ok(())
}

/// The subscribers: every job bound to `uploads.events`.
const JOBS: [&Job; 2] = [&make_thumbnail::JOB, &index_upload::JOB];

/// The uploads the program publishes, as (path, size in bytes).
const UPLOADS: [(&str, u64); 3] = [
    ("report.pdf", 52_113),
    ("photo.jpg", 2_048_000),
    ("notes.txt", 812),
];

/// How long the program waits for the jobs to handle every event.
const WAIT: Duration = Duration::from_secs(60);

/// One published event and the jobs that handled it.
#[derive(Debug)]
struct Handled {
    /// The event.
    event: UploadEvent,
    /// The names of the jobs that handled it, sorted; a job that ran twice is there twice.
    jobs: Vec<&'static str>,
}

/// Starts both jobs on `transport`, publishes each upload once, waits (at most `within`) until
/// both jobs handled every one, and stops the jobs.
///
/// A job that did not handle an event in time is missing from that event's [`Handled::jobs`].
///
/// # Errors
///
/// When the jobs cannot start (their queues cannot be declared) or a publish fails.
async fn run(transport: Arc<dyn Transport>, within: Duration) -> jobs_core::Result<Vec<Handled>> {
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(transport)
        .jobs(JOBS)
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await?;

    let mut published = Vec::new();
    for (path, size) in UPLOADS {
        let event = UploadEvent {
            path: path.to_owned(),
            size,
        };
        // One publish to the exchange. Any job on it can publish (its `enqueue` only names the
        // exchange), and the fanout copies the message to both jobs' queues.
        let id = make_thumbnail::enqueue(&engine, event.clone()).await?;
        published.push((event, id));
    }

    // The jobs that succeeded on message `id`, sorted.
    let handlers_of = |id: &str| {
        let mut jobs: Vec<&'static str> = recorder
            .events_of(id)
            .into_iter()
            .filter(|e| e.outcome == Outcome::Succeeded)
            .map(|e| e.job)
            .collect();
        jobs.sort_unstable();
        jobs
    };
    let every_job_done = || {
        published.iter().all(|(_, id)| {
            let handlers = handlers_of(id.as_str());
            JOBS.iter().all(|job| handlers.contains(&job.name()))
        })
    };
    // A timeout is not an error here: the report shows which job missed which event.
    let _timed_out = recorder
        .wait_until(within, || every_job_done().then_some(()))
        .await;
    // Lets any running handler finish, so the record read below is complete.
    engine.shutdown(Duration::from_secs(5)).await;

    Ok(published
        .into_iter()
        .map(|(event, id)| Handled {
            jobs: handlers_of(id.as_str()),
            event,
        })
        .collect())
}

/// How many times `job` ran, over all events.
fn runs(handled: &[Handled], job: &Job) -> usize {
    handled
        .iter()
        .map(|h| h.jobs.iter().filter(|&&name| name == job.name()).count())
        .sum()
}

/// Runs the scenario on the transport `JOBS_AMQP_URL` names, or on the in-memory broker, and
/// prints what happened.
///
/// # Errors
///
/// When the broker cannot be reached, or as [`run`].
async fn demo() -> jobs_core::Result<ExitCode> {
    let transport: Arc<dyn Transport> = match std::env::var("JOBS_AMQP_URL") {
        Ok(url) => {
            println!("on RabbitMQ at {}", redact_url(&url));
            Arc::new(AmqpTransport::connect(&url).await?)
        }
        Err(_) => {
            println!("on the in-memory broker (set JOBS_AMQP_URL to use RabbitMQ)");
            Arc::new(MemoryTransport::new())
        }
    };
    println!(
        "publishing {} upload events, once each, to the fanout exchange {}\n",
        UPLOADS.len(),
        make_thumbnail::JOB.exchange()
    );
    let handled = run(transport, WAIT).await?;

    // Every job, once: what each event must show.
    let mut every_job: Vec<&str> = JOBS.iter().map(|job| job.name()).collect();
    every_job.sort_unstable();
    let mut complete = true;
    for Handled { event, jobs } in &handled {
        println!(
            "{} ({} bytes) handled by: {}",
            event.path,
            event.size,
            jobs.join(", ")
        );
        complete &= *jobs == every_job;
    }
    println!();
    for job in JOBS {
        let runs = runs(&handled, job);
        println!(
            "{} ran {runs} times for {} events (queue {})",
            job.name(),
            handled.len(),
            job.queue()
        );
    }
    if !complete {
        println!("\nexpected every job to handle every event exactly once");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    demo().await.unwrap_or_else(|err| {
        eprintln!("pubsub-fanout: {err}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_job_handles_every_event_once() {
        let broker = MemoryTransport::new();
        let handled = run(Arc::new(broker.clone()), WAIT)
            .await
            .expect("the scenario runs");

        let paths: Vec<&str> = handled.iter().map(|h| h.event.path.as_str()).collect();
        assert_eq!(paths, ["report.pdf", "photo.jpg", "notes.txt"]);
        for h in &handled {
            assert_eq!(
                h.jobs,
                ["index_upload", "make_thumbnail"],
                "{}",
                h.event.path
            );
        }
        assert_eq!(runs(&handled, &make_thumbnail::JOB), 3);
        assert_eq!(runs(&handled, &index_upload::JOB), 3);
        // Nothing left over that could still run: no copy waits in a queue or is unacked.
        for job in JOBS {
            assert_eq!(broker.queue_len(job.queue()), Some(0), "{}", job.queue());
            assert_eq!(broker.unacked(job.queue()), 0, "{}", job.queue());
        }
    }
}
