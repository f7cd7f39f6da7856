//! The delay scenarios, written once and run on every transport: delayed jobs start when
//! due, a long delay waits in its level, `retry_after` waits exactly its delay, and a job that
//! passes the same level again and again is never dropped.
//!
//! On the in-memory broker under a paused clock, delays are exact; on RabbitMQ a job starts
//! within [`DelaySuite::tolerance`] after it is due, or up to 1 % of its delay before, while
//! Erlang corrects its clock after the machine's was stepped.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::sync::Arc;
use std::time::Duration;

use jobs_core::delay;
use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorded, Recorder};
use jobs_core::transport::Transport;
use jobs_core::{JobContext, JobError, job};

/// What the delayed job does: fail `retries` attempts asking for a retry after
/// `retry_after_secs`, then succeed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Later {
    /// How many attempts fail.
    #[prost(uint32, tag = "1")]
    pub retries: u32,
    /// The delay each failed attempt asks for, in seconds.
    #[prost(uint32, tag = "2")]
    pub retry_after_secs: u32,
}

/// The job the delay scenarios run.
#[job(
    exchange = "tests.delays",
    routing_key = "later",
    queue = "tests.delays.later",
    retries = 6,
    backoff = "100ms",
    timeout = "5s",
    concurrency = 64
)]
pub async fn later(work: Later, ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() <= work.retries {
        return Err(JobError::retry_after(
            format!("attempt {} asks to wait", ctx.attempt()),
            Duration::from_secs(u64::from(work.retry_after_secs)),
        ));
    }
    Ok(())
}

/// An engine serving [`later()`] on one transport.
#[derive(Debug)]
pub struct DelaySuite {
    /// The running engine; enqueue through it.
    pub engine: Engine,
    /// The transport it runs on.
    pub transport: Arc<dyn Transport>,
    /// Its events.
    pub recorder: Arc<Recorder>,
    /// How late a delayed job may start (zero on virtual time).
    pub tolerance: Duration,
}

impl DelaySuite {
    /// Starts the engine on `transport`, its queues emptied first (a broker may hold what an
    /// earlier run left).
    pub async fn start(transport: Arc<dyn Transport>, tolerance: Duration) -> Self {
        let recorder = Arc::new(Recorder::new());
        let engine = Engine::builder(Arc::clone(&transport))
            .job(&later::JOB)
            .observer(Arc::clone(&recorder) as _)
            .start()
            .await
            .expect("the engine starts");
        transport.purge(later::QUEUE).await.expect("purged");
        Self {
            engine,
            transport,
            recorder,
            tolerance,
        }
    }

    /// How long a scenario may wait for an outcome: its longest delay, and a margin.
    fn within(&self, longest: Duration) -> Duration {
        longest + self.tolerance + Duration::from_secs(30)
    }

    async fn finished(&self, id: &str, longest: Duration) -> Vec<Recorded> {
        self.recorder
            .finished(id, self.within(longest))
            .await
            .unwrap_or_else(|_| panic!("job {id} finished within {:?}", self.within(longest)))
    }

    fn assert_on_time(&self, what: &str, waited: Duration, due: Duration) {
        // On a real clock (a tolerance above zero) a delay is the broker's queue TTL, timed by
        // Erlang's clock. After the machine's clock is stepped, Erlang corrects its own by
        // running up to 1 % fast or slow until it agrees again (`time_correction`, seen here:
        // 678 ms behind the OS, catching up 11 ms a second), so a job may start that much early
        // by this test's clock. On virtual time, delays are exact.
        let early = if self.tolerance.is_zero() {
            Duration::ZERO
        } else {
            due / 100
        };
        assert!(
            waited + early >= due && waited <= due + self.tolerance,
            "{what}: started {waited:?} after, for a delay of {due:?} (tolerance {:?})",
            self.tolerance
        );
    }
}

/// The recorder's time now.
fn now(suite: &DelaySuite) -> Duration {
    suite.recorder.elapsed()
}

fn starts(events: &[Recorded]) -> Vec<Duration> {
    events
        .iter()
        .filter(|e| e.outcome == Outcome::Started)
        .map(|e| e.at)
        .collect()
}

/// Jobs delayed 0 to 5 s, enqueued longest first, each start when due: a long delay never
/// holds back a short one.
pub async fn delayed_jobs_start_when_due(suite: &DelaySuite) {
    let delays = [5, 3, 4, 1, 2, 0].map(Duration::from_secs);
    let mut sent = Vec::new();
    for delay in delays {
        let at = now(suite);
        let id = later::with(Later::default())
            .delay(delay)
            .enqueue(&suite.engine)
            .await
            .expect("a delayed enqueue");
        sent.push((id.to_string(), at, delay));
    }
    for (id, at, delay) in sent {
        let events = suite.finished(&id, delay).await;
        let started = starts(&events)[0];
        suite.assert_on_time(&format!("a job delayed {delay:?}"), started - at, delay);
    }
}

