//! One delivery, start to finish: classify, decode, run with a deadline and panic capture,
//! decide retry or error queue, and make that outcome durable before it is acked.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::classify::{Classified, classify};
use super::consumer::Abandon;
use super::durable::{self, Decision, Decisions, Destination, NotPublished};
use super::events::{Event, EventKind, Observer};
use super::failure::{self, Failure, Origin};
use super::kill_switch::{Change, Switch};
use super::reply;
use super::settle::Verdict;
use crate::context::{ContextShared, JobContext};
use crate::envelope::Envelope;
use crate::job_error::{FailureKind, error_chain};
use crate::otel::ProcessSpan;
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
    /// How long a failed attempt's retry or error-queue publish is tried before falling back.
    pub(crate) outcome_publish_timeout: Duration,
    /// Failures decided but never published, for redeliveries.
    pub(crate) decisions: Decisions,
    /// The job's kill switch on this worker, if it has one.
    pub(crate) switch: Option<Arc<Switch>>,
    /// The tickets a job with a rate starts with.
    pub(crate) tickets: Option<super::rate::Tickets>,
}

impl JobRuntime {
    /// Counts a handler's attempt on the job's kill switch, and reports what that changed.
    fn count_attempt(&self, failed: bool) {
        let Some(switch) = &self.switch else {
            return;
        };
        let job = self.settings.job().name();
        let cool_down = switch.cool_down();
        switch.record(failed, |change| match change {
            Change::Tripped { failures, attempts } => {
                tracing::warn!(
                    job,
                    failures,
                    attempts,
                    ?cool_down,
                    "kill switch tripped: this worker stops taking the job, then probes"
                );
                self.emit(
                    None,
                    0,
                    EventKind::SwitchTripped {
                        failures,
                        attempts,
                        cool_down,
                    },
                );
            }
            Change::Closed => {
                tracing::info!(job, "kill switch closed: a probe succeeded");
                self.emit(None, 0, EventKind::SwitchClosed);
            }
        });
    }

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
            // An observer's panic must not stop the delivery on its way to being settled.
            let observed = std::panic::catch_unwind(AssertUnwindSafe(|| observer.on_event(&event)));
            if observed.is_err() {
                tracing::error!(
                    job = event.job.name(),
                    "an observer panicked; the job goes on without it"
                );
            }
        }
    }
}

/// What a handler's deadline is when its timeout is too long to add to the clock: about 30
/// years, as tokio's own `timeout` does.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A delivery as its task holds it: the envelope shared from the start, as the handler's
/// context shares it, so that the task (copied as it is made, a copy per nested call) carries
/// a pointer rather than the whole message at each level.
pub(crate) struct Received {
    pub(crate) redelivered: bool,
    pub(crate) origin: Origin,
    pub(crate) envelope: Arc<Envelope>,
}

impl Received {
    /// The parts of `delivery` its task needs; its tag stays with the serve loop.
    pub(crate) fn new(delivery: Delivery) -> Self {
        let Delivery {
            redelivered,
            exchange,
            routing_key,
            envelope,
            reply,
            ..
        } = delivery;
        Self {
            redelivered,
            origin: Origin {
                exchange,
                routing_key,
                reply,
            },
            envelope,
        }
    }
}

/// A redelivery of a failure this worker decided but could not publish: its decision, to
/// publish without running the handler again ([`replay`]); `None` for a delivery to [`run`].
///
/// Two steps rather than one `async fn` around both: an `async fn` keeps its arguments for its
/// whole life, so a wrapper would hold a second copy of the delivery in every task.
pub(crate) fn decided_before(runtime: &JobRuntime, received: &Received) -> Option<Decision> {
    if !received.redelivered {
        return None;
    }
    remembered(runtime, &received.envelope)
}

