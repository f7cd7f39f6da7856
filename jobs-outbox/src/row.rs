//! A job as the outbox stores it, and back: the publish that [`Enqueue::prepare`] made, its
//! properties as JSON beside the body.
//!
//! [`Enqueue::prepare`]: jobs_core::Enqueue::prepare

use std::borrow::Cow;

use bytes::Bytes;
use jobs_core::envelope::Properties;
use jobs_core::transport::Publish;
use jobs_core::{Envelope, HeaderValue, Headers, Prepared};
use serde_json::{Map, Value, json};

use crate::{Error, Result};

/// A job as the outbox stores it: one `jobs_outbox` row, as written and as read back.
#[derive(Clone, Debug)]
pub struct Row {
    /// The row's id (0 before it is written).
    pub(crate) id: i64,
    pub(crate) message_id: String,
    pub(crate) job: String,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    /// The properties other than the message id and the job, as JSON text.
    pub(crate) properties: String,
    pub(crate) body: Vec<u8>,
    /// The key it holds while pending: [`unique_key`](crate::OutboxEnqueue::unique_key).
    pub(crate) unique_key: Option<String>,
}

impl Row {
    /// The job's message id.
    #[must_use]
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The job's name.
    #[must_use]
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The unique key it holds while pending, if any.
    #[must_use]
    pub fn unique_key(&self) -> Option<&str> {
        self.unique_key.as_deref()
    }

    /// The row that stores `prepared`.
    pub(crate) fn new(prepared: Prepared, unique_key: Option<String>) -> Result<Self> {
        let Prepared {
            job, id, publish, ..
        } = prepared;
        let properties = &publish.envelope.properties;
        let mut stored = Map::new();
        if let Some(content_type) = &properties.content_type {
            stored.insert("content_type".into(), json!(content_type));
        }
        if let Some(timestamp) = properties.timestamp {
            stored.insert("timestamp".into(), json!(timestamp));
        }
        if let Some(priority) = properties.priority {
            stored.insert("priority".into(), json!(priority));
        }
        if !properties.headers.is_empty() {
            stored.insert("headers".into(), headers_to_json(&properties.headers)?);
        }
        Ok(Self {
            id: 0,
            message_id: id.as_str().to_owned(),
            job: job.name().to_owned(),
            exchange: publish.exchange.into_owned(),
            routing_key: publish.routing_key.into_owned(),
            properties: Value::Object(stored).to_string(),
            body: publish.envelope.body.to_vec(),
            unique_key,
        })
    }

    /// The publish this row stores: persistent and mandatory, as every job's.
    pub(crate) fn to_publish(&self) -> Result<Publish> {
        let unreadable = |reason: String| Error::Row {
            id: self.id,
            reason,
        };
        let stored: Value =
            serde_json::from_str(&self.properties).map_err(|e| unreadable(e.to_string()))?;
        let headers = match stored.get("headers") {
            None => Headers::new(),
            Some(value) => headers_from_json(value).map_err(unreadable)?,
        };
        let properties = Properties {
            content_type: stored
                .get("content_type")
                .and_then(Value::as_str)
                .map(|s| Cow::Owned(s.to_owned())),
            kind: Some(Cow::Owned(self.job.clone())),
            message_id: Some(self.message_id.clone()),
            timestamp: stored.get("timestamp").and_then(Value::as_u64),
            priority: stored
                .get("priority")
                .and_then(Value::as_u64)
                .and_then(|p| u8::try_from(p).ok()),
            persistent: true,
            headers,
            ..Properties::default()
        };
        Ok(Publish {
            exchange: Cow::Owned(self.exchange.clone()),
            routing_key: Cow::Owned(self.routing_key.clone()),
            mandatory: true,
            envelope: Envelope {
                properties,
                body: Bytes::from(self.body.clone()),
            },
        })
    }
}

