//! Request and reply: `my_job::call(&producer, msg)` runs the job on a worker and returns its
//! reply, over RabbitMQ's direct reply-to.
//!
//! # The wire
//!
//! The request is the job's ordinary message, published to its exchange, with `reply_to` (the
//! caller's direct reply-to address, which the transport sets), a `correlation_id`, and the
//! header `x-jobs-deadline`: when the caller stops waiting, in Unix milliseconds. A worker that
//! finishes the job publishes the reply to the default exchange with `reply_to` as the routing
//! key: the same `correlation_id`, the header `x-jobs-reply` = `ok` and the reply message's
//! protobuf encoding as the body; or `x-jobs-reply` = `failed` with `x-jobs-error-kind` and
//! `x-jobs-error` as in an error queue, and an empty body. A caller in any language can make
//! the request and read the reply from these.
//!
//! On RabbitMQ the worker publishes the reply on the channel the request came on, without a
//! confirm, and then acks the request there: the channel's order has the broker take the
//! reply before the ack, so nothing waits for a confirm, and the worker's side of a call is
//! one connection's work, as a hand-written RPC server's would be.
//!
//! # Failures and retries
//!
//! A call fails with [`CallError::Failed`] when the job fails for good: a fatal error, its last
//! retry, a panic or timeout on its last attempt, a body the worker cannot decode, a job name
//! it does not know. A retryable failure is retried as the job's options say, but only while
//! the retry would start before the caller's deadline; otherwise it is the last attempt. In
//! every case the failed job also goes to its error queue, replayable (a replay's reply finds
//! no caller, and is dropped). A reply that comes after the caller gave up is dropped quietly.

mod calls;

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use crate::envelope::HeaderValue;
use crate::error::Error;
use crate::job::JobMessage;
use crate::job_error::FailureKind;
use crate::otel;
use crate::producer::{Enqueue, Producer};

pub(crate) use calls::Calls;

/// `x-jobs-reply` of a reply that carries the reply message.
pub(crate) const REPLY_OK: &str = "ok";
/// `x-jobs-reply` of a reply that reports a failure.
pub(crate) const REPLY_FAILED: &str = "failed";

/// How long a call waits for its reply unless told otherwise with [`Call::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call returned no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The job failed for good on the worker (see the module docs for when).
    #[error("the job failed ({kind}): {error}")]
    Failed {
        /// The kind of its last failure.
        kind: FailureKind,
        /// What went wrong, as the error queue records it.
        error: String,
    },
    /// No reply came in time: the job is slow, or no worker runs it.
    #[error("no reply within {after:?}")]
    Timeout {
        /// The call's timeout.
        after: Duration,
    },
    /// The request was not published: no queue is bound for it
    /// ([`Error::Unroutable`]), it is too large, the broker refused it or cannot be reached.
    #[error("the request was not sent")]
    Request(#[source] Error),
    /// The connection the reply would come on closed before it came. The job may still run.
    #[error("the connection closed before the reply came")]
    Disconnected,
    /// The reply's body is not the job's reply message.
    #[error("the reply is not a `{reply}`")]
    BadReply {
        /// The reply type expected.
        reply: &'static str,
        /// Why it did not decode.
        #[source]
        source: prost::DecodeError,
    },
}

impl CallError {
    /// Whether the request could not be routed: no queue is bound for the job.
    #[must_use]
    pub fn is_unroutable(&self) -> bool {
        matches!(self, Self::Request(error) if error.is_unroutable())
    }
}

/// A call being set up: per-call options, then `.await` for the reply. Made by the
/// generated `my_job::call(&producer, msg)`.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<'p, M, R> {
    enqueue: Enqueue<M>,
    producer: &'p Producer,
    timeout: Duration,
    reply: PhantomData<fn() -> R>,
}

impl<M, R> std::fmt::Debug for Call<'_, M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'p, M: JobMessage, R> Call<'p, M, R> {
    /// A call of the job `enqueue` is for, through `producer`. `#[job]` makes these.
    pub fn new(enqueue: Enqueue<M>, producer: &'p Producer) -> Self {
        Self {
            enqueue,
            producer,
            timeout: DEFAULT_TIMEOUT,
            reply: PhantomData,
        }
    }

    /// How long to wait for the reply; [`DEFAULT_TIMEOUT`] otherwise. The job's retries stop
    /// at this deadline too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header to the request, as [`Enqueue::header`].
    pub fn header(
        mut self,
        name: impl Into<std::borrow::Cow<'static, str>>,
        value: impl Into<HeaderValue>,
    ) -> Self {
        self.enqueue = self.enqueue.header(name, value);
        self
    }

    /// Sets the request's message id, as [`Enqueue::message_id`].
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.enqueue = self.enqueue.message_id(id);
        self
    }

    /// Publishes the request with another routing key, as [`Enqueue::routing_key`].
    pub fn routing_key(mut self, key: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.enqueue = self.enqueue.routing_key(key);
        self
    }

    /// Sends the request with a priority, as [`Enqueue::priority`].
    pub fn priority(mut self, priority: u8) -> Self {
        self.enqueue = self.enqueue.priority(priority);
        self
    }
}

impl<M: JobMessage, R: JobMessage> Call<'_, M, R> {
    async fn run(self) -> Result<R, CallError> {
        let Self {
            enqueue,
            producer,
            timeout,
            ..
        } = self;
        let (publish, span) = enqueue
            .into_request(producer)
            .await
            .map_err(CallError::Request)?;
        let called = producer.calls().call(producer, publish, timeout).await;
        // The producer span lasts the call: until the reply, or the call's failure.
        match &called {
            Ok(_) => span.end(None),
            Err(error) => span.end(Some(call_failure(error))),
        }
        let body = called?;
        R::decode(body).map_err(|source| CallError::BadReply {
            reply: std::any::type_name::<R>(),
            source,
        })
    }
}

/// The `error.type` and error of a call that failed with `error`, for its producer span.
fn call_failure(error: &CallError) -> (&'static str, &dyn std::fmt::Display) {
    let error_type = match error {
        // The broker's error says more than "not sent".
        CallError::Request(error) => return (otel::error_type(error), error),
        CallError::Failed { .. } => "failed",
        CallError::Timeout { .. } => "timeout",
        CallError::Disconnected => "disconnected",
        CallError::BadReply { .. } => "bad_reply",
    };
    (error_type, error)
}

impl<'p, M: JobMessage, R: JobMessage> IntoFuture for Call<'p, M, R> {
    type Output = Result<R, CallError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'p>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
