//! What a broker says of itself in `connection.start`: its version, for
//! [`BrokerBehaviour`](crate::broker::BrokerBehaviour).

use std::sync::{Mutex, PoisonError};

use lapin::types::{AMQPValue, FieldTable};

use crate::broker::BrokerVersion;

/// The version of the broker the last connection opened reached, shared by a transport's
/// connections.
#[derive(Debug, Default)]
pub(super) struct ServerVersion {
    seen: Mutex<Option<BrokerVersion>>,
}

impl ServerVersion {
    /// Records the version in `properties` (a connection's server properties); a missing or
    /// unparsable one is logged and recorded as unknown, which is RabbitMQ 3's behaviour.
    pub(super) fn record(&self, connection: &str, properties: &FieldTable) {
        let text = version_text(properties);
        let version = text.as_deref().and_then(BrokerVersion::parse);
        match (&version, &text) {
            (Some(version), _) => {
                tracing::debug!(connection, %version, "broker version");
            }
            (None, Some(text)) => {
                tracing::warn!(connection, version = %text, "the broker's version does not parse; assuming RabbitMQ 3 behaviour");
            }
            (None, None) => {
                tracing::warn!(
                    connection,
                    "the broker sent no version; assuming RabbitMQ 3 behaviour"
                );
            }
        }
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = version;
    }

    /// The last version recorded.
    pub(super) fn get(&self) -> Option<BrokerVersion> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `version` server property as text: RabbitMQ sends a long string.
fn version_text(properties: &FieldTable) -> Option<String> {
    match properties.inner().get("version")? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(version: Option<AMQPValue>) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert("product".into(), AMQPValue::LongString("RabbitMQ".into()));
        if let Some(version) = version {
            table.insert("version".into(), version);
        }
        table
    }

    #[test]
    fn the_version_property_is_read_and_anything_else_is_unknown() {
        let seen = ServerVersion::default();
        seen.record(
            "c",
            &properties(Some(AMQPValue::LongString("4.1.0-rc.1".into()))),
        );
        assert_eq!(seen.get(), Some(BrokerVersion::new(4, 1, 0)));
        seen.record(
            "c",
            &properties(Some(AMQPValue::LongString("garbage".into()))),
        );
        assert_eq!(seen.get(), None);
        seen.record(
            "c",
            &properties(Some(AMQPValue::ShortString("3.10.8".into()))),
        );
        assert_eq!(seen.get(), Some(BrokerVersion::new(3, 10, 8)));
        seen.record("c", &properties(Some(AMQPValue::LongLongInt(4))));
        assert_eq!(seen.get(), None);
        seen.record("c", &properties(None));
        assert_eq!(seen.get(), None);
    }
}
