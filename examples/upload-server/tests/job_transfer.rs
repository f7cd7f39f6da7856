//! The `transfer_to_oss` job on its own, on the in-memory broker and tokio's paused clock: the
//! four outcomes of the demo, and a file gone before its transfer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::FailureKind;
use jobs_core::testing::{Outcome, TestApp};
use upload_server::{ObjectStorage, StoredObject, TransferFile, transfer_to_oss};

/// A message for the file `name` in `dir`, written with `size` bytes unless `size` is `None`.
fn upload(dir: &Path, name: &str, size: Option<usize>) -> TransferFile {
    let path = dir.join(format!("0190-{name}"));
    if let Some(size) = size {
        std::fs::write(&path, vec![b'x'; size]).unwrap();
    }
    TransferFile {
        path: path.to_str().unwrap().to_owned(),
        size: size.map_or(7, |size| size as u64),
        name: name.to_owned(),
        content_type: "application/octet-stream".to_owned(),
    }
}

fn app(bucket: &Arc<ObjectStorage>) -> TestApp {
    TestApp::builder()
        .job(&transfer_to_oss::JOB)
        .state(Arc::clone(bucket))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_transfer_one_after_a_retry_and_an_empty_file_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = Arc::new(ObjectStorage::new(dir.path().join("bucket")));
    let app = app(&bucket);
    let mut ids = Vec::new();
    for (name, size) in [
        ("report.pdf", 52),
        ("photo.jpg", 2048),
        ("backup.tar.flaky", 90),
        ("empty.txt", 0),
    ] {
        let file = upload(dir.path(), name, Some(size));
        ids.push(transfer_to_oss::enqueue(&app, file).await.unwrap());
    }
    app.run_until_idle().await;

    for id in &ids[..2] {
        let outcomes: Vec<_> = app
            .events_of(id.as_str())
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(outcomes, [Outcome::Started, Outcome::Succeeded]);
    }
    let flaky = app.events_of(ids[2].as_str());
    assert_eq!(flaky.len(), 4, "{flaky:?}");
    assert_eq!(
        flaky[1].outcome,
        Outcome::Retried {
            kind: FailureKind::Handler,
            error: "object storage timed out".to_owned(),
            delay: Duration::from_secs(1),
        }
    );
    assert_eq!(
        (flaky[3].attempt, &flaky[3].outcome),
        (2, &Outcome::Succeeded)
    );

    let failed = app.error_queue(transfer_to_oss::QUEUE);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].message_id(), Some(ids[3].as_str()));
    assert_eq!(failed[0].kind(), Some(FailureKind::Fatal));
    assert!(
        failed[0]
            .error()
            .unwrap()
            .ends_with("empty.txt is empty: nothing to transfer"),
        "{:?}",
        failed[0].error()
    );

    let objects = bucket.list().await.unwrap();
    let object = |key: &str, size| StoredObject {
        key: key.to_owned(),
        size,
    };
    assert_eq!(
        objects,
        [
            object("0190-backup.tar.flaky", 90),
            object("0190-photo.jpg", 2048),
            object("0190-report.pdf", 52),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_file_gone_before_its_transfer_is_fatal_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = Arc::new(ObjectStorage::new(dir.path().join("bucket")));
    let file = upload(dir.path(), "gone.bin", None);
    let app = TestApp::builder()
        .job(&transfer_to_oss::JOB)
        .state(Arc::clone(&bucket))
        .build()
        .unwrap();
    let path = file.path.clone();
    let id = transfer_to_oss::enqueue(&app, file).await.unwrap();
    app.run_until_idle().await;

    let events = app.events_of(id.as_str());
    assert_eq!(events.len(), 2, "one attempt, no retry: {events:?}");
    let failed = app.error_queue(transfer_to_oss::QUEUE);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].kind(), Some(FailureKind::Fatal));
    assert_eq!(
        failed[0].error(),
        Some(format!("no file to transfer at `{path}`").as_str())
    );
    assert_eq!(bucket.list().await.unwrap(), []);
}
