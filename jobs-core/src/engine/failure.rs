//! Turning a failed delivery into the message that makes its outcome durable: a retry-queue
//! message with the next attempt number, or an error-queue message with the failure headers.

use std::borrow::Cow;
use std::time::Duration;

use crate::envelope::{Envelope, header};
use crate::job_error::FailureKind;
use crate::producer::unix_now;
use crate::transport::Publish;

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

/// Where a message was first published: a retry arrives from the default exchange, so the
/// first hop records the original exchange and key in headers, and later hops keep them.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
}

impl Origin {
    pub(crate) fn of(envelope: &Envelope, exchange: &str, routing_key: &str) -> Self {
        let headers = &envelope.properties.headers;
        match (
            headers.get_str(header::EXCHANGE),
            headers.get_str(header::ROUTING_KEY),
        ) {
            (Some(exchange), Some(routing_key)) => Self {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            },
            _ => Self {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            },
        }
    }
}

/// The message for the next attempt, published to `retry_queue` through the default exchange.
pub(crate) fn retry(
    mut envelope: Envelope,
    retry_queue: &str,
    next_attempt: u32,
    origin: Origin,
) -> Publish {
    let headers = &mut envelope.properties.headers;
    headers.insert(header::ATTEMPT, next_attempt);
    headers.insert(header::EXCHANGE, origin.exchange);
    headers.insert(header::ROUTING_KEY, origin.routing_key);
    to_queue(retry_queue, envelope)
}

/// What the error queue receives: the original message plus the failure headers.
pub(crate) fn dead_letter(
    mut envelope: Envelope,
    error_queue: &str,
    work_queue: &str,
    failure: &Failure,
    origin: Origin,
    host: &str,
) -> Publish {
    let headers = &mut envelope.properties.headers;
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
    headers.insert(header::EXCHANGE, origin.exchange);
    headers.insert(header::ROUTING_KEY, origin.routing_key);
    headers.insert(header::HOST, host);
    to_queue(error_queue, envelope)
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
    fn origin_prefers_the_recorded_first_hop() {
        let mut envelope = Envelope::default();
        assert_eq!(Origin::of(&envelope, "uploads", "oss").exchange, "uploads");
        envelope
            .properties
            .headers
            .insert(header::EXCHANGE, "uploads");
        envelope
            .properties
            .headers
            .insert(header::ROUTING_KEY, "oss");
        let origin = Origin::of(&envelope, "", "uploads.oss");
        assert_eq!(
            (origin.exchange.as_str(), origin.routing_key.as_str()),
            ("uploads", "oss")
        );
    }
}
