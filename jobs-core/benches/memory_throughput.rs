//! Jobs per second through enqueue, dispatch and ack on the in-memory broker.
//!
//! `cargo bench -p jobs-core --bench memory_throughput [-- JOBS RUNS]` prints the median of
//! RUNS runs (default 5) of JOBS no-op jobs (default 100,000).
#![allow(
    clippy::print_stdout,
    missing_docs,
    reason = "a benchmark binary that reports"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::engine::Engine;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, job};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Noop {
    #[prost(string, tag = "1")]
    pub payload: String,
}

#[job(exchange = "bench.memory", routing_key = "noop", concurrency = 256)]
async fn noop(_message: Noop) -> Result<(), JobError> {
    Ok(())
}

async fn run_once(jobs: usize) -> jobs_core::Result<Duration> {
    let broker = MemoryTransport::new();
    let engine = Engine::builder(Arc::new(broker.clone()))
        .job(&noop::JOB)
        .start()
        .await?;
    let payload = "x".repeat(80); // ~100-byte jobs with the envelope's framing
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

fn main() -> jobs_core::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // Two workers, as on the reference 2-core machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let mut rates = Vec::new();
    for run in 1..=runs {
        let elapsed = runtime.block_on(run_once(jobs))?;
        #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
        let rate = jobs as f64 / elapsed.as_secs_f64();
        println!("run {run}: {jobs} jobs in {elapsed:.3?} = {rate:.0} jobs/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "memory transport, enqueue -> dispatch -> ack: median {:.0} jobs/s over {runs} runs",
        rates[rates.len() / 2]
    );
    Ok(())
}
