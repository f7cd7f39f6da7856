//! Prints each job event as it happens.

use jobs_core::engine::{Event, EventKind, Observer};

/// An [`Observer`] that prints a line per event.
#[derive(Debug)]
pub(crate) struct Report;

impl Observer for Report {
    fn on_event(&self, event: &Event<'_>) {
        let what = match event.kind {
            // Every attempt ends in one of the others: a line each is enough.
            EventKind::Started => return,
            EventKind::Succeeded { elapsed } => format!("succeeded in {elapsed:.1?}"),
            EventKind::Retried {
                kind, error, delay, ..
            } => format!("failed [{kind}]: {error}; retry in {delay:?}"),
            EventKind::Failed { kind, error, .. } => {
                format!("failed for good [{kind}], to the error queue: {error}")
            }
            EventKind::PublishFailed { error, retry_in } => {
                format!("could not publish its outcome ({error}); again in {retry_in:?}")
            }
            EventKind::Requeued { error, .. } => format!("requeued: {error}"),
            // A kind added to jobs-core later.
            _ => format!("{:?}", event.kind),
        };
        println!(
            "  [job] {} {} attempt {}: {what}",
            event.job.name(),
            event.message_id.unwrap_or("-"),
            event.attempt
        );
    }
}
