//! Envelopes, properties and header tables to and from lapin's types.
//!
//! Every [`HeaderValue`] survives the trip out and back, with two caveats of AMQP itself: a
//! field table is keyed, so headers come back sorted by name rather than in insertion order, and
//! [`HeaderValue::Bytes`] travels as a long string, so bytes that happen to be UTF-8 come back as
//! [`HeaderValue::String`]. Narrower integers, floats, short strings, byte arrays and decimals
//! published by other clients arrive as the nearest [`HeaderValue`].

use std::borrow::Cow;

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use crate::envelope::{CONTENT_TYPE, Envelope, HeaderValue, Headers, Properties};
use crate::error::{Error, Result};

const PERSISTENT: u8 = 2;

/// A name the broker limits to 255 bytes: an exchange, queue, routing key or header name.
pub(super) fn short(what: &str, value: &str) -> Result<ShortString> {
    owned_short(what, value.to_owned())
}

/// [`short`] for a value already owned: moved, not copied, on the publish path.
fn owned_short(what: &str, value: impl Into<String>) -> Result<ShortString> {
    let value = value.into();
    if value.len() > 255 {
        return Err(Error::Broker(format!(
            "{what} `{value}` is {} bytes, over AMQP's 255-byte limit",
            value.len()
        )));
    }
    ShortString::try_new(value).map_err(|err| Error::Broker(format!("{what}: {err}")))
}

/// Lapin's properties for a publish; takes `properties` so that strings move instead of being
/// copied once per message.
pub(super) fn properties_to_amqp(properties: Properties) -> Result<BasicProperties> {
    let Properties {
        content_type,
        kind,
        message_id,
        correlation_id,
        reply_to,
        timestamp,
        persistent,
        priority,
        headers,
    } = properties;
    let mut out = BasicProperties::default();
    if let Some(content_type) = content_type {
        out = out.with_content_type(owned_short("content type", content_type)?);
    }
    if let Some(kind) = kind {
        out = out.with_type(owned_short("type", kind)?);
    }
    if let Some(id) = message_id {
        out = out.with_message_id(owned_short("message id", id)?);
    }
    if let Some(id) = correlation_id {
        out = out.with_correlation_id(owned_short("correlation id", id)?);
    }
    if let Some(reply_to) = reply_to {
        out = out.with_reply_to(owned_short("reply-to", reply_to)?);
    }
    if let Some(timestamp) = timestamp {
        out = out.with_timestamp(timestamp);
    }
    if persistent {
        out = out.with_delivery_mode(PERSISTENT);
    }
    if let Some(priority) = priority {
        out = out.with_priority(priority);
    }
    if !headers.is_empty() {
        out = out.with_headers(headers_to_amqp(headers)?);
    }
    Ok(out)
}

/// The encoded size of `properties` in a content-header frame, for the check against the
/// connection's frame size. Only the header table can make it large, so without one it is not
/// worth counting.
pub(super) fn properties_len(properties: &Properties) -> usize {
    let short = |s: Option<&str>| s.map_or(0, |s| 1 + s.len());
    // Class, weight, body size and the property flags, then each property present.
    14 + short(properties.content_type.as_deref())
        + short(properties.kind.as_deref())
        + short(properties.message_id.as_deref())
        + short(properties.correlation_id.as_deref())
        + short(properties.reply_to.as_deref())
        + properties.timestamp.map_or(0, |_| 8)
        + usize::from(properties.persistent)
        + usize::from(properties.priority.is_some())
        + if properties.headers.is_empty() {
            0
        } else {
            table_len(&properties.headers)
        }
}

/// The encoded size of a field table: its length, then each name and value.
fn table_len(headers: &Headers) -> usize {
    4 + headers
        .iter()
        .map(|(name, value)| 1 + name.len() + value_len(value))
        .sum::<usize>()
}

