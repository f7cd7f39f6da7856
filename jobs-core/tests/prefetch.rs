//! A prefetch above the concurrency: more deliveries held, no more handlers running.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
struct Work {}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

#[job(exchange = "prefetch.test", routing_key = "work")]
async fn work(_work: Work) -> Result<(), JobError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_stay_within_the_concurrency() {
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::new(MemoryTransport::new()))
        .job(&work::JOB)
        .observer(Arc::clone(&recorder) as _)
        .concurrency(2)
        .prefetch(8)
        .start()
        .await
        .unwrap();
    for _ in 0..12 {
        work::enqueue(&engine, Work {}).await.unwrap();
    }
    recorder
        .wait_until(Duration::from_secs(10), || {
            (recorder.count(&work::JOB, |o| *o == Outcome::Succeeded) == 12).then_some(())
        })
        .await
        .expect("every job ran");
    assert_eq!(MOST.load(Ordering::SeqCst), 2);
    engine.shutdown(Duration::from_secs(1)).await;
}
