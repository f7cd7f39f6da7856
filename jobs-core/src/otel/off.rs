//! The spans without the `otel` feature: empty types whose calls compile to nothing, so the
//! producer and the engine call them unconditionally at no cost.

use std::fmt;
use std::future::Future;

use crate::envelope::{Envelope, Headers};
use crate::error::Error;
use crate::job::Job;
use crate::job_error::FailureKind;
use crate::trace::TraceContext;

/// No producer span.
#[derive(Debug)]
pub(crate) struct PublishSpan;

impl PublishSpan {
    #[inline]
    pub(crate) fn start(_: &Job, _: &str, _: &str, _: usize, _: &Headers) -> Self {
        Self
    }

    #[inline]
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        None
    }

    #[inline]
    pub(crate) fn end(self, _: Option<(&'static str, &dyn fmt::Display)>) {}
}

/// No error type to name.
#[inline]
pub(crate) fn error_type(_: &Error) -> &'static str {
    ""
}

/// No consumer span.
#[derive(Debug)]
pub(crate) struct ProcessSpan;

impl ProcessSpan {
    #[inline]
    pub(crate) fn none() -> Self {
        Self
    }

    #[inline]
    pub(crate) fn start(_: &Job, _: &Envelope, _: &str, _: &str, _: bool) -> Self {
        Self
    }

    #[inline]
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        None
    }

    #[inline]
    pub(crate) fn attach<F: Future>(&self, handler: F) -> F {
        handler
    }

    #[inline]
    pub(crate) fn succeeded(self) {}

    #[inline]
    pub(crate) fn retried(self, _: FailureKind, _: &str) {}

    #[inline]
    pub(crate) fn failed(self, _: FailureKind, _: &str) {}

    #[inline]
    pub(crate) fn requeued(self, _: FailureKind, _: &str) {}
}
