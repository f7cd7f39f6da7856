//! Jobs per second through enqueue, dispatch and ack on the in-memory broker, against a bare
//! baseline measured in the same run.
//!
//! `cargo bench -p jobs-core --bench memory_throughput [-- JOBS RUNS]` runs, RUNS times (default
//! 5), JOBS no-op jobs (default 100,000) through the in-memory broker and then the same number
//! through the baseline, and prints each one's median and the ratio memory/baseline. The
//! baseline is the least a broker-less job system can do: the same protobuf bytes `enqueue`
//! publishes, encoded per job, sent down a tokio channel to a loop that spawns a task per message
//! to decode it. `JOBS_BENCH_ONLY=memory` or `=baseline` runs one side alone, and
//! `JOBS_BENCH_RUNTIME=current_thread` both on tokio's current-thread runtime (what
//! `#[tokio::test]` uses) in place of two worker threads.
#![allow(
    clippy::print_stdout,
    missing_docs,
    reason = "a benchmark binary that reports"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jobs_core::engine::Engine;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, job};
use prost::Message as _;
use tokio::sync::{Notify, mpsc};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Noop {
    #[prost(string, tag = "1")]
    pub payload: String,
}

#[job(exchange = "bench.memory", routing_key = "noop", concurrency = 256)]
async fn noop(_message: Noop) -> Result<(), JobError> {
    Ok(())
}

/// ~100-byte jobs with the envelope's framing.
fn payload() -> String {
    "x".repeat(80)
}

async fn run_once(jobs: usize) -> jobs_core::Result<Duration> {
    let broker = MemoryTransport::new();
    let engine = Engine::builder(Arc::new(broker.clone()))
        .job(&noop::JOB)
        .start()
        .await?;
    let payload = payload();
    let started = Instant::now();
    for _ in 0..jobs {
        noop::enqueue(
            &engine,
            Noop {
                payload: payload.clone(),
            },
        )
        .await?;
    }
    broker.until_idle().await;
    let elapsed = started.elapsed();
    engine.shutdown(Duration::from_secs(1)).await;
    Ok(elapsed)
}

/// The bare baseline: encode as `enqueue` does, send, and decode in a task of its own.
async fn baseline_once(jobs: usize) -> Duration {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Bytes>();
    let done = Arc::new((AtomicUsize::new(0), Notify::new()));
    let consumer = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            while let Some(body) = receiver.recv().await {
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    let decoded = Noop::decode(body);
                    std::hint::black_box(decoded.is_ok());
                    if done.0.fetch_add(1, Ordering::AcqRel) + 1 == jobs {
                        done.1.notify_one();
                    }
                });
            }
        })
    };
    let payload = payload();
    let started = Instant::now();
    for _ in 0..jobs {
        let message = Noop {
            payload: payload.clone(),
        };
        let mut body = Vec::with_capacity(message.encoded_len());
        if message.encode(&mut body).is_err() {
            continue;
        }
        if sender.send(Bytes::from(body)).is_err() {
            break;
        }
        // As the in-memory publish does, so that the consumer is not starved on its runtime.
        tokio::task::coop::consume_budget().await;
    }
    while done.0.load(Ordering::Acquire) < jobs {
        done.1.notified().await;
    }
    let elapsed = started.elapsed();
    drop(sender);
    let _ = consumer.await;
    elapsed
}

fn rate(jobs: usize, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let jobs = jobs as f64;
    jobs / elapsed.as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> jobs_core::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    // Two workers, as on the reference 2-core machine; or, with JOBS_BENCH_RUNTIME set to
    // `current_thread`, the one thread of `#[tokio::test]`'s default runtime.
    let current_thread = std::env::var("JOBS_BENCH_RUNTIME").is_ok_and(|r| r == "current_thread");
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    };
    let runtime = builder
        .enable_time()
        .build()
        .map_err(|e| jobs_core::Error::Config(e.to_string()))?;
    // With the `otel` feature and JOBS_BENCH_OTEL set, every job makes its producer and
    // consumer spans with the SDK (sampled, recorded, dropped at the end: no exporter), the cost
    // of tracing on.
    #[cfg(feature = "otel")]
    let _provider = std::env::var_os("JOBS_BENCH_OTEL").map(|_| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        jobs_core::otel::set_tracer_provider(&provider);
        provider
    });
    // JOBS_BENCH_ONLY=memory or =baseline runs one side alone, for a profile of it.
    let only = std::env::var("JOBS_BENCH_ONLY").unwrap_or_default();
    let (mut memory, mut baseline) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        if only != "baseline" {
            let elapsed = runtime.block_on(run_once(jobs))?;
            let rate = rate(jobs, elapsed);
            println!("run {run}: memory   {jobs} jobs in {elapsed:.3?} = {rate:.0} jobs/s");
            memory.push(rate);
        }
        if only != "memory" {
            let elapsed = runtime.block_on(baseline_once(jobs));
            let rate = rate(jobs, elapsed);
            println!("run {run}: baseline {jobs} jobs in {elapsed:.3?} = {rate:.0} jobs/s");
            baseline.push(rate);
        }
    }
    let (memory, baseline) = (median(memory), median(baseline));
    println!(
        "memory transport, enqueue -> dispatch -> ack: median {memory:.0} jobs/s over {runs} runs"
    );
    println!("baseline, channel -> spawn -> decode: median {baseline:.0} jobs/s over {runs} runs");
    if memory > 0.0 && baseline > 0.0 {
        println!("memory/baseline: {:.2}", memory / baseline);
    }
    Ok(())
}
