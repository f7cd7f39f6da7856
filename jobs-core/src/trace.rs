//! W3C trace context (`traceparent`) carried from producer to handler.
//!
//! Inside a handler the engine keeps the delivery's trace context in a task-local, so a
//! follow-up job enqueued there carries a `traceparent` that continues the same trace (same
//! trace id, a new span id). An enqueue outside any trace sets none (a caller with its own trace
//! sets the header itself): a root made up at the producer would be linked to nothing there, and
//! costs every job a header on both sides. The delivery's first attempt then starts the trace,
//! and its retries and error-queue entry carry it, so every attempt logs the same trace id.

use std::fmt;

use crate::random::random_u64;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context: trace id, parent span id and flags, written
/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
///
/// ```
/// use jobs_core::TraceContext;
///
/// let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.span_id(), parent.span_id());
/// assert!(child.to_string().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace, sampled.
    #[must_use]
    pub fn new_root() -> Self {
        let trace_id = u128::from(random_u64()) << 64 | u128::from(random_u64());
        Self {
            trace_id: trace_id.max(1),
            span_id: random_u64().max(1),
            flags: 1,
        }
    }

    /// The same trace with a new span id: the context of a message published under this one.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: random_u64().max(1),
            ..*self
        }
    }

    /// Parses a `traceparent` header (version 00, or a later version's first four fields).
    /// `None` when it is malformed or has an all-zero id.
    #[must_use]
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let bytes = header.as_bytes();
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = hex(&bytes[0..2])?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        let trace_id = hex(&bytes[3..35])?;
        let span_id = u64::try_from(hex(&bytes[36..52])?).ok()?;
        let flags = u8::try_from(hex(&bytes[53..55])?).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id, 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id, 16 lowercase hex digits.
    #[must_use]
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The context with these ids and flags: the bridge from an OpenTelemetry span.
    #[cfg(feature = "otel")]
    pub(crate) const fn from_parts(trace_id: u128, span_id: u64, flags: u8) -> Self {
        Self {
            trace_id,
            span_id,
            flags,
        }
    }

    /// Its trace id, span id and flags: the bridge to an OpenTelemetry span context.
    #[cfg(feature = "otel")]
    pub(crate) const fn parts(&self) -> (u128, u64, u8) {
        (self.trace_id, self.span_id, self.flags)
    }

    /// The context of the handler running on this task, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|current| *current).ok()
    }

    /// Runs `future` with this as the [`current`](Self::current) context. Not an `async fn`,
    /// which would hold `future` twice in every delivery's future.
    pub(crate) fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// The `traceparent` of a message published now: a child of the current context; none
    /// outside any handler.
    pub(crate) fn for_publish() -> Option<String> {
        Self::current().map(|current| current.child().header())
    }

    /// The `traceparent` header value; the same text as `Display`, without `fmt`, which costs
    /// more than the rest of an enqueue.
    #[must_use]
    pub fn header(&self) -> String {
        let mut text = String::with_capacity(55);
        text.push_str("00-");
        push_hex(&mut text, self.trace_id, 32);
        text.push('-');
        push_hex(&mut text, self.span_id.into(), 16);
        text.push('-');
        push_hex(&mut text, self.flags.into(), 2);
        text
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

/// Appends the low `digits` hex digits of `value`, lowercase.
fn push_hex(text: &mut String, value: u128, digits: u32) {
    for digit in (0..digits).rev() {
        let nibble = (value >> (digit * 4)) & 0xf;
        text.push(char::from(b"0123456789abcdef"[nibble as usize]));
    }
}

/// The value of up to 32 hex digits; `None` for anything else.
fn hex(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = char::from(digit).to_digit(16)?;
        Some(value << 4 | u128::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(text).unwrap().to_string(), text);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn roots_differ() {
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(a.to_string().len(), 55);
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    }
}
