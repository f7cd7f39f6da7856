//! Bad inputs published raw to a job's exchange, against the shared RabbitMQ on
//! 127.0.0.1:5672: each ends in the error queue on its first delivery with the header that says
//! why, the handler never runs for them, the worker neither panics nor exits, and its peak
//! memory stays bounded although dozens of the inputs are over the size limit.
//!
//! Odd `x-jobs-attempt` headers on a valid body: the wire contract says the header is a
//! positive integer, missing meaning 1, and `docs/decisions.md` makes a header that is present
//! but not a positive integer (negative, zero, past `u32`, a float, a boolean, a string, a
//! table, void) a `decode` failure: the envelope is not ours to trust, so the error queue on the
//! first delivery, like an undecodable body. A huge attempt that is still a `u32` is a valid
//! attempt: the handler runs once, and were it to fail, its attempts are long exhausted, so it
//! would go straight to the error queue, never into a retry loop.

#[path = "../src/fault_jobs.rs"]
#[allow(dead_code, reason = "each test binary uses some of the fault jobs")]
mod fault_jobs;
mod workers_support;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use fault_jobs::{Document, Tracked};
use futures_util::StreamExt as _;
use jobs_core::envelope::{CONTENT_TYPE, Properties, header};
use jobs_core::testing::broker_url;
use jobs_core::transport::{Publish, Transport};
use jobs_core::{Envelope, HeaderValue, Headers, JobContext, JobError, job};
use jobs_faults::scenario::{drain, full};
use jobs_faults::{Ledger, WorkerProcess};
use prost::Message as _;
use workers_support::{WORKER, scratch, setup, wait_count};

/// The worker's default size limit.
const LIMIT: usize = 4 * 1024 * 1024;

/// What must become of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The error queue, with this `x-jobs-error-kind`.
    Dead(&'static str),
    /// The handler runs once.
    Handled,
}

/// One bad input: its label, its message, and what must become of it.
struct Input {
    label: &'static str,
    envelope: Envelope,
    expect: Expect,
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn envelope(id: u64, body: Vec<u8>) -> Envelope {
    Envelope {
        properties: Properties {
            content_type: Some(Cow::Borrowed(CONTENT_TYPE)),
            kind: Some(Cow::Borrowed("bad_input")),
            message_id: Some(format!("bad-{id}")),
            persistent: true,
            ..Properties::default()
        },
        body: body.into(),
    }
}

fn valid(id: u64) -> Vec<u8> {
    Document {
        text: format!("document {id}"),
        child: Some(Box::new(Document {
            text: "child".into(),
            child: None,
            id: 0,
        })),
        id,
    }
    .encode_to_vec()
}

/// A body the job's decoder must refuse: checked here, so the test does not rest on luck.
fn undecodable(label: &'static str, id: u64, body: Vec<u8>, kind: &'static str) -> Input {
    assert!(
        Document::decode(body.as_slice()).is_err(),
        "{label}: the body decodes"
    );
    Input {
        label,
        envelope: envelope(id, body),
        expect: Expect::Dead(kind),
    }
}

/// Nested documents `depth` deep, encoded by hand: past prost's recursion limit of 100.
fn nested(depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![0x12]; // field 2, length-delimited
        prost::encoding::encode_varint(body.len() as u64, &mut outer);
        outer.extend_from_slice(&body);
        body = outer;
    }
    body
}

