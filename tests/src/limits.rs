//! The concurrency-limit scenario, written once and run on every transport: three workers of
//! 32 handlers each serve a job with `max_running = 4`, and never run more than 4 of its
//! handlers together, while every job runs exactly once.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::transport::Transport;
use jobs_core::{JobError, State, job};
use tokio::sync::watch;

/// A numbered job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Limited {
    /// Its number.
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

/// The handlers running now across every engine, the most seen at once, and each job's runs.
#[derive(Debug)]
pub struct Running {
    now: AtomicUsize,
    most: AtomicUsize,
    runs: Mutex<BTreeMap<u32, u32>>,
    done: watch::Sender<usize>,
}

impl Default for Running {
    fn default() -> Self {
        Self {
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            runs: Mutex::default(),
            done: watch::channel(0).0,
        }
    }
}

/// The limit.
pub const MAX_RUNNING: usize = 4;

/// Four at once across every worker; each run takes 20 ms.
#[job(
    exchange = "tests.limits",
    routing_key = "limited",
    queue = "tests.limits.limited",
    concurrency = 32,
    max_running = 4,
    retries = 0
)]
pub async fn limited(job: Limited, running: State<Arc<Running>>) -> Result<(), JobError> {
    let now = running.now.fetch_add(1, Ordering::SeqCst) + 1;
    running.most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    running.now.fetch_sub(1, Ordering::SeqCst);
    *running
        .runs
        .lock()
        .map_err(|_| JobError::fatal("poisoned"))?
        .entry(job.n)
        .or_default() += 1;
    running.done.send_modify(|done| *done += 1);
    Ok(())
}

/// Jobs enqueued.
const JOBS: u32 = 200;

/// Three engines, each on a transport from `connect` (one connection each, as three worker
/// processes have).
pub async fn three_workers_never_run_more_than_the_limit<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let within = Duration::from_secs(120);
    let running = Arc::new(Running::default());
    let mut engines = Vec::new();
    for n in 0..3 {
        let transport = connect().await;
        let engine = Engine::builder(Arc::clone(&transport))
            .name(format!("worker-{n}"))
            .job(&limited::JOB)
            .state(Arc::clone(&running))
            .start()
            .await
            .expect("the engine starts");
        if n == 0 {
            transport.purge(limited::QUEUE).await.expect("purged");
        }
        engines.push(engine);
    }
    for n in 0..JOBS {
        limited::enqueue(&engines[0], Limited { n })
            .await
            .expect("enqueued");
    }
    let mut done = running.done.subscribe();
    tokio::time::timeout(within, done.wait_for(|done| *done >= JOBS as usize))
        .await
        .expect("every job runs")
        .expect("the sender lives");

    assert_eq!(
        running.most.load(Ordering::SeqCst),
        MAX_RUNNING,
        "at most the limit ran at once, and the limit was reached"
    );
    let runs = running.runs.lock().expect("not poisoned").clone();
    let expected: BTreeMap<u32, u32> = (0..JOBS).map(|n| (n, 1)).collect();
    assert_eq!(runs, expected, "every job ran exactly once");
    for engine in engines {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}
