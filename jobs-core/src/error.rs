//! The error type of producers, transports and the worker engine.

use std::time::Duration;

/// A boxed error that can cross threads: the currency of error sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by producers, transports and the worker engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The encoded job is larger than the producer's size limit; nothing was published.
    #[error("job of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Encoded size of the job's message.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The message's properties and headers are larger than one AMQP frame on this connection
    /// (the broker's `frame_max`); publishing it would make the broker close the connection.
    /// Nothing was published.
    #[error("the message's properties take {size} bytes, over the {limit} bytes a frame holds")]
    HeadersTooLarge {
        /// Encoded size of the properties, headers included.
        size: usize,
        /// What a content-header frame holds on this connection.
        limit: usize,
    },
    /// The broker found no queue for the message and returned it (`mandatory`).
    #[error("no queue is bound to exchange `{exchange}` for routing key `{routing_key}`")]
    Unroutable {
        /// Exchange the message was published to.
        exchange: String,
        /// Routing key it was published with.
        routing_key: String,
    },
    /// The broker refused to take responsibility for the message (a negative confirm).
    #[error("the broker refused the message published to exchange `{exchange}`")]
    Nacked {
        /// Exchange the message was published to.
        exchange: String,
    },
    /// The enqueue asked for a priority the job's queue does not have; nothing was published.
    #[error("priority {priority} for job `{job}`, whose queue has {}", levels_text(*.levels))]
    Priority {
        /// The job.
        job: &'static str,
        /// The priority asked for.
        priority: u8,
        /// The job's priority levels (`#[job(priorities = N)]`), if any.
        levels: Option<u8>,
    },
    /// The broker's confirm did not arrive in time; the message may or may not have been taken.
    #[error("no publisher confirm within {after:?}")]
    Timeout {
        /// How long the producer waited.
        after: Duration,
    },
    /// An exchange or queue that the operation needs does not exist.
    #[error("{what} `{name}` does not exist")]
    NotFound {
        /// `"exchange"` or `"queue"`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A job's message could not be decoded.
    #[error("could not decode a `{message}`")]
    Decode {
        /// The protobuf message type that was expected.
        message: &'static str,
        /// Why decoding failed.
        #[source]
        source: prost::DecodeError,
    },
    /// Two jobs, or a job and the broker, disagree about the topology.
    #[error("topology conflict: {0}")]
    Topology(String),
    /// A queue exists on the broker with arguments other than the ones declared.
    #[error(
        "queue `{queue}` exists with {argument} = {existing}, but the job declares {argument} = {declared}"
    )]
    QueueMismatch {
        /// The queue.
        queue: String,
        /// The argument that differs, such as `x-queue-type`.
        argument: String,
        /// The value the broker has.
        existing: String,
        /// The value the job asks for.
        declared: String,
    },
    /// The worker was asked to serve a job that is not registered.
    #[error("no job named `{0}` is registered")]
    UnknownJob(String),
    /// A job takes a [`State`](crate::State) the worker was not given: found before the first
    /// job is served.
    #[error(
        "job `{job}` takes `State<{needs}>`, but the worker has no `{needs}`: give it one with \
         `.state(..)` (it has: {has})"
    )]
    MissingState {
        /// The job.
        job: &'static str,
        /// The type it needs, without module paths.
        needs: String,
        /// The types the worker has, without module paths, or `none`.
        has: String,
    },
    /// A job may run as long as the broker's consumer timeout or longer: the broker would
    /// take its delivery back (closing the consumer's channel, before RabbitMQ 4.3) while the
    /// handler still runs. Found before the first job is served.
    #[error(
        "job `{job}` has a timeout of {timeout:?}, at or above {origin} of {consumer_timeout:?}: \
         the broker would take the delivery back while the job runs; lower the job's timeout, or \
         raise the broker's `consumer_timeout` and tell the worker \
         (`--broker-consumer-timeout`, `EngineBuilder::broker_consumer_timeout`)"
    )]
    ConsumerTimeout {
        /// The job.
        job: &'static str,
        /// The job's timeout.
        timeout: Duration,
        /// The consumer timeout it reaches.
        consumer_timeout: Duration,
        /// Where that consumer timeout comes from: the broker's setting, or the queue's
        /// `x-consumer-timeout`.
        origin: &'static str,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The transport is closed, or the broker connection failed.
    #[error("broker connection failed")]
    Connection(#[source] BoxError),
    /// The broker closed the channel or refused an operation.
    #[error("the broker refused the operation: {0}")]
    Broker(String),
    /// The TLS handshake with the broker failed; `reason` names why. Certificates are public,
    /// so the detail names them; no key or password is ever in it.
    #[error("TLS with the broker failed: {reason} ({detail})")]
    Tls {
        /// Why.
        reason: crate::TlsFailure,
        /// The TLS library's words, as `invalid peer certificate: UnknownIssuer`.
        detail: String,
    },
}

impl Error {
    /// Whether the failure is worth retrying later: the broker was unreachable or slow.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connection(_) | Self::Timeout { .. } | Self::Nacked { .. }
        )
    }

    /// Whether the message was returned because no queue is bound for it.
    #[must_use]
    pub fn is_unroutable(&self) -> bool {
        matches!(self, Self::Unroutable { .. })
    }
}

/// How [`Error::Priority`] says a job's priority levels.
fn levels_text(levels: Option<u8>) -> String {
    levels.map_or_else(
        || "no priority levels (declare `#[job(priorities = N)]`)".to_owned(),
        |levels| format!("priorities 0 to {levels}"),
    )
}
