//! lapin's errors as this crate's [`Error`].
//!
//! RabbitMQ reports what went wrong only in the reply text of a channel close, such as
//! `PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received
//! 'classic' but current is 'quorum'`, so the names and values are read from that text.

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

use crate::error::Error;

/// What the failed operation was about, for the errors whose reply text does not say.
#[derive(Clone, Copy, Debug)]
pub(super) enum Subject<'a> {
    Exchange(&'a str),
    Queue(&'a str),
    Other,
}

pub(super) fn map(err: &lapin::Error, subject: Subject<'_>) -> Error {
    let ErrorKind::ProtocolError(amqp) = err.kind() else {
        return connection(err);
    };
    let text = amqp.get_message().as_str();
    match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => not_found(text, subject),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
            inequivalent(text).unwrap_or_else(|| Error::Broker(text.to_owned()))
        }
        AMQPErrorKind::Soft(_) => Error::Broker(text.to_owned()),
        AMQPErrorKind::Hard(_) => connection(err),
    }
}

/// A lost or refused connection, as lapin words it. Only its text is kept: lapin's message
/// already ends with its cause's, which an error chain would print a second time
/// ("IO error: Connection refused: Connection refused"). A failed TLS handshake is
/// [`Error::Tls`], naming why.
pub(super) fn connection(err: &lapin::Error) -> Error {
    super::tls_error::tls_failure(err).unwrap_or_else(|| Error::Connection(err.to_string().into()))
}

/// `NOT_FOUND - no exchange 'x' in vhost '/'` or `… no queue 'q' …`.
fn not_found(text: &str, subject: Subject<'_>) -> Error {
    for what in ["exchange", "queue"] {
        if let Some(name) = quoted_after(text, &format!("no {what} ")) {
            return Error::NotFound {
                what,
                name: name.to_owned(),
            };
        }
    }
    match subject {
        Subject::Exchange(name) => Error::NotFound {
            what: "exchange",
            name: name.to_owned(),
        },
        Subject::Queue(name) => Error::NotFound {
            what: "queue",
            name: name.to_owned(),
        },
        Subject::Other => Error::Broker(text.to_owned()),
    }
}

/// `inequivalent arg 'A' for queue 'Q' in vhost '/': received X but current is Y`, where X and
/// Y are `'v'`, `none` or `the value 'v' of type 't'`.
fn inequivalent(text: &str) -> Option<Error> {
    let argument = quoted_after(text, "inequivalent arg ")?;
    let (what, name) = ["queue", "exchange"]
        .into_iter()
        .find_map(|what| Some((what, quoted_after(text, &format!("for {what} "))?)))?;
    let rest = &text[text.find(": received ")? + ": received ".len()..];
    let (declared, existing) = rest.split_once(" but current is ")?;
    let (declared, existing) = (argument_value(declared), argument_value(existing));
    Some(if what == "queue" {
        Error::QueueMismatch {
            queue: name.to_owned(),
            argument: argument.to_owned(),
            existing: existing.to_owned(),
            declared: declared.to_owned(),
        }
    } else if argument == "type" {
        Error::Topology(format!(
            "exchange `{name}` exists as `{existing}`, but is declared as `{declared}`"
        ))
    } else {
        Error::Topology(format!(
            "exchange `{name}` exists with {argument} = {existing}, but is declared with {argument} = {declared}"
        ))
    })
}

fn argument_value(text: &str) -> &str {
    let text = text.trim();
    let text = text.strip_prefix("the value ").unwrap_or(text);
    match text.strip_prefix('\'') {
        Some(rest) => rest.split('\'').next().unwrap_or(rest),
        None => text,
    }
}

fn quoted_after<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.strip_prefix('\'')?.split('\'').next()
}

#[cfg(test)]
mod tests {
    use lapin::protocol::AMQPError;

    use super::*;

    fn soft(kind: AMQPSoftError, text: &str) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(AMQPErrorKind::Soft(kind), text.into())).into()
    }

    #[test]
    fn queue_type_mismatch_names_queue_argument_and_values() {
        let err = soft(
            AMQPSoftError::PRECONDITIONFAILED,
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'classic' but current is 'quorum'",
        );
        let Error::QueueMismatch {
            queue,
            argument,
            existing,
            declared,
        } = map(&err, Subject::Queue("q"))
        else {
            panic!("not a mismatch");
        };
        assert_eq!(
            (&*queue, &*argument, &*existing, &*declared),
            ("q", "x-queue-type", "quorum", "classic")
        );
    }

    #[test]
    fn typed_and_missing_values_are_read() {
        let err = soft(
            AMQPSoftError::PRECONDITIONFAILED,
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'r' in vhost '/': received none but current is the value '200' of type 'long'",
        );
        let Error::QueueMismatch {
            existing, declared, ..
        } = map(&err, Subject::Queue("r"))
        else {
            panic!("not a mismatch");
        };
        assert_eq!((&*existing, &*declared), ("200", "none"));
    }

    #[test]
    fn exchange_type_conflict_is_a_topology_error() {
        let err = soft(
            AMQPSoftError::PRECONDITIONFAILED,
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'e' in vhost '/': received 'topic' but current is 'direct'",
        );
        let Error::Topology(message) = map(&err, Subject::Exchange("e")) else {
            panic!("not a topology error");
        };
        assert!(
            message.contains("`e`") && message.contains("`direct`") && message.contains("`topic`")
        );
    }

    #[test]
    fn not_found_names_what_is_missing() {
        let err = soft(
            AMQPSoftError::NOTFOUND,
            "NOT_FOUND - no exchange 'gone' in vhost '/'",
        );
        assert!(matches!(
            map(&err, Subject::Other),
            Error::NotFound { what: "exchange", name } if name == "gone"
        ));
    }
}
