//! Typed background jobs on RabbitMQ.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod context;
pub mod engine;
pub mod envelope;
mod error;
mod job;
mod job_error;
mod producer;
pub mod registry;
mod settings;
pub mod testing;
pub mod topology;
pub mod transport;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use backoff::Backoff;
pub use context::{JobContext, JobContextBuilder, State};
pub use envelope::{Envelope, HeaderValue, Headers};
pub use error::{BoxError, Error, Result};
pub use job::{ExchangeKind, HeaderBinding, HeaderMatch, Job, JobOptions, QueueType};
pub use job_error::{FailureKind, JobError};
pub use producer::{Enqueue, MessageId, Producer, ProducerOptions};
pub use settings::{JobDefaults, JobSettings};

/// Declares an async fn as a job handler; see the crate docs.
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use jobs_macros::job;
