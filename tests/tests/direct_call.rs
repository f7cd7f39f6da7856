//! A `#[job]` fn stays an ordinary async fn: a test can call it directly, with a context it
//! builds itself, and no worker or broker in between.

use std::sync::Arc;

use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobContext, JobError, Producer, job};

/// A file to upload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Upload {
    /// Where it is.
    #[prost(string, tag = "1")]
    pub path: String,
}

/// Fails on the first attempt, then succeeds.
#[job(exchange = "direct-call", routing_key = "upload", retries = 3)]
async fn upload(file: Upload, ctx: JobContext) -> Result<(), JobError> {
    if file.path.is_empty() {
        return Err(JobError::fatal("no path"));
    }
    if ctx.attempt() < 2 {
        return Err(JobError::retry(std::io::Error::other("storage not ready")));
    }
    Ok(())
}

/// A job without a context.
#[job(exchange = "direct-call", routing_key = "count")]
async fn count(file: Upload) -> Result<(), std::io::Error> {
    if file.path.len() > 3 {
        Ok(())
    } else {
        Err(std::io::Error::other("path too short"))
    }
}

fn producer() -> Producer {
    Producer::new(Arc::new(MemoryTransport::new()))
}

#[tokio::test]
async fn a_job_fn_is_called_with_a_built_context() {
    let file = || Upload {
        path: "a.txt".into(),
    };

    let second = JobContext::builder(producer()).attempt(2).build();
    upload(file(), second)
        .await
        .expect("the second attempt succeeds");

    let first = JobContext::builder(producer()).build();
    let err = upload(file(), first)
        .await
        .expect_err("the first attempt fails");
    assert!(!err.is_fatal());

    let ctx = JobContext::builder(producer()).attempt(2).build();
    let err = upload(Upload::default(), ctx).await.expect_err("no path");
    assert!(err.is_fatal());
}

#[tokio::test]
async fn a_job_fn_without_a_context_is_called_with_its_message() {
    count(Upload {
        path: "a.txt".into(),
    })
    .await
    .expect("long enough");
    count(Upload { path: "a".into() })
        .await
        .expect_err("too short");
}
