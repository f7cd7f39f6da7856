//! Turning a failed delivery into the message that makes its outcome durable: a retry-queue
//! message with the next attempt number, or an error-queue message with the failure headers.

use std::borrow::Cow;
use std::time::Duration;

use crate::envelope::{Envelope, Headers, header};
use crate::job_error::FailureKind;
use crate::producer::unix_now;
use crate::trace::TraceContext;
use crate::transport::{Publish, ReplyChannel};

/// The longest `x-jobs-error` value; longer chains are cut at a character boundary.
pub(crate) const MAX_ERROR_LEN: usize = 4096;

/// Why an attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) error: String,
    /// A handler's `retry_after`.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, error: impl Into<String>) -> Self {
        Self {
            kind,
            error: error.into(),
            retry_after: None,
        }
    }
}

/// Where a delivery came from: the exchange and routing key it arrived with.
///
/// A retry arrives from the default exchange, so the first hop records the original exchange
/// and key in headers, and later hops keep them; these are used only where no hop recorded
/// them yet. Moved out of the delivery, so building one costs nothing on the success path.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub(crate) exchange: Cow<'static, str>,
    pub(crate) routing_key: Cow<'static, str>,
    /// For a call, the channel it came on, where its reply goes when the transport offers it.
    pub(crate) reply: Option<ReplyChannel>,
}

impl Origin {
    /// Records this origin in `headers`, unless an earlier hop already did.
    fn record(self, headers: &mut Headers) {
        if headers.get_str(header::EXCHANGE).is_none()
            || headers.get_str(header::ROUTING_KEY).is_none()
        {
            headers.insert(header::EXCHANGE, self.exchange.into_owned());
            headers.insert(header::ROUTING_KEY, self.routing_key.into_owned());
        }
    }
}

/// Records the trace the attempt ran under, when the message came without one, so that
/// every later attempt continues it.
fn record_trace(headers: &mut Headers, trace: Option<TraceContext>) {
    if let Some(trace) = trace
        && headers.get_str(header::TRACEPARENT).is_none()
    {
        headers.insert(header::TRACEPARENT, trace.header());
    }
}

/// The message for the next attempt, published to `retry_queue` through the default exchange.
pub(crate) fn retry(
    mut envelope: Envelope,
    retry_queue: &str,
    next_attempt: u32,
    origin: Origin,
    trace: TraceContext,
) -> Publish {
    // The framework's copies are persistent whatever the original was: the original is acked
    // once its copy is confirmed, so a transient copy would make a broker restart lose the job.
    envelope.properties.persistent = true;
    let headers = &mut envelope.properties.headers;
    headers.insert(header::ATTEMPT, next_attempt);
    origin.record(headers);
    record_trace(headers, Some(trace));
    to_queue(retry_queue, envelope)
}

/// The message for the next attempt, through the delay cascade back to `work_queue` after
/// `delay` (rounded up to the second): a handler's `retry_after`.
///
/// # Errors
///
/// When the cascade cannot hold the delay, or `work_queue`'s name is too long to spell it.
pub(crate) fn retry_delayed(
    mut envelope: Envelope,
    work_queue: &str,
    delay: Duration,
    next_attempt: u32,
    origin: Origin,
    trace: TraceContext,
) -> crate::Result<Publish> {
    let (exchange, routing_key) = crate::delay::route(crate::delay::seconds(delay)?, work_queue)?;
    envelope.properties.persistent = true;
    let headers = &mut envelope.properties.headers;
    // Entering the cascade again with the deaths of an earlier pass would make RabbitMQ take
    // it for a dead-letter cycle and drop it.
    crate::delay::strip_death_headers(headers);
    headers.insert(header::ATTEMPT, next_attempt);
    origin.record(headers);
    record_trace(headers, Some(trace));
    Ok(Publish {
        exchange: Cow::Owned(exchange),
        routing_key: Cow::Owned(routing_key),
        mandatory: true,
        envelope,
    })
}

/// What the error queue receives: the original message plus the failure headers, and the
/// trace of the last attempt when the handler ran.
pub(crate) fn to_error_queue(
    mut envelope: Envelope,
    error_queue: &str,
    work_queue: &str,
    failure: &Failure,
    origin: Origin,
    host: &str,
    trace: Option<TraceContext>,
) -> Publish {
    envelope.properties.persistent = true;
    let headers = &mut envelope.properties.headers;
    record_trace(headers, trace);
    headers.insert(
        header::ERROR,
        truncate(&failure.error, MAX_ERROR_LEN).to_owned(),
    );
    headers.insert(header::ERROR_KIND, failure.kind.as_str());
    headers.insert(
        header::FAILED_AT,
        i64::try_from(unix_now()).unwrap_or(i64::MAX),
    );
    headers.insert(header::QUEUE, work_queue);
    origin.record(headers);
    headers.insert(header::HOST, host);
    to_queue(error_queue, envelope)
}

/// Removes every header but the framework's own (`x-jobs-*`, `traceparent`) and returns how many
/// went, or `None` when there were none to remove.
pub(crate) fn drop_foreign_headers(envelope: &mut Envelope) -> Option<usize> {
    let headers = &mut envelope.properties.headers;
    let before = headers.len();
    headers.retain(|name, _| name.starts_with("x-jobs-") || name == header::TRACEPARENT);
    let dropped = before - headers.len();
    (dropped > 0).then_some(dropped)
}

fn to_queue(queue: &str, envelope: Envelope) -> Publish {
    Publish {
        exchange: Cow::Borrowed(""),
        routing_key: Cow::Owned(queue.to_owned()),
        mandatory: true,
        envelope,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        let text = "é".repeat(3000); // 6000 bytes
        let cut = truncate(&text, MAX_ERROR_LEN);
        assert!(cut.len() <= MAX_ERROR_LEN && cut.len() >= MAX_ERROR_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short", MAX_ERROR_LEN), "short");
    }

    #[test]
    fn origin_keeps_the_recorded_first_hop() {
        let from = |exchange: &'static str, key: &'static str| Origin {
            exchange: exchange.into(),
            routing_key: key.into(),
            reply: None,
        };
        let mut headers = Headers::new();
        from("uploads", "oss").record(&mut headers);
        from("", "uploads.oss").record(&mut headers);
        assert_eq!(
            (
                headers.get_str(header::EXCHANGE),
                headers.get_str(header::ROUTING_KEY)
            ),
            (Some("uploads"), Some("oss"))
        );
    }
}
