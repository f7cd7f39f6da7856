//! The wire contract: AMQP properties and headers around a protobuf body.
//!
//! A job message is a plain AMQP message that any language's AMQP and protobuf libraries can
//! produce or consume. See the crate docs for the table of properties and headers.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// `content_type` of every job message.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Names of the headers the framework reads and writes.
pub mod header {
    /// Attempt number: 1 on first publish, +1 on each retry publish; missing means 1.
    pub const ATTEMPT: &str = "x-jobs-attempt";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Error queue: the failure's error chain, truncated to 4 KiB.
    pub const ERROR: &str = "x-jobs-error";
    /// Error queue: the kind of failure, one of [`FailureKind`](crate::FailureKind)'s names.
    pub const ERROR_KIND: &str = "x-jobs-error-kind";
    /// Error queue: when the job failed, in Unix seconds.
    pub const FAILED_AT: &str = "x-jobs-failed-at";
    /// Error queue: the work queue the job failed on.
    pub const QUEUE: &str = "x-jobs-queue";
    /// The exchange the job was first published to (kept across retries).
    pub const EXCHANGE: &str = "x-jobs-exchange";
    /// The routing key the job was first published with (kept across retries).
    pub const ROUTING_KEY: &str = "x-jobs-routing-key";
    /// Error queue: the host of the worker that gave up on the job.
    pub const HOST: &str = "x-jobs-host";
    /// A periodic job's run, its tick and its record: the slot, in Unix seconds.
    pub const SLOT: &str = "x-jobs-slot";
    /// A schedule's record of its last fired slot: the worker that fired it.
    pub const FIRED_BY: &str = "x-jobs-fired-by";
    /// A call's request: when the caller stops waiting, in Unix milliseconds.
    pub const DEADLINE: &str = "x-jobs-deadline";
    /// A call's reply: `ok` with the reply message as the body, or `failed` with
    /// [`ERROR_KIND`] and [`ERROR`]. Missing means `ok`.
    pub const REPLY: &str = "x-jobs-reply";
    /// The headers that mark a message as failed; replay strips them. The origin headers
    /// ([`EXCHANGE`], [`ROUTING_KEY`]) stay: they say where the job was first published.
    pub const FAILURE: [&str; 5] = [ERROR, ERROR_KIND, FAILED_AT, QUEUE, HOST];
    /// Headers the broker adds while a message sits in queues: its delivery count and its
    /// dead-lettering record. A replay starts afresh, so it strips them too.
    pub const BROKER: [&str; 8] = [
        "x-delivery-count",
        "x-death",
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
        "x-last-death-reason",
        "x-last-death-queue",
        "x-last-death-exchange",
    ];
}

/// A message as it travels: properties and a body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    /// AMQP basic properties, with the headers table.
    pub properties: Properties,
    /// The body: for a job, the protobuf encoding of its message and nothing else.
    pub body: Bytes,
}

/// The AMQP basic properties the framework uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    /// MIME type of the body; [`CONTENT_TYPE`] for jobs.
    pub content_type: Option<Cow<'static, str>>,
    /// The AMQP `type` property: the job name.
    pub kind: Option<Cow<'static, str>>,
    /// Unique id, kept across retries.
    pub message_id: Option<String>,
    /// Correlation id, for request and reply.
    pub correlation_id: Option<String>,
    /// Reply queue, for request and reply.
    pub reply_to: Option<String>,
    /// Enqueue time in Unix seconds.
    pub timestamp: Option<u64>,
    /// Delivery mode 2: the broker writes the message to disk.
    pub persistent: bool,
    /// The AMQP priority: on a queue with priority levels, a higher one is delivered first.
    pub priority: Option<u8>,
    /// The headers table.
    pub headers: Headers,
}

impl Envelope {
    /// The attempt this delivery is: the `x-jobs-attempt` header, or 1 when it is missing.
    ///
    /// # Errors
    ///
    /// [`InvalidAttempt`] when the header is present but not a positive integer.
    pub fn attempt(&self) -> Result<u32, InvalidAttempt> {
        match self.properties.headers.get(header::ATTEMPT) {
            None => Ok(1),
            Some(value) => value
                .as_i64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n >= 1)
                .ok_or(InvalidAttempt),
        }
    }
}

