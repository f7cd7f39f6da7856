//! Calls across languages, by the wire contract of `docs/calls.md` alone: a Python client
//! (`tests/foreign/python/call.py`, pika) calls a job a Rust engine serves, and Rust callers call
//! a job whose only worker is a Python program (`tests/foreign/python/serve.py`). Both sides
//! encode the messages from the one `tests/proto/calls.proto`: the Rust code `build.rs`
//! generates, the Python code `grpc_tools.protoc` generates at test time, outside the
//! repository.
//!
//! The jobs have this test's own exchange and queues: `amqp_calls` serves and purges
//! `tests.calls.answer` from another process, possibly at the same time. Each test deletes its
//! job's queues when it is done with them.
//!
//! Needs python3 with pika, protobuf and grpcio-tools (`scripts/foreign-deps` installs them).
//! Without them it skips, naming what is missing, or fails under `JOBS_REQUIRE_BROKER=1`.

#[path = "support/foreign.rs"]
mod foreign;

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use jobs_core::engine::{Engine, EngineBuilder};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{CallError, FailureKind, JobContext, JobError, Producer, job};
use jobs_tests::broker::delete_job_queues;
use jobs_tests::calls::{self, Answer, Question};

/// How long a caller, on either side, waits for its replies; the Python worker waits twice as
/// long for its requests, so that a missing reply shows on the caller's side first.
const WITHIN: Duration = Duration::from_secs(30);
/// The echo calls the Python client makes, besides its one fatal call.
const PYTHON_CALLS: u32 = 20;
/// The calls the Rust callers make at once, besides the one the Python worker refuses and the
/// one it answers with a bare body.
const RUST_CALLS: u32 = 100;
/// What the Python worker sends as `x-jobs-error` when it refuses (`REFUSAL` in serve.py).
const REFUSAL: &str = "the Python worker refuses this question";

/// The suite's `answer` job under this test's own exchange and queue, so that `amqp_calls`
/// neither purges this test's requests nor serves them.
#[job(
    exchange = "tests.crosslang.calls",
    routing_key = "answer",
    queue = "tests.crosslang.calls.answer",
    concurrency = 100
)]
async fn crosslang_answer(question: Question, ctx: JobContext) -> Result<Answer, JobError> {
    calls::answer(question, ctx).await
}