/// The encoded size of a value as [`value_to_amqp`] writes it: its type, then its bytes.
fn value_len(value: &HeaderValue) -> usize {
    1 + match value {
        HeaderValue::String(s) => 4 + s.len(),
        HeaderValue::Bytes(b) => 4 + b.len(),
        HeaderValue::Int(_) | HeaderValue::Float(_) | HeaderValue::Timestamp(_) => 8,
        HeaderValue::Bool(_) => 1,
        HeaderValue::Array(values) => 4 + values.iter().map(value_len).sum::<usize>(),
        HeaderValue::Table(table) => table_len(table),
        HeaderValue::Void => 0,
    }
}

pub(super) fn envelope_from_amqp(properties: &BasicProperties, body: Vec<u8>) -> Envelope {
    let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    // Every job carries the same content type: borrowing it saves an allocation per delivery.
    let content_type = properties
        .content_type()
        .as_ref()
        .map(|s| match s.as_str() {
            CONTENT_TYPE => Cow::Borrowed(CONTENT_TYPE),
            other => Cow::Owned(other.to_owned()),
        });
    Envelope {
        properties: Properties {
            content_type,
            kind: text(properties.kind()).map(Cow::Owned),
            message_id: text(properties.message_id()),
            correlation_id: text(properties.correlation_id()),
            reply_to: text(properties.reply_to()),
            timestamp: *properties.timestamp(),
            persistent: *properties.delivery_mode() == Some(PERSISTENT),
            priority: *properties.priority(),
            headers: properties
                .headers()
                .as_ref()
                .map(headers_from_amqp)
                .unwrap_or_default(),
        },
        body: Bytes::from(body),
    }
}

pub(super) fn headers_to_amqp(headers: Headers) -> Result<FieldTable> {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(owned_short("header name", name)?, value_to_amqp(value)?);
    }
    Ok(table)
}

/// How deep received tables and arrays are converted; the parser keeps anything deeper as
/// bytes already (see `vendor/README.md`), so this only bounds the recursion here.
const MAX_DEPTH: usize = 64;

/// The headers of a received message. Linear in the entries: a field table's names are
/// distinct, and a hostile one holds tens of thousands of them.
pub(super) fn headers_from_amqp(table: &FieldTable) -> Headers {
    headers_at(table, 1)
}

fn headers_at(table: &FieldTable, depth: usize) -> Headers {
    Headers::from_distinct(
        table
            .inner()
            .iter()
            .map(|(name, value)| {
                (
                    Cow::Owned(name.as_str().to_owned()),
                    value_from_amqp(value, depth),
                )
            })
            .collect(),
    )
}

fn value_to_amqp(value: HeaderValue) -> Result<AMQPValue> {
    Ok(match value {
        HeaderValue::String(s) => AMQPValue::LongString(LongString::from(s.into_bytes())),
        HeaderValue::Bytes(b) => AMQPValue::LongString(LongString::from(b)),
        HeaderValue::Int(n) => AMQPValue::LongLongInt(n),
        HeaderValue::Float(x) => AMQPValue::Double(x),
        HeaderValue::Bool(b) => AMQPValue::Boolean(b),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(t),
        HeaderValue::Array(values) => AMQPValue::FieldArray(FieldArray::from(
            values
                .into_iter()
                .map(value_to_amqp)
                .collect::<Result<Vec<_>>>()?,
        )),
        HeaderValue::Table(table) => AMQPValue::FieldTable(headers_to_amqp(table)?),
        HeaderValue::Void => AMQPValue::Void,
    })
}

fn value_from_amqp(value: &AMQPValue, depth: usize) -> HeaderValue {
    if depth >= MAX_DEPTH && matches!(value, AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_)) {
        return HeaderValue::String(format!("(nested deeper than {MAX_DEPTH} levels)"));
    }
    match value {
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::ShortShortUInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::ShortInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::ShortUInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::LongInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::LongUInt(n) => HeaderValue::Int((*n).into()),
        AMQPValue::LongLongInt(n) => HeaderValue::Int(*n),
        AMQPValue::Float(x) => HeaderValue::Float((*x).into()),
        AMQPValue::Double(x) => HeaderValue::Float(*x),
        AMQPValue::DecimalValue(d) => {
            HeaderValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => HeaderValue::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => bytes_or_text(s.as_bytes()),
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::FieldArray(values) => HeaderValue::Array(
            values
                .as_slice()
                .iter()
                .map(|value| value_from_amqp(value, depth + 1))
                .collect(),
        ),
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::FieldTable(table) => HeaderValue::Table(headers_at(table, depth + 1)),
        AMQPValue::Void => HeaderValue::Void,
    }
}