/// Odd `x-jobs-attempt` values on a valid body, with what the worker does with each.
fn odd_attempts() -> Vec<(&'static str, HeaderValue, Expect)> {
    let decode = Expect::Dead("decode");
    let mut table = Headers::new();
    table.insert("attempt", 2_i64);
    vec![
        ("attempt -1", HeaderValue::Int(-1), decode),
        ("attempt 0", HeaderValue::Int(0), decode),
        ("attempt i64::MAX", HeaderValue::Int(i64::MAX), decode),
        ("attempt u32::MAX + 1", HeaderValue::Int(1 << 32), decode),
        ("attempt 2.0", HeaderValue::Float(2.0), decode),
        ("attempt true", HeaderValue::Bool(true), decode),
        ("attempt \"2\"", HeaderValue::String("2".into()), decode),
        ("attempt table", HeaderValue::Table(table), decode),
        ("attempt void", HeaderValue::Void, decode),
        (
            "attempt bytes",
            HeaderValue::Bytes(vec![0xff, 0x32]),
            decode,
        ),
        (
            "attempt array",
            HeaderValue::Array(vec![HeaderValue::Int(2)]),
            decode,
        ),
        // An AMQP timestamp is an unsigned integer: 1 is a valid attempt.
        (
            "attempt timestamp 1",
            HeaderValue::Timestamp(1),
            Expect::Handled,
        ),
        (
            "attempt u32::MAX",
            HeaderValue::Int(i64::from(u32::MAX)),
            Expect::Handled,
        ),
    ]
}

/// The inputs: `oversized` bodies over the size limit first, then the other kinds in turn.
fn inputs(total: u64, oversized: u64) -> Vec<Input> {
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let odd = odd_attempts();
    let mut inputs = Vec::new();
    for id in 0..total {
        if id < oversized {
            // Over the limit by a little or by a lot; filler a decoder would choke on anyway.
            let len = LIMIT + 1 + (id as usize % 4) * 256 * 1024;
            inputs.push(undecodable("oversized", id, vec![0xff; len], "too-large"));
            continue;
        }
        let input = match id % 9 {
            0 => loop {
                // Random bytes can happen to be a valid message (unknown fields are skipped):
                // draw again until they are not.
                let len = 1 + (random.next() % 512) as usize;
                let bytes = random.bytes(len);
                if Document::decode(bytes.as_slice()).is_err() {
                    break undecodable("random bytes", id, bytes, "decode");
                }
            },
            1 => {
                let mut body = valid(id);
                body.truncate(body.len() / 2);
                undecodable("truncated", id, body, "decode")
            }
            2 => {
                // Another job's message: its field 1 is a varint, where Document has a string.
                let body = Tracked::new(id, 0).encode_to_vec();
                undecodable("wrong message type", id, body, "decode")
            }
            3 => {
                // A valid body, with a `type` that names no job on the exchange.
                let mut envelope = envelope(id, valid(id));
                envelope.properties.kind = Some(Cow::Borrowed("no_such_job"));
                Input {
                    label: "unknown job name",
                    envelope,
                    expect: Expect::Dead("unknown-job"),
                }
            }
            4 => {
                // Field 1 (the string), 3 bytes that are not UTF-8.
                let body = vec![0x0a, 3, 0xff, 0xfe, 0xc3];
                undecodable("invalid UTF-8", id, body, "decode")
            }
            5 => undecodable(
                "deep nesting",
                id,
                nested(150 + id as usize % 1000),
                "decode",
            ),
            6 => {
                // JSON where protobuf belongs, with a routing-key header that is not UTF-8:
                // the error queue must carry the message whatever its headers hold.
                let body = format!("{{\"text\":\"document\",\"id\":{id}}}").into_bytes();
                let mut input = undecodable("JSON body", id, body, "decode");
                let headers = &mut input.envelope.properties.headers;
                headers.insert(header::ROUTING_KEY, HeaderValue::Bytes(vec![0xc3, 0x28]));
                input
            }
            _ => {
                let (label, value, expect) = odd[(id / 9) as usize % odd.len()].clone();
                let mut envelope = envelope(id, valid(id));
                envelope.properties.headers.insert(header::ATTEMPT, value);
                Input {
                    label,
                    envelope,
                    expect,
                }
            }
        };
        inputs.push(input);
    }
    inputs
}

