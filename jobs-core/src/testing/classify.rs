//! The engine's decision on a delivery before any handler code runs, callable alone: for the
//! fuzz target (`fuzz/`) and its corpus test.

use std::sync::{Arc, OnceLock};

use crate::context::{ContextShared, JobContext, StateMap};
use crate::engine::classify::{Classified, classify as engine_classify};
use crate::envelope::Envelope;
use crate::job::Job;
use crate::job_error::FailureKind;
use crate::producer::Producer;
use crate::transport::memory::MemoryTransport;

/// What the engine decides about a delivery before any handler code runs; see [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The body decoded: the handler would run at this attempt.
    Run {
        /// The attempt, from the `x-jobs-attempt` header.
        attempt: u32,
    },
    /// Straight to the error queue on the first delivery, never retried.
    ErrorQueue {
        /// Why: `TooLarge`, `UnknownJob` or `Decode`.
        kind: FailureKind,
    },
}

/// Classifies a delivery of `envelope` on `job`'s queue as the engine does (the same code: the
/// size limit, the job name, the attempt header, then the job's own body decoding), with `job`
/// the only job known on its exchange. The handler's future is built but never polled.
#[must_use]
pub fn classify(job: &'static Job, envelope: Envelope, max_message_size: usize) -> Classification {
    // A context needs a producer; handlers are never polled here, so nothing publishes.
    static CONTEXT: OnceLock<ContextShared> = OnceLock::new();
    let shared = CONTEXT.get_or_init(|| {
        let transport = Arc::new(MemoryTransport::new());
        ContextShared::new(Producer::new(transport), StateMap::new())
    });
    let envelope = Arc::new(envelope);
    let context =
        |attempt| JobContext::new(shared, Arc::clone(&envelope), Some(job), attempt, false);
    match engine_classify(job, &[job.name()], max_message_size, &envelope, context) {
        Classified::Run { attempt, .. } => Classification::Run { attempt },
        Classified::Refuse { failure, .. } => Classification::ErrorQueue { kind: failure.kind },
    }
}
