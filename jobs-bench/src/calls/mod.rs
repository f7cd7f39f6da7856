//! Request/reply calls: the framework's `my_job::call` against the same request and reply by
//! hand with raw lapin over direct reply-to, with tonic gRPC unary calls on loopback beside
//! them for reference.
//!
//! Each implementation answers the same ~100-byte protobuf request ([`BenchJob`]) with the same
//! message, echoed, from 1, 10 and 100 concurrent callers (`--callers`) sharing one client:
//!
//! * **framework**: `bench_call_*::call(&producer, job)` from one [`Producer`], served by an
//!   [`Engine`](jobs_core::engine::Engine) at concurrency (and so prefetch) 100 with the
//!   worker's metrics. Caller and worker have a transport each, as two processes would.
//! * **raw lapin** (module `raw`): the same wire by hand: the request persistent, `mandatory` and
//!   publisher-confirmed, with `reply_to` and a correlation id, from one confirm-mode channel
//!   that consumes `amq.rabbitmq.reply-to` with no-ack and matches replies by correlation id;
//!   a server consuming the queue at prefetch 100 with manual acks, which publishes each reply
//!   to the default exchange and then acks, on the same channel.
//! * **tonic gRPC** (module `grpc`): a unary call over one HTTP/2 connection on 127.0.0.1 to a
//!   server in the same process: no broker, nothing persisted, for reference.
//!
//! Per implementation and number of callers: calls/s over a fixed number of calls
//! (`--calls`, `--serial-calls` for a single caller), the p50 and p99 of each call's latency
//! (from before the call to its decoded reply), and the process's CPU per call: caller and
//! server both, since both run here. Raw lapin and the framework take turns going first at
//! each number of callers; tonic goes last.

mod grpc;
mod raw;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobError, Producer, job};
use tokio::task::JoinSet;

use crate::QueueKind;
use crate::framework::Framework;
use crate::measure::{Latency, Throughput, timed};
use crate::message::BenchJob;
use crate::plan::{ClientKind, Options, stall_limit};
use crate::raw::Raw;
use crate::report::{Caller, Samples};

/// Calls made, untimed, before each measurement: the framework's first call opens its reply
/// channel and declares the job's topology, and every connection warms up.
const WARM_UP: u64 = 500;

/// Answers a call on a classic queue: the request, echoed.
#[job(
    exchange = "bench.calls",
    routing_key = "classic",
    queue = "bench.calls.classic",
    queue_type = "classic",
    concurrency = 100
)]
async fn bench_call_classic(job: BenchJob) -> Result<BenchJob, JobError> {
    Ok(job)
}

/// Answers a call on a quorum queue: the request, echoed.
#[job(
    exchange = "bench.calls",
    routing_key = "quorum",
    queue = "bench.calls.quorum",
    queue_type = "quorum",
    concurrency = 100
)]
async fn bench_call_quorum(job: BenchJob) -> Result<BenchJob, JobError> {
    Ok(job)
}

/// The job answering calls on a queue of `kind`.
fn call_job(kind: QueueKind) -> &'static jobs_core::Job {
    match kind {
        QueueKind::Classic => &bench_call_classic::JOB,
        QueueKind::Quorum => &bench_call_quorum::JOB,
    }
}

/// Every queue the calls measure declares: its jobs' and raw lapin's, for the benchmark to
/// delete when it is done.
///
/// # Errors
///
/// When a job's topology cannot be listed.
pub(crate) fn queues() -> anyhow::Result<Vec<String>> {
    let mut queues = Vec::new();
    for kind in [QueueKind::Classic, QueueKind::Quorum] {
        queues.extend(Framework::job_queues(call_job(kind))?);
        queues.push(raw::queue(kind));
    }
    Ok(queues)
}