/// Held by each test of the `bad_input` job: they share its queues, which each one purges
/// and counts, and the test harness runs tests in parallel.
static BAD_INPUT_QUEUES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_go_to_the_error_queue_on_first_delivery_with_memory_bounded() {
    let Some(url) = broker_url() else { return };
    let _queues = BAD_INPUT_QUEUES.lock().await;
    let job = &fault_jobs::bad_input::JOB;
    let (transport, producer) = setup(&url, job, "bad-inputs").await;
    let dir = scratch("bad-inputs");
    let handled = dir.join("handled");
    let (total, oversized) = if full() { (10_000, 200) } else { (1_000, 40) };
    let inputs = inputs(total, oversized);
    let expect: HashMap<u64, (&str, Expect)> = (0..)
        .zip(&inputs)
        .map(|(id, input)| (id, (input.label, input.expect)))
        .collect();
    let dead = inputs
        .iter()
        .filter(|input| matches!(input.expect, Expect::Dead(_)))
        .count();

    let env = [(fault_jobs::HANDLED_FILE, handled.as_path())];
    let args = ["--jobs", job.name()];
    let mut worker =
        WorkerProcess::start(Path::new(WORKER), &url, &args, &env).expect("the worker starts");
    worker
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));

    let ledger = Ledger::new();
    futures_util::stream::iter((0..).zip(inputs))
        .map(|(id, input)| {
            ledger.attempted(id);
            let publish = Publish {
                exchange: Cow::Borrowed(fault_jobs::EXCHANGE),
                routing_key: Cow::Borrowed("bad"),
                mandatory: true,
                envelope: input.envelope,
            };
            let producer = producer.clone();
            let ledger = ledger.clone();
            async move {
                producer
                    .publish(publish)
                    .await
                    .expect("a confirmed publish");
                ledger.confirmed(id);
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;

    let error_queue = format!("{}.err", job.queue());
    let timeout = Duration::from_secs(if full() { 600 } else { 90 });
    wait_count(&transport, &error_queue, dead as u64, timeout).await;
    let handled_count = total as usize - dead;
    worker
        .wait_for("the valid inputs handled", Duration::from_secs(30), |_| {
            std::fs::read_to_string(&handled).is_ok_and(|t| t.lines().count() >= handled_count)
        })
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        worker.try_exit().expect("the worker's state"),
        None,
        "the worker exited:\n{}",
        worker.output()
    );
    assert!(worker.ready(), "the worker is still consuming");
    // Peak memory: the worker holds at most its prefetch (4) deliveries, each at most a few
    // MiB over the limit, plus a copy of each while it is republished to the error queue and
    // lapin's frame buffers: 4 x 2 x ~5 MiB = 40 MiB over a baseline of ~20 MiB. 100 MiB
    // leaves room for the allocator, and is far below what an unbounded queue of 40 MiB-plus
    // oversized bodies (over 160 MiB in all) would take.
    let peak = worker.peak_rss_kib().expect("VmHWM of the worker");
    eprintln!("worker peak RSS after {total} bad inputs ({oversized} oversized): {peak} KiB");
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");
    assert_eq!(
        worker.metric("jobs_retried_total{job=\"bad_input\"}"),
        Some(0),
        "nothing is retried (and the counter is exported)"
    );
    // On the first delivery: the worker dead-lettered each input once, and never requeued one
    // (it logs a warning when an outcome fails to become durable and it requeues).
    let (_, metrics) = worker.get("/metrics").expect("the metrics");
    let dead_lettered: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("jobs_failed_total{job=\"bad_input\""))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(dead_lettered, dead as u64, "{metrics}");
    assert!(
        !worker.output().contains("requeueing"),
        "{}",
        worker.output()
    );

    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for delivery in drain(&transport, &error_queue, dead, Duration::from_secs(60)).await {
        let envelope = &delivery.envelope;
        let id: u64 = envelope
            .properties
            .message_id
            .as_deref()
            .and_then(|m| m.strip_prefix("bad-")?.parse().ok())
            .expect("the original message id");
        ledger.failed(id);
        let (label, expected) = expect[&id];
        let headers = &envelope.properties.headers;
        let Expect::Dead(want) = expected else {
            panic!("{label} (id {id}) must be handled, not dead-lettered: {headers:?}");
        };
        assert_eq!(
            headers.get_str(header::ERROR_KIND),
            Some(want),
            "{label} (id {id}): {headers:?}"
        );
        assert!(
            headers
                .get_str(header::ERROR)
                .is_some_and(|e| !e.is_empty()),
            "{label}: the reason is recorded"
        );
        assert_eq!(headers.get_str(header::QUEUE), Some(job.queue()));
        assert_eq!(
            headers.get_str(header::EXCHANGE),
            Some(fault_jobs::EXCHANGE)
        );
        *kinds.entry(label).or_default() += 1;
    }
    eprintln!("dead-lettered by input: {kinds:?}");
    assert_eq!(
        transport.message_count(job.queue()).await.expect("a count"),
        0
    );

    worker.signal("TERM").expect("kill -TERM");
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    assert!(!worker.output().contains("panicked"), "{}", worker.output());

    ledger.load_handled(&handled).expect("the handled file");
    let report = ledger.report();
    // No fault: every input settles once. A handler run for an input that was also
    // dead-lettered counts as a duplicate, so the bound of 0 also says the handler never ran
    // for a dead-lettered input; and every handled id must be one expected to be handled.
    report.check(&format!("bad inputs ({oversized} oversized)"), 0);
    assert_eq!(report.handled, handled_count);
    assert_eq!(report.failed, dead);
    transport.close().await;
    // The shared broker keeps none of the job's queues once the scenario is done with them.
    if let Err(err) = jobs_core::testing::delete_job_queues(&url, &[job]).await {
        eprintln!("the test's queues stay on the broker: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hostile messages of `faults/foreign/hostile.py`, by case.
const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/foreign/hostile.py");

/// Whether Python can import pika (`scripts/test` installs it from PyPI).
fn python_ready() -> bool {
    let ready = std::process::Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|status| status.success());
    if !ready {
        assert!(
            std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
            "python3 with pika is required (scripts/test installs it)"
        );
        eprintln!("skipped: python3 with pika is missing (scripts/test installs it)");
    }
    ready
}

/// Every byte of `text` a terminal would act on, other than the line feeds.
fn control_bytes(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_and_terminal_escapes_are_handled_or_parked_with_the_reason() {
    let Some(url) = broker_url() else { return };
    if !python_ready() {
        return;
    }
    let _queues = BAD_INPUT_QUEUES.lock().await;
    let job = &fault_jobs::bad_input::JOB;
    let (transport, _producer) = setup(&url, job, "hostile").await;
    let dir = scratch("hostile");
    let handled = dir.join("handled");
    let env = [(fault_jobs::HANDLED_FILE, handled.as_path())];
    let args = ["--jobs", job.name()];
    let mut worker =
        WorkerProcess::start(Path::new(WORKER), &url, &args, &env).expect("the worker starts");
    worker
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));

    let published = std::process::Command::new("python3")
        .arg(HOSTILE)
        .args([url.as_str(), fault_jobs::EXCHANGE, "bad", "1000000"])
        .output()
        .expect("python3 runs");
    assert!(
        published.status.success(),
        "hostile.py failed: {}",
        String::from_utf8_lossy(&published.stderr)
    );
    let ledger = Ledger::new();
    let mut cases = HashMap::new();
    let mut ids = HashMap::new();
    for line in String::from_utf8_lossy(&published.stdout).lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(case), Some(id), Some(message_id)) =
            (fields.next(), fields.next(), fields.next())
        else {
            panic!("a line of hostile.py: {line:?}");
        };
        let id: u64 = id.parse().expect("an id");
        ledger.attempted(id);
        ledger.confirmed(id);
        cases.insert(id, case.to_owned());
        ids.insert(case.to_owned(), (id, message_id.to_owned()));
    }
    assert_eq!(cases.len(), 6, "{cases:?}");

    // The valid bodies are handled, headers and all; the rest wait in the error queue.
    let error_queue = format!("{}.err", job.queue());
    wait_count(&transport, &error_queue, 4, Duration::from_secs(60)).await;
    worker
        .wait_for("the valid ones handled", Duration::from_secs(30), |_| {
            std::fs::read_to_string(&handled).is_ok_and(|t| t.lines().count() >= 2)
        })
        .unwrap_or_else(|error| panic!("{error}"));

    // The operator's listing and one message in full: whatever the message holds, nothing
    // reaches the terminal that it would act on.
    let (control_id, control_message_id) = ids["control"].clone();
    for args in [
        vec![
            "errors".to_owned(),
            "list".to_owned(),
            job.name().to_owned(),
        ],
        vec![
            "errors".to_owned(),
            "show".to_owned(),
            control_message_id.clone(),
            "--queue".to_owned(),
            job.name().to_owned(),
        ],
    ] {
        let output = std::process::Command::new(WORKER)
            .args(&args)
            .env("JOBS_AMQP_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the worker binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {stdout}");
        assert_eq!(
            control_bytes(&stdout),
            Vec::<char>::new(),
            "{args:?}:\n{stdout}"
        );
        assert!(stdout.contains("\\u{1b}"), "escaped, not dropped: {stdout}");
        eprintln!(
            "$ jobs-fault-worker {}\n{stdout}",
            args.join(" ").escape_debug()
        );
    }

    assert_eq!(worker.try_exit().expect("the worker's state"), None);
    let peak = worker.peak_rss_kib().expect("VmHWM of the worker");
    eprintln!("worker peak RSS after the hostile headers: {peak} KiB");
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");

    for delivery in drain(&transport, &error_queue, 4, Duration::from_secs(60)).await {
        let letter = jobs_core::FailedJob::new(std::sync::Arc::unwrap_or_clone(delivery.envelope));
        let id: u64 = letter
            .message_id()
            .and_then(|m| m.split('-').nth(1)?.parse().ok())
            .expect("an id in the message id");
        ledger.failed(id);
        let case = &cases[&id];
        let error = letter.error().unwrap_or_default();
        let headers = &letter.envelope().properties.headers;
        match case.as_str() {
            "wide-invalid" => {
                assert!(error.contains("foreign headers were dropped"), "{error}");
                assert!(headers.len() < 20, "only the framework's headers are left");
            }
            "deep-invalid" => {
                assert_eq!(letter.kind(), Some(jobs_core::FailureKind::Decode));
                assert!(headers.get("a").is_some(), "the deep table is kept");
            }
            "bad-name" => {
                assert!(headers.get("\u{fffd}\u{fffd}").is_some(), "{headers:?}");
            }
            "control" => {
                assert_eq!(id, control_id);
                assert_eq!(letter.kind(), Some(jobs_core::FailureKind::UnknownJob));
            }
            other => panic!("{other} must not be in the error queue: {error}"),
        }
    }
    worker.signal("TERM").expect("kill -TERM");
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    assert!(!worker.output().contains("panicked"), "{}", worker.output());
    ledger.load_handled(&handled).expect("the handled file");
    let report = ledger.report();
    report.check("hostile headers (27,973 wide, 10,000 deep)", 0);
    assert_eq!((report.handled, report.failed), (2, 4));
    transport.close().await;
    // The shared broker keeps none of the job's queues once the scenario is done with them.
    if let Err(err) = jobs_core::testing::delete_job_queues(&url, &[job]).await {
        eprintln!("the test's queues stay on the broker: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Refuses every message: its error-queue copy is what must survive.
#[job(
    exchange = "faults.transient",
    routing_key = "fatal",
    queue = "faults.transient.fatal",
    queue_type = "classic"
)]
async fn transient_fatal(_doc: Document) -> Result<(), JobError> {
    Err(JobError::fatal("refused"))
}

