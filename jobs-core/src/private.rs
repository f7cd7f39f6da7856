//! Used by the code `#[job]` generates. Not public API: anything here may change in any release.

use std::future::Future;

pub use crate::backoff::Backoff;
pub use crate::job::{
    ExchangeKind, HeaderBinding, HeaderMatch, Job, JobMessage, JobOptions, QueueType,
};
pub use crate::registry::Registration;
pub use ::bytes;
pub use ::core;
pub use ::inventory;

use crate::context::JobContext;
use crate::job_error::JobError;
use crate::transport::BoxFuture;

/// The future of one handler run.
pub type HandlerFuture = BoxFuture<'static, Result<(), JobError>>;

/// What a job's generated handler returns: the running handler, or why the body did not decode.
pub type HandleResult = Result<HandlerFuture, prost::DecodeError>;

/// A job's type-erased handler: decodes the body and starts the user's fn.
///
/// The body is borrowed: decoding copies what it keeps, and a shared copy of the delivery's
/// buffer would cost an allocation per job.
pub type Handler = fn(&[u8], JobContext) -> HandleResult;

/// Every field of a [`Job`], for `#[job]` to fill in a `static`.
#[allow(missing_debug_implementations)]
pub struct JobParts {
    pub name: &'static str,
    pub exchange: &'static str,
    pub kind: ExchangeKind,
    pub routing_key: &'static str,
    pub binding: &'static str,
    pub headers: Option<HeaderBinding>,
    pub queue: &'static str,
    pub message_type: &'static str,
    pub options: JobOptions,
    pub handler: Handler,
}

/// Builds a [`Job`] in a `static`.
#[must_use]
pub const fn job(parts: JobParts) -> Job {
    Job(parts)
}

/// A handler's return value.
#[diagnostic::on_unimplemented(
    message = "`#[job]` functions must return `Result<(), E>`, not `{Self}`",
    label = "expected `Result<(), JobError>`",
    note = "`E` may be `jobs_core::JobError` or any `std::error::Error + Send + Sync + 'static`"
)]
pub trait IntoJobResult {
    /// Converts into the engine's view of a handler's outcome.
    fn into_job_result(self) -> Result<(), JobError>;
}

impl<E: Into<JobError>> IntoJobResult for Result<(), E> {
    fn into_job_result(self) -> Result<(), JobError> {
        self.map_err(Into::into)
    }
}

/// Checks at compile time that a job's argument is a protobuf message.
pub const fn require_message<M: JobMessage>() {}

/// Checks at compile time that a job returns `Result<(), E>`.
pub const fn require_result<R: IntoJobResult>() {}

/// Decodes the body and starts the handler.
///
/// A job fn without a context argument is wrapped in a closure that drops it.
///
/// # Errors
///
/// The decode error when the body is not an `M`.
pub fn handle<M, F, Fut>(body: &[u8], ctx: JobContext, handler: F) -> HandleResult
where
    M: JobMessage,
    F: FnOnce(M, JobContext) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: IntoJobResult,
{
    let message = M::decode(body)?;
    let running = handler(message, ctx);
    Ok(Box::pin(async move { running.await.into_job_result() }))
}

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
        kind: crate::job_error::FailureKind,
    },
}

/// Classifies a delivery of `envelope` on `job`'s queue as the engine does (the same code: the
/// size limit, the job name, the attempt header, then the job's own body decoding), with
/// `job` the only job known on its exchange. For the fuzz target and its corpus test; the
/// handler's future is built but never polled.
#[must_use]
pub fn classify(
    job: &'static Job,
    envelope: crate::envelope::Envelope,
    max_message_size: usize,
) -> Classification {
    use crate::engine::classify::{Classified, classify};
    use std::sync::{Arc, OnceLock};

    // A context needs a producer; handlers are never polled here, so nothing publishes.
    static CONTEXT: OnceLock<crate::context::ContextShared> = OnceLock::new();
    let shared = CONTEXT.get_or_init(|| {
        let transport = Arc::new(crate::transport::memory::MemoryTransport::new());
        crate::context::ContextShared::new(
            crate::producer::Producer::new(transport),
            crate::context::State::new(),
        )
    });
    let envelope = Arc::new(envelope);
    let context = |attempt| JobContext::new(shared, Arc::clone(&envelope), attempt, false);
    match classify(job, &[job.name()], max_message_size, &envelope, context) {
        Classified::Run { attempt, .. } => Classification::Run { attempt },
        Classified::Refuse { failure, .. } => Classification::ErrorQueue { kind: failure.kind },
    }
}
