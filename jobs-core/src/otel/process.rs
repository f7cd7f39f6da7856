//! The consumer span of one attempt.

use std::future::Future;

use futures_util::future::Either;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::attribute as key;
use crate::envelope::Envelope;
use crate::envelope::header::{self, TRACEPARENT};
use crate::job::Job;
use crate::job_error::FailureKind;
use crate::trace::TraceContext;

/// The `CONSUMER` span of one attempt, held in the context its handler runs in; nothing when
/// no tracer is set.
#[derive(Debug)]
pub(crate) struct ProcessSpan(Option<Context>);

impl ProcessSpan {
    /// No span: for a delivery whose handler does not run again (an outcome remembered from an
    /// earlier delivery).
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Starts the span of handling `envelope`, delivered to `job`'s queue from `exchange` with
    /// `routing_key` (the enqueue's, which a retry's headers keep), as a child of its
    /// `traceparent`.
    pub(crate) fn start(
        job: &Job,
        envelope: &Envelope,
        exchange: &str,
        routing_key: &str,
        redelivered: bool,
    ) -> Self {
        let Some(tracer) = super::tracer() else {
            return Self(None);
        };
        let properties = &envelope.properties;
        let headers = &properties.headers;
        let parent = match headers.get_str(TRACEPARENT).and_then(TraceContext::parse) {
            Some(parent) => Context::new().with_remote_span_context(super::remote(parent)),
            // A message from another producer: its first attempt starts the trace.
            None => Context::new(),
        };
        // A retry arrives through the default exchange; the first hop recorded where the job
        // was enqueued.
        let exchange = headers.get_str(header::EXCHANGE).unwrap_or(exchange);
        let routing_key = headers.get_str(header::ROUTING_KEY).unwrap_or(routing_key);
        let attempt = envelope.attempt().unwrap_or(0);
        let mut attributes = vec![
            KeyValue::new(key::MESSAGING_SYSTEM, "rabbitmq"),
            KeyValue::new(key::MESSAGING_OPERATION_TYPE, "process"),
            KeyValue::new(key::MESSAGING_OPERATION_NAME, "process"),
            KeyValue::new(key::MESSAGING_DESTINATION_NAME, exchange.to_owned()),
            KeyValue::new(key::MESSAGING_SUBSCRIPTION_NAME, job.queue()),
            KeyValue::new(
                key::MESSAGING_BODY_SIZE,
                i64::try_from(envelope.body.len()).unwrap_or(i64::MAX),
            ),
            KeyValue::new(key::JOB_NAME, job.name()),
            KeyValue::new(key::ATTEMPT, i64::from(attempt)),
            KeyValue::new(key::REDELIVERED, redelivered),
        ];
        if !routing_key.is_empty() {
            attributes.push(KeyValue::new(
                key::MESSAGING_RABBITMQ_ROUTING_KEY,
                routing_key.to_owned(),
            ));
        }
        if let Some(id) = &properties.message_id {
            attributes.push(KeyValue::new(key::MESSAGING_MESSAGE_ID, id.clone()));
        }
        let builder = SpanBuilder::from_name(format!("process {}", job.queue()))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes);
        let span = tracer.build_with_context(builder, &parent);
        Self(Some(Context::new().with_span(span)))
    }

    /// The span's context: what the handler's enqueues continue, and what a retry of a message
    /// that came without a `traceparent` carries. `None` without a span.
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        self.0
            .as_ref()
            .and_then(|context| super::trace_of(context.span().span_context()))
    }

    /// `handler` running with the span as its current OpenTelemetry context, so spans the
    /// handler makes are the attempt's children.
    pub(crate) fn attach<F: Future>(&self, handler: F) -> impl Future<Output = F::Output> {
        match &self.0 {
            Some(context) => Either::Left(handler.with_context(context.clone())),
            None => Either::Right(handler),
        }
    }

    /// Ends the span of an attempt that succeeded.
    pub(crate) fn succeeded(self) {
        self.end("succeeded", None);
    }

    /// Ends the span of an attempt that failed with `kind` and `error` and waits to be tried
    /// again.
    pub(crate) fn retried(self, kind: FailureKind, error: &str) {
        self.end("retried", Some((kind.as_str(), error)));
    }

    /// Ends the span of a delivery that failed with `kind` and `error` and went to the error
    /// queue.
    pub(crate) fn failed(self, kind: FailureKind, error: &str) {
        self.end("failed", Some((kind.as_str(), error)));
    }

    /// Ends the span of a delivery that went back to its queue, its outcome not made durable.
    pub(crate) fn requeued(self, kind: FailureKind, error: &str) {
        self.end("requeued", Some((kind.as_str(), error)));
    }

    fn end(self, outcome: &'static str, failure: Option<(&'static str, &str)>) {
        let Some(context) = self.0 else {
            return;
        };
        let span = context.span();
        span.set_attribute(KeyValue::new(key::OUTCOME, outcome));
        if let Some((kind, error)) = failure {
            span.set_attribute(KeyValue::new(key::FAILURE_KIND, kind));
            span.set_attribute(KeyValue::new(key::ERROR_TYPE, kind));
            span.set_status(Status::error(super::cut(error, super::MAX_STATUS_LEN)));
        }
        span.end();
    }
}