/// One way to make a call, shared by every caller task of a measurement.
pub(crate) trait Calling: Send + Sync + 'static {
    /// Sends request `seq` and waits for its reply, which must carry the same `seq`.
    fn call(&self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The framework's caller: `my_job::call` through one producer.
struct FrameworkCalls {
    producer: Producer,
    kind: QueueKind,
}

impl Calling for FrameworkCalls {
    async fn call(&self, seq: u64) -> anyhow::Result<()> {
        let request = BenchJob::new(seq);
        let reply = match self.kind {
            QueueKind::Classic => bench_call_classic::call(&self.producer, request).await?,
            QueueKind::Quorum => bench_call_quorum::call(&self.producer, request).await?,
        };
        ensure!(
            reply.seq == seq,
            "call {seq} got the reply to {}",
            reply.seq
        );
        Ok(())
    }
}

/// Every implementation's calls on each queue kind of the plan, at each number of callers.
///
/// # Errors
///
/// When a server cannot start, a call fails, or a measurement stalls.
pub(crate) async fn measure(
    options: &Options,
    run: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let clients = |client| options.clients.contains(&client);
    for &kind in &options.queues {
        let queue = kind.name();
        let mut stale = Framework::job_queues(call_job(kind))?;
        stale.push(raw::queue(kind));
        Raw::delete(&options.url, &stale)
            .await
            .context("raw lapin")?;

        // The worker and the caller each have a transport, as two processes would.
        let connect = |name: &'static str| {
            AmqpTransport::builder(options.url.as_str())
                .connection_name(name)
                .connect()
        };
        let worker_transport = Arc::new(connect("jobs-bench calls worker").await?);
        let caller_transport = Arc::new(connect("jobs-bench calls caller").await?);
        let worker = Framework::for_job(worker_transport.clone(), call_job(kind), 1).await?;
        let engine = worker.consume().await?;
        let framework = Arc::new(FrameworkCalls {
            producer: Producer::new(caller_transport.clone()),
            kind,
        });
        let raw = raw::RawCalls::start(&options.url, kind)
            .await
            .context("raw lapin calls")?;
        let raw_client = raw.client();
        let grpc = grpc::GrpcCalls::start().await.context("tonic")?;
        let grpc_client = grpc.client();

        for &callers in &options.callers {
            let calls = if callers == 1 {
                options.serial_calls
            } else {
                options.calls
            };
            let mut add = |caller, (throughput, latency): (Throughput, Latency)| {
                samples.add_call(
                    queue,
                    callers,
                    ("rate", "calls/s"),
                    caller,
                    throughput.jobs_per_sec,
                );
                samples.add_call(
                    queue,
                    callers,
                    ("p50 latency", "µs"),
                    caller,
                    latency.p50_us,
                );
                samples.add_call(
                    queue,
                    callers,
                    ("p99 latency", "µs"),
                    caller,
                    latency.p99_us,
                );
                samples.add_call(
                    queue,
                    callers,
                    ("CPU per call", "µs/call"),
                    caller,
                    throughput.cpu_us_per_job,
                );
            };
            // Alternate which goes first, so neither always meets a warmer broker.
            let mut order = [ClientKind::Raw, ClientKind::Framework];
            if run % 2 == 1 {
                order.reverse();
            }
            for client in order.into_iter().filter(|&c| clients(c)) {
                match client {
                    ClientKind::Raw => {
                        add(Caller::Raw, drive(&raw_client, calls, callers).await?);
                    }
                    ClientKind::Framework => {
                        add(Caller::Framework, drive(&framework, calls, callers).await?);
                    }
                    ClientKind::Grpc => {}
                }
            }
            if clients(ClientKind::Grpc) {
                add(Caller::Grpc, drive(&grpc_client, calls, callers).await?);
            }
            eprintln!("jobs-bench: calls on {queue} with {callers} callers done");
        }

        grpc.stop().await;
        raw.stop().await?;
        Framework::stop(engine).await;
        let left = worker.ready().await?;
        ensure!(
            left == 0,
            "{left} requests left in {}",
            worker.job().queue()
        );
        caller_transport.close().await;
        worker_transport.close().await;
    }
    Ok(())
}

/// [`WARM_UP`] calls, then `calls` calls timed, each of `callers` tasks calling one at a time:
/// the calls' rate and CPU, and their latencies.
async fn drive<C: Calling>(
    caller: &Arc<C>,
    calls: u64,
    callers: usize,
) -> anyhow::Result<(Throughput, Latency)> {
    call_all(caller, WARM_UP, callers).await?;
    let (throughput, latencies) = timed(calls, call_all(caller, calls, callers)).await?;
    Ok((throughput, Latency::of(latencies)))
}

/// Calls `0..calls` from `callers` tasks, each taking the next number when its call returns;
/// each call's latency in nanoseconds, in no order.
async fn call_all<C: Calling>(
    caller: &Arc<C>,
    calls: u64,
    callers: usize,
) -> anyhow::Result<Vec<u64>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..callers.max(1) {
        let (caller, next) = (Arc::clone(caller), Arc::clone(&next));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= calls {
                    return anyhow::Ok(latencies);
                }
                let start = Instant::now();
                caller
                    .call(seq)
                    .await
                    .with_context(|| format!("call {seq}"))?;
                latencies.push(nanos(start.elapsed()));
            }
        });
    }
    let limit = stall_limit(calls);
    let joined = tokio::time::timeout(limit, async {
        let mut all = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
        while let Some(task) = tasks.join_next().await {
            all.extend(task??);
        }
        anyhow::Ok(all)
    })
    .await
    .map_err(|_| anyhow!("{calls} calls from {callers} callers not done after {limit:?}"))?;
    // Dropping the set on an error aborts the other callers.
    joined
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers at once, counting its calls.
    #[derive(Default)]
    struct Echo {
        calls: AtomicU64,
    }

    impl Calling for Echo {
        async fn call(&self, _seq: u64) -> anyhow::Result<()> {
            tokio::task::yield_now().await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_call_is_made_once_whatever_the_callers() {
        for callers in [1, 7, 100, 300] {
            let echo = Arc::new(Echo::default());
            let latencies = call_all(&echo, 250, callers).await.unwrap();
            assert_eq!(latencies.len(), 250);
            assert_eq!(echo.calls.load(Ordering::Relaxed), 250);
        }
    }

    /// Fails call 3.
    struct Failing;

    impl Calling for Failing {
        async fn call(&self, seq: u64) -> anyhow::Result<()> {
            ensure!(seq != 3, "refused");
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_call_fails_the_measurement() {
        let error = call_all(&Arc::new(Failing), 10, 2).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("call 3: refused"),
            "{error:#}"
        );
    }

    #[test]
    fn the_call_jobs_are_the_benchmarks_own() {
        for kind in [QueueKind::Classic, QueueKind::Quorum] {
            let queues = Framework::job_queues(call_job(kind)).unwrap();
            assert!(
                queues.iter().all(|q| q.starts_with("bench.calls.")),
                "{queues:?}"
            );
            assert!(raw::queue(kind).starts_with("bench.calls."));
        }
    }
}
