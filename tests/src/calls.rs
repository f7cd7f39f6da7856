//! The call scenarios, written once and run on every transport: concurrent calls each get
//! their own reply, every failure kind reaches the caller typed, a call nobody can receive is
//! unroutable at once, and a reply that comes after the caller gave up is dropped.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use jobs_core::engine::Engine;
use jobs_core::envelope::{Envelope, Properties, header};
use jobs_core::transport::{Publish, Transport};
use jobs_core::{CallError, FailureKind, JobContext, JobError, Producer, job};

/// A question to the `answer` job; `ask` says how it behaves.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Question {
    /// `echo`, `fatal`, `flaky`, `always`, `panic` or `slow`.
    #[prost(string, tag = "1")]
    pub ask: String,
    /// Echoed back, to match replies with calls.
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

/// The `answer` job's reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Answer {
    /// What answered: `echo`, or `second` for a retried call.
    #[prost(string, tag = "1")]
    pub text: String,
    /// The question's `n`.
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

/// How long `slow` takes.
pub const SLOW: Duration = Duration::from_millis(1500);

/// A job that answers.
#[job(
    exchange = "tests.calls",
    routing_key = "answer",
    queue = "tests.calls.answer",
    retries = 2,
    backoff = "1s",
    timeout = "2s",
    concurrency = 100
)]
pub async fn answer(question: Question, ctx: JobContext) -> Result<Answer, JobError> {
    let n = question.n;
    match question.ask.as_str() {
        "fatal" => Err(JobError::fatal("refused for good")),
        "flaky" if ctx.attempt() < 2 => Err(JobError::retry("the first attempt fails")),
        "flaky" => Ok(Answer {
            text: "second".into(),
            n,
        }),
        "always" => Err(JobError::retry("fails every attempt")),
        "panic" => panic!("the handler panicked"),
        "slow" => {
            tokio::time::sleep(SLOW).await;
            Ok(Answer {
                text: "slow".into(),
                n,
            })
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Answer::default())
        }
        _ => Ok(Answer {
            text: "echo".into(),
            n,
        }),
    }
}

/// Engines serving [`answer()`] on one transport, and a caller's producer.
#[derive(Debug)]
pub struct CallSuite {
    /// The workers.
    pub engines: Vec<Engine>,
    /// The caller's producer.
    pub producer: Producer,
    /// The transport they share.
    pub transport: Arc<dyn Transport>,
}

impl CallSuite {
    /// Starts `workers` engines on `transport`, the job's queue emptied first.
    pub async fn start(transport: Arc<dyn Transport>, workers: usize) -> Self {
        let mut engines = Vec::new();
        for n in 0..workers {
            let engine = Engine::builder(Arc::clone(&transport))
                .name(format!("worker-{n}"))
                .job(&answer::JOB)
                .start()
                .await
                .expect("the engine starts");
            if n == 0 {
                transport.purge(answer::QUEUE).await.expect("purged");
            }
            engines.push(engine);
        }
        let producer = Producer::new(Arc::clone(&transport));
        Self {
            engines,
            producer,
            transport,
        }
    }

    /// Stops the engines.
    pub async fn shutdown(self) {
        for engine in self.engines {
            engine.shutdown(Duration::from_secs(5)).await;
        }
    }
}

fn ask(ask: &str, n: u32) -> Question {
    Question { ask: ask.into(), n }
}

/// `calls` calls at once each get the reply to their own question.
pub async fn concurrent_calls_each_get_their_reply(suite: &CallSuite, calls: u32) {
    let replies = join_all((0..calls).map(|n| async move {
        answer::call(&suite.producer, ask("echo", n))
            .timeout(Duration::from_secs(120))
            .await
    }))
    .await;
    for (n, reply) in (0..calls).zip(replies) {
        let reply = reply.unwrap_or_else(|err| panic!("call {n}: {err}"));
        assert_eq!(
            reply,
            Answer {
                text: "echo".into(),
                n
            }
        );
    }
}

fn failed(result: Result<Answer, CallError>) -> (FailureKind, String) {
    match result {
        Err(CallError::Failed { kind, error }) => (kind, error),
        other => panic!("expected a failure reply, got {other:?}"),
    }
}

