//! The benchmark's job: a ~100-byte protobuf message that carries its send time.

use std::sync::OnceLock;
use std::time::Instant;

/// One benchmark job. `pad` brings the encoded body to about 100 bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BenchJob {
    /// The job's number within its run.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// When it was handed to the producer, in nanoseconds since [`now_nanos`]'s epoch.
    #[prost(uint64, tag = "2")]
    pub sent_nanos: u64,
    /// Filler up to the ~100-byte payload of the comparison.
    #[prost(bytes = "vec", tag = "3")]
    pub pad: Vec<u8>,
}

/// The filler length: with the two numbers and the field tags, bodies are 95 to 100 bytes.
const PAD: usize = 84;

impl BenchJob {
    /// Job `seq`, stamped now.
    #[must_use]
    pub fn new(seq: u64) -> Self {
        Self {
            seq,
            sent_nanos: now_nanos(),
            pad: vec![b'x'; PAD],
        }
    }
}

/// Nanoseconds since the first call in this process: producers and consumers of one run share
/// the process, so their stamps compare without any clock skew.
#[must_use]
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_job_encodes_to_about_one_hundred_bytes() {
        let len = BenchJob::new(123_456).encode_to_vec().len();
        assert!((90..=110).contains(&len), "{len} bytes");
    }
}
