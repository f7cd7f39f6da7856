//! The worker as an operator runs it: a child process (`jobs-test-worker`), signalled, killed,
//! cut off from the broker and probed over HTTP, against the RabbitMQ on 127.0.0.1:5672.

#[path = "support/worker_jobs.rs"]
mod jobs;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobs::Sleep;
use jobs_core::Producer;
use jobs_core::testing::broker_url;
use jobs_core::transport::Transport;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_tests::broker::{close_connections_named, delete_job_queues};

const WORKER: &str = env!("CARGO_BIN_EXE_jobs-test-worker");

/// A running worker child with its output collected line by line.
struct Worker {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout and stderr into `lines`; they end at end of file.
    readers: Vec<thread::JoinHandle<()>>,
}

impl Worker {
    fn start(url: &str, args: &[&str]) -> Self {
        let port = free_port();
        let mut child = Command::new(WORKER)
            .args(["--url", url, "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("JOBS_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the test worker starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        Self {
            child,
            port,
            lines,
            readers,
        }
    }

    fn handled(&self, job: &str) -> BTreeSet<u32> {
        let prefix = format!("handled {job} ");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.strip_prefix(&prefix)?.parse().ok())
            .collect()
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        get(self.port, path)
    }

    /// Waits until `probe` holds, or fails with the worker's output.
    fn wait_for(&mut self, what: &str, timeout: Duration, mut probe: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !probe(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "worker exited ({status}) waiting for {what}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; worker output:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self) {
        self.wait_for("/readyz 200", Duration::from_secs(20), |w| {
            w.get("/readyz").is_some_and(|(status, _)| status == 200)
        });
    }

    fn metric(&self, line_prefix: &str) -> Option<u64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(line_prefix)?.trim().parse().ok())
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the child to exit, at most `timeout`.
    fn exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipes close with the child: the readers end once they have read it all.
                for reader in self.readers.drain(..) {
                    reader.join().expect("a reader thread");
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {timeout:?}:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // The server keeps HTTP/1.1 connections open unless asked not to; this client reads to the end.
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Waits until `queue` holds `ready` messages ready for delivery: a quorum queue applies a
/// closed channel's returns a moment after the worker exits.
async fn ready_becomes(transport: &AmqpTransport, queue: &str, ready: u64, worker: &Worker) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = transport.message_count(queue).await.unwrap();
        if now == ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} holds {now} ready messages, not {ready}:\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A producer on the broker, with `job`'s topology declared and its queue emptied. Only its
/// own: each test deletes its job's queues at its end, which must not race another test's
/// declaration of them.
async fn producer(url: &str, job: &'static jobs_core::Job) -> (AmqpTransport, Producer) {
    let transport = AmqpTransport::builder(url)
        .connection_name("jobs-worker-test-producer")
        .connect()
        .await
        .unwrap();
    let settings = jobs_core::JobSettings::resolve(job, &jobs_core::JobDefaults::default());
    let topology = jobs_core::topology::Topology::for_jobs([&settings]).unwrap();
    transport
        .declare(&topology, jobs_core::transport::Declare::Create)
        .await
        .unwrap();
    transport.purge(job.queue()).await.unwrap();
    let producer = Producer::new(Arc::new(transport.clone()));
    (transport, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_requeues_the_rest_and_exits_0() {
    let Some(url) = broker_url() else { return };
    let queue = jobs::term_job::QUEUE;
    let (transport, producer) = producer(&url, &jobs::term_job::JOB).await;

    // Short jobs: the three running at SIGTERM finish within the deadline.
    let mut worker = Worker::start(&url, &["--jobs", "term_job", "--shutdown-timeout", "5s"]);
    worker.wait_ready();
    for seq in 0..10 {
        jobs::term_job::enqueue(&producer, Sleep { millis: 700, seq })
            .await
            .unwrap();
    }
    worker.wait_for(
        "3 jobs in flight after 3 handled",
        Duration::from_secs(20),
        |w| {
            w.handled("term_job").len() >= 3
                && w.metric("jobs_in_flight{job=\"term_job\"}") == Some(3)
        },
    );
    let started = worker
        .metric("jobs_started_total{job=\"term_job\"}")
        .unwrap();
    let signalled = Instant::now();
    worker.signal("TERM");
    let status = worker.exit(Duration::from_secs(5 + 3));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let handled = worker.handled("term_job");
    assert!(handled.len() as u64 >= started, "the running jobs finished");
    // Nothing lost: what was not handled is back in the queue, once the broker has applied
    // the closed channel's returns.
    ready_becomes(&transport, queue, 10 - handled.len() as u64, &worker).await;

    // Long jobs: the deadline passes, and what runs goes back to the queue.
    transport.purge(queue).await.unwrap();
    let mut worker = Worker::start(&url, &["--jobs", "term_job", "--shutdown-timeout", "1s"]);
    worker.wait_ready();
    for seq in 0..5 {
        jobs::term_job::enqueue(
            &producer,
            Sleep {
                millis: 60_000,
                seq,
            },
        )
        .await
        .unwrap();
    }
    worker.wait_for("3 jobs in flight", Duration::from_secs(20), |w| {
        w.metric("jobs_in_flight{job=\"term_job\"}") == Some(3)
    });
    let signalled = Instant::now();
    worker.signal("TERM");
    let status = worker.exit(Duration::from_secs(1 + 4));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    assert!(signalled.elapsed() < Duration::from_secs(4));
    assert!(worker.handled("term_job").is_empty());
    ready_becomes(&transport, queue, 5, &worker).await;
    transport.purge(queue).await.unwrap();

    // A prefetch above the concurrency: three held, one running; at SIGTERM the running one
    // is requeued at the deadline and the waiting ones at once.
    let mut worker = Worker::start(
        &url,
        &[
            "--jobs",
            "term_job",
            "--concurrency",
            "1",
            "--prefetch",
            "3",
            "--shutdown-timeout",
            "1s",
        ],
    );
    worker.wait_ready();
    for seq in 0..4 {
        jobs::term_job::enqueue(
            &producer,
            Sleep {
                millis: 60_000,
                seq,
            },
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while transport.message_count(queue).await.unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "the worker did not prefetch 3:\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.wait_for("1 job in flight", Duration::from_secs(10), |w| {
        w.metric("jobs_in_flight{job=\"term_job\"}") == Some(1)
    });
    assert_eq!(
        worker.metric("jobs_started_total{job=\"term_job\"}"),
        Some(1)
    );
    worker.signal("TERM");
    let status = worker.exit(Duration::from_secs(1 + 4));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    ready_becomes(&transport, queue, 4, &worker).await;
    transport.purge(queue).await.unwrap();

    // A second signal exits at once, non-zero, without waiting for the deadline.
    let mut worker = Worker::start(&url, &["--jobs", "term_job", "--shutdown-timeout", "60s"]);
    worker.wait_ready();
    jobs::term_job::enqueue(
        &producer,
        Sleep {
            millis: 60_000,
            seq: 0,
        },
    )
    .await
    .unwrap();
    worker.wait_for("1 job in flight", Duration::from_secs(10), |w| {
        w.metric("jobs_in_flight{job=\"term_job\"}") == Some(1)
    });
    worker.signal("TERM");
    worker.wait_for("the shutdown to start", Duration::from_secs(10), |w| {
        w.output().contains("shutting down")
    });
    worker.signal("INT");
    let status = worker.exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{}", worker.output());
    // The broker requeues what the dead connection held once it notices the close.
    ready_becomes(&transport, queue, 1, &worker).await;
    transport.purge(queue).await.unwrap();
    transport.close().await;
    delete_job_queues(&url, &[&jobs::term_job::JOB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_and_metrics_count_what_was_handled() {
    let Some(url) = broker_url() else { return };
    let queue = jobs::kill_job::QUEUE;
    let (transport, producer) = producer(&url, &jobs::kill_job::JOB).await;

    let mut first = Worker::start(&url, &["--jobs", "kill_job"]);
    first.wait_ready();
    for seq in 0..6 {
        jobs::kill_job::enqueue(&producer, Sleep { millis: 3_000, seq })
            .await
            .unwrap();
    }
    first.wait_for("3 jobs in flight", Duration::from_secs(20), |w| {
        w.metric("jobs_in_flight{job=\"kill_job\"}") == Some(3)
    });
    first.signal("KILL");
    let status = first.exit(Duration::from_secs(5));
    assert!(!status.success());
    let mut seen = first.handled("kill_job");

    let mut second = Worker::start(&url, &["--jobs", "kill_job", "--concurrency", "6"]);
    second.wait_for("every job handled", Duration::from_secs(30), |w| {
        let mut all = seen.clone();
        all.extend(w.handled("kill_job"));
        all.len() == 6
    });
    let handled = second.handled("kill_job").len() as u64;
    second.wait_for("metrics that match", Duration::from_secs(5), |w| {
        w.metric("jobs_succeeded_total{job=\"kill_job\"}") == Some(handled)
    });
    assert_eq!(
        second.metric("jobs_started_total{job=\"kill_job\"}"),
        Some(handled)
    );
    assert_eq!(
        second.metric("jobs_duration_seconds_count{job=\"kill_job\"}"),
        Some(handled)
    );
    assert_eq!(second.metric("jobs_in_flight{job=\"kill_job\"}"), Some(0));
    // Handler logs carry the delivery's span: job, message id and attempt.
    let output = second.output();
    let span_line = output
        .lines()
        .find(|line| line.contains("slept"))
        .expect("a handler log line");
    assert!(
        span_line.contains("job{job=\"kill_job\" message_id=\""),
        "{span_line}"
    );
    assert!(span_line.contains("attempt=1"), "{span_line}");
    seen.extend(second.handled("kill_job"));
    assert_eq!(seen, (0..6).collect());
    second.signal("TERM");
    assert!(second.exit(Duration::from_secs(10)).success());
    assert_eq!(transport.message_count(queue).await.unwrap(), 0);
    transport.close().await;
    delete_job_queues(&url, &[&jobs::kill_job::JOB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_while_the_connection_is_cut() {
    let Some(url) = broker_url() else { return };
    let (transport, producer) = producer(&url, &jobs::ready_job::JOB).await;
    let name = format!("jobs-worker-ready-{}", std::process::id());
    let mut worker = Worker::start(&url, &["--jobs", "ready_job", "--connection-name", &name]);
    worker.wait_ready();
    assert_eq!(worker.get("/healthz").map(|(s, _)| s), Some(200));

    // The worker attaches a new consumer within milliseconds of the cut, so /readyz is read
    // closely after it; a cut whose 503 fell between two reads is made again, once the worker
    // is back.
    let consume = format!("{name}.consume");
    let mut unready = false;
    for _ in 0..5 {
        assert_eq!(close_connections_named(&consume), 1, "{}", worker.output());
        let until = Instant::now() + Duration::from_secs(2);
        while !unready && Instant::now() < until {
            unready = worker
                .get("/readyz")
                .is_some_and(|(status, _)| status == 503);
        }
        if unready {
            break;
        }
        worker.wait_ready();
    }
    assert!(
        unready,
        "/readyz never said 503 during a cut:\n{}",
        worker.output()
    );
    assert_eq!(worker.get("/healthz").map(|(s, _)| s), Some(200));
    worker.wait_for("/readyz 200 again", Duration::from_secs(30), |w| {
        w.get("/readyz").is_some_and(|(status, _)| status == 200)
    });
    // And it consumes again.
    jobs::ready_job::enqueue(&producer, Sleep { millis: 0, seq: 7 })
        .await
        .unwrap();
    worker.wait_for(
        "the job after the reconnect",
        Duration::from_secs(20),
        |w| w.handled("ready_job").contains(&7),
    );
    worker.signal("TERM");
    assert!(worker.exit(Duration::from_secs(10)).success());
    transport.close().await;
    delete_job_queues(&url, &[&jobs::ready_job::JOB]).await;
}

/// The worker installs its signal handlers before it binds its port: a SIGTERM sent as soon
/// as it serves `/healthz`, while it still waits for a broker that is not there, is a graceful
/// stop with exit 0, not death by the signal's default action. Needs no broker.
#[test]
fn sigterm_while_the_broker_is_unreachable_stops_gracefully() {
    // A port nothing listens on: the worker keeps trying it for its default 120 s.
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let mut worker = Worker::start(&url, &[]);
    worker.wait_for("/healthz 200", Duration::from_secs(20), |w| {
        w.get("/healthz").is_some_and(|(status, _)| status == 200)
    });
    worker.signal("TERM");
    let status = worker.exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "a SIGTERM while connecting exits 0 ({status}):\n{}",
        worker.output()
    );
    assert!(
        worker
            .output()
            .contains("stopped before the broker could be reached"),
        "{}",
        worker.output()
    );
}

/// Everything a run prints, with `args` and `env`.
fn run_output(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(WORKER);
    command
        .args(args)
        .env_remove("JOBS_AMQP_URL")
        .env_remove("JOBS_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_password_is_never_printed() {
    const PASSWORD: &str = "Quokka-7431-Sekret";
    let url = format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f");
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");

    let mut outputs = Vec::new();
    if broker_url().is_some() {
        // A login the broker refuses: the failure is logged, without the password.
        let (code, text) = run_output(
            &[
                "--url",
                &url,
                "--metrics-addr",
                &addr,
                "--jobs",
                "ready_job",
            ],
            &[],
        );
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("guest:**@127.0.0.1"), "{text}");
        outputs.push(text);
        let (code, text) = run_output(
            &[
                "--metrics-addr",
                &addr,
                "--jobs",
                "ready_job",
                "--log-format",
                "json",
            ],
            &[("JOBS_AMQP_URL", &url)],
        );
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.lines()
                .filter(|l| !l.is_empty())
                .all(|l| l.starts_with('{')),
            "JSON log lines:\n{text}"
        );
        outputs.push(text);
        // TLS with a CA file, to a port that speaks plain AMQP: the handshake fails.
        let dir = std::env::temp_dir().join(format!("jobs-worker-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let tls_url = format!("amqps://guest:{PASSWORD}@127.0.0.1:5672/%2f");
        let (code, text) = run_output(
            &[
                "--url",
                &tls_url,
                "--tls-ca",
                ca.to_str().unwrap(),
                "--metrics-addr",
                &addr,
                "--jobs",
                "ready_job",
            ],
            &[],
        );
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("amqps://guest:**@127.0.0.1"), "{text}");
        outputs.push(text);
        let _ = std::fs::remove_dir_all(&dir);
        // An operator command on the same refused login.
        let (code, text) = run_output(&["--url", &url, "errors", "list", "--all"], &[]);
        assert_eq!(code, Some(1), "{text}");
        outputs.push(text);
    }
    // Help, usage and configuration errors with the URL around.
    let (code, text) = run_output(&["--help"], &[("JOBS_AMQP_URL", &url)]);
    assert_eq!(code, Some(0));
    outputs.push(text);
    let (code, text) = run_output(&["--url", &url, "--shutdown-timeout", "25x"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("'25x' for '--shutdown-timeout <DURATION>'"),
        "{text}"
    );
    outputs.push(text);
    let (code, text) = run_output(&["config"], &[("JOBS_AMQP_URL", &url)]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("url = \"amqp://guest:**@127.0.0.1"), "{text}");
    outputs.push(text);
    let bad_scheme = format!("http://guest:{PASSWORD}@127.0.0.1/");
    let (code, text) = run_output(&["--url", &bad_scheme], &[]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("url"), "{text}");
    outputs.push(text);
    let (code, text) = run_output(&["--bogus", &url], &[]);
    assert_eq!(code, Some(2));
    outputs.push(text);
    let (code, text) = run_output(&["run", "--jobs", "nope"], &[("JOBS_AMQP_URL", &url)]);
    assert_eq!(code, Some(3), "{text}");
    outputs.push(text);

    for text in &outputs {
        assert_eq!(
            text.matches(PASSWORD).count(),
            0,
            "the password leaked:\n{text}"
        );
    }
}

#[test]
fn flags_beat_the_environment_and_the_environment_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("jobs-worker-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker.toml");
    std::fs::write(&path, "shutdown_timeout = \"1s\"\nconcurrency = 4\n").unwrap();
    let file = path.to_str().unwrap();
    let config = |args: &[&str], env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().copied().chain(["config"]).collect();
        let (code, text) = run_output(&args, env);
        assert_eq!(code, Some(0), "{text}");
        text
    };

    let text = config(&["--config", file], &[]);
    assert!(text.contains("shutdown_timeout = \"1s\""), "{text}");
    assert!(text.contains("concurrency = 4"), "{text}");
    let text = config(&["--config", file], &[("JOBS_SHUTDOWN_TIMEOUT", "2s")]);
    assert!(text.contains("shutdown_timeout = \"2s\""), "{text}");
    assert!(text.contains("concurrency = 4"), "{text}");
    let text = config(
        &["--config", file, "--shutdown-timeout", "3s"],
        &[("JOBS_SHUTDOWN_TIMEOUT", "2s")],
    );
    assert!(text.contains("shutdown_timeout = \"3s\""), "{text}");
    let text = config(&[], &[("JOBS_CONFIG", file)]);
    assert!(text.contains("shutdown_timeout = \"1s\""), "{text}");
    let text = config(&[], &[]);
    assert!(text.contains("shutdown_timeout = \"25s\""), "{text}");
    assert!(text.contains("# concurrency: each job's own"), "{text}");

    // A bad value in the file is named by its key and line; in the environment, by its flag.
    std::fs::write(&path, "concurrency = 4\nshutdown_timeout = \"1x\"\n").unwrap();
    let (code, text) = run_output(&["--config", file], &[]);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("expected a duration like \"25s\", not \"1x\""),
        "{text}"
    );
    assert!(text.contains("line 2"), "{text}");
    let (code, text) = run_output(&[], &[("JOBS_SHUTDOWN_TIMEOUT", "2x")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("'2x' for '--shutdown-timeout <DURATION>'"),
        "{text}"
    );
    std::fs::write(&path, "shutdown_timout = \"1s\"\n").unwrap();
    let (code, text) = run_output(&["--config", file], &[]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("unknown field `shutdown_timout`"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_job_that_could_outlast_the_brokers_consumer_timeout_stops_the_start_naming_both() {
    // Every job of the test worker has a timeout of a second or more: refused before anything
    // connects, whether the broker is there or not.
    for (args, env) in [
        (&["--broker-consumer-timeout", "1s"][..], &[][..]),
        (&[][..], &[("JOBS_BROKER_CONSUMER_TIMEOUT", "1s")][..]),
    ] {
        let (code, text) = run_output(args, env);
        assert_eq!(code, Some(3), "{text}");
        assert!(text.contains("has a timeout of"), "{text}");
        assert!(
            text.contains("at or above the broker's consumer timeout of 1s"),
            "{text}"
        );
    }
    let (code, text) = run_output(&["--broker-consumer-timeout", "soon"], &[]);
    assert_eq!(code, Some(2), "{text}");
    let (code, text) = run_output(&["config", "--broker-consumer-timeout", "2h"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("broker_consumer_timeout = \"2h\""), "{text}");
}
