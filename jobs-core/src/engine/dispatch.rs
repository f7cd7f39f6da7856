//! One delivery, start to finish: classify, decode, run with a deadline and panic capture,
//! decide retry or error queue, and make that outcome durable before it is acked.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::classify::{Classified, classify};
use super::events::{Event, EventKind, Observer};
use super::failure::{self, Failure, Origin};
use super::settle::Verdict;
use crate::context::{ContextShared, JobContext};
use crate::envelope::Envelope;
use crate::job_error::{FailureKind, error_chain};
use crate::producer::Producer;
use crate::settings::JobSettings;
use crate::trace::TraceContext;
use crate::transport::Delivery;

/// What every delivery of one job needs; shared by its handler tasks.
pub(crate) struct JobRuntime {
    pub(crate) settings: JobSettings,
    pub(crate) producer: Producer,
    pub(crate) context: ContextShared,
    pub(crate) observers: Arc<[Arc<dyn Observer>]>,
    pub(crate) host: Arc<str>,
    pub(crate) max_message_size: usize,
    /// The job names a message on this queue may carry: this job's, and those of the other
    /// known jobs on its exchange, whose messages reach this queue too on a fanout, topic or
    /// headers exchange.
    pub(crate) accepted_names: Box<[&'static str]>,
    /// The consumer's prefetch: deliveries held at once, running or waiting.
    pub(crate) prefetch: u16,
    /// Bounds running handlers at the job's concurrency when the prefetch is larger.
    pub(crate) permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl JobRuntime {
    fn emit(&self, message_id: Option<&str>, attempt: u32, kind: EventKind<'_>) {
        if self.observers.is_empty() {
            return;
        }
        let event = Event {
            job: self.settings.job(),
            message_id,
            attempt,
            kind,
        };
        for observer in self.observers.iter() {
            observer.on_event(&event);
        }
    }
}

/// Handles one delivery and says how to settle it.
pub(crate) async fn process(runtime: &JobRuntime, delivery: Delivery) -> Verdict {
    let Delivery {
        redelivered,
        exchange,
        routing_key,
        envelope,
        ..
    } = delivery;
    let origin = Origin {
        exchange,
        routing_key,
    };
    match run(runtime, envelope, redelivered, origin).await {
        Ok(()) => Verdict::Ack,
        Err(NotDurable {
            attempt,
            message_id,
            error,
            started,
        }) => {
            let error = error_chain(&error);
            tracing::warn!(job = runtime.settings.job().name(), error = %error, "outcome not durable; requeueing");
            runtime.emit(
                message_id.as_deref(),
                attempt,
                EventKind::Requeued {
                    error: &error,
                    started,
                },
            );
            Verdict::Requeue
        }
    }
}

/// The retry or error-queue publish that would have made an outcome durable failed.
struct NotDurable {
    attempt: u32,
    /// Whether the handler ran before the outcome failed to publish.
    started: bool,
    message_id: Option<String>,
    error: crate::Error,
}

/// Runs the delivery to a durable outcome.
async fn run(
    runtime: &JobRuntime,
    envelope: Envelope,
    redelivered: bool,
    origin: Origin,
) -> Result<(), NotDurable> {
    let job = runtime.settings.job();
    let envelope = Arc::new(envelope);
    let mut trace = None;
    let classified = classify(
        job,
        &runtime.accepted_names,
        runtime.max_message_size,
        &envelope,
        |attempt| {
            let context = JobContext::new(
                &runtime.context,
                Arc::clone(&envelope),
                attempt,
                redelivered,
            );
            trace = Some(context.traceparent());
            context
        },
    );
    let (attempt, running) = match classified {
        Classified::Run { attempt, running } => (attempt, running),
        Classified::Refuse { attempt, failure } => {
            let envelope = Arc::unwrap_or_clone(envelope);
            return Box::pin(dead_letter(
                runtime, envelope, attempt, &failure, origin, None,
            ))
            .await;
        }
    };
    let message_id = envelope.properties.message_id.as_deref();
    // Set whenever the handler was built, which `Run` says it was.
    let trace = trace.unwrap_or_else(TraceContext::new_root);

    runtime.emit(message_id, attempt, EventKind::Started);
    let started = Instant::now();
    let timeout = runtime.settings.timeout();
    // The span carries job, message id and attempt into every log line of the handler; the
    // trace scope lets the jobs it enqueues continue the delivery's trace.
    let span = tracing::info_span!(
        "job",
        job = job.name(),
        message_id = message_id.unwrap_or(""),
        attempt
    );
    let running = trace.scope(AssertUnwindSafe(running).catch_unwind());
    let result = tokio::time::timeout(timeout, running.instrument(span)).await;
    let elapsed = started.elapsed();
    let failure = match result {
        Ok(Ok(Ok(()))) => {
            runtime.emit(message_id, attempt, EventKind::Succeeded { elapsed });
            return Ok(());
        }
        Ok(Ok(Err(err))) => Failure {
            kind: if err.is_fatal() {
                FailureKind::Fatal
            } else {
                FailureKind::Handler
            },
            error: err.chain(),
            retry_after: err.retry_delay(),
        },
        Ok(Err(panic)) => Failure::new(FailureKind::Panic, panic_message(&*panic)),
        Err(_) => Failure::new(
            FailureKind::Timeout,
            format!("handler ran past its {timeout:?} deadline"),
        ),
    };

    let settings = &runtime.settings;
    let retry = (failure.kind.is_retryable() && attempt <= settings.retries())
        .then(|| settings.retry_level(attempt, failure.retry_after))
        .flatten();
    let message_id = message_id.map(str::to_owned);
    let envelope = Arc::unwrap_or_clone(envelope);
    let Some((queue, delay)) = retry else {
        return Box::pin(dead_letter(
            runtime,
            envelope,
            attempt,
            &failure,
            origin,
            Some(trace),
        ))
        .await;
    };
    let publish = failure::retry(envelope, queue, attempt + 1, origin, trace);
    // Boxed, as in `dead_letter`: a rare path must not grow every delivery's task.
    if let Err(error) = Box::pin(runtime.producer.publish(publish)).await {
        return Err(NotDurable {
            attempt,
            started: true,
            message_id,
            error,
        });
    }
    let kind = EventKind::Retried {
        elapsed,
        kind: failure.kind,
        error: &failure.error,
        delay,
    };
    runtime.emit(message_id.as_deref(), attempt, kind);
    Ok(())
}

/// Publishes the delivery to the error queue. `trace` is the context the handler ran under:
/// `None` when the delivery was refused before the handler started.
async fn dead_letter(
    runtime: &JobRuntime,
    envelope: Envelope,
    attempt: u32,
    failure: &Failure,
    origin: Origin,
    trace: Option<TraceContext>,
) -> Result<(), NotDurable> {
    let started = trace.is_some();
    let settings = &runtime.settings;
    let message_id = envelope.properties.message_id.clone();
    let publish = failure::dead_letter(
        envelope,
        settings.error_queue(),
        settings.job().queue(),
        failure,
        origin,
        &runtime.host,
        trace,
    );
    // Boxed: the publish future (with its confirm timer) would otherwise make every
    // delivery's task, which is moved on spawn, several times larger.
    if let Err(error) = Box::pin(runtime.producer.publish(publish)).await {
        return Err(NotDurable {
            attempt,
            started,
            message_id,
            error,
        });
    }
    tracing::warn!(
        job = settings.job().name(),
        message_id = message_id.as_deref().unwrap_or(""),
        attempt,
        kind = failure.kind.as_str(),
        error = %failure.error,
        "job moved to the error queue"
    );
    let kind = EventKind::DeadLettered {
        kind: failure.kind,
        error: &failure.error,
        started,
    };
    runtime.emit(message_id.as_deref(), attempt, kind);
    Ok(())
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("handler panicked: {text}")
}
