//! Publish/subscribe on a topic exchange: each event goes to the jobs whose binding pattern
//! matches its routing key.
//!
//! Order events are published to the topic exchange `orders.events` with routing keys of the
//! form `orders.<region>.<action>`, chosen per event with
//! `audit::with(event).routing_key("orders.us.created")`. Three jobs subscribe, each with its
//! own queue bound with a pattern, where `*` matches exactly one word and `#` zero or more:
//!
//! | job | binding | sees |
//! | --- | --- | --- |
//! | `eu_orders` | `orders.eu.*` | every EU event with one word after the region |
//! | `all_created` | `orders.*.created` | created orders of every region |
//! | `audit` | `orders.#` | every order event |
//!
//! It prints which jobs handled each event and what each job saw, and exits 1 if any job saw an
//! event its pattern does not match or missed one it does.
//!
//! `cargo run -p pubsub-topic` runs it on the in-memory broker, with no RabbitMQ. With
//! `JOBS_AMQP_URL` set (`JOBS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p
//! pubsub-topic`) it runs on that RabbitMQ instead: same code, same outcomes.
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

/// Something happened to an order; what and where is in the routing key.
#[derive(Clone, PartialEq, prost::Message)]
struct OrderEvent {
    /// The order.
    #[prost(string, tag = "1")]
    order_id: String,
}

// Each job's `routing_key` is the key its `enqueue` publishes with unless the call picks
// another; the macro checks that the job's own `binding` matches it.

/// Ships from the EU warehouse. Bound to `orders.eu.*`.
#[job(
    exchange = "orders.events",
    kind = "topic",
    routing_key = "orders.eu.created",
    binding = "orders.eu.*"
)]
async fn eu_orders(_order: OrderEvent) -> Result<(), JobError> {
    // A real handler would reserve stock in, or release it back to, the EU warehouse.
    Ok(())
}

/// Sends the customer an order confirmation. Bound to `orders.*.created`.
#[job(
    exchange = "orders.events",
    kind = "topic",
    routing_key = "orders.eu.created",
    binding = "orders.*.created"
)]
async fn all_created(_order: OrderEvent) -> Result<(), JobError> {
    // A real handler would render and send the confirmation mail.
    Ok(())
}

/// Writes every order event to the audit log. Bound to `orders.#`.
#[job(
    exchange = "orders.events",
    kind = "topic",
    routing_key = "orders.eu.created",
    binding = "orders.#"
)]
async fn audit(_order: OrderEvent) -> Result<(), JobError> {
    // A real handler would append the event to an append-only store.
    Ok(())
}

/// The subscribers: every job bound to `orders.events`.
const JOBS: [&Job; 3] = [&eu_orders::JOB, &all_created::JOB, &audit::JOB];

/// An event the program publishes.
#[derive(Debug)]
struct Publish {
    /// Its routing key.
    key: &'static str,
    /// Its order.
    order_id: &'static str,
    /// The jobs whose bindings match the key, sorted.
    expected: &'static [&'static str],
}

/// The events the program publishes, in order.
const EVENTS: [Publish; 5] = [
    Publish {
        key: "orders.eu.created",
        order_id: "A-1001",
        expected: &["all_created", "audit", "eu_orders"],
    },
    Publish {
        key: "orders.us.created",
        order_id: "A-1002",
        expected: &["all_created", "audit"],
    },
    Publish {
        key: "orders.eu.cancelled",
        order_id: "A-1001",
        expected: &["audit", "eu_orders"],
    },
    Publish {
        key: "orders.us.cancelled",
        order_id: "A-1002",
        expected: &["audit"],
    },
    // `*` is exactly one word, so `orders.eu.*` does not match two words after `eu`; `#` does.
    Publish {
        key: "orders.eu.refund.issued",
        order_id: "A-1001",
        expected: &["audit"],
    },
];

