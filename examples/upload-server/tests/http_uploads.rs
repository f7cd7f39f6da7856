//! The upload server over HTTP, on the in-memory broker and on RabbitMQ: uploads stored and
//! enqueued, their jobs' outcomes (transferred, retried, fatal), the bucket, and requests the
//! server refuses (too large, malformed) leaving no file and no job behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::{Engine, Observer};
use jobs_core::error_queue::{Action, ErrorQueue};
use jobs_core::testing::{Outcome, Recorded, Recorder};
use jobs_core::topology::Topology;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{FailureKind, JobDefaults, JobSettings, Producer, ProducerOptions};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upload_server::http::{Accepted, AppState, router};
use upload_server::{ObjectStorage, transfer_to_oss};

/// The servers' upload limit in these tests.
const LIMIT: u64 = 64 * 1024;
/// A bound on every wait for a job: the flaky upload's retry comes after a second.
const WITHIN: Duration = Duration::from_secs(60);

/// The upload server on a free loopback port, and a client for it.
struct Server {
    base: String,
    client: reqwest::Client,
    upload_dir: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(producer: Producer, upload_dir: &Path) -> Self {
        let app = AppState::new(producer, upload_dir).with_max_upload(LIMIT);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            axum::serve(listener, router(app))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            base,
            client,
            upload_dir: upload_dir.to_owned(),
            stop,
            task,
        }
    }

    /// Posts a form with `fields`, each `(field name, file name, content)`.
    async fn post_form(&self, fields: &[(&str, &str, Vec<u8>)]) -> (StatusCode, String) {
        let mut form = Form::new();
        for (field, file_name, content) in fields {
            let part = Part::bytes(content.clone()).file_name((*file_name).to_owned());
            form = form.part((*field).to_owned(), part);
        }
        let request = self
            .client
            .post(format!("{}/files", self.base))
            .multipart(form);
        answer(request).await
    }

    async fn post_file(&self, name: &str, content: Vec<u8>) -> (StatusCode, String) {
        self.post_form(&[("file", name, content)]).await
    }

    /// Posts `body` as it is, with the content type `content_type`.
    async fn post_raw(&self, content_type: &str, body: &'static str) -> (StatusCode, String) {
        let request = self
            .client
            .post(format!("{}/files", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        answer(request).await
    }

    /// The names of the files in the upload directory.
    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.upload_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// How the uploads of [`scenario`] should end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Transferred,
    TransferredOnRetry,
    Fatal,
}

const SAMPLES: [(&str, usize, Expect); 4] = [
    ("report.pdf", 5_113, Expect::Transferred),
    ("photo.jpg", 60_000, Expect::Transferred),
    ("backup.tar.flaky", 900, Expect::TransferredOnRetry),
    ("empty.txt", 0, Expect::Fatal),
];

fn file_name(path: &str) -> &str {
    Path::new(path).file_name().unwrap().to_str().unwrap()
}

fn content(size: usize) -> Vec<u8> {
    b"0123456789".iter().copied().cycle().take(size).collect()
}

/// Checks that one job's events end as `expect` says.
fn check_outcome(name: &str, events: &[Recorded], expect: Expect) {
    let outcomes: Vec<(u32, &Outcome)> = events.iter().map(|e| (e.attempt, &e.outcome)).collect();
    match expect {
        Expect::Transferred => assert_eq!(
            outcomes,
            [(1, &Outcome::Started), (1, &Outcome::Succeeded)],
            "{name}"
        ),
        Expect::TransferredOnRetry => {
            assert_eq!(outcomes.len(), 4, "{name}: {events:?}");
            assert!(
                matches!(
                    outcomes[1],
                    (1, Outcome::Retried { kind: FailureKind::Handler, error, .. })
                        if error == "object storage timed out"
                ),
                "{name}: {events:?}"
            );
            assert_eq!(outcomes[3], (2, &Outcome::Succeeded), "{name}");
        }
        Expect::Fatal => {
            assert_eq!(outcomes.len(), 2, "{name}: {events:?}");
            assert!(
                matches!(
                    outcomes[1],
                    (1, Outcome::Failed { kind: FailureKind::Fatal, error })
                        if error.ends_with("is empty: nothing to transfer")
                ),
                "{name}: {events:?}"
            );
        }
    }
}

/// Requests the server must refuse, each with its status and the start of its reason; none
/// leaves a file or a job behind.
async fn refused_requests(server: &Server) {
    let too_large = usize::try_from(LIMIT).unwrap() + 1;
    let (status, text) = server.post_file("huge.bin", vec![7; too_large]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(
        text,
        format!("the file is over the upload limit of {LIMIT} bytes\n")
    );

    let (status, text) = server.post_raw("text/plain", "not a form").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(
        text,
        "expected a multipart/form-data body with a `file` field\n"
    );

    let (status, text) = server
        .post_form(&[("attachment", "a.txt", b"hello".to_vec())])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(text, "the form has no `file` field\n");

    let (status, text) = server
        .post_form(&[
            ("file", "a.txt", b"hello".to_vec()),
            ("file", "b.txt", b"world".to_vec()),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.starts_with("the form has more than one `file` field"),
        "{text}"
    );

    // Cut off in the middle of the file: the server has begun to store it.
    let truncated = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"cut.txt\"\r\n\r\nthe first half of";
    let (status, text) = server
        .post_raw("multipart/form-data; boundary=XyZ", truncated)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.starts_with("malformed multipart body: "), "{text}");

    assert_eq!(server.stored(), Vec::<String>::new(), "no file left behind");
}

/// Posts the samples; checks each answer and what the server stored. Returns the answers.
async fn post_samples(server: &Server) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    for (name, size, _) in SAMPLES {
        let (status, text) = server.post_file(name, content(size)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {text}");
        let answer: Accepted = serde_json::from_str(&text).unwrap();
        let path = Path::new(&answer.path);
        assert_eq!(path.parent(), Some(server.upload_dir.as_path()));
        assert_eq!(file_name(&answer.path), format!("{}-{name}", answer.id));
        assert_eq!(answer.size, size as u64);
        assert_eq!(std::fs::read(path).unwrap(), content(size), "{name}");
        accepted.push(answer);
    }
    accepted
}

/// The work of both brokers: refused requests, four uploads enqueued and then served, the
/// outcomes, the bucket and the error queue (this run's failed job removed from it).
async fn scenario(transport: Arc<dyn Transport>, producer: Producer) -> Vec<Accepted> {
    // Declared first, so the work queue can be counted before anything is enqueued. On a
    // broker, a run stopped halfway may have left jobs in the work and retry queues, to be
    // served in the middle of this one: purged. The error queue keeps other runs' failures;
    // this run only removes its own.
    let settings = JobSettings::resolve(&transfer_to_oss::JOB, &JobDefaults::default());
    let topology = Topology::for_jobs([&settings]).unwrap();
    transport.declare(&topology, Declare::Create).await.unwrap();
    for queue in topology.job_queues() {
        if queue.name != transfer_to_oss::ERROR_QUEUE {
            transport.purge(&queue.name).await.unwrap();
        }
    }

    let scratch = tempfile::tempdir().unwrap();
    let upload_dir = scratch.path().join("uploads");
    std::fs::create_dir(&upload_dir).unwrap();
    let server = Server::start(producer, &upload_dir).await;
    let health = server
        .client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    refused_requests(&server).await;
    assert_eq!(
        transport
            .message_count(transfer_to_oss::QUEUE)
            .await
            .unwrap(),
        0,
        "nothing enqueued by a refused request"
    );

    // Enqueued before any worker runs, as with a server and a worker started apart.
    let accepted = post_samples(&server).await;
    assert_eq!(
        transport
            .message_count(transfer_to_oss::QUEUE)
            .await
            .unwrap(),
        4
    );

    let storage = Arc::new(ObjectStorage::new(scratch.path().join("bucket")));
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::clone(&transport))
        .job(&transfer_to_oss::JOB)
        .state(Arc::clone(&storage))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await
        .unwrap();
    for ((name, _, expect), answer) in SAMPLES.iter().zip(&accepted) {
        let events = recorder.finished(&answer.id, WITHIN).await.unwrap();
        check_outcome(name, &events, *expect);
    }
    let ours: HashSet<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
    let strays: Vec<Recorded> = recorder
        .events()
        .into_iter()
        .filter(|e| !e.message_id.as_deref().is_some_and(|id| ours.contains(id)))
        .collect();
    assert_eq!(strays, [], "only the accepted uploads became jobs");

    check_bucket(&storage, &upload_dir, &accepted).await;
    take_failed(transport, &accepted).await;

    engine.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
    accepted
}

/// Checks that the bucket holds exactly the transferred uploads, as they were stored.
async fn check_bucket(storage: &ObjectStorage, upload_dir: &Path, accepted: &[Accepted]) {
    let objects: Vec<(String, u64)> = storage
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let mut expected: Vec<(String, u64)> = SAMPLES
        .iter()
        .zip(accepted)
        .filter(|((_, _, expect), _)| *expect != Expect::Fatal)
        .map(|(_, answer)| (file_name(&answer.path).to_owned(), answer.size))
        .collect();
    expected.sort();
    assert_eq!(objects, expected);
    for (key, _) in &objects {
        let stored = std::fs::read(storage.dir().join(key)).unwrap();
        let original = std::fs::read(upload_dir.join(key)).unwrap();
        assert_eq!(stored, original, "{key}");
    }
}

/// Checks that the empty file's job waits in the error queue as fatal, and takes this run's
/// failed jobs out of it, so that a rerun finds none of them on a broker.
async fn take_failed(transport: Arc<dyn Transport>, accepted: &[Accepted]) {
    let ours: HashSet<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
    let empty = &accepted[3];
    let mut failed = Vec::new();
    ErrorQueue::new(transport, transfer_to_oss::QUEUE)
        .walk(None, |job| {
            if job.message_id().is_some_and(|id| ours.contains(id)) {
                failed.push((
                    job.message_id().map(str::to_owned),
                    job.kind(),
                    job.error().map(str::to_owned),
                ));
                Action::Remove
            } else {
                Action::Keep
            }
        })
        .await
        .unwrap();
    assert_eq!(
        failed,
        [(
            Some(empty.id.clone()),
            Some(FailureKind::Fatal),
            Some(format!("{} is empty: nothing to transfer", empty.path)),
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_become_jobs_and_refused_requests_leave_nothing_in_memory() {
    let memory = MemoryTransport::recording();
    let transport: Arc<dyn Transport> = Arc::new(memory.clone());
    let accepted = scenario(
        Arc::clone(&transport),
        Producer::new(Arc::clone(&transport)),
    )
    .await;

    // Every publish was an accepted upload's job, the flaky one's retry, or the empty one's
    // move to the error queue: the refused requests published nothing.
    let mut published: Vec<(String, String)> = memory
        .published()
        .into_iter()
        .map(|p| {
            let id = p.envelope.properties.message_id.unwrap_or_default();
            (p.routing_key.into_owned(), id)
        })
        .collect();
    published.sort();
    let id = |i: usize| accepted[i].id.clone();
    let mut expected = vec![
        ("oss".to_owned(), id(0)),
        ("oss".to_owned(), id(1)),
        ("oss".to_owned(), id(2)),
        ("oss".to_owned(), id(3)),
        ("uploadserver.trans.oss.retry.1".to_owned(), id(2)),
        (transfer_to_oss::ERROR_QUEUE.to_owned(), id(3)),
    ];
    expected.sort();
    assert_eq!(published, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_become_jobs_and_refused_requests_leave_nothing_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let amqp = AmqpTransport::builder(url.as_str())
        .connection_name("upload-server-tests")
        .connect()
        .await
        .unwrap();
    let transport: Arc<dyn Transport> = Arc::new(amqp);
    // The server's own connection, as `upload-server serve` has.
    let producer = Producer::connect(&url).await.unwrap();
    scenario(Arc::clone(&transport), producer).await;

    // The job's queues go, as the run leaves the shared broker as it found it: unless another
    // run's failures wait in the error queue or an `upload-worker` serves the job. Best
    // effort: a queue left behind fails nothing.
    let failed = transport.message_count(transfer_to_oss::ERROR_QUEUE).await;
    let work = transport.queue_stats(transfer_to_oss::QUEUE).await;
    if matches!((failed, work), (Ok(0), Ok(stats)) if stats.consumers == Some(0)) {
        let deleted = jobs_core::testing::delete_job_queues(&url, &[&transfer_to_oss::JOB]).await;
        if let Err(err) = deleted {
            eprintln!("the job's queues stay on the broker: {err}");
        }
    }
}

#[tokio::test]
async fn a_client_file_name_never_chooses_where_the_file_goes() {
    let scratch = tempfile::tempdir().unwrap();
    let upload_dir = scratch.path().join("uploads");
    std::fs::create_dir(&upload_dir).unwrap();
    let memory = MemoryTransport::new();
    let server = Server::start(Producer::new(Arc::new(memory.clone())), &upload_dir).await;

    for hostile in [
        "../../escaped.txt",
        "/tmp/absolute.txt",
        "..\\..\\win.txt",
        "..",
    ] {
        let (status, text) = server.post_file(hostile, b"data".to_vec()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{hostile}: {text}");
        let answer: Accepted = serde_json::from_str(&text).unwrap();
        let path = Path::new(&answer.path);
        assert_eq!(path.parent(), Some(upload_dir.as_path()), "{hostile}");
        assert!(path.exists(), "{hostile}");
    }
    assert!(!scratch.path().join("escaped.txt").exists());
    // Each stored name is `{message id}-{suffix}`, a message id being a 36-character UUID.
    let mut suffixes: Vec<String> = server
        .stored()
        .into_iter()
        .map(|name| name[37..].to_owned())
        .collect();
    suffixes.sort_unstable();
    assert_eq!(
        suffixes,
        ["absolute.txt", "escaped.txt", "upload", "win.txt"]
    );
    assert_eq!(memory.messages(transfer_to_oss::QUEUE).len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_job_the_broker_does_not_take_is_a_503_and_leaves_no_file() {
    let scratch = tempfile::tempdir().unwrap();
    // A producer that may not declare, on a broker without the job's exchange: every enqueue
    // fails.
    let producer = Producer::with_options(
        Arc::new(MemoryTransport::new()),
        ProducerOptions {
            declare: false,
            ..ProducerOptions::default()
        },
    );
    let server = Server::start(producer, scratch.path()).await;
    let (status, text) = server.post_file("report.pdf", b"%PDF".to_vec()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.starts_with("could not enqueue the transfer: "),
        "{text}"
    );
    assert_eq!(server.stored(), Vec::<String>::new());
    server.stop().await;
}
