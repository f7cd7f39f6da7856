//! Making a failed delivery's outcome durable when the broker will not take it at once.
//!
//! A retry or error-queue publish can fail for a while: the queue was deleted, a length policy
//! rejects publishes, a node nacks, an alarm blocks the connection. Requeueing the delivery at
//! once would run its handler again at the same attempt with no delay: a hot loop on classic
//! queues, and on quorum queues a burnt delivery limit. Instead the delivery stays unacked,
//! holding its handler slot, and the publish is tried again with a growing pause until it is
//! confirmed or [`EngineBuilder::outcome_publish_timeout`](super::EngineBuilder::outcome_publish_timeout)
//! passes. A retry that cannot be published in that time goes to the error queue instead, the
//! reason added to its error. Only when the error queue cannot take it either does the delivery
//! go back to its queue, and the decision is remembered by message id, so a redelivery to this
//! worker publishes it again without running the handler twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::consumer::Abandon;
use super::failure::Failure;
use crate::trace::TraceContext;
use crate::transport::Publish;

/// The first pause after a failed outcome publish; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two tries of an outcome publish.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Decisions remembered at once; the oldest go first.
const REMEMBERED: usize = 10_000;

/// Why an outcome publish stopped being tried.
pub(crate) enum NotPublished {
    /// It failed until the timeout passed; the last error.
    GaveUp(crate::Error),
    /// The delivery's consumer is gone: the broker requeued it, so publishing now would only
    /// make a second copy.
    Lost,
}

/// Publishes `publish` until it is confirmed, pausing between tries, for up to `timeout`.
/// `failed` hears of every failed try and the pause before the next one.
pub(crate) async fn publish(
    producer: &crate::Producer,
    publish: Publish,
    timeout: Duration,
    abandon: &Abandon,
    mut failed: impl FnMut(&crate::Error, Duration),
) -> Result<(), NotPublished> {
    let give_up_at = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let error = match producer.publish(publish.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if abandon.is_lost() {
            return Err(NotPublished::Lost);
        }
        // The same message would be refused again: no point waiting.
        if matches!(
            error,
            crate::Error::HeadersTooLarge { .. } | crate::Error::TooLarge { .. }
        ) {
            return Err(NotPublished::GaveUp(error));
        }
        let left = give_up_at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotPublished::GaveUp(error));
        }
        let wait = pause.min(left);
        failed(&error, wait);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = abandon.lost() => return Err(NotPublished::Lost),
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Where a decided failure goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// This retry queue, which holds the job for this long.
    Retry { queue: String, delay: Duration },
    /// The delay cascade, which brings the job back to its queue after `delay`: a handler's
    /// `retry_after`.
    Delayed { delay: Duration },
    /// The error queue.
    ErrorQueue,
}

/// A failure whose outcome was decided: what to publish, whatever the handler would do if run
/// again.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) attempt: u32,
    pub(crate) failure: Failure,
    pub(crate) destination: Destination,
    /// The trace the handler ran under; `None` when it did not run.
    pub(crate) trace: Option<TraceContext>,
    /// How long the handler ran.
    pub(crate) elapsed: Duration,
}

/// Decisions whose publish never succeeded, by message id: a redelivery that finds its decision
/// here skips the handler. Bounded; only touched on failure paths and redeliveries.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    by_id: HashMap<String, Decision>,
    order: VecDeque<String>,
}

impl Decisions {
    /// Remembers `decision` for the delivery with `message_id`.
    pub(crate) fn remember(&self, message_id: &str, decision: Decision) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner
            .by_id
            .insert(message_id.to_owned(), decision)
            .is_none()
        {
            inner.order.push_back(message_id.to_owned());
        }
        while inner.order.len() > REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_id.remove(&oldest);
            }
        }
    }

    /// Takes the decision for `message_id` at `attempt`, if one is remembered.
    pub(crate) fn take(&self, message_id: &str, attempt: u32) -> Option<Decision> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.by_id.get(message_id)?.attempt != attempt {
            return None;
        }
        inner.order.retain(|id| id != message_id);
        inner.by_id.remove(message_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureKind;

    fn decision(attempt: u32) -> Decision {
        Decision {
            attempt,
            failure: Failure::new(FailureKind::Handler, "boom"),
            destination: Destination::ErrorQueue,
            trace: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn a_decision_is_taken_once_and_only_at_its_attempt() {
        let decisions = Decisions::default();
        decisions.remember("a", decision(2));
        assert!(decisions.take("a", 1).is_none());
        assert_eq!(decisions.take("a", 2).map(|d| d.attempt), Some(2));
        assert!(decisions.take("a", 2).is_none());
    }

    #[test]
    fn the_oldest_decisions_are_forgotten_first() {
        let decisions = Decisions::default();
        for n in 0..=REMEMBERED {
            decisions.remember(&n.to_string(), decision(1));
        }
        assert!(decisions.take("0", 1).is_none());
        assert!(decisions.take(&REMEMBERED.to_string(), 1).is_some());
    }
}
