//! The input format of the `decode_classify` fuzz target, and the job it classifies for; also
//! compiled into the corpus replay test (`faults/tests/fuzz_corpus.rs`).
//!
//! Every byte string is an envelope, so the fuzzer spends its time in the engine, not in
//! rejected inputs:
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 1 | the AMQP `type`: 1 the job's own name, 2 another job's name, anything else none |
//! | 1 | the number of headers, low 4 bits |
//! | per header | a name byte (0 `x-jobs-attempt`, 1 `traceparent`, 2 `x-delivery-count`, 3 `x-death`, 4 `x-jobs-exchange`, else `x-fuzz-N`), then a value |
//! | the rest | the body |
//!
//! A value is a tag byte (mod 9) and its payload: 0 an `Int` (8 bytes, big-endian), 1 a
//! `String` (a length byte and that many bytes; invalid UTF-8 becomes `Bytes`, as from the
//! broker), 2 `Bytes` (length byte, bytes), 3 a `Float` (8 bytes), 4 a `Bool` (1 byte), 5 a
//! `Timestamp` (8 bytes), 6 an `Array` (a count byte, low 3 bits, and that many values), 7 a
//! `Table` (a count byte and that many name-value pairs), 8 `Void`. Past the end of the input
//! every byte reads as 0. Nesting deeper than [`MAX_DEPTH`] reads as `Void`, so the parser
//! itself cannot overflow the stack.

use jobs_core::testing::Classification;
use jobs_core::{Envelope, HeaderValue, Headers, JobError, job};
use prost::bytes::Bytes;

/// The size limit the target classifies under: small, so that oversized seeds stay small.
pub const MAX_MESSAGE_SIZE: usize = 4096;
/// The deepest header value the parser builds.
pub const MAX_DEPTH: usize = 32;
/// The name of a job that is not on the fuzz job's exchange.
pub const OTHER_JOB: &str = "some.other.job";

/// The fuzz job's message: text, bytes, a packed repeated field and a recursive child, so
/// that every protobuf wire type and the recursion limit are reachable.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Node {
    /// Field 1: a string (invalid UTF-8 fails the decode).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 2: bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// Field 3: packed varints.
    #[prost(uint64, repeated, tag = "3")]
    pub ids: Vec<u64>,
    /// Field 4: a nested node.
    #[prost(message, optional, boxed, tag = "4")]
    pub child: Option<Box<Node>>,
}

/// The job classified for; its handler never runs.
#[job(
    exchange = "fuzz.decode",
    routing_key = "node",
    queue = "fuzz.decode.node"
)]
pub async fn fuzz_node(_: Node) -> Result<(), JobError> {
    Ok(())
}

/// Classifies `envelope` for [`fuzz_node`] with the engine's own code.
#[must_use]
pub fn classify(envelope: Envelope) -> Classification {
    jobs_core::testing::classify(&fuzz_node::JOB, envelope, MAX_MESSAGE_SIZE)
}

/// Reads `input` as an envelope, by the format in this module's docs.
#[must_use]
pub fn envelope(input: &[u8]) -> Envelope {
    let mut reader = Reader { input, at: 0 };
    let mut envelope = Envelope::default();
    envelope.properties.kind = match reader.byte() {
        1 => Some(fuzz_node::JOB.name().into()),
        2 => Some(OTHER_JOB.into()),
        _ => None,
    };
    let count = reader.byte() & 0x0f;
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = reader.name();
        let value = reader.value(0);
        headers.insert(name, value);
    }
    envelope.properties.headers = headers;
    envelope.body = Bytes::copy_from_slice(reader.rest());
    envelope
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.input.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    fn eight(&mut self) -> [u8; 8] {
        std::array::from_fn(|_| self.byte())
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte());
        (0..len).map(|_| self.byte()).collect()
    }

    fn rest(&self) -> &[u8] {
        self.input.get(self.at..).unwrap_or_default()
    }

    fn name(&mut self) -> String {
        match self.byte() {
            0 => "x-jobs-attempt".to_owned(),
            1 => "traceparent".to_owned(),
            2 => "x-delivery-count".to_owned(),
            3 => "x-death".to_owned(),
            4 => "x-jobs-exchange".to_owned(),
            n => format!("x-fuzz-{n}"),
        }
    }

    fn value(&mut self, depth: usize) -> HeaderValue {
        let tag = self.byte() % 9;
        if depth >= MAX_DEPTH && matches!(tag, 6 | 7) {
            return HeaderValue::Void;
        }
        match tag {
            0 => HeaderValue::Int(i64::from_be_bytes(self.eight())),
            1 => {
                let bytes = self.bytes();
                String::from_utf8(bytes)
                    .map_or_else(|e| HeaderValue::Bytes(e.into_bytes()), HeaderValue::String)
            }
            2 => HeaderValue::Bytes(self.bytes()),
            3 => HeaderValue::Float(f64::from_be_bytes(self.eight())),
            4 => HeaderValue::Bool(self.byte() & 1 == 1),
            5 => HeaderValue::Timestamp(u64::from_be_bytes(self.eight())),
            6 => {
                let count = self.byte() & 0x07;
                HeaderValue::Array((0..count).map(|_| self.value(depth + 1)).collect())
            }
            7 => {
                let count = self.byte() & 0x07;
                let mut table = Headers::new();
                for _ in 0..count {
                    let name = self.name();
                    let value = self.value(depth + 1);
                    table.insert(name, value);
                }
                HeaderValue::Table(table)
            }
            _ => HeaderValue::Void,
        }
    }
}