/// A fatal error, exhausted retries, a panic and a handler timeout each reach the caller as
/// `CallError::Failed` with their kind; a retry within the deadline succeeds.
pub async fn failures_reach_the_caller_typed(suite: &CallSuite) {
    let call = |question| answer::call(&suite.producer, question);

    let (kind, error) = failed(call(ask("fatal", 1)).await);
    assert_eq!(
        (kind, error.as_str()),
        (FailureKind::Fatal, "refused for good")
    );

    let (kind, error) = failed(call(ask("always", 2)).await);
    assert_eq!(
        (kind, error.as_str()),
        (FailureKind::Handler, "fails every attempt")
    );

    let (kind, error) = failed(call(ask("panic", 3)).await);
    assert_eq!(kind, FailureKind::Panic, "{error}");
    assert!(error.contains("the handler panicked"), "{error}");

    // The handler's 2 s timeout, then a retry 1 s later: after the call's 2.5 s deadline, so
    // the attempt was the last, and the caller hears it now.
    let (kind, error) = failed(
        call(ask("hang", 4))
            .timeout(Duration::from_millis(2500))
            .await,
    );
    assert_eq!(kind, FailureKind::Timeout, "{error}");
    assert!(
        error.contains("not retried: the call's deadline"),
        "{error}"
    );

    // Retried once within the deadline: the second attempt's reply.
    let reply = call(ask("flaky", 5)).await.expect("a reply");
    assert_eq!(reply.text, "second");
}

/// A body the worker cannot decode and a job name it does not know come back as failure
/// replies on the wire, which any client reads: `x-jobs-reply = failed` and the kind.
pub async fn bad_requests_get_failure_replies(suite: &CallSuite) {
    let requester = suite.transport.requester().await.expect("a requester");
    let mut replies = requester.replies;
    let request = |id: &str, kind: &str, body: &'static [u8]| Publish {
        exchange: Cow::Borrowed(answer::JOB.exchange()),
        routing_key: Cow::Borrowed(answer::JOB.routing_key()),
        mandatory: true,
        envelope: Envelope {
            properties: Properties {
                kind: Some(Cow::Owned(kind.to_owned())),
                correlation_id: Some(id.to_owned()),
                message_id: Some(format!("bad-request-{id}")),
                ..Properties::default()
            },
            body: bytes::Bytes::from_static(body),
        },
    };
    requester
        .publisher
        .publish(request("decode", answer::JOB.name(), b"\xff\xff\xff"))
        .await
        .expect("published");
    requester
        .publisher
        .publish(request("unknown", "nobody-knows-me", b""))
        .await
        .expect("published");
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .expect("a reply in time")
            .expect("the channel is open");
        let headers = &reply.properties.headers;
        assert_eq!(headers.get_str(header::REPLY), Some("failed"));
        kinds.push((
            reply.properties.correlation_id.clone().unwrap_or_default(),
            headers
                .get_str(header::ERROR_KIND)
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("decode".to_owned(), "decode".to_owned()),
            ("unknown".to_owned(), "unknown-job".to_owned())
        ]
    );
    // Both failed jobs wait in the error queue, as any failed job does.
    let failed = suite
        .transport
        .purge(answer::ERROR_QUEUE)
        .await
        .expect("purged");
    assert!(failed >= 2, "{failed} in the error queue");
}

/// A call no queue is bound for fails as unroutable at once, not by timing out.
pub async fn a_call_nobody_can_receive_is_unroutable(suite: &CallSuite) {
    let result = answer::call(&suite.producer, ask("echo", 6))
        .routing_key("no-queue-is-bound-to-this")
        .timeout(Duration::from_secs(3600))
        .await;
    assert!(
        matches!(&result, Err(error) if error.is_unroutable()),
        "{result:?}"
    );
}

/// A call that gives up before the reply gets `Timeout`; the late reply is dropped, and the
/// next call gets its own reply.
pub async fn a_late_reply_is_dropped(suite: &CallSuite) {
    let result = answer::call(&suite.producer, ask("slow", 7))
        .timeout(SLOW / 3)
        .await;
    assert!(
        matches!(result, Err(CallError::Timeout { .. })),
        "{result:?}"
    );
    // Meanwhile the slow one finishes and its reply finds no caller.
    let reply = answer::call(&suite.producer, ask("slow", 8))
        .await
        .expect("a reply");
    assert_eq!(reply.n, 8);
}
