//! What a handler returns when it fails, and the kinds of failure the error queue records.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::BoxError;

/// A handler's failure: retried with backoff by default, or fatal.
///
/// Any `std::error::Error` converts into a retryable `JobError`, so `?` retries. Say
/// [`JobError::fatal`] for a failure no retry can fix: the job goes straight to the error
/// queue.
///
/// ```
/// use jobs_core::JobError;
/// # fn upload(_: &str) -> std::io::Result<()> { Ok(()) }
///
/// fn transfer(path: &str, size: u64) -> Result<(), JobError> {
///     if size == 0 {
///         return Err(JobError::fatal("empty file")); // no retry can fix this
///     }
///     upload(path)?; // an io::Error: retried with backoff
///     Ok(())
/// }
/// # assert!(transfer("a", 0).unwrap_err().is_fatal());
/// ```
pub struct JobError {
    source: BoxError,
    fatal: bool,
    retry_after: Option<Duration>,
}

impl JobError {
    /// A failure worth retrying with the job's backoff.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        Self {
            source: error.into(),
            fatal: false,
            retry_after: None,
        }
    }

    /// A failure worth retrying after `delay` (a rate limit's `Retry-After`, say), instead of
    /// the job's backoff step: the retry waits in the broker's delay cascade (see
    /// [`crate::delay`]) for `delay` rounded up to the second.
    pub fn retry_after(error: impl Into<BoxError>, delay: Duration) -> Self {
        Self {
            retry_after: Some(delay),
            ..Self::retry(error)
        }
    }

    /// A failure no retry can fix: the job goes to the error queue at once.
    pub fn fatal(error: impl Into<BoxError>) -> Self {
        Self {
            fatal: true,
            ..Self::retry(error)
        }
    }

    /// Whether the job goes to the error queue without further attempts.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The delay asked for with [`JobError::retry_after`].
    #[must_use]
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The underlying error.
    #[must_use]
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The error and its causes, joined by `": "`.
    #[must_use]
    pub fn chain(&self) -> String {
        error_chain(&*self.source)
    }
}

/// `error` and its causes, joined by `": "`.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        chain.push_str(": ");
        chain.push_str(&next.to_string());
        cause = next.source();
    }
    chain
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::retry(error)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("source", &self.source)
            .field("fatal", &self.fatal)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// Why a job ended in its error queue: the `x-jobs-error-kind` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error on its last attempt.
    Handler,
    /// The handler returned [`JobError::fatal`].
    Fatal,
    /// The handler passed its deadline on its last attempt.
    Timeout,
    /// The handler panicked on its last attempt.
    Panic,
    /// The body is not the job's protobuf message, or the envelope is malformed.
    Decode,
    /// The message's `type` names no job served on the queue.
    UnknownJob,
    /// The body is over the worker's size limit.
    TooLarge,
    /// The broker dead-lettered the message after too many deliveries.
    DeliveryLimit,
}

impl FailureKind {
    /// The header value, such as `unknown-job`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::Fatal => "fatal",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
            Self::Decode => "decode",
            Self::UnknownJob => "unknown-job",
            Self::TooLarge => "too-large",
            Self::DeliveryLimit => "delivery-limit",
        }
    }

    /// Whether a failure of this kind is worth another attempt.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Handler | Self::Timeout | Self::Panic)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a [`FailureKind`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure kind `{0}`")]
pub struct UnknownFailureKind(String);

impl FromStr for FailureKind {
    type Err = UnknownFailureKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Handler,
            Self::Fatal,
            Self::Timeout,
            Self::Panic,
            Self::Decode,
            Self::UnknownJob,
            Self::TooLarge,
            Self::DeliveryLimit,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
        .ok_or_else(|| UnknownFailureKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("upload failed")]
    struct Upload(#[source] std::io::Error);

    #[test]
    fn question_mark_makes_a_retryable_error() {
        let err: JobError = Upload(std::io::Error::other("connection reset")).into();
        assert!(!err.is_fatal());
        assert_eq!(err.chain(), "upload failed: connection reset");
    }

    #[test]
    fn fatal_and_retry_after_say_so() {
        assert!(JobError::fatal("empty").is_fatal());
        let later = JobError::retry_after("busy", Duration::from_secs(7));
        assert_eq!(later.retry_delay(), Some(Duration::from_secs(7)));
        assert!(!later.is_fatal());
    }

    #[test]
    fn failure_kinds_round_trip_through_their_names() {
        for name in [
            "handler",
            "fatal",
            "timeout",
            "panic",
            "decode",
            "unknown-job",
            "too-large",
            "delivery-limit",
        ] {
            assert_eq!(name.parse::<FailureKind>().unwrap().as_str(), name);
        }
        assert!("oops".parse::<FailureKind>().is_err());
    }
}