/// A job whose handler lives in Python only (serve.py): no Rust engine serves it, so this body
/// never runs. It gives the Rust callers the typed `python_answer::call` and the queue to
/// declare.
#[job(
    exchange = "tests.crosslang.calls",
    routing_key = "pyanswer",
    queue = "tests.crosslang.calls.pyanswer"
)]
async fn python_answer(_question: Question) -> Result<Answer, JobError> {
    Err(JobError::fatal(
        "python_answer is served by serve.py, not by Rust",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_calls_a_rust_job() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let Some((_tmp, python_out)) = python_code() else {
        return;
    };
    let transport: Arc<dyn Transport> =
        Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let builder = Engine::builder(Arc::clone(&transport)).job(&crosslang_answer::JOB);
    declare_empty(
        &builder,
        &*transport,
        [crosslang_answer::QUEUE, crosslang_answer::ERROR_QUEUE],
    )
    .await;
    let engine = builder.start().await.expect("started");

    let mut questions: Vec<String> = (0..PYTHON_CALLS).map(|n| format!("echo:{n}")).collect();
    questions.push(format!("fatal:{PYTHON_CALLS}"));
    let stdout = foreign::run(
        "call.py",
        foreign::python(&script("call.py"), &python_out, &url)
            .args([
                crosslang_answer::JOB.exchange(),
                crosslang_answer::JOB.routing_key(),
                crosslang_answer::JOB.name(),
            ])
            .arg(WITHIN.as_secs().to_string())
            .args(&questions),
    );
    eprintln!("call.py:\n{stdout}");
    let (sent, replies) = parse_calls(&stdout);

    // Every question went out once, and its reply came back under its correlation id.
    let asked: Vec<String> = sent.values().map(|(ask, n)| format!("{ask}:{n}")).collect();
    assert_eq!(
        asked.iter().collect::<BTreeSet<_>>(),
        questions.iter().collect::<BTreeSet<_>>(),
        "{stdout}"
    );
    assert_eq!(asked.len(), questions.len(), "{stdout}");
    assert_eq!(
        sent.keys().collect::<Vec<_>>(),
        replies.keys().collect::<Vec<_>>(),
        "one reply per call, by correlation id:\n{stdout}"
    );
    for (id, (ask, n)) in &sent {
        let expected = if ask == "fatal" {
            PythonReply::Failed {
                kind: "fatal".into(),
                error: "refused for good".into(),
            }
        } else {
            PythonReply::Ok {
                text: "echo".into(),
                n: *n,
            }
        };
        assert_eq!(replies[id], expected, "call {id} ({ask} {n})");
    }
    engine.shutdown(Duration::from_secs(5)).await;
    delete_job_queues(&url, &[&crosslang_answer::JOB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_callers_call_a_job_a_python_worker_serves() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let Some((_tmp, python_out)) = python_code() else {
        return;
    };
    let transport: Arc<dyn Transport> =
        Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let builder = Engine::builder(Arc::clone(&transport)).job(&python_answer::JOB);
    // Declared, never started: the Python worker serves the queue.
    declare_empty(
        &builder,
        &*transport,
        [python_answer::QUEUE, python_answer::ERROR_QUEUE],
    )
    .await;
    let producer = Producer::new(Arc::clone(&transport));

    // The requests wait in the queue until the worker is up, so no need to wait for it here.
    let requests = RUST_CALLS + 2;
    let mut serve = foreign::python(&script("serve.py"), &python_out, &url);
    serve
        .args([python_answer::QUEUE, python_answer::JOB.name()])
        .arg(requests.to_string())
        .arg((WITHIN * 2).as_secs().to_string());
    let served = tokio::task::spawn_blocking(move || foreign::output("serve.py", &mut serve));

    let call = |ask: &str, n: u32| {
        python_answer::call(&producer, Question { ask: ask.into(), n })
            .timeout(WITHIN)
            .into_future()
    };
    let echoes = join_all((0..RUST_CALLS).map(|n| call("echo", n)));
    let (echoes, refused, bare) = tokio::join!(
        echoes,
        call("refuse", RUST_CALLS),
        call("bare", RUST_CALLS + 1)
    );
    // The worker's output first: when it failed, that says why the calls did.
    let served = served.await.expect("joined");
    eprintln!("serve.py:\n{served}");

    for (n, reply) in (0..RUST_CALLS).zip(echoes) {
        let reply = reply.unwrap_or_else(|err| panic!("call {n}: {err}"));
        assert_eq!(
            reply,
            Answer {
                text: "python".into(),
                n
            }
        );
    }
    match refused {
        Err(CallError::Failed {
            kind: FailureKind::Fatal,
            error,
        }) => assert_eq!(error, REFUSAL),
        other => panic!("the refused call: expected a fatal failure, got {other:?}"),
    }
    // A reply with no `x-jobs-reply` header counts as `ok`.
    assert_eq!(
        bare.expect("the bare reply"),
        Answer {
            text: "bare".into(),
            n: RUST_CALLS + 1
        }
    );

    // The worker saw each request once, and answered it as the callers heard.
    let mut wanted: BTreeSet<(&str, u32, &str)> =
        (0..RUST_CALLS).map(|n| ("echo", n, "ok")).collect();
    wanted.extend([
        ("refuse", RUST_CALLS, "failed"),
        ("bare", RUST_CALLS + 1, "bare"),
    ]);
    let seen: BTreeSet<(&str, u32, &str)> = served
        .lines()
        .map(
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["served", _id, ask, n, reply] => (*ask, n.parse().expect("a number"), *reply),
                _ => panic!("serve.py printed {line:?}:\n{served}"),
            },
        )
        .collect();
    assert_eq!(served.lines().count(), seen.len(), "{served}");
    assert_eq!(seen, wanted, "{served}");
    // serve.py has exited, its requests served.
    delete_job_queues(&url, &[&python_answer::JOB]).await;
}

/// Declares `builder`'s topology on `transport` and empties `queues` of whatever an earlier run
/// left in them, before anyone consumes them.
async fn declare_empty(builder: &EngineBuilder, transport: &dyn Transport, queues: [&str; 2]) {
    let topology = builder.check().expect("the job's topology");
    transport
        .declare(&topology, Declare::Create)
        .await
        .expect("declared");
    for queue in queues {
        transport.purge(queue).await.expect("purged");
    }
}

/// The Python code of `calls.proto`, generated into a temporary directory (returned so that it
/// lives as long as the code is used), or `None` when the Python tools are missing.
fn python_code() -> Option<(foreign::TempDir, PathBuf)> {
    let missing: Vec<&str> = foreign::python_missing().into_iter().collect();
    if !foreign::tools_ready("the cross-language call test", &missing) {
        return None;
    }
    let tmp = foreign::TempDir::new();
    let out = tmp.path().join("python");
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    foreign::generate_python(&proto_dir, "calls.proto", &out);
    Some((tmp, out))
}

fn script(name: &str) -> PathBuf {
    foreign::foreign_dir().join("python").join(name)
}

/// A reply as call.py printed it.
#[derive(Debug, PartialEq)]
enum PythonReply {
    Ok { text: String, n: u32 },
    Failed { kind: String, error: String },
}

/// call.py's `call <id> <ask> <n>` lines and its `reply <id> …` lines, each by correlation id.
fn parse_calls(
    stdout: &str,
) -> (
    BTreeMap<String, (String, u32)>,
    BTreeMap<String, PythonReply>,
) {
    let mut sent = BTreeMap::new();
    let mut replies = BTreeMap::new();
    let number = |n: &str| n.parse::<u32>().expect("a number");
    for line in stdout.lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let (id, previous) = match fields.as_slice() {
            ["call", id, ask, n] => (
                id,
                sent.insert((*id).to_owned(), ((*ask).to_owned(), number(n)))
                    .is_some(),
            ),
            ["reply", id, "ok", text, n] => {
                let reply = PythonReply::Ok {
                    text: (*text).to_owned(),
                    n: number(n),
                };
                (id, replies.insert((*id).to_owned(), reply).is_some())
            }
            ["reply", id, "failed", kind, error] => {
                let reply = PythonReply::Failed {
                    kind: (*kind).to_owned(),
                    error: (*error).to_owned(),
                };
                (id, replies.insert((*id).to_owned(), reply).is_some())
            }
            _ => panic!("call.py printed {line:?}:\n{stdout}"),
        };
        assert!(!previous, "{id} printed twice:\n{stdout}");
    }
    (sent, replies)
}
