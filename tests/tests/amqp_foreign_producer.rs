//! Another language produces jobs: a Python script with pika and protobuf, and nothing of this
//! framework, enqueues jobs by the wire contract, and the Rust worker handles them.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{FailureKind, JobContext, JobError, job};

/// The message, as `tests/foreign/produce.py` describes it to Python's protobuf.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferFile {
    /// Where the file is.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its size.
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// The files the job saw.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, u64)>>);

#[job(
    exchange = "tests.foreign",
    routing_key = "upload",
    queue = "tests.foreign.upload",
    retries = 0
)]
async fn foreign_upload(file: TransferFile, ctx: JobContext) -> Result<(), JobError> {
    let seen = ctx.state::<Arc<Seen>>()?;
    seen.0
        .lock()
        .map_err(|_| JobError::fatal("poisoned"))?
        .push((file.path, file.size));
    Ok(())
}

/// Whether Python can import pika and protobuf (`scripts/test` installs them from PyPI).
fn python_ready() -> bool {
    let ready = Command::new("python3")
        .args(["-c", "import pika, google.protobuf"])
        .status()
        .is_ok_and(|status| status.success());
    if !ready {
        assert!(
            std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
            "python3 with pika and protobuf is required (scripts/test installs them)"
        );
        eprintln!(
            "skipped: python3 with pika and protobuf is missing (scripts/test installs them)"
        );
    }
    ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_published_from_python_are_handled_and_a_bad_body_goes_to_the_error_queue() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    if !python_ready() {
        return;
    }
    let seen = Arc::new(Seen::default());
    let recorder = Arc::new(Recorder::new());
    let transport = AmqpTransport::connect(&url).await.expect("connected");
    let engine = Engine::builder(Arc::new(transport))
        .job(&foreign_upload::JOB)
        .state(Arc::clone(&seen))
        .observer(Arc::clone(&recorder) as _)
        .start()
        .await
        .expect("started");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/foreign/produce.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                script,
                &url,
                "tests.foreign",
                "upload",
                "foreign_upload",
                "5",
            ])
            .output()
    })
    .await
    .expect("joined")
    .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let ids: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    assert_eq!(ids.len(), 6, "5 jobs and a bad body: {stdout}");

    for (verdict, id) in &ids {
        let events = recorder
            .finished(id, Duration::from_secs(30))
            .await
            .expect("finished");
        let last = events.last().map(|e| e.outcome.clone());
        match *verdict {
            "ok" => assert_eq!(last, Some(Outcome::Succeeded), "{id}"),
            _ => assert!(
                matches!(
                    last,
                    Some(Outcome::Failed {
                        kind: FailureKind::Decode,
                        ..
                    })
                ),
                "{id}: {last:?}"
            ),
        }
    }
    let mut files = seen.0.lock().expect("not poisoned").clone();
    files.sort();
    let expected: Vec<(String, u64)> = (0..5).map(|n| (format!("py/{n}.bin"), 100 + n)).collect();
    assert_eq!(files, expected);
    engine.shutdown(Duration::from_secs(5)).await;
}
