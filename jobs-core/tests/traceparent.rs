//! W3C `traceparent` from producer to handler, on the in-memory broker.

use std::sync::Mutex;

use jobs_core::envelope::header::TRACEPARENT;
use jobs_core::testing::TestApp;
use jobs_core::{JobContext, JobError, TraceContext, job};

#[derive(Clone, PartialEq, prost::Message)]
struct Step {
    #[prost(uint32, tag = "1")]
    n: u32,
}

/// What the first handler saw.
static FIRST_SEEN: Mutex<Vec<TraceContext>> = Mutex::new(Vec::new());
/// What the follow-up handler saw.
static SEEN: Mutex<Vec<TraceContext>> = Mutex::new(Vec::new());
/// What each attempt of the flaky job saw.
static ATTEMPTS_SEEN: Mutex<Vec<TraceContext>> = Mutex::new(Vec::new());

#[job(exchange = "trace.test", routing_key = "first")]
async fn first(step: Step, ctx: JobContext) -> Result<(), JobError> {
    FIRST_SEEN.lock().unwrap().push(ctx.traceparent());
    second::enqueue(&ctx, Step { n: step.n + 1 })
        .await
        .map_err(JobError::retry)?;
    Ok(())
}

#[job(exchange = "trace.test", routing_key = "second")]
async fn second(_step: Step, ctx: JobContext) -> Result<(), JobError> {
    SEEN.lock().unwrap().push(ctx.traceparent());
    Ok(())
}

#[job(
    exchange = "trace.test",
    routing_key = "flaky",
    retries = 2,
    backoff = "1s"
)]
async fn flaky(_step: Step, ctx: JobContext) -> Result<(), JobError> {
    ATTEMPTS_SEEN.lock().unwrap().push(ctx.traceparent());
    if ctx.attempt() < 3 {
        return Err(JobError::retry("not yet"));
    }
    Ok(())
}

fn header(publish: &jobs_core::transport::Publish) -> TraceContext {
    let text = publish
        .envelope
        .properties
        .headers
        .get_str(TRACEPARENT)
        .expect("a traceparent header");
    assert_eq!(text.len(), 55, "{text}");
    assert!(text.starts_with("00-") && text.ends_with("-01"), "{text}");
    TraceContext::parse(text).expect("a valid traceparent")
}

#[tokio::test]
async fn a_follow_up_job_continues_the_trace_its_first_handler_started() {
    let app = TestApp::builder()
        .job(&first::JOB)
        .job(&second::JOB)
        .build()
        .unwrap();
    first::enqueue(&app, Step { n: 1 }).await.unwrap();
    first::enqueue(&app, Step { n: 10 }).await.unwrap();
    app.run_until_idle().await;

    // Outside any trace, an enqueue sets no traceparent: the handler starts the trace.
    for publish in app.enqueued(&first::JOB) {
        assert_eq!(
            publish.envelope.properties.headers.get_str(TRACEPARENT),
            None
        );
    }
    let roots = FIRST_SEEN.lock().unwrap().clone();
    assert_eq!(roots.len(), 2);
    assert_ne!(
        roots[0].trace_id(),
        roots[1].trace_id(),
        "each job starts its own trace"
    );

    let children: Vec<TraceContext> = app.enqueued(&second::JOB).iter().map(header).collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        let parent = roots
            .iter()
            .find(|root| root.trace_id() == child.trace_id())
            .expect("the follow-up carries its parent's trace id");
        assert_ne!(parent.span_id(), child.span_id());
    }
    // The follow-up's handler sees the context its message carried.
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for trace in &seen {
        assert!(children.contains(trace));
    }
    // Outside any handler there is no current context.
    assert_eq!(TraceContext::current(), None);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_of_a_job_runs_in_the_trace_of_the_first() {
    let app = TestApp::builder().job(&flaky::JOB).build().unwrap();
    flaky::enqueue(&app, Step { n: 1 }).await.unwrap();
    app.run_until_idle().await;

    let attempts = ATTEMPTS_SEEN.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3, "two failures, then a success");
    assert!(
        attempts.iter().all(|trace| *trace == attempts[0]),
        "{attempts:?}"
    );
}
