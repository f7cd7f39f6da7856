//! The rate-limit scenario, written once and run on every transport: three workers of 32
//! handlers serve a job with `rate = "50/s"`, and 1,000 jobs take at least 19.5 s, with no
//! second starting more than the rate allows.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::transport::Transport;
use jobs_core::{JobError, State, job};
use tokio::sync::watch;
use tokio::time::Instant;

/// A numbered job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Paced {
    /// Its number.
    #[prost(uint32, tag = "1")]
    pub n: u32,
}

/// When each job started.
#[derive(Debug)]
pub struct Starts {
    at: Mutex<BTreeMap<u32, Vec<Instant>>>,
    count: watch::Sender<usize>,
}

impl Default for Starts {
    fn default() -> Self {
        Self {
            at: Mutex::default(),
            count: watch::channel(0).0,
        }
    }
}

/// Fifty starts a second across every worker.
#[job(
    exchange = "tests.rates",
    routing_key = "paced",
    queue = "tests.rates.paced",
    concurrency = 32,
    rate = "50/s",
    retries = 0
)]
pub async fn paced(job: Paced, starts: State<Arc<Starts>>) -> Result<(), JobError> {
    starts
        .at
        .lock()
        .map_err(|_| JobError::fatal("poisoned"))?
        .entry(job.n)
        .or_default()
        .push(Instant::now());
    starts.count.send_modify(|count| *count += 1);
    Ok(())
}

/// Workers.
const WORKERS: usize = 3;

/// Three engines, each on a transport from `connect`, run `jobs` jobs: they take at least
/// `(jobs - burst) / 50` seconds, where the burst is what can be held ahead (one ticket ready
/// and one per worker), and no second holds more than 50 starts plus that burst.
pub async fn three_workers_keep_to_the_rate<F, Fut>(connect: F, jobs: u32)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Transport>>,
{
    let starts = Arc::new(Starts::default());
    let mut engines = Vec::new();
    let mut producer = None;
    for n in 0..WORKERS {
        let transport = connect().await;
        let engine = Engine::builder(Arc::clone(&transport))
            .name(format!("worker-{n}"))
            .job(&paced::JOB)
            .state(Arc::clone(&starts))
            .start()
            .await
            .expect("the engine starts");
        if n == 0 {
            transport.purge(paced::QUEUE).await.expect("purged");
            producer = Some(engine.producer().clone());
        }
        engines.push(engine);
    }
    let producer = producer.expect("three engines");
    for n in 0..jobs {
        paced::enqueue(&producer, Paced { n })
            .await
            .expect("enqueued");
    }
    let mut count = starts.count.subscribe();
    let within = Duration::from_secs(u64::from(jobs) / 50 * 3 + 30);
    tokio::time::timeout(within, count.wait_for(|count| *count >= jobs as usize))
        .await
        .expect("every job starts")
        .expect("the sender lives");

    let at = starts.at.lock().expect("not poisoned").clone();
    assert_eq!(at.len(), jobs as usize, "every job ran");
    assert!(at.values().all(|runs| runs.len() == 1), "each once");
    let mut times: Vec<Instant> = at.values().flatten().copied().collect();
    times.sort_unstable();
    let burst = 1 + WORKERS;
    let took = times[times.len() - 1] - times[0];
    let least = Duration::from_millis(u64::from(jobs) - burst as u64) * 20;
    assert!(took >= least, "{jobs} jobs took {took:?}, under {least:?}");
    // Any second: at most the rate and the burst.
    let most = times
        .iter()
        .enumerate()
        .map(|(i, start)| times[i..].partition_point(|t| *t < *start + Duration::from_secs(1)))
        .max()
        .unwrap_or(0);
    assert!(most <= 50 + burst, "{most} starts in one second");
    eprintln!("rate 50/s: {jobs} jobs started over {took:?}, at most {most} in a second");
    for engine in engines {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}
