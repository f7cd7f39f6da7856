//! Delayed and periodic jobs: a reminder sent some seconds after an order, and a cleanup that
//! runs every two seconds, with no plugin, no database and no scheduler process of its own.
//!
//! The program enqueues three reminders delayed 1, 2 and 3 s (the longest first: a long delay
//! never holds back a short one) and lets the periodic `cleanup` job run for five seconds. It
//! prints when each reminder started after its enqueue and which slots the cleanup ran for, and
//! exits 1 if a reminder started early or more than 1.5 s late, or a slot was missed or ran
//! twice.
//!
//! `cargo run -p scheduling` runs it on the in-memory broker. With `JOBS_AMQP_URL` set
//! (`JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p scheduling`) it runs on
//! that RabbitMQ instead: same code, same outcomes.
#![allow(clippy::print_stdout, reason = "an example that reports what happened")]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::{Engine, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Transport, redact_url};
use jobs_core::{JobError, job};

/// A reminder about an order.
#[derive(Clone, PartialEq, prost::Message)]
struct Reminder {
    /// The order it is about.
    #[prost(string, tag = "1")]
    order: String,
}

/// Sends a reminder; enqueued with a delay.
#[job(exchange = "shop", routing_key = "reminder")]
async fn send_reminder(_reminder: Reminder) -> Result<(), JobError> {
    // A real handler would send an email.
    Ok(())
}

/// The periodic job's message: none, as a scheduled run's message is the type's default.
#[derive(Clone, PartialEq, prost::Message)]
struct Cleanup {}

/// Deletes expired carts, every two seconds. One worker's scheduler fires each slot, however
/// many workers serve the job.
#[job(exchange = "shop", routing_key = "cleanup", every = "2s")]
async fn cleanup(_: Cleanup) -> Result<(), JobError> {
    // A real handler would delete the carts nobody touched for a day.
    Ok(())
}

/// How long the cleanup runs.
const RUN_FOR: Duration = Duration::from_secs(5);
/// How late a reminder may start on RabbitMQ, whose TTLs expire a little after they are due.
const TOLERANCE: Duration = Duration::from_millis(1500);

/// What happened.
#[derive(Debug)]
struct Report {
    /// Each reminder's delay and how long after its enqueue it started.
    reminders: Vec<(Duration, Duration)>,
    /// The id of each cleanup run, in order: the job's name and its slot.
    cleanups: Vec<String>,
}

/// Runs the scenario on `transport`.
///
/// # Errors
///
/// When the jobs cannot start or an enqueue fails.
async fn run(transport: Arc<dyn Transport>) -> jobs_core::Result<Report> {
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(transport)
        .job(&send_reminder::JOB)
        .job(&cleanup::JOB)
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await?;

    let mut sent = Vec::new();
    for seconds in [3, 2, 1] {
        let delay = Duration::from_secs(seconds);
        let at = recorder.elapsed();
        let reminder = Reminder {
            order: format!("order-{seconds}"),
        };
        let id = send_reminder::with(reminder)
            .delay(delay) // or .at(SystemTime) for a point in time
            .enqueue(&engine)
            .await?;
        sent.push((id, at, delay));
    }
    tokio::time::sleep(RUN_FOR).await;
    engine.shutdown(Duration::from_secs(5)).await;

    let reminders = sent
        .iter()
        .filter_map(|(id, at, delay)| {
            let started = recorder
                .events_of(id.as_str())
                .into_iter()
                .find(|e| e.outcome == Outcome::Started)?;
            Some((*delay, started.at - *at))
        })
        .collect();
    let cleanups = recorder
        .events()
        .into_iter()
        .filter(|e| e.job == cleanup::JOB.name() && e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect();
    Ok(Report {
        reminders,
        cleanups,
    })
}

/// Whether every reminder started on time and every slot ran once.
fn on_time(report: &Report, tolerance: Duration) -> bool {
    let reminders = report.reminders.len() == 3
        && report
            .reminders
            .iter()
            .all(|&(delay, started)| started >= delay && started <= delay + tolerance);
    let mut slots = report.cleanups.clone();
    slots.dedup();
    reminders && slots.len() == report.cleanups.len() && (2..=3).contains(&slots.len())
}

async fn demo() -> jobs_core::Result<ExitCode> {
    let (transport, tolerance): (Arc<dyn Transport>, _) = match std::env::var("JOBS_AMQP_URL") {
        Ok(url) => {
            println!("on RabbitMQ at {}", redact_url(&url));
            (Arc::new(AmqpTransport::connect(&url).await?), TOLERANCE)
        }
        Err(_) => {
            println!("on the in-memory broker (set JOBS_AMQP_URL to use RabbitMQ)");
            (Arc::new(MemoryTransport::new()), Duration::from_millis(50))
        }
    };
    let report = run(transport).await?;
    for (delay, started) in &report.reminders {
        println!("a reminder delayed {delay:?} started {started:?} after its enqueue");
    }
    println!(
        "cleanup (every 2 s) ran {} times in {RUN_FOR:?}:",
        report.cleanups.len()
    );
    for id in &report.cleanups {
        println!("  {id}");
    }
    if !on_time(&report, tolerance) {
        println!("\nexpected each reminder on time and each slot once");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    demo().await.unwrap_or_else(|err| {
        eprintln!("scheduling: {err}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reminders_start_when_due_and_each_slot_runs_once() {
        let report = run(Arc::new(MemoryTransport::new()))
            .await
            .expect("the scenario runs");
        // On virtual time, exactly when due.
        assert_eq!(
            report.reminders,
            [3, 2, 1].map(|s| (Duration::from_secs(s), Duration::from_secs(s)))
        );
        assert!(on_time(&report, Duration::ZERO), "{report:?}");
        assert!(
            report.cleanups.iter().all(|id| id.starts_with("cleanup@")),
            "{report:?}"
        );
    }
}