fn bytes_or_text(bytes: &[u8]) -> HeaderValue {
    match std::str::from_utf8(bytes) {
        Ok(text) => HeaderValue::String(text.to_owned()),
        Err(_) => HeaderValue::Bytes(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Headers {
        let nested: Headers = [("inner", HeaderValue::Int(-7))].into_iter().collect();
        [
            ("a-string", HeaderValue::String("text ✓".into())),
            ("b-bytes", HeaderValue::Bytes(vec![0xff, 0x00, 0xfe])),
            ("c-int", HeaderValue::Int(i64::MIN)),
            ("d-float", HeaderValue::Float(1.5)),
            ("e-bool", HeaderValue::Bool(true)),
            ("f-timestamp", HeaderValue::Timestamp(1_700_000_000)),
            (
                "g-array",
                HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::from("two")]),
            ),
            ("h-table", HeaderValue::Table(nested)),
            ("i-void", HeaderValue::Void),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn every_header_value_round_trips() {
        let headers = every_kind();
        let table = headers_to_amqp(headers.clone()).unwrap();
        assert_eq!(headers_from_amqp(&table), headers);
    }

    #[test]
    fn properties_round_trip() {
        let properties = Properties {
            content_type: Some(CONTENT_TYPE.into()),
            kind: Some("send_email".into()),
            message_id: Some("id-1".into()),
            correlation_id: Some("corr".into()),
            reply_to: Some("replies".into()),
            timestamp: Some(42),
            persistent: true,
            priority: Some(7),
            headers: every_kind(),
        };
        let amqp = properties_to_amqp(properties.clone()).unwrap();
        assert_eq!(*amqp.delivery_mode(), Some(2));
        let envelope = envelope_from_amqp(&amqp, b"body".to_vec());
        assert_eq!(envelope.properties, properties);
        assert_eq!(envelope.body, Bytes::from_static(b"body"));
    }

    #[test]
    fn narrow_values_from_other_clients_widen() {
        let mut table = FieldTable::default();
        table.insert("n".into(), AMQPValue::ShortInt(-3));
        table.insert("s".into(), AMQPValue::ShortString("hi".into()));
        table.insert("x".into(), AMQPValue::ByteArray(vec![1, 2].into()));
        let headers = headers_from_amqp(&table);
        assert_eq!(headers.get("n"), Some(&HeaderValue::Int(-3)));
        assert_eq!(headers.get("s"), Some(&HeaderValue::String("hi".into())));
        assert_eq!(headers.get("x"), Some(&HeaderValue::Bytes(vec![1, 2])));
    }

    #[test]
    fn a_wide_table_converts_in_one_pass_and_a_deep_one_stops_descending() {
        let mut table = FieldTable::default();
        for n in 0..40_000 {
            table.insert(format!("h{n}").into(), AMQPValue::Void);
        }
        let headers = headers_from_amqp(&table);
        assert_eq!(headers.len(), 40_000);
        assert_eq!(headers.get("h39999"), Some(&HeaderValue::Void));

        let mut deep = FieldTable::default();
        for _ in 0..100 {
            let mut outer = FieldTable::default();
            outer.insert("a".into(), AMQPValue::FieldTable(deep));
            deep = outer;
        }
        let mut value = &HeaderValue::Table(headers_from_amqp(&deep));
        let mut depth = 0;
        while let HeaderValue::Table(inner) = value {
            value = inner.get("a").unwrap();
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(value.as_str(), Some("(nested deeper than 64 levels)"));
    }

    #[test]
    fn overlong_names_are_errors_not_panics() {
        let name = "x".repeat(256);
        assert!(matches!(short("queue", &name), Err(Error::Broker(_))));
    }
}