/// A headers table as JSON: an array of `[name, value]` pairs in the table's order, each value
/// tagged with its AMQP kind so that it reads back as the same kind.
fn headers_to_json(headers: &Headers) -> Result<Value> {
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let value = value_to_json(value).ok_or_else(|| Error::Header {
            name: name.to_owned(),
        })?;
        pairs.push(json!([name, value]));
    }
    Ok(Value::Array(pairs))
}

fn value_to_json(value: &HeaderValue) -> Option<Value> {
    Some(match value {
        HeaderValue::String(s) => json!({ "s": s }),
        HeaderValue::Bytes(b) => json!({ "b": b }),
        HeaderValue::Int(i) => json!({ "i": i }),
        HeaderValue::Float(f) => json!({ "f": f }),
        HeaderValue::Bool(b) => json!({ "t": b }),
        HeaderValue::Timestamp(t) => json!({ "ts": t }),
        HeaderValue::Array(values) => {
            let values = values
                .iter()
                .map(value_to_json)
                .collect::<Option<Vec<_>>>()?;
            json!({ "a": values })
        }
        HeaderValue::Table(table) => json!({ "m": headers_to_json(table).ok()? }),
        HeaderValue::Void => Value::Null,
        _ => return None,
    })
}

fn headers_from_json(value: &Value) -> Result<Headers, String> {
    let pairs = value
        .as_array()
        .ok_or_else(|| "headers are not an array".to_owned())?;
    let mut headers = Headers::new();
    for pair in pairs {
        let (Some(name), Some(value), 2) = (
            pair.get(0).and_then(Value::as_str),
            pair.get(1),
            pair.as_array().map_or(0, Vec::len),
        ) else {
            return Err(format!("a header {pair} that is not a [name, value] pair"));
        };
        headers.insert(name.to_owned(), value_from_json(value)?);
    }
    Ok(headers)
}

fn value_from_json(value: &Value) -> Result<HeaderValue, String> {
    if value.is_null() {
        return Ok(HeaderValue::Void);
    }
    let bad = || format!("a header value {value} of no known kind");
    let object = value.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let (tag, inner) = object.iter().next().ok_or_else(bad)?;
    Ok(match tag.as_str() {
        "s" => HeaderValue::String(inner.as_str().ok_or_else(bad)?.to_owned()),
        "b" => HeaderValue::Bytes(
            inner
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(bad)?,
        ),
        "i" => HeaderValue::Int(inner.as_i64().ok_or_else(bad)?),
        "f" => HeaderValue::Float(inner.as_f64().ok_or_else(bad)?),
        "t" => HeaderValue::Bool(inner.as_bool().ok_or_else(bad)?),
        "ts" => HeaderValue::Timestamp(inner.as_u64().ok_or_else(bad)?),
        "a" => HeaderValue::Array(
            inner
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(value_from_json)
                .collect::<Result<_, _>>()?,
        ),
        "m" => HeaderValue::Table(headers_from_json(inner)?),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_header_reads_back_as_itself() {
        let mut nested = Headers::new();
        nested.insert("n", 7_i64);
        let mut headers = Headers::new();
        headers.insert("s", "text");
        headers.insert("b", HeaderValue::Bytes(vec![0, 255]));
        headers.insert("i", -3_i64);
        headers.insert("f", HeaderValue::Float(1.5));
        headers.insert("t", true);
        headers.insert("ts", HeaderValue::Timestamp(1_700_000_000));
        headers.insert(
            "a",
            HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::Void]),
        );
        headers.insert("m", HeaderValue::Table(nested));
        let json = headers_to_json(&headers).expect("every kind is stored");
        let back = headers_from_json(&serde_json::from_str(&json.to_string()).expect("JSON"))
            .expect("read back");
        assert_eq!(back, headers);
    }

    #[test]
    fn a_value_of_no_known_kind_is_an_error_not_a_guess() {
        for bad in [
            r#"{"x": 1}"#,
            r#"{"s": 1}"#,
            r#"{"b": [256]}"#,
            r#"{"s": "a", "i": 1}"#,
            "3",
        ] {
            let value: Value = serde_json::from_str(bad).expect("JSON");
            assert!(value_from_json(&value).is_err(), "{bad}");
        }
    }
}
