//! A job describes a body as its message's fields when the message has `Debug` (prost derives
//! it), says why a body is not its message, and describes nothing for a message type without
//! `Debug`: what `errors show` prints.

use jobs_core::{JobError, job};
use prost::Message as _;

/// An upload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Upload {
    /// Where the file is.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its size.
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// A message whose `Debug` prost does not derive: a type without `Debug` is the point.
#[allow(missing_debug_implementations)]
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct Secret {
    /// Not to be printed.
    #[prost(string, tag = "1")]
    pub token: String,
}

#[job(exchange = "tests.describe", routing_key = "upload")]
async fn upload(_: Upload) -> Result<(), JobError> {
    Ok(())
}

#[job(exchange = "tests.describe", routing_key = "secret")]
async fn secret(_: Secret) -> Result<(), JobError> {
    Ok(())
}

#[test]
fn a_body_is_described_by_its_fields() {
    let body = Upload {
        path: "a/b.txt".to_owned(),
        size: 3,
    }
    .encode_to_vec();
    let described = upload::JOB.describe(&body).expect("Upload has Debug");
    assert_eq!(
        described.expect("a valid Upload"),
        "Upload {\n    path: \"a/b.txt\",\n    size: 3,\n}"
    );
}

#[test]
fn a_body_that_is_not_the_message_says_why() {
    let described = upload::JOB
        .describe(&[0xff, 0xff])
        .expect("Upload has Debug");
    assert!(described.is_err(), "{described:?}");
}

#[test]
fn a_message_without_debug_is_not_described() {
    let body = Secret {
        token: "hunter2".to_owned(),
    }
    .encode_to_vec();
    assert!(secret::JOB.describe(&body).is_none());
}
