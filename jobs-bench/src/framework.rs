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
use jobs_core::{Enqueue, Job, JobDefaults, JobError, JobSettings, Producer, job};
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

/// How long each enqueued job waits in the broker's delay cascade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delays {
    /// No delay: a plain enqueue.
    None,
    /// The same delay for every job.
    Fixed(Duration),
    /// `distinct` whole-second delays spread evenly from 0 to `max_secs`: job `seq` waits the
    /// (`seq` mod `distinct`)-th.
    Spread {
        /// The longest delay, in seconds.
        max_secs: u64,
        /// How many distinct delays.
        distinct: u64,
    },
}

impl Delays {
    /// Job `seq`'s delay; `None` for a plain enqueue.
    #[must_use]
    pub fn of(self, seq: u64) -> Option<Duration> {
        match self {
            Self::None => None,
            Self::Fixed(delay) => Some(delay),
            Self::Spread { max_secs, distinct } => {
                let secs = match distinct {
                    0 | 1 => max_secs,
                    _ => seq % distinct * max_secs / (distinct - 1),
                };
                Some(Duration::from_secs(secs))
            }
        }
    }
}

/// The job measured on a queue of `kind`.
#[must_use]
pub fn bench_job(kind: QueueKind) -> &'static Job {
    match kind {
        QueueKind::Classic => &bench_classic::JOB,
        QueueKind::Quorum => &bench_quorum::JOB,
    }
}

impl Framework {
    /// The queues of the job measured on `kind`: its work, retry and error queues.
    ///
    /// # Errors
    ///
    /// Never for the bench's jobs, whose topology is valid.
    pub fn queues(kind: QueueKind) -> anyhow::Result<Vec<String>> {
        Self::job_queues(bench_job(kind))
    }

    /// The queues of `job` alone: its work, retry and error queues, without the delay cascade
    /// that every job's topology includes, which the broker's other users share.
    ///
    /// # Errors
    ///
    /// When `job`'s topology is invalid.
    pub fn job_queues(job: &'static Job) -> anyhow::Result<Vec<String>> {
        let settings = JobSettings::resolve(job, &JobDefaults::default());
        let topology = Topology::for_jobs([&settings])?;
        Ok(topology
            .job_queues()
            .map(|queue| queue.name.clone())
            .collect())
    }

    /// Declares the topology of the job measured on `kind` and empties its queue.
    ///
    /// # Errors
    ///
    /// When the broker refuses the topology.
    pub async fn new(
        transport: Arc<dyn Transport>,
        kind: QueueKind,
        producers: usize,
    ) -> anyhow::Result<Self> {
        Self::for_job(transport, bench_job(kind), producers).await
    }

    /// Declares `job`'s topology on `transport` and empties its queue: `job` takes a
    /// [`BenchJob`].
    ///
    /// # Errors
    ///
    /// When the broker refuses the topology.
    pub async fn for_job(
        transport: Arc<dyn Transport>,
        job: &'static Job,
        producers: usize,
    ) -> anyhow::Result<Self> {
        let queue = job.queue();
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
        self.produce(count, pacer, Delays::None).await
    }

    /// Enqueues jobs `0..count` with one `enqueue_all`, from one task.
    ///
    /// # Errors
    ///
    /// When any job was not enqueued.
    pub async fn publish_batch(&self, count: u64) -> anyhow::Result<()> {
        let job = self.job;
        jobs_core::enqueue_all(
            &self.producer,
            (0..count).map(|seq| Enqueue::new(job, BenchJob::new(seq))),
        )
        .await?;
        Ok(())
    }

    /// Enqueues jobs `0..count` unpaced, as [`publish`](Self::publish) does, each with its
    /// delay of `delays` (`.delay(d)` on the same `Enqueue`).
    ///
    /// # Errors
    ///
    /// The first enqueue error.
    pub async fn publish_delayed(&self, count: u64, delays: Delays) -> anyhow::Result<()> {
        self.produce(count, None, delays).await
    }

