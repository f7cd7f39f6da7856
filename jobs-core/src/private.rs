//! Used by the code `#[job]` generates. Not public API: anything here may change in any release.
//! It only re-exports what the generated code names.

pub use crate::backoff::Backoff;
pub use crate::control::Rate;
pub use crate::extract::FromJobContext;
pub use crate::handler::{
    Describe, DescribeFields, DescribeOpaque, Described, Describer, HandleResult, Handler,
    HandlerFuture, IntoJobResult, MessageOf, ReplyOf, handle, not_started, running,
};
pub use crate::job::{
    ExchangeKind, HeaderBinding, HeaderMatch, Job, JobMessage, JobOptions, JobParts, QueueType, job,
};
pub use crate::registry::Registration;
pub use crate::schedule::{Missed, ScheduleSpec};
pub use ::bytes;
pub use ::core;
pub use ::inventory;
