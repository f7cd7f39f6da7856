//! The producer span of one enqueue.

use std::fmt;

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use super::attribute as key;
use crate::envelope::Headers;
use crate::envelope::header::TRACEPARENT;
use crate::error::Error;
use crate::job::Job;
use crate::trace::TraceContext;

/// The `PRODUCER` span of one enqueue; nothing when no tracer is set.
#[derive(Debug)]
pub(crate) struct PublishSpan(Option<BoxedSpan>);

impl PublishSpan {
    /// Starts the span of enqueueing `job`'s message `message_id` of `body_size` bytes with
    /// `routing_key`; `given` are the headers the caller set, whose `traceparent`, if any, is
    /// the parent.
    pub(crate) fn start(
        job: &Job,
        routing_key: &str,
        message_id: &str,
        body_size: usize,
        given: &Headers,
    ) -> Self {
        let Some(tracer) = super::tracer() else {
            return Self(None);
        };
        let parent = given
            .get_str(TRACEPARENT)
            .and_then(TraceContext::parse)
            .or_else(TraceContext::current);
        let parent = match parent {
            Some(parent) => Context::new().with_remote_span_context(super::remote(parent)),
            None => Context::current(),
        };
        let exchange = job.exchange();
        let mut attributes = vec![
            KeyValue::new(key::MESSAGING_SYSTEM, "rabbitmq"),
            KeyValue::new(key::MESSAGING_OPERATION_TYPE, "send"),
            KeyValue::new(key::MESSAGING_OPERATION_NAME, "publish"),
            KeyValue::new(key::MESSAGING_DESTINATION_NAME, exchange.to_owned()),
            KeyValue::new(key::MESSAGING_MESSAGE_ID, message_id.to_owned()),
            KeyValue::new(
                key::MESSAGING_BODY_SIZE,
                i64::try_from(body_size).unwrap_or(i64::MAX),
            ),
            KeyValue::new(key::JOB_NAME, job.name()),
        ];
        if !routing_key.is_empty() {
            attributes.push(KeyValue::new(
                key::MESSAGING_RABBITMQ_ROUTING_KEY,
                routing_key.to_owned(),
            ));
        }
        let builder = SpanBuilder::from_name(format!("publish {}", destination(exchange)))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes);
        Self(Some(tracer.build_with_context(builder, &parent)))
    }

    /// The context the message's `traceparent` names: this span's; `None` without a span.
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        self.0
            .as_ref()
            .and_then(|span| super::trace_of(span.span_context()))
    }

    /// Ends the span: `failure` is the enqueue's error type and error, if it failed.
    pub(crate) fn end(self, failure: Option<(&'static str, &dyn fmt::Display)>) {
        let Some(mut span) = self.0 else {
            return;
        };
        if let Some((error_type, error)) = failure {
            span.set_attribute(KeyValue::new(key::ERROR_TYPE, error_type));
            span.set_status(Status::error(super::cut(
                &error.to_string(),
                super::MAX_STATUS_LEN,
            )));
        }
        span.end();
    }
}

/// The exchange as a span name shows it: the default exchange is `amq.default`.
fn destination(exchange: &str) -> &str {
    if exchange.is_empty() {
        "amq.default"
    } else {
        exchange
    }
}

/// The `error.type` of an enqueue that failed with `error`.
pub(crate) fn error_type(error: &Error) -> &'static str {
    match error {
        Error::TooLarge { .. } => "too_large",
        Error::HeadersTooLarge { .. } => "headers_too_large",
        Error::Unroutable { .. } => "unroutable",
        Error::Nacked { .. } => "nacked",
        Error::Priority { .. } => "priority",
        Error::Timeout { .. } => "timeout",
        Error::Connection(_) => "connection",
        Error::Broker(_) => "broker",
        Error::Topology(_) | Error::QueueMismatch { .. } => "topology",
        _ => "other",
    }
}
