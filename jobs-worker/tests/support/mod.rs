//! What the worker's RabbitMQ tests share: a free port, and HTTP requests to the worker's
//! server over a plain TCP connection.

#![allow(dead_code, reason = "each test uses part of it")]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A bound on waits that should end soon, not a timing assumption.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A free local address for the worker's HTTP server.
pub(crate) fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Sends `method path` with `headers` and `body`; the status and the response body.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap();
    (status, body.to_owned())
}

/// `GET path`'s body, asserting a 200.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = request(addr, "GET", path, &[], "").await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Deletes `queues` on the broker the tests use, with `rabbitmqctl`; a missing one is fine.
pub(crate) fn delete_queues(queues: &[&str]) {
    for queue in queues {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_queue", "-q", queue])
            .output();
    }
}

/// Deletes every queue of `job` (work, retry and error) on the broker at `url`, once the test
/// is done with them: a run leaves the shared broker as it found it. Best effort: a failed
/// deletion is reported on stderr and fails no test.
pub(crate) async fn delete_job_queues(url: &str, job: &'static jobs_core::Job) {
    if let Err(err) = jobs_core::testing::delete_job_queues(url, &[job]).await {
        eprintln!("the queues of {} stay on the broker: {err}", job.name());
    }
}

/// A worker running in this process with `config`, serving `job`, until [`Running::stop`].
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    worker: tokio::task::JoinHandle<jobs_worker::Result<()>>,
}

impl Running {
    /// Starts the worker, and waits until it consumes `queue` (it declares the topology as
    /// it starts), asking `broker`.
    pub(crate) async fn start(
        config: jobs_worker::WorkerConfig,
        job: &'static jobs_core::Job,
        broker: &jobs_core::transport::amqp::AmqpTransport,
        queue: &str,
    ) -> Self {
        use jobs_core::transport::Transport as _;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(
            jobs_worker::Worker::builder()
                .config(config)
                .jobs([job])
                .shutdown_signal(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        let attached = tokio::time::timeout(WAIT, async {
            while broker
                .queue_stats(queue)
                .await
                .ok()
                .and_then(|stats| stats.consumers)
                != Some(1)
            {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(attached.is_ok(), "the worker never consumed {queue}");
        Self { stop, worker }
    }

    /// Shuts the worker down gracefully; it must exit without an error.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.worker.await.unwrap().unwrap();
    }
}

/// Waits until `queue` holds `n` ready messages, as `broker` counts them: the broker counts a
/// message settled on another connection a moment later.
pub(crate) async fn count_becomes(
    broker: &jobs_core::transport::amqp::AmqpTransport,
    queue: &str,
    n: u64,
) {
    use jobs_core::transport::Transport as _;
    let reached = tokio::time::timeout(WAIT, async {
        while broker.message_count(queue).await.unwrap() != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{queue} holds {} messages, not {n}",
        broker.message_count(queue).await.unwrap()
    );
}