/// Many jobs over many distinct delays, enqueued at once in a shuffled order: each starts
/// within the tolerance after it is due. At full size (`JOBS_FAULTS_FULL`), 2,000 jobs over
/// 200 delays up to 600 s; otherwise 200 jobs over 20 delays up to 10 s.
pub async fn many_delays_each_start_on_time(suite: &DelaySuite) {
    let (jobs, distinct, longest) = if std::env::var_os("JOBS_FAULTS_FULL").is_some() {
        (2_000_u64, 200_u64, 600_u64)
    } else {
        (200, 20, 10)
    };
    let mut sent = Vec::new();
    for n in 0..jobs {
        // A stride coprime with the count of delays visits them all in a scrambled order.
        let delay = Duration::from_secs((n * 7 % distinct) * longest / (distinct - 1));
        let at = now(suite);
        let id = later::with(Later::default())
            .delay(delay)
            .enqueue(&suite.engine)
            .await
            .expect("a delayed enqueue");
        sent.push((id.to_string(), at, delay));
    }
    let mut late = Duration::ZERO;
    for (id, at, delay) in sent {
        let events = suite.finished(&id, delay).await;
        let started = starts(&events)[0] - at;
        suite.assert_on_time(&format!("a job delayed {delay:?}"), started, delay);
        late = late.max(started - delay);
    }
    eprintln!(
        "{jobs} jobs over {distinct} delays up to {longest} s: the latest started {late:?} after due"
    );
}

/// A delay of 2^27 s is accepted and waits in level 27.
pub async fn the_longest_level_takes_its_delay(suite: &DelaySuite) {
    let queue = delay::level_name(27);
    let before = suite
        .transport
        .message_count(&queue)
        .await
        .expect("a count");
    later::with(Later::default())
        .delay(Duration::from_secs(1 << 27))
        .enqueue(&suite.engine)
        .await
        .expect("a delay of 2^27 s is accepted");
    assert_eq!(
        suite
            .transport
            .message_count(&queue)
            .await
            .expect("a count"),
        before + 1
    );
    // It would wait four years: taken out again.
    suite.transport.purge(&queue).await.expect("purged");
    let err = later::with(Later::default())
        .delay(delay::MAX_DELAY + Duration::from_secs(1))
        .enqueue(&suite.engine)
        .await
        .expect_err("over the longest delay");
    assert!(err.to_string().contains("longest"), "{err}");
}

/// `retry_after(3 s)` waits exactly 3 s (to the second), not a backoff step.
pub async fn retry_after_waits_its_delay(suite: &DelaySuite) {
    let work = Later {
        retries: 1,
        retry_after_secs: 3,
    };
    let id = later::enqueue(&suite.engine, work)
        .await
        .expect("enqueued")
        .to_string();
    let events = suite.finished(&id, Duration::from_secs(3)).await;
    let starts = starts(&events);
    assert_eq!(starts.len(), 2, "{events:?}");
    suite.assert_on_time("the retry", starts[1] - starts[0], Duration::from_secs(3));
    let retried = events
        .iter()
        .find_map(|e| match &e.outcome {
            Outcome::Retried { delay, .. } => Some(*delay),
            _ => None,
        })
        .expect("a retry");
    assert_eq!(retried, Duration::from_secs(3));
}

/// A job delayed 1 s, then retried after 1 s four times, passes level 0 five times with the
/// same message: each pass arrives (its dead-lettering headers from the pass before are
/// dropped as it enters again, or RabbitMQ would take it for a cycle and drop it).
pub async fn the_same_level_five_times_never_drops_the_job(suite: &DelaySuite) {
    let work = Later {
        retries: 4,
        retry_after_secs: 1,
    };
    let at = now(suite);
    let id = later::with(work)
        .delay(Duration::from_secs(1))
        .enqueue(&suite.engine)
        .await
        .expect("enqueued")
        .to_string();
    let events = suite.finished(&id, Duration::from_secs(5)).await;
    let starts = starts(&events);
    assert_eq!(starts.len(), 5, "{events:?}");
    suite.assert_on_time("the first attempt", starts[0] - at, Duration::from_secs(1));
    for pair in starts.windows(2) {
        suite.assert_on_time("a retry", pair[1] - pair[0], Duration::from_secs(1));
    }
    assert_eq!(events.last().map(|e| &e.outcome), Some(&Outcome::Succeeded));
}