/// How long the program waits for the jobs to handle every event.
const WAIT: Duration = Duration::from_secs(60);

/// One published event and the jobs that handled it.
#[derive(Debug)]
struct Handled {
    /// The event.
    event: &'static Publish,
    /// The names of the jobs that handled it, sorted; a job that ran twice is there twice.
    jobs: Vec<&'static str>,
}

/// Starts the jobs on `transport`, publishes each event once with its routing key, waits (at
/// most `within`) until every job whose binding matches an event handled it, and stops the
/// jobs.
///
/// A job that did not handle an event in time is missing from that event's [`Handled::jobs`];
/// one that handled an event it should not have is there too.
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
    for event in &EVENTS {
        let order = OrderEvent {
            order_id: event.order_id.to_owned(),
        };
        // Any job on the exchange can publish to it (its `with` only names the exchange); the
        // routing key decides which queues get a copy.
        let id = audit::with(order)
            .routing_key(event.key)
            .enqueue(&engine)
            .await?;
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
    let expected_done = || {
        published.iter().all(|(event, id)| {
            let handlers = handlers_of(id.as_str());
            event.expected.iter().all(|job| handlers.contains(job))
        })
    };
    // A timeout is not an error here: the report shows which job missed which event.
    let _timed_out = recorder
        .wait_until(within, || expected_done().then_some(()))
        .await;
    // Lets any running handler finish, so the record read below is complete.
    engine.shutdown(Duration::from_secs(5)).await;

    Ok(published
        .into_iter()
        .map(|(event, id)| Handled {
            event,
            jobs: handlers_of(id.as_str()),
        })
        .collect())
}

/// The routing keys of the events `job` handled, in publish order (repeated if it ran twice).
fn seen_by(handled: &[Handled], job: &Job) -> Vec<&'static str> {
    handled
        .iter()
        .flat_map(|h| {
            h.jobs
                .iter()
                .filter(|&&name| name == job.name())
                .map(|_| h.event.key)
        })
        .collect()
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
        "publishing {} order events, once each, to the topic exchange {}\n",
        EVENTS.len(),
        audit::JOB.exchange()
    );
    let handled = run(transport, WAIT).await?;

    let mut as_expected = true;
    for Handled { event, jobs } in &handled {
        as_expected &= jobs.as_slice() == event.expected;
        let jobs = if jobs.is_empty() {
            "nobody".to_owned()
        } else {
            jobs.join(", ")
        };
        println!("{:<24} order {}: {jobs}", event.key, event.order_id);
    }
    println!();
    for job in JOBS {
        let seen = seen_by(&handled, job);
        println!(
            "{:<11} bound to {:<16} saw {} events: {}",
            job.name(),
            job.binding(),
            seen.len(),
            seen.join(", ")
        );
    }
    if !as_expected {
        println!("\nexpected each job to handle exactly the events its binding matches, once");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    demo().await.unwrap_or_else(|err| {
        eprintln!("pubsub-topic: {err}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_job_sees_only_the_events_its_pattern_matches() {
        let broker = MemoryTransport::new();
        let handled = run(Arc::new(broker.clone()), WAIT)
            .await
            .expect("the scenario runs");

        for h in &handled {
            assert_eq!(h.jobs, h.event.expected, "{}", h.event.key);
        }
        assert_eq!(
            seen_by(&handled, &eu_orders::JOB),
            ["orders.eu.created", "orders.eu.cancelled"]
        );
        assert_eq!(
            seen_by(&handled, &all_created::JOB),
            ["orders.eu.created", "orders.us.created"]
        );
        assert_eq!(seen_by(&handled, &audit::JOB).len(), 5);
        // Nothing left over that could still run: no copy waits in a queue or is unacked.
        for job in JOBS {
            assert_eq!(broker.queue_len(job.queue()), Some(0), "{}", job.queue());
            assert_eq!(broker.unacked(job.queue()), 0, "{}", job.queue());
        }
    }
}