/// Fails its first attempt; the retry waits long enough to sit through a broker restart.
#[job(
    exchange = "faults.transient",
    routing_key = "retry",
    queue = "faults.transient.retry",
    queue_type = "classic",
    retries = 1,
    backoff = "20s"
)]
async fn transient_retry(doc: Document, ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        return Err(JobError::retry("the first attempt fails"));
    }
    ctx.state::<Ledger>()?.handled(doc.id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_foreign_messages_have_persistent_copies_that_survive_a_restart() {
    if jobs_faults::skip_without_rabbitmq() {
        return;
    }
    let scenario = "transient foreign messages across a broker restart";
    let total: u64 = if full() { 1_000 } else { 100 };
    let mut node = jobs_faults::PrivateNode::start_new()
        .await
        .expect("the private node starts");
    let ledger = Ledger::new();
    let start = |url: String, ledger: Ledger| async move {
        let transport = jobs_core::transport::amqp::AmqpTransport::connect(&url)
            .await
            .expect("connected to the private node");
        let engine = jobs_core::engine::Engine::builder(std::sync::Arc::new(transport.clone()))
            .job(&transient_fatal::JOB)
            .job(&transient_retry::JOB)
            .state(ledger)
            .start()
            .await
            .expect("the engine starts");
        (transport, engine)
    };
    let (transport, engine) = start(node.url(), ledger.clone()).await;
    // Sent as a producer in another language might: delivery mode 1, transient.
    for id in 0..2 * total {
        let (job, key) = if id < total {
            (&transient_fatal::JOB, "fatal")
        } else {
            (&transient_retry::JOB, "retry")
        };
        let mut envelope = envelope(id, valid(id));
        envelope.properties.kind = Some(Cow::Borrowed(job.name()));
        envelope.properties.persistent = false;
        let publish = Publish {
            exchange: Cow::Borrowed("faults.transient"),
            routing_key: Cow::Borrowed(key),
            mandatory: true,
            envelope,
        };
        ledger.attempted(id);
        transport
            .publish(publish)
            .await
            .expect("a confirmed publish");
        ledger.confirmed(id);
    }
    let error_queue = format!("{}.err", transient_fatal::QUEUE);
    let retry_queue = format!("{}.retry.1", transient_retry::QUEUE);
    wait_count(&transport, &error_queue, total, Duration::from_secs(60)).await;
    wait_count(&transport, &retry_queue, total, Duration::from_secs(60)).await;
    engine.shutdown(Duration::from_secs(10)).await;
    transport.close().await;

    // A broker restart keeps only persistent messages of classic queues: the originals were
    // transient, the framework's copies must not be.
    node.stop().await.expect("the node stops");
    node.start().await.expect("the node starts again");
    let (transport, engine) = start(node.url(), ledger.clone()).await;
    let left = transport
        .message_count(&error_queue)
        .await
        .expect("a count");
    assert_eq!(left, total, "every error-queue copy survived the restart");
    jobs_faults::scenario::until(
        "the retries waited out and handled",
        Duration::from_secs(120),
        || ledger.report().handled == usize::try_from(total).unwrap_or(usize::MAX),
    )
    .await;
    engine.shutdown(Duration::from_secs(10)).await;
    let total_usize = usize::try_from(total).expect("a count");
    for delivery in drain(
        &transport,
        &error_queue,
        total_usize,
        Duration::from_secs(60),
    )
    .await
    {
        assert!(delivery.envelope.properties.persistent);
        let id = Document::decode(delivery.envelope.body.clone()).map_or(u64::MAX, |d| d.id);
        ledger.failed(id);
    }
    ledger.report().check(scenario, 0);
    transport.close().await;
}
