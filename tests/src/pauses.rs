//! The pause scenario, written once and run on every transport: a pause stops every worker,
//! nothing runs while it holds, a worker started meanwhile starts paused, and a resume brings
//! them all back without losing or repeating a job.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::control;
use jobs_core::engine::Engine;
use jobs_core::transport::Transport;
use jobs_core::{JobError, State, job};
use tokio::sync::watch;

/// A numbered job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Numbered {
    /// Its number.
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

/// How many times each job ran.
#[derive(Debug)]
pub struct Runs {
    counts: Mutex<BTreeMap<u32, u32>>,
    total: watch::Sender<usize>,
}

impl Default for Runs {
    fn default() -> Self {
        Self {
            counts: Mutex::default(),
            total: watch::channel(0).0,
        }
    }
}

impl Runs {
    /// Waits until `n` runs in all, `within` at most.
    async fn until(&self, n: usize, within: Duration) {
        let mut total = self.total.subscribe();
        tokio::time::timeout(within, total.wait_for(|runs| *runs >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} runs did not happen within {within:?}"))
            .expect("the sender lives in `self`");
    }

    fn total(&self) -> usize {
        *self.total.borrow()
    }
}

/// A job that counts its runs.
#[job(
    exchange = "tests.pauses",
    routing_key = "pausable",
    queue = "tests.pauses.pausable",
    concurrency = 4,
    retries = 0
)]
pub async fn pausable(job: Numbered, runs: State<Arc<Runs>>) -> Result<(), JobError> {
    let mut counts = runs
        .counts
        .lock()
        .map_err(|_| JobError::fatal("poisoned"))?;
    *counts.entry(job.n).or_default() += 1;
    runs.total.send_modify(|total| *total += 1);
    Ok(())
}

/// Jobs enqueued in each batch.
const BATCH: u32 = 50;

async fn engine(transport: &Arc<dyn Transport>, runs: &Arc<Runs>, name: &str) -> Engine {
    Engine::builder(Arc::clone(transport))
        .name(name)
        .job(&pausable::JOB)
        .state(Arc::clone(runs))
        .start()
        .await
        .expect("the engine starts")
}

async fn enqueue(engine: &Engine, numbers: std::ops::Range<u32>) {
    for n in numbers {
        pausable::enqueue(engine, Numbered { n })
            .await
            .expect("enqueued");
    }
}

/// Waits until `check` holds, looking every 10 ms (virtual on a paused clock), `within` at
/// most.
async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(within, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} within {within:?}");
}

/// Two workers serve the job; a pause stops both within `stop_within` (on the broker's
/// news), the jobs enqueued meanwhile wait in the queue, a third worker started while paused
/// starts paused, and a resume runs every job exactly once.
pub async fn a_pause_holds_every_worker_until_resumed(
    transport: Arc<dyn Transport>,
    stop_within: Duration,
) {
    let within = Duration::from_secs(60);
    let job = pausable::JOB.name();
    // Whatever an earlier run left.
    control::resume(transport.as_ref(), job)
        .await
        .expect("resumed");
    let runs = Arc::new(Runs::default());
    let first = engine(&transport, &runs, "first").await;
    let second = engine(&transport, &runs, "second").await;
    transport.purge(pausable::QUEUE).await.expect("purged");

    enqueue(&first, 0..BATCH).await;
    runs.until(BATCH as usize, within).await;

    control::pause(transport.as_ref(), job)
        .await
        .expect("paused");
    until("both workers hear of the pause", stop_within, async || {
        first.is_paused(&pausable::JOB) && second.is_paused(&pausable::JOB)
    })
    .await;
    assert!(first.is_ready() && second.is_ready(), "paused is ready");
    let third = engine(&transport, &runs, "third").await;
    assert!(third.is_paused(&pausable::JOB), "a worker starts paused");
    enqueue(&third, BATCH..2 * BATCH).await;
    // Every job of the second batch waits in the queue: no consumer took one.
    until("the second batch waits in the queue", within, async || {
        transport.message_count(pausable::QUEUE).await.ok() == Some(u64::from(BATCH))
    })
    .await;
    assert_eq!(runs.total(), BATCH as usize, "nothing ran while paused");
    assert!(
        control::is_paused(transport.as_ref(), job)
            .await
            .expect("read")
    );

    control::resume(transport.as_ref(), job)
        .await
        .expect("resumed");
    runs.until(2 * BATCH as usize, within).await;
    for engine in [&first, &second, &third] {
        assert!(!engine.is_paused(&pausable::JOB));
    }
    let counts = runs.counts.lock().expect("not poisoned").clone();
    let expected: BTreeMap<u32, u32> = (0..2 * BATCH).map(|n| (n, 1)).collect();
    assert_eq!(counts, expected, "every job ran exactly once");
    for engine in [first, second, third] {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}
