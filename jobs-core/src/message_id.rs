//! Message ids: what `enqueue` returns and every attempt of the job carries.
//!
//! A generated id is a UUID v7: 48 bits of Unix milliseconds, then 74 random bits, so ids sort
//! by the millisecond they were made in. The random bits come from the same generator as trace
//! ids ([`random_u64`]): making one takes no lock and no system call, where
//! `uuid::Uuid::now_v7` takes a process-wide lock for a counter the ids do not need, which cost
//! 4 % of an in-memory job.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::random::random_u64;

/// The id of an enqueued job: its `message_id`, kept across retries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// A new unique id: a UUID v7, so ids sort by the millisecond they were made in.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_at(since_epoch(SystemTime::now()))
    }

    /// [`MessageId::generate`] at `since_epoch`, the time since the Unix epoch: a publish
    /// reads the clock and converts it once, for the id and its timestamp.
    pub(crate) fn generate_at(since_epoch: Duration) -> Self {
        let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        let (high, low) = (random_u64(), random_u64());
        let mut random = [0; 10];
        random[..8].copy_from_slice(&high.to_le_bytes());
        random[8..].copy_from_slice(&low.to_le_bytes()[..2]);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        // Encoded into a stack buffer: `to_string` goes through `fmt`, which costs more.
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        Self(uuid.hyphenated().encode_lower(&mut text).to_owned())
    }

    /// An id the caller chose.
    pub(crate) fn given(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `at` as the time since the Unix epoch; zero before 1970.
pub(crate) fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_generated_id_is_a_uuid_v7_of_its_millisecond() {
        let id = MessageId::generate_at(Duration::from_millis(1_764_000_000_123));
        let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (1_764_000_000, 123));
        assert_eq!(id.as_str(), id.as_str().to_lowercase());
    }

    #[test]
    fn ids_of_one_millisecond_differ_on_every_thread_and_sort_by_millisecond() {
        let at = Duration::from_millis(1_764_000_000_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| String::from(MessageId::generate_at(at)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for id in thread.join().expect("the thread ran") {
                assert!(seen.insert(id), "an id came twice");
            }
        }
        assert_eq!(seen.len(), 40_000);
        let earlier = MessageId::generate_at(at);
        let later = MessageId::generate_at(at + Duration::from_millis(1));
        assert!(earlier < later);
    }

    #[test]
    fn a_given_id_and_a_generated_one_compare_as_text() {
        let generated = MessageId::generate();
        let given = MessageId::given(generated.as_str().to_owned());
        assert_eq!(generated, given);
        assert_eq!(format!("{generated}"), given.as_str());
        assert_eq!(
            format!("{given:?}"),
            format!("MessageId({:?})", given.as_str())
        );
    }
}
