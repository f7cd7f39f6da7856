//! A worker built with `Worker::builder().state(..)` and run through the command line's entry
//! point serves handlers that read that state, on the in-memory broker and on RabbitMQ; jobs
//! a producer enqueued before any worker started wait for it; a worker without the state its
//! jobs take refuses to start, naming the job and the type.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jobs_core::testing::Recorder;
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{Error, JobError, Producer, ProducerOptions, State, job};
use jobs_worker::Worker;
use tokio::sync::oneshot;

/// A guest's entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// Who signed.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The application's state: the names signed so far.
#[derive(Debug, Default)]
pub struct Guestbook {
    names: Mutex<Vec<String>>,
}

impl Guestbook {
    fn names(&self) -> Vec<String> {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        names.sort();
        names
    }
}

/// Signs the worker's guestbook.
#[job(
    exchange = "tests.guestbook",
    routing_key = "sign",
    queue = "tests.guestbook.sign"
)]
async fn sign_guestbook(entry: Entry, book: State<Arc<Guestbook>>) -> Result<(), JobError> {
    book.names
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry.name);
    Ok(())
}

const GUESTS: [&str; 3] = ["ada", "grace", "linus"];
const WITHIN: Duration = Duration::from_secs(30);

/// Enqueues the guests through a producer of its own, before any worker runs.
async fn enqueue_guests(producer: &Producer) -> Vec<String> {
    let mut ids = Vec::new();
    for name in GUESTS {
        let entry = Entry {
            name: name.to_owned(),
        };
        let id = sign_guestbook::enqueue(producer, entry)
            .await
            .expect("enqueued before any worker started");
        ids.push(id.to_string());
    }
    ids
}

/// Runs the worker's command line with `args` after the program name, until `stop` fires.
fn spawn_worker(
    worker: jobs_worker::WorkerBuilder,
    args: &[&str],
) -> (tokio::task::JoinHandle<ExitCode>, oneshot::Sender<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = worker.shutdown_signal(async move {
        let _ = stopped.await;
    });
    let args: Vec<String> = ["jobs-state-worker", "--metrics-addr", "127.0.0.1:0"]
        .into_iter()
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    let task = tokio::spawn(jobs_worker::main_with_args(worker, args));
    (task, stop)
}

/// Waits for every id, stops the worker and checks what its handlers saw and how it exited.
async fn served_then_stopped(
    recorder: &Recorder,
    ids: &[String],
    book: &Guestbook,
    worker: (tokio::task::JoinHandle<ExitCode>, oneshot::Sender<()>),
) {
    for id in ids {
        let events = recorder
            .finished(id, WITHIN)
            .await
            .unwrap_or_else(|_| panic!("job {id} finished"));
        assert!(
            events
                .iter()
                .any(|e| e.outcome == jobs_core::testing::Outcome::Succeeded),
            "{events:?}"
        );
    }
    assert_eq!(book.names(), GUESTS);
    let (task, stop) = worker;
    stop.send(()).expect("the worker is running");
    let code = tokio::time::timeout(WITHIN, task)
        .await
        .expect("the worker stops")
        .expect("the worker task did not panic");
    assert_eq!(code, ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_given_state_serves_handlers_that_read_it_in_memory() {
    let memory = MemoryTransport::new();
    let transport: Arc<dyn Transport> = Arc::new(memory.clone());
    // A producer told not to declare finds nothing to publish to.
    let bare = Producer::with_options(
        Arc::clone(&transport),
        ProducerOptions {
            declare: false,
            ..ProducerOptions::default()
        },
    );
    let entry = Entry {
        name: "early".to_owned(),
    };
    let err = sign_guestbook::enqueue(&bare, entry)
        .await
        .expect_err("no exchange yet");
    assert!(
        matches!(
            &err,
            Error::NotFound {
                what: "exchange",
                ..
            }
        ),
        "{err:?}"
    );

    let ids = enqueue_guests(&Producer::new(Arc::clone(&transport))).await;
    assert_eq!(memory.messages(sign_guestbook::QUEUE).len(), GUESTS.len());

    let book = Arc::new(Guestbook::default());
    let recorder = Arc::new(Recorder::new());
    let worker = Worker::builder()
        .jobs([&sign_guestbook::JOB])
        .state(Arc::clone(&book))
        .observer(Arc::clone(&recorder) as _)
        .transport(transport);
    let running = spawn_worker(worker, &["--concurrency", "2"]);
    served_then_stopped(&recorder, &ids, &book, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_given_state_serves_handlers_that_read_it_on_rabbitmq() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    // Gone, as on a broker no worker has served yet: the producer declares them.
    jobs_tests::broker::delete_queues(&[sign_guestbook::QUEUE, sign_guestbook::ERROR_QUEUE]);
    let producer = Producer::connect(&url).await.expect("connected");
    let ids = enqueue_guests(&producer).await;

    let book = Arc::new(Guestbook::default());
    let recorder = Arc::new(Recorder::new());
    let worker = Worker::builder()
        .jobs([&sign_guestbook::JOB])
        .state(Arc::clone(&book))
        .observer(Arc::clone(&recorder) as _);
    let running = spawn_worker(
        worker,
        &["--url", &url, "--connection-name", "jobs-state-test"],
    );
    served_then_stopped(&recorder, &ids, &book, running).await;
    // Gone again once the worker has stopped: a run leaves the shared broker as it found it.
    jobs_tests::broker::delete_job_queues(&url, &[&sign_guestbook::JOB]).await;
}

#[tokio::test]
async fn a_worker_without_the_state_its_jobs_take_refuses_to_start() {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let worker = || {
        Worker::builder()
            .jobs([&sign_guestbook::JOB])
            .state(Guestbook::default()) // not the `Arc<Guestbook>` the job takes
            .transport(Arc::clone(&transport))
    };
    let err = worker().run().await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "could not start the engine",
        "the worker's own message"
    );
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        cause.as_deref(),
        Some(
            "job `sign_guestbook` takes `State<Arc<Guestbook>>`, but the worker has no \
             `Arc<Guestbook>`: give it one with `.state(..)` (it has: `Guestbook`)"
        )
    );

    // Through the command line: a configuration error, before anything is served.
    let (task, _stop) = spawn_worker(worker(), &[]);
    let code = tokio::time::timeout(WITHIN, task)
        .await
        .expect("the worker exits")
        .expect("the worker task did not panic");
    assert_eq!(code, ExitCode::from(3));
}
