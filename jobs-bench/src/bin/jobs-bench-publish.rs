//! `jobs-bench-publish`: one client publishing `--n` jobs with confirms and nothing else, for a
//! profiler. The publish measure of `jobs-bench` does the same between its other measures;
//! here the process does little besides, so that `valgrind --tool=callgrind` counts the
//! publishes: run it at two sizes and the difference, over the difference of jobs, is the
//! instructions one job costs (docs/performance.md, "Publish CPU").
//!
//! It declares the client's queue (the same queues `jobs-bench` uses), publishes one untimed
//! job to warm the connection and the producer's topology, empties the queue, publishes, prints
//! the rate and the CPU per job, and deletes the queues it used.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use jobs_bench::framework::Framework;
use jobs_bench::measure::timed;
use jobs_bench::raw::{IN_FLIGHT, Raw};
use jobs_bench::{ClientKind, QueueKind};
use jobs_core::testing::DEFAULT_BROKER_URL;
use jobs_core::transport::amqp::AmqpTransport;

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "jobs-bench-publish",
    about = "One client publishing jobs with confirms, for a profiler"
)]
struct Options {
    /// The client: `raw` (lapin) or `framework` (`#[job]`'s enqueue).
    #[arg(long)]
    client: ClientKind,
    /// The queue kind.
    #[arg(long, default_value = "classic")]
    queue: QueueKind,
    /// Jobs to publish.
    #[arg(long, default_value_t = 20_000)]
    n: u64,
    /// The producer tasks sharing the 1,000 publishes in flight, for either client, as in
    /// `jobs-bench`.
    #[arg(long, default_value_t = IN_FLIGHT)]
    producers: usize,
    /// The broker.
    #[arg(long, env = "JOBS_AMQP_URL", default_value = DEFAULT_BROKER_URL)]
    url: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(&Options::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jobs-bench-publish: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> anyhow::Result<()> {
    let kind = options.queue;
    let mut queues = Framework::queues(kind)?;
    queues.push(jobs_bench::raw::queue(kind));
    let published = publish(options).await;
    // Whatever happened, the shared broker keeps none of these queues.
    let deleted = Raw::delete(&options.url, &queues).await;
    let throughput = published?;
    deleted.context("deleting the queues")?;
    eprintln!(
        "jobs-bench-publish: {:?} on {}: {} jobs, {:.0} jobs/s, {:.1} µs CPU/job",
        options.client,
        kind.name(),
        options.n,
        throughput.jobs_per_sec,
        throughput.cpu_us_per_job
    );
    Ok(())
}

async fn publish(options: &Options) -> anyhow::Result<jobs_bench::measure::Throughput> {
    let (url, kind, n) = (options.url.as_str(), options.queue, options.n);
    match options.client {
        ClientKind::Raw => {
            let raw = Raw::connect(url, kind)
                .await
                .context("raw lapin")?
                .with_producers(options.producers);
            raw.publish(1, None).await?;
            raw.purge().await?;
            let (throughput, ()) = timed(n, raw.publish(n, None)).await?;
            raw.purge().await?;
            raw.close().await;
            Ok(throughput)
        }
        ClientKind::Framework => {
            let transport = AmqpTransport::builder(url)
                .connection_name("jobs-bench-publish")
                .connect()
                .await?;
            let transport = Arc::new(transport);
            let framework = Framework::new(transport.clone(), kind, options.producers).await?;
            framework.warm_up().await?;
            framework.purge().await?;
            let (throughput, ()) = timed(n, framework.publish(n, None)).await?;
            framework.purge().await?;
            transport.close().await;
            Ok(throughput)
        }
        ClientKind::Grpc => anyhow::bail!("`grpc` only answers calls; choose `raw` or `framework`"),
    }
}
