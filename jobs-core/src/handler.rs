//! A job's type-erased handler, and the pieces `#[job]` builds one from: decode the body, take
//! the arguments the job fn asks for, run it, and turn what it returns into the engine's view.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use futures_util::FutureExt as _;
use prost::Message as _;

use crate::context::JobContext;
use crate::job::JobMessage;
use crate::job_error::JobError;
use crate::transport::BoxFuture;

/// The future of one handler run: the reply's encoding (empty for `()`), or the error.
pub type HandlerFuture = BoxFuture<'static, Result<Bytes, JobError>>;

/// What a job's handler returns: the running handler, or why the body did not decode.
pub type HandleResult = Result<HandlerFuture, prost::DecodeError>;

/// A job's type-erased handler: decodes the body and starts the job fn.
///
/// The body is borrowed: decoding copies what it keeps, and a shared copy of the delivery's
/// buffer would cost an allocation per job.
pub type Handler = fn(&[u8], JobContext) -> HandleResult;

/// A body decoded as a job's message, in Rust's `Debug` notation, or why it did not decode;
/// `None` for a message type without `Debug`.
pub type Described = Option<Result<String, prost::DecodeError>>;

/// A job's type-erased describer: decodes a body for display (`errors show`).
pub type Describer = fn(&[u8]) -> Described;

/// Picks how a job's body is described, by autoref specialization on the concrete message
/// type the macro names: `(&&Describe::<M>::new()).describe(body)` resolves to
/// [`DescribeFields`] when `M` is a message with `Debug` (prost derives it), and to
/// [`DescribeOpaque`] otherwise, so a type without `Debug`, or no message at all, adds no
/// compile error of its own.
pub struct Describe<M>(PhantomData<M>);

impl<M> fmt::Debug for Describe<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Describe")
    }
}

impl<M> Default for Describe<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Describe<M> {
    /// The selector for `M`.
    #[must_use]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

/// The describer of a message with `Debug`: its fields.
pub trait DescribeFields {
    /// `body` decoded and formatted with its fields, one per line.
    fn describe(&self, body: &[u8]) -> Described;
}

impl<M: JobMessage + fmt::Debug> DescribeFields for &Describe<M> {
    fn describe(&self, body: &[u8]) -> Described {
        Some(M::decode(body).map(|message| format!("{message:#?}")))
    }
}

/// The describer of a message without `Debug`: nothing to show but its bytes.
pub trait DescribeOpaque {
    /// Always `None`.
    fn describe(&self, body: &[u8]) -> Described;
}

impl<M> DescribeOpaque for &&Describe<M> {
    fn describe(&self, _body: &[u8]) -> Described {
        None
    }
}

/// A job fn's return value: `Result<(), E>`, or `Result<Reply, E>` for a job that answers
/// its calls with a protobuf message.
#[diagnostic::on_unimplemented(
    message = "`#[job]` functions must return `Result<(), E>` or `Result<Reply, E>`, not `{Self}`",
    label = "expected `Result<(), JobError>`",
    note = "`E` may be `jobs_core::JobError` or any `std::error::Error + Send + Sync + 'static`; `Reply` a protobuf message"
)]
pub trait IntoJobResult {
    /// What the job answers a call with; `()` for a job that only runs.
    type Reply: JobMessage;

    /// Converts into the engine's view of a handler's outcome.
    ///
    /// # Errors
    ///
    /// The handler's error, as a [`JobError`].
    fn into_job_result(self) -> Result<Self::Reply, JobError>;
}

impl<R: JobMessage, E: Into<JobError>> IntoJobResult for Result<R, E> {
    type Reply = R;

    fn into_job_result(self) -> Result<R, JobError> {
        self.map_err(Into::into)
    }
}

/// The reply type of a job fn that returns `T`.
pub type ReplyOf<T> = <T as IntoJobResult>::Reply;

/// A job fn's run, started: `#[job]` calls it on the fn's future, so that a future that is not
/// `Send` is reported on the fn's return type.
pub fn running<F>(future: F) -> HandlerFuture
where
    F: Future + Send + 'static,
    F::Output: IntoJobResult,
{
    // `()` encodes to nothing, without allocating: a job that only runs pays nothing here.
    Box::pin(future.map(|output| {
        output
            .into_job_result()
            .map(|reply| Bytes::from(reply.encode_to_vec()))
    }))
}

/// A job fn's run that did not start: an argument could not be had.
#[must_use]
pub fn not_started(error: JobError) -> HandlerFuture {
    Box::pin(std::future::ready(Err(error)))
}

/// Decodes the body as an `M` and starts `handler` on it.
///
/// # Errors
///
/// The decode error when the body is not an `M`.
pub fn handle<M, F>(body: &[u8], ctx: JobContext, handler: F) -> HandleResult
where
    M: JobMessage,
    F: FnOnce(M, JobContext) -> HandlerFuture,
{
    let message = M::decode(body)?;
    Ok(handler(message, ctx))
}

/// The message type of one job, for the functions `#[job]` generates around it: they are
/// generic over an `M` that must be this job's message, so that their bounds are checked where
/// they are used rather than where they are generated, and a message type that is not a
/// protobuf message is one error, on the job fn's argument, not one per generated function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the message of this job",
    label = "this job's message is `{T}`"
)]
pub trait MessageOf<T> {
    /// The message, as the job's own type.
    fn into_message(self) -> T;
}

impl<T> MessageOf<T> for T {
    fn into_message(self) -> T {
        self
    }
}