/// The `x-jobs-attempt` header is not a positive integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the `x-jobs-attempt` header is not a positive integer")]
pub struct InvalidAttempt;

/// An AMQP field-table value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HeaderValue {
    /// A long string (UTF-8 text).
    String(String),
    /// A long string that is not valid UTF-8.
    Bytes(Vec<u8>),
    /// Any integer width.
    Int(i64),
    /// A float or double.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A timestamp in Unix seconds.
    Timestamp(u64),
    /// An array of values.
    Array(Vec<HeaderValue>),
    /// A nested table.
    Table(Headers),
    /// No value.
    Void,
}

impl HeaderValue {
    /// The value as text, when it is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, when it is one (timestamps included).
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Timestamp(t) => i64::try_from(*t).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => write!(f, "{s:?}"),
            Self::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Timestamp(t) => write!(f, "{t}"),
            Self::Array(values) => f
                .debug_list()
                .entries(values.iter().map(ToString::to_string))
                .finish(),
            Self::Table(table) => f
                .debug_map()
                .entries(table.iter().map(|(k, v)| (k, v.to_string())))
                .finish(),
            Self::Void => f.write_str("void"),
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<i64> for HeaderValue {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<u32> for HeaderValue {
    fn from(n: u32) -> Self {
        Self::Int(n.into())
    }
}

impl From<bool> for HeaderValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// An ordered AMQP field table.
///
/// Messages carry a handful of headers, so a vector beats a map here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(Vec<(Cow<'static, str>, HeaderValue)>);

impl Headers {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the table has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value under `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The text value under `name`, when it is a string.
    #[must_use]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(HeaderValue::as_str)
    }

    /// Sets `name` to `value`, replacing any value it had.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<HeaderValue>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValue> {
        let index = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(index).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &HeaderValue) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    /// A table of entries whose names are known to be distinct (from a field table, say):
    /// built in one pass, where inserting each would look through the ones before it.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn from_distinct(entries: Vec<(Cow<'static, str>, HeaderValue)>) -> Self {
        Self(entries)
    }
}

impl IntoIterator for Headers {
    type Item = (Cow<'static, str>, HeaderValue);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<HeaderValue>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Self::new();
        for (k, v) in iter {
            headers.insert(k, v);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_attempt(value: HeaderValue) -> Envelope {
        let mut envelope = Envelope::default();
        envelope.properties.headers.insert(header::ATTEMPT, value);
        envelope
    }

    #[test]
    fn a_missing_attempt_header_means_the_first_attempt() {
        assert_eq!(Envelope::default().attempt(), Ok(1));
    }

    #[test]
    fn attempt_header_must_be_a_positive_integer() {
        assert_eq!(with_attempt(HeaderValue::Int(3)).attempt(), Ok(3));
        assert_eq!(
            with_attempt(HeaderValue::Int(0)).attempt(),
            Err(InvalidAttempt)
        );
        assert_eq!(
            with_attempt(HeaderValue::Int(-2)).attempt(),
            Err(InvalidAttempt)
        );
        assert_eq!(with_attempt("2".into()).attempt(), Err(InvalidAttempt));
        assert_eq!(
            with_attempt(HeaderValue::Int(i64::MAX)).attempt(),
            Err(InvalidAttempt)
        );
    }

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut headers: Headers = [("a", 1i64), ("b", 2)].into_iter().collect();
        headers.insert("a", 3i64);
        let entries: Vec<_> = headers
            .iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        assert_eq!(
            entries,
            [
                ("a".to_owned(), HeaderValue::Int(3)),
                ("b".to_owned(), HeaderValue::Int(2))
            ]
        );
        assert_eq!(headers.remove("a"), Some(HeaderValue::Int(3)));
        assert_eq!(headers.len(), 1);
    }
}
