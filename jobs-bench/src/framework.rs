//! The framework: `#[job]` enqueues from concurrent producers, and an engine running a no-op
//! job at the raw consumer's prefetch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use jobs_core::engine::Engine;
use jobs_core::topology::Topology;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{Job, JobDefaults, JobError, JobSettings, Producer, job};
use jobs_worker::Metrics;

use crate::QueueKind;
use crate::message::BenchJob;
use crate::pace::Pacer;
use crate::raw::{IN_FLIGHT, PREFETCH};
use crate::sink::SINK;

/// The no-op job on a classic queue.
#[job(
    exchange = "jobs_bench",
    routing_key = "classic",
    queue = "jobs_bench.classic",
    queue_type = "classic",
    concurrency = 100
)]
async fn bench_classic(job: BenchJob) -> Result<(), JobError> {
    SINK.record(&job);
    Ok(())
}

/// The no-op job on a quorum queue.
#[job(
    exchange = "jobs_bench",
    routing_key = "quorum",
    queue = "jobs_bench.quorum",
    queue_type = "quorum",
    concurrency = 100
)]
async fn bench_quorum(job: BenchJob) -> Result<(), JobError> {
    SINK.record(&job);
    Ok(())
}

/// The framework on one transport and queue kind.
#[derive(Debug)]
pub struct Framework {
    transport: Arc<dyn Transport>,
    producer: Producer,
    job: &'static Job,
    queue: &'static str,
    /// Producer tasks sharing the publish window.
    producers: usize,
}

impl Framework {
    /// The queues of the job measured on `kind`: its work, retry and error queues.
    ///
    /// # Errors
    ///
    /// Never for the bench's jobs, whose topology is valid.
    pub fn queues(kind: QueueKind) -> anyhow::Result<Vec<String>> {
        let job = match kind {
            QueueKind::Classic => &bench_classic::JOB,
            QueueKind::Quorum => &bench_quorum::JOB,
        };
        let settings = JobSettings::resolve(job, &JobDefaults::default());
        let topology = Topology::for_jobs([&settings])?;
        Ok(topology
            .queues
            .into_iter()
            .map(|queue| queue.name)
            .collect())
    }

    /// Declares the job's topology on `transport` and empties its queue.
    ///
    /// # Errors
    ///
    /// When the broker refuses the topology.
    pub async fn new(
        transport: Arc<dyn Transport>,
        kind: QueueKind,
        producers: usize,
    ) -> anyhow::Result<Self> {
        let (job, queue) = match kind {
            QueueKind::Classic => (&bench_classic::JOB, bench_classic::QUEUE),
            QueueKind::Quorum => (&bench_quorum::JOB, bench_quorum::QUEUE),
        };
        let settings = JobSettings::resolve(job, &JobDefaults::default());
        let topology = Topology::for_jobs([&settings])?;
        transport
            .declare(&topology, Declare::Create)
            .await
            .with_context(|| format!("declaring {queue}"))?;
        transport.purge(queue).await?;
        Ok(Self {
            producer: Producer::new(Arc::clone(&transport)),
            transport,
            job,
            queue,
            producers: producers.clamp(1, IN_FLIGHT),
        })
    }

    /// Enqueues jobs `0..count` and returns once each `enqueue` returned `Ok`: unpaced, from
    /// the configured producer tasks sharing [`IN_FLIGHT`] enqueues in flight (by default
    /// 1,000 tasks with one each, as request handlers would); paced, from one task per job.
    ///
    /// # Errors
    ///
    /// The first enqueue error.
    pub async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()> {
        let mut producers = Vec::new();
        match pacer {
            None => {
                // `producers` tasks share the window, each with its share of enqueues in flight.
                let next = Arc::new(AtomicU64::new(0));
                let window = (IN_FLIGHT / self.producers).max(1);
                for _ in 0..self.producers {
                    let (next, producer, job) =
                        (Arc::clone(&next), self.producer.clone(), self.job);
                    producers.push(tokio::spawn(async move {
                        let mut in_flight = FuturesUnordered::new();
                        loop {
                            while in_flight.len() < window {
                                let seq = next.fetch_add(1, Ordering::Relaxed);
                                if seq >= count {
                                    break;
                                }
                                in_flight.push(enqueue(job, &producer, seq));
                            }
                            match in_flight.next().await {
                                Some(enqueued) => enqueued?,
                                None => return Ok(()),
                            }
                        }
                    }));
                }
            }
            Some(pacer) => {
                for seq in 0..count {
                    pacer.until_due(seq).await;
                    let (producer, job) = (self.producer.clone(), self.job);
                    producers.push(tokio::spawn(
                        async move { enqueue(job, &producer, seq).await },
                    ));
                }
            }
        }
        for producer in producers {
            producer.await??;
        }
        Ok(())
    }

    /// Starts a worker engine for the job, at concurrency (and so prefetch) [`PREFETCH`], with
    /// the worker binary's metrics observing every event, as `jobs-worker` runs it.
    ///
    /// # Errors
    ///
    /// When the engine cannot start.
    pub async fn consume(&self) -> anyhow::Result<Engine> {
        Ok(Engine::builder(Arc::clone(&self.transport))
            .job(self.job)
            .observer(Arc::new(Metrics::new([self.job])))
            .concurrency(PREFETCH)
            .declare(Declare::Passive)
            .start()
            .await?)
    }

    /// Stops a worker engine, letting its acks go out.
    pub async fn stop(engine: Engine) {
        engine.shutdown(Duration::from_secs(10)).await;
    }

    /// Empties the queue.
    ///
    /// # Errors
    ///
    /// When the broker cannot purge it.
    pub async fn purge(&self) -> anyhow::Result<()> {
        self.transport.purge(self.queue).await?;
        Ok(())
    }

    /// The messages ready in the queue.
    ///
    /// # Errors
    ///
    /// When the broker cannot answer.
    pub async fn ready(&self) -> anyhow::Result<u64> {
        Ok(self.transport.message_count(self.queue).await?)
    }
}

async fn enqueue(job: &'static Job, producer: &Producer, seq: u64) -> anyhow::Result<()> {
    let message = BenchJob::new(seq);
    if std::ptr::eq(job, &bench_classic::JOB) {
        bench_classic::enqueue(producer, message).await?;
    } else {
        bench_quorum::enqueue(producer, message).await?;
    }
    Ok(())
}