    async fn produce(
        &self,
        count: u64,
        pacer: Option<Pacer>,
        delays: Delays,
    ) -> anyhow::Result<()> {
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
                        if window == 1 {
                            // As a request handler enqueues: awaiting it in line, with no
                            // stream of futures around a single one.
                            loop {
                                let seq = next.fetch_add(1, Ordering::Relaxed);
                                if seq >= count {
                                    return Ok(());
                                }
                                enqueue(job, &producer, seq, delays).await?;
                            }
                        }
                        let mut in_flight = FuturesUnordered::new();
                        loop {
                            while in_flight.len() < window {
                                let seq = next.fetch_add(1, Ordering::Relaxed);
                                if seq >= count {
                                    break;
                                }
                                in_flight.push(enqueue(job, &producer, seq, delays));
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
                    producers.push(tokio::spawn(async move {
                        enqueue(job, &producer, seq, delays).await
                    }));
                }
            }
        }
        for producer in producers {
            producer.await??;
        }
        Ok(())
    }

    /// Enqueues one job outside any measurement, which the caller then purges: a producer
    /// declares the job's topology and the delay cascade on its first enqueue, which would
    /// otherwise hold up the first enqueues of a measurement by that declaration. The job's
    /// number is `u64::MAX`, past any measurement's.
    ///
    /// # Errors
    ///
    /// The enqueue's error.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        enqueue(self.job, &self.producer, u64::MAX, Delays::None).await
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
        self.ready_in(self.queue).await
    }

    /// The messages ready in `queue`: the job's error queue, say.
    ///
    /// # Errors
    ///
    /// When the broker cannot answer.
    pub async fn ready_in(&self, queue: &str) -> anyhow::Result<u64> {
        Ok(self.transport.message_count(queue).await?)
    }

    /// The job measured.
    #[must_use]
    pub fn job(&self) -> &'static Job {
        self.job
    }

    /// The producer of the enqueues.
    #[must_use]
    pub fn producer(&self) -> &Producer {
        &self.producer
    }
}

/// What `#[job]`'s `my_job::enqueue(producer, message)` does, for any of the bench's jobs, with
/// `.delay(d)` when `delays` gives job `seq` one.
async fn enqueue(
    job: &'static Job,
    producer: &Producer,
    seq: u64,
    delays: Delays,
) -> anyhow::Result<()> {
    let enqueue = Enqueue::new(job, BenchJob::new(seq));
    match delays.of(seq) {
        None => enqueue.enqueue(producer).await?,
        Some(delay) => enqueue.delay(delay).enqueue(producer).await?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::topology::RESERVED_PREFIX;

    #[test]
    fn a_spread_of_delays_runs_evenly_from_zero_to_the_longest() {
        let spread = Delays::Spread {
            max_secs: 600,
            distinct: 200,
        };
        let secs = |seq| spread.of(seq).map(|d| d.as_secs());
        assert_eq!(secs(0), Some(0));
        assert_eq!(secs(1), Some(3));
        assert_eq!(secs(199), Some(600));
        assert_eq!(secs(200), Some(0));
        let distinct: std::collections::BTreeSet<_> = (0..2000).map(secs).collect();
        assert_eq!(distinct.len(), 200);
        assert_eq!(Delays::None.of(7), None);
        let second = Duration::from_secs(1);
        assert_eq!(Delays::Fixed(second).of(7), Some(second));
    }

    #[test]
    fn the_queues_to_delete_leave_the_shared_cascade_alone() {
        let queues = Framework::queues(QueueKind::Quorum).unwrap();
        assert!(
            queues.contains(&"jobs_bench.quorum".to_owned()),
            "{queues:?}"
        );
        assert!(
            queues.iter().all(|q| !q.starts_with(RESERVED_PREFIX)),
            "{queues:?}"
        );
    }
}
