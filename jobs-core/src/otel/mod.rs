//! OpenTelemetry spans (feature `otel`): a `PRODUCER` span for each enqueue and a `CONSUMER`
//! span for each attempt, linked through the `traceparent` header every job message carries.
//!
//! Nothing is made until a tracer provider is set with [`set_tracer_provider`]; until then an
//! enqueue or an attempt costs one atomic load more than without the feature. The worker
//! (`jobs-worker` built with its `otel` feature) sets one that exports over OTLP when it is
//! given an endpoint. An application that embeds the engine, or only enqueues, sets its own:
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // With `opentelemetry_sdk` and `opentelemetry-otlp` (feature `grpc-tonic`) in the
//! // application's dependencies, inside its tokio runtime:
//! let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_batch_exporter(exporter)
//!     .build();
//! jobs_core::otel::set_tracer_provider(&provider);
//! // … and at exit, `provider.shutdown()` sends what is left.
//! # Ok(())
//! # }
//! ```
//!
//! # The spans
//!
//! * **`publish <exchange>`**, kind `PRODUCER`, for every job a [`Producer`](crate::Producer)
//!   enqueues (`my_job::enqueue`, `my_job::with(…).enqueue`) and every call's request. The
//!   message's `traceparent` names this span, so its id is the parent of the consumer spans.
//!   Its parent is, in this order: a `traceparent` header the caller set on the enqueue, the
//!   attempt of the handler enqueuing (a follow-up job), or the OpenTelemetry context current
//!   where the enqueue runs; else it starts a trace. It ends with the broker's confirm (for a
//!   call, with the call), with an error status when the enqueue failed.
//! * **`process <queue>`**, kind `CONSUMER`, for every delivery the engine handles: one per
//!   attempt, and one for a delivery refused before any handler ran (undecodable, unknown job,
//!   too large). Its parent is the message's `traceparent`. The handler runs with it as the
//!   current OpenTelemetry context, and [`JobContext::traceparent`](crate::JobContext::traceparent)
//!   names it, so the handler's own spans and the jobs it enqueues are its children.
//!
//! A retry is the same message published again by the engine, not an enqueue: it makes no
//! producer span and keeps the message's `traceparent`. A job retried twice is one producer
//! span and three consumer spans, all children of it, in one trace. The same goes for a replay
//! from the error queue. A message that came without a `traceparent` (from another producer)
//! starts a trace at its first attempt, and its retries carry that attempt's context, so its
//! later attempts are children of the first. Publishes the framework makes itself (retries,
//! error-queue moves, replies, scheduler ticks) and raw [`Producer::publish`](crate::Producer::publish)
//! calls make no spans.
//!
//! # Attributes
//!
//! Per OpenTelemetry's semantic conventions for messaging and for RabbitMQ:
//!
//! | attribute | producer span | consumer span |
//! | --- | --- | --- |
//! | `messaging.system` | `rabbitmq` | `rabbitmq` |
//! | `messaging.operation.type` | `send` | `process` |
//! | `messaging.operation.name` | `publish` | `process` |
//! | `messaging.destination.name` | the job's exchange | the exchange it was enqueued to |
//! | `messaging.rabbitmq.destination.routing_key` | the routing key (when not empty) | the routing key it was enqueued with |
//! | `messaging.destination.subscription.name` | | the queue |
//! | `messaging.message.id` | the message id | the message id |
//! | `messaging.message.body.size` | body bytes | body bytes |
//! | `error.type` | `unroutable`, `nacked`, `timeout`, … on failure | the failure kind on failure |
//!
//! and the job's own, named in [`attribute`]: `jobs.job.name` on both; on the consumer span
//! `jobs.attempt`, `jobs.redelivered`, `jobs.outcome` (`succeeded`, `retried`, `failed`, or
//! `requeued` when the outcome could not be made durable) and `jobs.failure.kind` (a
//! [`FailureKind`](crate::FailureKind)). A failed attempt, retried or not, has an error status
//! with the error, cut to 1 KiB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use opentelemetry::InstrumentationScope;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider};

use crate::trace::TraceContext;

pub mod attribute;
mod process;
mod publish;

pub use opentelemetry;
pub(crate) use process::ProcessSpan;
pub(crate) use publish::{PublishSpan, error_type};

/// The instrumentation scope of the spans: this crate's name (its version goes with it).
pub const SCOPE: &str = "jobs-core";

/// Whether a tracer is set: the one load on the hot path while none is.
static ON: AtomicBool = AtomicBool::new(false);
/// The tracer spans are made with.
static TRACER: RwLock<Option<Arc<BoxedTracer>>> = RwLock::new(None);

/// Makes the framework's spans with a tracer of `provider`, from now on, in the whole process
/// (a later call replaces it). For the process's global provider, pass
/// `&opentelemetry::global::tracer_provider()` after setting it.
pub fn set_tracer_provider<P, T, S>(provider: &P)
where
    P: TracerProvider<Tracer = T>,
    T: opentelemetry::trace::Tracer<Span = S> + Send + Sync + 'static,
    S: opentelemetry::trace::Span + Send + Sync + 'static,
{
    let scope = InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let tracer = BoxedTracer::new(Box::new(provider.tracer_with_scope(scope)));
    *TRACER.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(tracer));
    ON.store(true, Ordering::Release);
}

/// Stops making spans: what [`set_tracer_provider`] set is dropped (a provider's own clones
/// keep it alive; shut it down to flush it).
pub fn clear_tracer_provider() {
    ON.store(false, Ordering::Release);
    *TRACER.write().unwrap_or_else(PoisonError::into_inner) = None;
}

/// The tracer, when one is set.
fn tracer() -> Option<Arc<BoxedTracer>> {
    if !ON.load(Ordering::Acquire) {
        return None;
    }
    TRACER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// `trace` as the span context of a span in another process (or task).
fn remote(trace: TraceContext) -> SpanContext {
    let (trace_id, span_id, flags) = trace.parts();
    SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::new(flags),
        true,
        TraceState::NONE,
    )
}

/// The `traceparent` naming the span of `context`; `None` for an invalid one (no tracer made
/// it).
fn trace_of(context: &SpanContext) -> Option<TraceContext> {
    context.is_valid().then(|| {
        TraceContext::from_parts(
            u128::from_be_bytes(context.trace_id().to_bytes()),
            u64::from_be_bytes(context.span_id().to_bytes()),
            context.trace_flags().to_u8(),
        )
    })
}

/// `text` cut to at most `max` bytes, at a character boundary: a span's status description.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The longest error text a span's status carries.
const MAX_STATUS_LEN: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_context_goes_through_a_span_context_unchanged() {
        let trace =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let context = remote(trace);
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(trace_of(&context), Some(trace));
        assert_eq!(trace_of(&SpanContext::empty_context()), None);
    }

    #[test]
    fn errors_are_cut_at_a_character_boundary() {
        let text = "é".repeat(600); // 1200 bytes
        let cut = cut(&text, MAX_STATUS_LEN);
        assert_eq!(cut.len(), MAX_STATUS_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
