//! What the engine reports about each job it runs: the hook behind test assertions, logs and
//! metrics.

use std::time::Duration;

use crate::job::Job;
use crate::job_error::FailureKind;

/// Receives the engine's [`Event`]s. Called in line on the hot path: keep it cheap.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<'_>);
}

/// Something that happened to one delivery of a job, or to the job on this worker (its kill
/// switch: then without a message id, attempt 0).
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// The job.
    pub job: &'static Job,
    /// The message id, when the message has one.
    pub message_id: Option<&'a str>,
    /// The attempt, from 1 (0 when the envelope's attempt header was unreadable).
    pub attempt: u32,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// What happened to a delivery.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EventKind<'a> {
    /// The handler started.
    Started,
    /// The handler succeeded.
    Succeeded {
        /// How long it ran.
        elapsed: Duration,
    },
    /// The attempt failed and the job waits in a retry queue.
    Retried {
        /// How long it ran.
        elapsed: Duration,
        /// Why it failed.
        kind: FailureKind,
        /// The error chain.
        error: &'a str,
        /// How long it waits before the next attempt.
        delay: Duration,
        /// Whether the handler ran for this delivery (a [`Started`](EventKind::Started) came
        /// first), rather than the retry being a decision remembered from an earlier delivery
        /// whose retry could not be published.
        started: bool,
    },
    /// The job failed for good: it went to its error queue.
    Failed {
        /// Why.
        kind: FailureKind,
        /// The error chain.
        error: &'a str,
        /// Whether the handler ran (a [`Started`](EventKind::Started) came first), rather than
        /// the delivery being refused before it (undecodable, unknown job, too large).
        started: bool,
    },
    /// A failed attempt's retry or error-queue publish failed; it is tried again after
    /// `retry_in`, the delivery held unacked meanwhile.
    PublishFailed {
        /// Why the publish failed.
        error: &'a str,
        /// The pause before the next try.
        retry_in: Duration,
    },
    /// The outcome could not be made durable in time (neither the retry nor the error-queue
    /// publish was confirmed), so the delivery went back to its queue; the worker remembers
    /// the decision and publishes it, without running the handler, when the delivery comes
    /// back to it.
    Requeued {
        /// Why the publish failed.
        error: &'a str,
        /// Whether the handler ran (a [`Started`](EventKind::Started) came first).
        started: bool,
    },
    /// The job's kill switch tripped on this worker: it stops taking the job's deliveries for
    /// `cool_down`, then lets one through as a probe.
    SwitchTripped {
        /// Failed attempts in the window (for a failed probe: 1).
        failures: u32,
        /// Attempts in the window (for a failed probe: 1).
        attempts: u32,
        /// How long it stays open.
        cool_down: Duration,
    },
    /// The job's kill switch closed on this worker: a probe succeeded, and it takes the job's
    /// deliveries again.
    SwitchClosed,
}
