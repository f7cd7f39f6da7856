//! A worker started before its broker answers: it keeps trying, answers `/healthz` but not
//! `/readyz` meanwhile, and serves jobs once the broker is there; a stop request ends the wait;
//! with a `connect_retry` of zero it gives up at the first failure.
//!
//! The broker "appears" behind a TCP front of the test's own: it accepts and drops every
//! connection (counting them) until it is told to forward them to the real broker.
//!
//! `JOBS_AMQP_URL`, or the local default; without a broker the tests skip, unless
//! `JOBS_REQUIRE_BROKER` is set, when they fail.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, Producer, job};
use jobs_worker::{Worker, WorkerConfig};
use support::{WAIT, delete_job_queues, free_addr, request};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};

#[derive(Clone, PartialEq, prost::Message)]
struct Knock {}

/// Handled jobs, one permit each.
static HANDLED: Notify = Notify::const_new();

#[job(
    exchange = "jobs-worker.connect-retry",
    routing_key = "knock",
    queue = "jobs-worker.connect-retry.knock"
)]
async fn knock(_: Knock) -> Result<(), JobError> {
    HANDLED.notify_one();
    Ok(())
}

/// A TCP front on a port of its own, in front of the broker at `broker`.
struct Front {
    port: u16,
    /// Connections accepted, forwarded or not; watched, so a test waits on the count itself.
    attempts: watch::Receiver<usize>,
    /// Whether connections go through to the broker; until then each is dropped at once.
    forward: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// A front, closed, before the broker at `url`, and the URL that reaches the broker
    /// through it.
    async fn before(url: &str) -> (Self, String) {
        let (_, broker) = through_front(url, 0);
        let front = Self::start(broker).await;
        let (front_url, _) = through_front(url, front.port);
        (front, front_url)
    }

    async fn start(broker: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (counted, attempts) = watch::channel(0);
        let forward = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let forward = Arc::clone(&forward);
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    counted.send_modify(|count| *count += 1);
                    if !forward.load(Ordering::SeqCst) {
                        continue;
                    }
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(broker).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }
        });
        Self {
            port,
            attempts,
            forward,
            task,
        }
    }

    fn attempts(&self) -> usize {
        *self.attempts.borrow()
    }

    /// Waits until at least `n` connections came in.
    async fn until_attempts(&self, n: usize) {
        let mut attempts = self.attempts.clone();
        let reached = tokio::time::timeout(WAIT, attempts.wait_for(|&count| count >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{} attempts, not {n}",
            self.attempts()
        );
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by 127.0.0.1:`port`, and the broker's `host:port`.
fn through_front(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let (host_port, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let at = if credentials.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{credentials}{at}127.0.0.1:{port}/{path}"),
        host_port.to_owned(),
    )
}

/// A worker running `knock` on `config`, stopped by the returned sender.
fn spawn_worker(
    config: WorkerConfig,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<jobs_worker::Result<()>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::builder()
            .config(config)
            .jobs([&knock::JOB])
            .shutdown_signal(async {
                let _ = stopped.await;
            })
            .run(),
    );
    (stop, worker)
}

fn config(url: String) -> WorkerConfig {
    WorkerConfig::default()
        .with_url(url)
        .with_metrics_addr(free_addr())
        .with_connection_name("connect-retry-test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_its_broker_answers_keeps_trying_then_serves() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    delete_job_queues(&url, &knock::JOB).await;
    let (front, front_url) = Front::before(&url).await;
    let config = config(front_url).with_connect_retry(Duration::from_secs(120));
    let addr = config.metrics_addr;
    let (stop, worker) = spawn_worker(config);

    // Tried, failed, and tried again: alive, not ready.
    front.until_attempts(2).await;
    assert!(!worker.is_finished(), "the worker gave up");
    let (healthz, _) = request(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(healthz, 200);
    let (readyz, _) = request(addr, "GET", "/readyz", &[], "").await;
    assert_ne!(readyz, 200, "ready without a broker");

    // The broker is there now: the worker connects, gets ready and serves.
    front.forward.store(true, Ordering::SeqCst);
    let ready = tokio::time::timeout(WAIT, async {
        while request(addr, "GET", "/readyz", &[], "").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "not ready after the broker appeared");
    let broker = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    knock::enqueue(&Producer::new(broker.clone()), Knock {})
        .await
        .unwrap();
    tokio::time::timeout(WAIT, HANDLED.notified())
        .await
        .expect("the job was handled");

    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    broker.close().await;
    delete_job_queues(&url, &knock::JOB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_ends_the_wait_for_the_broker() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let (front, front_url) = Front::before(&url).await;
    let (stop, worker) =
        spawn_worker(config(front_url).with_connect_retry(Duration::from_secs(120)));
    front.until_attempts(1).await;
    let _ = stop.send(());
    let outcome = tokio::time::timeout(WAIT, worker)
        .await
        .expect("the worker stopped while waiting for the broker")
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_connect_retry_gives_up_at_the_first_failure() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let (front, front_url) = Front::before(&url).await;
    let (_stop, worker) = spawn_worker(config(front_url).with_connect_retry(Duration::ZERO));
    let outcome = tokio::time::timeout(WAIT, worker)
        .await
        .expect("the worker gave up")
        .unwrap();
    let error = outcome.expect_err("no broker behind the front");
    assert!(
        matches!(error, jobs_worker::Error::Connect { .. }),
        "{error:?}"
    );
    // The URL it names has no password.
    assert!(!error.to_string().contains(":guest@"), "{error}");
    assert_eq!(front.attempts(), 1, "one attempt, no retry");
}
