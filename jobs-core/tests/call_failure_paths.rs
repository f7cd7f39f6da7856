//! Calls whose plumbing fails, on the in-memory broker and virtual time: the worker cannot
//! publish the reply, or the broker never confirms the request. Failures come through
//! [`Faulty`].

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobs_core::engine::{Engine, Observer};
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::Transport;
use jobs_core::{CallError, Error, JobContext, JobError, job};
use support::faulty::Faulty;

/// A number to double.
#[derive(Clone, PartialEq, prost::Message)]
struct Number {
    #[prost(uint32, tag = "1")]
    n: u32,
}

/// Handler runs.
#[derive(Debug, Default)]
struct Runs(AtomicUsize);

#[job(exchange = "engine.calls", routing_key = "double")]
async fn double(number: Number, ctx: JobContext) -> Result<Number, JobError> {
    ctx.state::<Arc<Runs>>()?.0.fetch_add(1, Ordering::Relaxed);
    Ok(Number { n: number.n * 2 })
}

struct Setup {
    faulty: Arc<Faulty>,
    runs: Arc<Runs>,
    recorder: Arc<Recorder>,
    engine: Engine,
}

async fn setup() -> Setup {
    let faulty = Arc::new(Faulty::default());
    let runs = Arc::new(Runs::default());
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::clone(&faulty) as Arc<dyn Transport>)
        .job(&double::JOB)
        .state(Arc::clone(&runs))
        .observer(Arc::clone(&recorder) as Arc<dyn Observer>)
        .start()
        .await
        .unwrap();
    Setup {
        faulty,
        runs,
        recorder,
        engine,
    }
}

impl Setup {
    fn runs(&self) -> usize {
        self.runs.0.load(Ordering::Relaxed)
    }

    /// Asserts that the job's queues hold nothing, settled or not.
    fn assert_queues_empty(&self) {
        let broker = &self.faulty.broker;
        assert_eq!(broker.queue_len(double::QUEUE), Some(0));
        assert_eq!(broker.unacked(double::QUEUE), 0);
        assert_eq!(broker.queue_len(double::ERROR_QUEUE), Some(0));
    }
}

/// The job ran and is done: its reply not getting out does not run it again or fail it. The
/// caller, which cannot tell a lost reply from a slow job, times out.
#[tokio::test(start_paused = true)]
async fn a_reply_that_cannot_be_published_leaves_the_job_done_and_the_caller_timing_out() {
    let s = setup().await;
    s.faulty.refuse_replies.store(true, Ordering::Relaxed);
    let timeout = Duration::from_secs(10);
    let result = double::call(&s.engine, Number { n: 2 })
        .timeout(timeout)
        .await;
    assert!(
        matches!(result, Err(CallError::Timeout { after }) if after == timeout),
        "{result:?}"
    );
    s.faulty.broker.until_idle().await;
    assert_eq!(s.runs(), 1, "the handler ran once");
    assert_eq!(
        s.recorder.count(&double::JOB, |o| *o == Outcome::Succeeded),
        1
    );
    s.assert_queues_empty();

    // The caller's reply channel is still good.
    s.faulty.refuse_replies.store(false, Ordering::Relaxed);
    let reply = double::call(&s.engine, Number { n: 3 }).await.unwrap();
    assert_eq!(reply.n, 6);
    s.engine.shutdown(Duration::from_secs(1)).await;
}

/// A request the broker never confirms fails the call after the producer's confirm timeout,
/// not the call's own (longer) timeout; the next call goes through.
#[tokio::test(start_paused = true)]
async fn a_request_the_broker_never_confirms_fails_after_the_confirm_timeout() {
    let s = setup().await;
    s.faulty.stall_requests.store(true, Ordering::Relaxed);
    let confirm_timeout = s.engine.producer().options().confirm_timeout;
    let started = tokio::time::Instant::now();
    let result = double::call(&s.engine, Number { n: 2 })
        .timeout(confirm_timeout * 4)
        .await;
    assert!(
        matches!(result, Err(CallError::Request(Error::Timeout { after })) if after == confirm_timeout),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), confirm_timeout);
    assert_eq!(s.runs(), 0, "the request never reached the broker");

    s.faulty.stall_requests.store(false, Ordering::Relaxed);
    let reply = double::call(&s.engine, Number { n: 5 }).await.unwrap();
    assert_eq!(reply.n, 10);
    s.faulty.broker.until_idle().await;
    assert_eq!(s.runs(), 1);
    s.assert_queues_empty();
    s.engine.shutdown(Duration::from_secs(1)).await;
}
