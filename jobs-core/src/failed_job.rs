//! Messages in an error queue: the original job plus the failure headers, ready to replay.

use std::borrow::Cow;

use crate::envelope::{Envelope, header};
use crate::job_error::FailureKind;
use crate::transport::Publish;

/// A message from an error queue (`Q.err`), read through its failure headers.
///
/// Messages the broker dead-lettered itself (a quorum queue's delivery limit) carry RabbitMQ's
/// `x-first-death-reason` instead of the framework's headers; [`FailedJob::kind`] reads both.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedJob {
    envelope: Envelope,
}

impl FailedJob {
    /// Reads `envelope` as an error-queue message.
    #[must_use]
    pub fn new(envelope: Envelope) -> Self {
        Self { envelope }
    }

    /// The message as it sits in the error queue.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Why the job failed, or `None` when no header says.
    #[must_use]
    pub fn kind(&self) -> Option<FailureKind> {
        let headers = &self.envelope.properties.headers;
        if let Some(kind) = headers.get_str(header::ERROR_KIND) {
            return kind.parse().ok();
        }
        (headers.get_str("x-first-death-reason") == Some("delivery_limit"))
            .then_some(FailureKind::DeliveryLimit)
    }

    /// The error chain (`x-jobs-error`).
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.header(header::ERROR)
    }

    /// The first line of the error: what a listing shows, and what groups failures by cause.
    #[must_use]
    pub fn error_line(&self) -> Option<&str> {
        self.error().and_then(|error| error.lines().next())
    }

    /// The attempt that failed last.
    #[must_use]
    pub fn attempt(&self) -> Option<u32> {
        self.envelope.attempt().ok()
    }

    /// The message id.
    #[must_use]
    pub fn message_id(&self) -> Option<&str> {
        self.envelope.properties.message_id.as_deref()
    }

    /// The job name (the `type` property).
    #[must_use]
    pub fn job(&self) -> Option<&str> {
        self.envelope.properties.kind.as_deref()
    }

    /// The work queue the job failed on (`x-jobs-queue`).
    #[must_use]
    pub fn queue(&self) -> Option<&str> {
        self.header(header::QUEUE)
    }

    /// The exchange the job was first published to (`x-jobs-exchange`).
    #[must_use]
    pub fn exchange(&self) -> Option<&str> {
        self.header(header::EXCHANGE)
    }

    /// The routing key the job was first published with (`x-jobs-routing-key`).
    #[must_use]
    pub fn routing_key(&self) -> Option<&str> {
        self.header(header::ROUTING_KEY)
    }

    /// The worker's host (`x-jobs-host`).
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        self.header(header::HOST)
    }

    /// When the job failed, in Unix seconds (`x-jobs-failed-at`).
    #[must_use]
    pub fn failed_at(&self) -> Option<i64> {
        self.envelope
            .properties
            .headers
            .get(header::FAILED_AT)?
            .as_i64()
    }

    /// Decodes the job's message.
    ///
    /// # Errors
    ///
    /// The decode error when the body is not an `M` (as for a `decode` failure).
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.envelope.body.clone())
    }

    /// The publish that replays the job: the original message, straight to `work_queue`
    /// through the default exchange, without the failure headers or the broker's delivery and
    /// dead-lettering headers, at attempt 1.
    ///
    /// Only to the job's own queue: publishing to the original exchange would run the message
    /// again in every other job bound there (on a fanout, topic or headers exchange), and the
    /// origin headers may have been set by whoever sent the message. The caller names the work
    /// queue from what it knows of the job, never from the message.
    #[must_use]
    pub fn replay_to(&self, work_queue: &str) -> Publish {
        let mut envelope = self.envelope.clone();
        envelope.properties.persistent = true;
        let headers = &mut envelope.properties.headers;
        for name in header::FAILURE.into_iter().chain(header::BROKER) {
            headers.remove(name);
        }
        headers.insert(header::ATTEMPT, 1i64);
        Publish {
            exchange: Cow::Borrowed(""),
            routing_key: Cow::Owned(work_queue.to_owned()),
            mandatory: true,
            envelope,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.envelope.properties.headers.get_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Envelope {
        let mut envelope = Envelope::default();
        let headers = &mut envelope.properties.headers;
        headers.insert(header::ATTEMPT, 6i64);
        headers.insert(header::ERROR, "disk full");
        headers.insert(header::ERROR_KIND, "handler");
        headers.insert(header::FAILED_AT, 1_700_000_000i64);
        headers.insert(header::QUEUE, "uploads.oss");
        headers.insert(header::EXCHANGE, "uploads");
        headers.insert(header::ROUTING_KEY, "oss");
        headers.insert(header::HOST, "worker-1");
        headers.insert("tenant", "acme");
        headers.insert("x-delivery-count", 3i64);
        envelope
    }

    #[test]
    fn reads_the_failure_headers() {
        let letter = FailedJob::new(failed());
        assert_eq!(letter.kind(), Some(FailureKind::Handler));
        assert_eq!(letter.error(), Some("disk full"));
        assert_eq!(letter.attempt(), Some(6));
        assert_eq!(letter.failed_at(), Some(1_700_000_000));
        assert_eq!(
            (letter.queue(), letter.host()),
            (Some("uploads.oss"), Some("worker-1"))
        );
    }

    #[test]
    fn replay_strips_failure_headers_and_restarts_the_count() {
        let mut message = failed();
        message.properties.persistent = false;
        let publish = FailedJob::new(message).replay_to("uploads.oss");
        assert_eq!(
            (&*publish.exchange, &*publish.routing_key),
            ("", "uploads.oss"),
            "to the job's queue, whatever the headers say"
        );
        assert!(publish.envelope.properties.persistent);
        let headers = &publish.envelope.properties.headers;
        assert!(
            header::FAILURE
                .iter()
                .all(|name| headers.get(name).is_none())
        );
        assert_eq!(publish.envelope.attempt(), Ok(1));
        assert_eq!(headers.get_str("tenant"), Some("acme"));
        assert_eq!(headers.get("x-delivery-count"), None);
        assert_eq!(
            headers.get_str(header::EXCHANGE),
            Some("uploads"),
            "the origin stays"
        );
    }

    #[test]
    fn the_broker_delivery_limit_is_a_kind_too() {
        let mut envelope = Envelope::default();
        envelope
            .properties
            .headers
            .insert("x-first-death-reason", "delivery_limit");
        assert_eq!(
            FailedJob::new(envelope).kind(),
            Some(FailureKind::DeliveryLimit)
        );
    }
}
