//! A job's definition: its handler and where its messages travel.

use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::extract::StateType;
use crate::handler::{Describer, Handler};

/// Every field of a [`Job`], for `#[job]` to fill in a `static`. Not public API.
#[doc(hidden)]
#[allow(missing_debug_implementations, missing_docs)]
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
    pub describe: Describer,
    /// What each argument after the message needs from the worker.
    pub needs: &'static [Option<StateType>],
}

/// Builds a [`Job`] in a `static`. Not public API.
#[doc(hidden)]
#[must_use]
pub const fn job(parts: JobParts) -> Job {
    Job(parts)
}

/// A job, as `#[job]` declares it: a name, a handler, and where its messages travel.
///
/// Every `#[job]` fn gets one, as the `JOB` static of the module generated beside it
/// (`transfer_to_oss::JOB`). Options a job leaves unset take the worker's
/// [`JobDefaults`](crate::JobDefaults).
pub struct Job(pub(crate) JobParts);

impl Job {
    /// The job name, carried in each message's `type` property.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// The exchange its producer publishes to and its queue is bound to.
    #[must_use]
    pub fn exchange(&self) -> &'static str {
        self.0.exchange
    }

    /// The exchange's type.
    #[must_use]
    pub fn kind(&self) -> ExchangeKind {
        self.0.kind
    }

    /// The routing key its producer publishes with.
    #[must_use]
    pub fn routing_key(&self) -> &'static str {
        self.0.routing_key
    }

    /// The binding key of its queue (a pattern on topic exchanges).
    #[must_use]
    pub fn binding(&self) -> &'static str {
        self.0.binding
    }

    /// The header match of its binding, on a headers exchange.
    #[must_use]
    pub fn header_binding(&self) -> Option<&HeaderBinding> {
        self.0.headers.as_ref()
    }

    /// Its work queue.
    #[must_use]
    pub fn queue(&self) -> &'static str {
        self.0.queue
    }

    /// The Rust type of its protobuf message.
    #[must_use]
    pub fn message_type(&self) -> &'static str {
        self.0.message_type
    }

    /// `body` decoded as this job's message and formatted with its fields, one per line (Rust's
    /// `Debug` notation, which prost derives): what `errors show` prints. `None` when the
    /// message type does not implement `Debug`.
    ///
    /// # Errors
    ///
    /// When `body` is not this job's message.
    #[must_use]
    pub fn describe(&self, body: &[u8]) -> Option<Result<String, prost::DecodeError>> {
        (self.0.describe)(body)
    }

    /// The options its attribute sets; unset ones take the worker's defaults.
    #[must_use]
    pub fn options(&self) -> &JobOptions {
        &self.0.options
    }

    /// The types of shared state its fn takes, as `State<T>` arguments: a worker must have each
    /// before it serves the job.
    pub fn state_types(&self) -> impl Iterator<Item = StateType> {
        self.0.needs.iter().flatten().copied()
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.0.name)
            .field("exchange", &self.0.exchange)
            .field("kind", &self.0.kind)
            .field("routing_key", &self.0.routing_key)
            .field("binding", &self.0.binding)
            .field("headers", &self.0.headers)
            .field("queue", &self.0.queue)
            .field("message_type", &self.0.message_type)
            .field("options", &self.0.options)
            .finish_non_exhaustive()
    }
}

/// The options a `#[job]` attribute may set; `None` means "the worker's default".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JobOptions {
    /// Retries after the first attempt.
    pub retries: Option<u32>,
    /// Delays between attempts.
    pub backoff: Option<Backoff>,
    /// Handler deadline per attempt.
    pub timeout: Option<Duration>,
    /// Deliveries one worker handles at once (its prefetch).
    pub concurrency: Option<u16>,
    /// The work queue's type.
    pub queue_type: Option<QueueType>,
    /// Priority levels of the work queue (`x-max-priority`), which makes it a classic queue.
    pub priorities: Option<u8>,
    /// Handlers running at once across every worker, each in one of as many slots.
    pub max_running: Option<u16>,
    /// Starts across every worker, paced by tickets (see [`crate::control`]).
    pub rate: Option<crate::control::Rate>,
    /// When the job runs by itself, with its message's default value.
    pub schedule: Option<crate::schedule::ScheduleSpec>,
}

/// The four AMQP exchange types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Routes on an exact routing key.
    Direct,
    /// Routes on a routing-key pattern: `*` is one word, `#` zero or more.
    Topic,
    /// Routes to every bound queue.
    Fanout,
    /// Routes on header values (`x-match` all or any).
    Headers,
}

impl ExchangeKind {
    /// The AMQP name: `direct`, `topic`, `fanout` or `headers`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Topic => "topic",
            Self::Fanout => "fanout",
            Self::Headers => "headers",
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a work queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueType {
    /// Replicated, with a delivery limit and at-least-once dead-lettering.
    Quorum,
    /// A classic queue.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A binding on a headers exchange: header values, and whether all or any must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderBinding {
    /// Whether every pair must match, or one is enough.
    pub matching: HeaderMatch,
    /// The header names and values to match.
    pub values: &'static [(&'static str, &'static str)],
}

/// The `x-match` of a headers binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    /// Every header must match.
    All,
    /// One header is enough.
    Any,
}

impl HeaderMatch {
    /// The `x-match` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Any => "any",
        }
    }
}

/// A protobuf message a job can carry: any prost message.
///
/// Derive it with `#[derive(Clone, PartialEq, prost::Message)]` or generate it with
/// prost-build; the blanket implementation does the rest.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protobuf message",
    label = "a `#[job]` argument must be a prost message",
    note = "derive it with `#[derive(Clone, PartialEq, prost::Message)]`, or generate it with prost-build"
)]
pub trait JobMessage: prost::Message + Default + Send + 'static {}

// Reported as one missing `JobMessage`, with the note above, rather than one error per
// missing supertrait (`Message`, `Default`).
#[diagnostic::do_not_recommend]
impl<T: prost::Message + Default + Send + 'static> JobMessage for T {}