/// Publishes the remembered `decision` of a redelivered failure; see [`decided_before`].
pub(crate) async fn replay(
    runtime: &JobRuntime,
    received: Received,
    decision: Decision,
    abandon: &Abandon,
) -> Verdict {
    settle_failure(
        runtime,
        Arc::unwrap_or_clone(received.envelope),
        decision,
        received.origin,
        abandon,
        false,
        ProcessSpan::none(),
    )
    .await
}

/// The decision remembered for this delivery, when its outcome was decided before.
fn remembered(runtime: &JobRuntime, envelope: &Envelope) -> Option<Decision> {
    let message_id = envelope.properties.message_id.as_deref()?;
    let attempt = envelope.attempt().ok()?;
    runtime.decisions.take(message_id, attempt)
}

/// Runs the delivery to a verdict.
pub(crate) async fn run(
    runtime: &JobRuntime,
    envelope: Arc<Envelope>,
    redelivered: bool,
    origin: Origin,
    abandon: &Abandon,
) -> Verdict {
    let job = runtime.settings.job();
    // The attempt's consumer span, when the `otel` feature is on and a tracer is set.
    let otel_span = ProcessSpan::start(
        job,
        &envelope,
        &origin.exchange,
        &origin.routing_key,
        redelivered,
    );
    let mut trace = None;
    let classified = classify(
        job,
        &runtime.accepted_names,
        runtime.max_message_size,
        &envelope,
        |attempt| {
            let mut context = JobContext::new(
                &runtime.context,
                Arc::clone(&envelope),
                Some(job),
                attempt,
                redelivered,
            );
            // With a consumer span, the handler's trace context is the span's.
            if let Some(attempt_trace) = otel_span.trace() {
                context.set_traceparent(attempt_trace);
            }
            trace = Some(context.traceparent());
            context
        },
    );
    let (attempt, running) = match classified {
        Classified::Run { attempt, running } => (attempt, running),
        Classified::Refuse { attempt, failure } => {
            let envelope = Arc::unwrap_or_clone(envelope);
            let decision = Decision {
                attempt,
                failure,
                destination: Destination::ErrorQueue,
                trace: None,
                elapsed: Duration::ZERO,
            };
            return Box::pin(settle_failure(
                runtime, envelope, decision, origin, abandon, false, otel_span,
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
    let running = otel_span.attach(trace.scope(AssertUnwindSafe(running).catch_unwind()));
    // One read of the clock for the deadline and the duration; tokio's own far future
    // stands in for a timeout too long to add.
    let deadline = started
        .checked_add(timeout)
        .unwrap_or_else(|| started + FAR_FUTURE);
    let result = super::deadline::within(deadline, running.instrument(span)).await;
    let failure = match result {
        Ok(Ok(Ok(body))) => {
            // Read only for observers: a clock read is a fair share of a no-op job's cost.
            let elapsed = (!runtime.observers.is_empty()).then(|| started.elapsed());
            if reply::address(&envelope).is_some() {
                // Boxed: only calls reply, and the reply's publish would otherwise more than
                // double the future every delivery builds in its handler task.
                Box::pin(reply::ok(runtime, &envelope, origin.reply.as_ref(), body)).await;
            }
            // Ended before the event: an observer that hears of it may flush the exporter.
            otel_span.succeeded();
            if let Some(elapsed) = elapsed {
                runtime.emit(message_id, attempt, EventKind::Succeeded { elapsed });
            }
            runtime.count_attempt(false);
            return Verdict::Ack;
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

    let elapsed = started.elapsed();
    runtime.count_attempt(true);
    let settings = &runtime.settings;
    let mut failure = failure;
    let retry = failure.kind.is_retryable() && attempt <= settings.retries();
    let destination = match (retry, failure.retry_after) {
        (false, _) => Destination::ErrorQueue,
        (true, Some(delay)) => Destination::Delayed { delay },
        (true, None) => {
            settings
                .retry_level(attempt)
                .map_or(Destination::ErrorQueue, |(queue, delay)| {
                    Destination::Retry {
                        queue: queue.to_owned(),
                        delay,
                    }
                })
        }
    };
    let destination = within_deadline(runtime, &envelope, destination, &mut failure);
    let decision = Decision {
        attempt,
        failure,
        destination,
        trace: Some(trace),
        elapsed,
    };
    let envelope = Arc::unwrap_or_clone(envelope);
    // Boxed: a rare path must not grow the future every delivery builds in its handler task.
    Box::pin(settle_failure(
        runtime, envelope, decision, origin, abandon, true, otel_span,
    ))
    .await
}

/// A call's retry that would start after its caller stopped waiting is no retry: the attempt
/// was the last, and the caller hears of it now rather than timing out.
fn within_deadline(
    runtime: &JobRuntime,
    envelope: &Envelope,
    destination: Destination,
    failure: &mut Failure,
) -> Destination {
    let delay = match &destination {
        Destination::Retry { delay, .. } | Destination::Delayed { delay } => *delay,
        Destination::ErrorQueue => return destination,
    };
    let Some(deadline) = reply::deadline(envelope) else {
        return destination;
    };
    if runtime.producer.transport().now() + delay <= deadline {
        return destination;
    }
    failure.error = format!(
        "{}; not retried: the call's deadline comes before the retry, in {delay:?}",
        failure.error
    );
    Destination::ErrorQueue
}

/// Publishes a failed delivery's decided outcome (see [`durable`](super::durable)) and says how
/// to settle the delivery. `started` says whether the handler ran for this delivery; `span`,
/// its consumer span, ends with the outcome.
async fn settle_failure(
    runtime: &JobRuntime,
    envelope: Envelope,
    mut decision: Decision,
    origin: Origin,
    abandon: &Abandon,
    started: bool,
    span: ProcessSpan,
) -> Verdict {
    let settings = &runtime.settings;
    let job = settings.job();
    let message_id = envelope.properties.message_id.clone();
    let timeout = runtime.outcome_publish_timeout;
    let mut envelope = envelope;
    loop {
        let publish = match &decision.destination {
            Destination::Retry { queue, .. } => Ok(failure::retry(
                envelope.clone(),
                queue,
                decision.attempt + 1,
                origin.clone(),
                decision.trace.unwrap_or_else(TraceContext::new_root),
            )),
            Destination::Delayed { delay } => failure::retry_delayed(
                envelope.clone(),
                job.queue(),
                *delay,
                decision.attempt + 1,
                origin.clone(),
                decision.trace.unwrap_or_else(TraceContext::new_root),
            ),
            Destination::ErrorQueue => Ok(failure::to_error_queue(
                envelope.clone(),
                settings.error_queue(),
                job.queue(),
                &decision.failure,
                origin.clone(),
                &runtime.host,
                decision.trace,
            )),
        };
        // A delay the cascade cannot hold (over 8.5 years, or a queue name too long to spell
        // it with) is no retry: the job goes to the error queue, saying why.
        let publish = match publish {
            Ok(publish) => publish,
            Err(error) => {
                decision.failure.error = format!(
                    "{}; its retry could not be delayed: {error}",
                    decision.failure.error
                );
                decision.destination = Destination::ErrorQueue;
                continue;
            }
        };
        let published = durable::publish(
            &runtime.producer,
            publish,
            timeout,
            abandon,
            |error, retry_in| {
                let error = error_chain(error);
                tracing::warn!(
                    job = job.name(),
                    message_id = message_id.as_deref().unwrap_or(""),
                    error = %error,
                    ?retry_in,
                    "could not publish the outcome of a failed attempt; trying again"
                );
                let kind = EventKind::PublishFailed {
                    error: &error,
                    retry_in,
                };
                runtime.emit(message_id.as_deref(), decision.attempt, kind);
            },
        )
        .await;
        let error = match published {
            Ok(()) => {
                // Ended before the event, as on success.
                let failure = &decision.failure;
                match decision.destination {
                    Destination::ErrorQueue => span.failed(failure.kind, &failure.error),
                    _ => span.retried(failure.kind, &failure.error),
                }
                report_durable(runtime, message_id.as_deref(), &decision, started);
                if matches!(decision.destination, Destination::ErrorQueue)
                    && reply::address(&envelope).is_some()
                {
                    let failure = &decision.failure;
                    let on = origin.reply.as_ref();
                    reply::failed(runtime, &envelope, on, failure.kind, &failure.error).await;
                }
                return Verdict::Ack;
            }
            Err(NotPublished::Lost) => {
                let failure = &decision.failure;
                span.requeued(failure.kind, &failure.error);
                return Verdict::Requeue;
            }
            Err(NotPublished::GaveUp(error)) => error,
        };
        // Headers a foreign producer made as large as a frame leave no room for the failure
        // headers: the job goes on without them, and its error says so.
        if let crate::Error::HeadersTooLarge { size, .. } = error
            && let Some(dropped) = failure::drop_foreign_headers(&mut envelope)
        {
            tracing::warn!(
                job = job.name(),
                message_id = message_id.as_deref().unwrap_or(""),
                dropped,
                size,
                "the message's headers leave no room for the framework's; dropping the foreign ones"
            );
            decision.failure.error = format!(
                "{}; its {dropped} foreign headers were dropped: with the failure headers its \
                 properties took {size} bytes, more than a frame holds",
                decision.failure.error
            );
            continue;
        }
        let error = error_chain(&error);
        match decision.destination {
            Destination::Retry { .. } | Destination::Delayed { .. } => {
                let to = match &decision.destination {
                    Destination::Retry { queue, .. } => format!("`{queue}`"),
                    _ => "the delay cascade".to_owned(),
                };
                // The error queue instead, where the job waits, replayable, with the reason.
                decision.failure.error = format!(
                    "{}; its retry could not be published to {to} within {timeout:?}: {error}",
                    decision.failure.error
                );
                decision.destination = Destination::ErrorQueue;
            }
            Destination::ErrorQueue => {
                tracing::error!(
                    job = job.name(),
                    message_id = message_id.as_deref().unwrap_or(""),
                    error = %error,
                    "the error queue took no outcome within {timeout:?}; requeueing the delivery"
                );
                span.requeued(decision.failure.kind, &decision.failure.error);
                runtime.emit(
                    message_id.as_deref(),
                    decision.attempt,
                    EventKind::Requeued {
                        error: &error,
                        started,
                    },
                );
                if let Some(id) = &message_id {
                    runtime.decisions.remember(id, decision);
                }
                // A failed delivery, counted toward the delivery limit on every version: the
                // limit is what ends a loop of such returns.
                return Verdict::Failed;
            }
        }
    }
}

/// Logs and reports an outcome that is now durable.
fn report_durable(
    runtime: &JobRuntime,
    message_id: Option<&str>,
    decision: &Decision,
    started: bool,
) {
    let failure = &decision.failure;
    let kind = match decision.destination {
        Destination::Retry { delay, .. } | Destination::Delayed { delay } => {
            // Not a warning: the job is expected to succeed on a later attempt.
            tracing::info!(
                job = runtime.settings.job().name(),
                message_id = message_id.unwrap_or(""),
                attempt = decision.attempt,
                kind = failure.kind.as_str(),
                error = %failure.error,
                retry_in = ?delay,
                "job failed; retrying"
            );
            EventKind::Retried {
                elapsed: decision.elapsed,
                kind: failure.kind,
                error: &failure.error,
                delay,
                started,
            }
        }
        Destination::ErrorQueue => {
            tracing::warn!(
                job = runtime.settings.job().name(),
                message_id = message_id.unwrap_or(""),
                attempt = decision.attempt,
                kind = failure.kind.as_str(),
                error = %failure.error,
                "job moved to the error queue"
            );
            EventKind::Failed {
                kind: failure.kind,
                error: &failure.error,
                started,
            }
        }
    };
    runtime.emit(message_id, decision.attempt, kind);
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("handler panicked: {text}")
}
