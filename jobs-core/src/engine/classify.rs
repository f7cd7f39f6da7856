//! What a delivery is before its handler runs: a job to run at some attempt, or a message for
//! the error queue on its first delivery (too large, an unknown job, an unreadable attempt
//! header, a body that does not decode). Callable without a broker, so the fuzz target and its
//! corpus test run exactly the engine's decisions.

use std::sync::Arc;

use super::failure::Failure;
use crate::context::JobContext;
use crate::envelope::Envelope;
use crate::handler::HandlerFuture;
use crate::job::Job;
use crate::job_error::FailureKind;

/// The verdict on a delivery before any handler code runs.
pub(crate) enum Classified {
    /// The body decoded: the handler's future, not yet polled, at this attempt.
    Run {
        attempt: u32,
        running: HandlerFuture,
    },
    /// Never retried: straight to the error queue (attempt 0 when the header was unreadable).
    Refuse { attempt: u32, failure: Failure },
}

/// Classifies `envelope` for `job` on a queue that accepts `accepted_names`; `context` builds
/// the handler's context for the attempt once the envelope passed every other check.
pub(crate) fn classify(
    job: &Job,
    accepted_names: &[&str],
    max_message_size: usize,
    envelope: &Arc<Envelope>,
    context: impl FnOnce(u32) -> JobContext,
) -> Classified {
    let refuse = |attempt, kind, error| Classified::Refuse {
        attempt,
        failure: Failure::new(kind, error),
    };
    let size = envelope.body.len();
    if size > max_message_size {
        let error = format!("body of {size} bytes is over the {max_message_size}-byte limit");
        return refuse(0, FailureKind::TooLarge, error);
    }
    if let Some(name) = envelope.properties.kind.as_deref()
        && !accepted_names.contains(&name)
    {
        let error = format!(
            "queue `{}` serves job `{}`, and no known job named `{name}` publishes to exchange `{}`",
            job.queue(),
            job.name(),
            job.exchange()
        );
        return refuse(0, FailureKind::UnknownJob, error);
    }
    let attempt = match envelope.attempt() {
        Ok(attempt) => attempt,
        Err(err) => return refuse(0, FailureKind::Decode, err.to_string()),
    };
    match (job.0.handler)(&envelope.body, context(attempt)) {
        Ok(running) => Classified::Run { attempt, running },
        Err(err) => {
            let error = format!("body is not a valid `{}`: {err}", job.message_type());
            refuse(attempt, FailureKind::Decode, error)
        }
    }
}
