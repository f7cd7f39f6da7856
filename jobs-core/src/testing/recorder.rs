//! A record of the engine's events, for assertions.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::engine::{Event, EventKind, Observer};
use crate::job::Job;
use crate::job_error::FailureKind;

/// One event in a [`Recorder`]'s record.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Time since the recorder was made (virtual on a paused clock).
    pub at: Duration,
    /// The job's name.
    pub job: &'static str,
    /// The message id.
    pub message_id: Option<String>,
    /// The attempt.
    pub attempt: u32,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened, in a [`Recorded`] event.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler started.
    Started,
    /// The handler succeeded.
    Succeeded,
    /// The attempt failed; the job waits `delay` in a retry queue.
    Retried {
        /// Why.
        kind: FailureKind,
        /// The error chain.
        error: String,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// The job went to the error queue.
    Failed {
        /// Why.
        kind: FailureKind,
        /// The error chain.
        error: String,
    },
    /// A failed attempt's retry or error-queue publish failed and is tried again.
    PublishFailed {
        /// Why.
        error: String,
    },
    /// The outcome could not be published in time; the delivery went back to its queue.
    Requeued {
        /// Why.
        error: String,
    },
    /// The job's kill switch tripped on this worker (no message id).
    SwitchTripped {
        /// Failed attempts in the window.
        failures: u32,
        /// Attempts in the window.
        attempts: u32,
    },
    /// The job's kill switch closed on this worker (no message id).
    SwitchClosed,
}

/// An [`Observer`] that records every event, for assertions, with bounded waits.
///
/// [`TestApp`](super::TestApp) keeps one; give one to an [`Engine`](crate::engine::Engine) on
/// any transport with [`EngineBuilder::observer`](crate::engine::EngineBuilder::observer).
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    events: Mutex<Vec<Recorded>>,
    changed: Notify,
}

impl Recorder {
    /// An empty record, timed from now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
            changed: Notify::new(),
        }
    }

    /// The time since the record was made, on the clock its events' [`Recorded::at`] use
    /// (virtual on a paused clock): to time something against them.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every event so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<Recorded> {
        self.lock().clone()
    }

    /// The events of one message, in order.
    #[must_use]
    pub fn events_of(&self, message_id: &str) -> Vec<Recorded> {
        self.lock()
            .iter()
            .filter(|e| e.message_id.as_deref() == Some(message_id))
            .cloned()
            .collect()
    }

    /// How many events of `job` match `outcome`.
    #[must_use]
    pub fn count(&self, job: &Job, outcome: fn(&Outcome) -> bool) -> usize {
        self.lock()
            .iter()
            .filter(|e| e.job == job.name() && outcome(&e.outcome))
            .count()
    }

    /// Waits until the message's last event ends it (it succeeded or went to the error queue)
    /// and returns its events.
    ///
    /// # Errors
    ///
    /// [`TimedOut`], with the events so far, when that takes longer than `within`.
    pub async fn finished(
        &self,
        message_id: &str,
        within: Duration,
    ) -> Result<Vec<Recorded>, TimedOut> {
        self.wait_until(within, || {
            let events = self.events_of(message_id);
            events
                .last()
                .is_some_and(|e| matches!(e.outcome, Outcome::Succeeded | Outcome::Failed { .. }))
                .then_some(events)
        })
        .await
        .map_err(|()| TimedOut(self.events_of(message_id)))
    }

    /// Waits, at most `within`, until `done` returns a value.
    ///
    /// # Errors
    ///
    /// `Err(())` when `within` passes first.
    pub async fn wait_until<T>(
        &self,
        within: Duration,
        mut done: impl FnMut() -> Option<T>,
    ) -> Result<T, ()> {
        let deadline = Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if let Some(value) = done() {
                return Ok(value);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done().ok_or(());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A wait on a [`Recorder`] timed out; these are the events it saw.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("timed out; events so far: {0:?}")]
pub struct TimedOut(pub Vec<Recorded>);

impl Observer for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        let outcome = match event.kind {
            EventKind::Started => Outcome::Started,
            EventKind::Succeeded { .. } => Outcome::Succeeded,
            EventKind::Retried {
                kind, error, delay, ..
            } => Outcome::Retried {
                kind,
                error: error.to_owned(),
                delay,
            },
            EventKind::Failed { kind, error, .. } => Outcome::Failed {
                kind,
                error: error.to_owned(),
            },
            EventKind::PublishFailed { error, .. } => Outcome::PublishFailed {
                error: error.to_owned(),
            },
            EventKind::Requeued { error, .. } => Outcome::Requeued {
                error: error.to_owned(),
            },
            EventKind::SwitchTripped {
                failures, attempts, ..
            } => Outcome::SwitchTripped { failures, attempts },
            EventKind::SwitchClosed => Outcome::SwitchClosed,
        };
        self.lock().push(Recorded {
            at: self.started.elapsed(),
            job: event.job.name(),
            message_id: event.message_id.map(str::to_owned),
            attempt: event.attempt,
            outcome,
        });
        self.changed.notify_waiters();
    }
}
