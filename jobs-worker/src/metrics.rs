//! Prometheus metrics per job, collected as an engine [`Observer`] and rendered in the text
//! exposition format 0.0.4.
//!
//! The hot path is atomics only: every job the worker serves gets its counters up front, so an
//! event finds them with a lookup in an immutable map. Failures, rare, go through a mutex.
//!
//! `jobs_in_flight` counts handlers started and not yet finished. A delivery sent to the error queue
//! before its handler ran (undecodable, unknown job, too large) never counted as started, so it
//! does not count as finished either.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use jobs_core::Job;
use jobs_core::engine::{Event, EventKind, Observer};

/// The upper bounds, in seconds, of the `jobs_duration_seconds` buckets.
pub(crate) const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// The worker's metrics; an [`Observer`] for the engine.
#[derive(Debug)]
pub struct Metrics {
    /// Looked up on every event: a few string comparisons, cheaper than hashing the name.
    jobs: BTreeMap<&'static str, JobMetrics>,
}

#[derive(Debug, Default)]
struct JobMetrics {
    started: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    publish_failures: AtomicU64,
    requeued: AtomicU64,
    in_flight: AtomicI64,
    /// Kill switch trips, and whether it is open now.
    trips: AtomicU64,
    switch_open: AtomicU64,
    failed: Mutex<BTreeMap<&'static str, u64>>,
    /// Counts per bucket (not cumulative), then one for `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Metrics for `jobs`; events of other jobs are ignored.
    #[must_use]
    pub fn new<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Self {
        Self {
            jobs: jobs
                .into_iter()
                .map(|job| (job.name(), JobMetrics::default()))
                .collect(),
        }
    }

    /// The metrics in the Prometheus text format 0.0.4.
    #[must_use]
    pub fn render(&self) -> String {
        let names: Vec<&&'static str> = self.jobs.keys().collect();
        let mut out = String::with_capacity(1024 + names.len() * 2048);
        let counter =
            |out: &mut String, name: &str, help: &str, get: &dyn Fn(&JobMetrics) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for job in &names {
                    let _ = writeln!(
                        out,
                        "{name}{{job=\"{}\"}} {}",
                        escape(job),
                        get(&self.jobs[**job])
                    );
                }
            };
        counter(
            &mut out,
            "jobs_started_total",
            "Handler runs started.",
            &|m| m.started.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "jobs_succeeded_total",
            "Handler runs that succeeded.",
            &|m| m.succeeded.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "jobs_retried_total",
            "Failed attempts sent to a retry queue.",
            &|m| m.retried.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "jobs_outcome_publish_failures_total",
            "Failed tries to publish a failed attempt's retry or error-queue message; each is tried again.",
            &|m| m.publish_failures.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "jobs_requeued_total",
            "Deliveries given back to their queue because their outcome could not be published in time.",
            &|m| m.requeued.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "jobs_kill_switch_trips_total",
            "Times the job's kill switch tripped on this worker.",
            &|m| m.trips.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP jobs_kill_switch_open Whether the job's kill switch is open on this worker (1) or not.\n# TYPE jobs_kill_switch_open gauge"
        );
        for job in &names {
            let open = self.jobs[**job].switch_open.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jobs_kill_switch_open{{job=\"{}\"}} {open}",
                escape(job)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jobs_failed_total Jobs moved to their error queue.\n# TYPE jobs_failed_total counter"
        );
        for job in &names {
            let dead = self.jobs[**job]
                .failed
                .lock()
                .map(|counts| counts.clone())
                .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
            for (kind, n) in dead {
                let _ = writeln!(
                    out,
                    "jobs_failed_total{{job=\"{}\",kind=\"{kind}\"}} {n}",
                    escape(job)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jobs_in_flight Handlers running now.\n# TYPE jobs_in_flight gauge"
        );
        for job in &names {
            let n = self.jobs[**job].in_flight.load(Ordering::Relaxed);
            let _ = writeln!(out, "jobs_in_flight{{job=\"{}\"}} {n}", escape(job));
        }
        let _ = writeln!(
            out,
            "# HELP jobs_duration_seconds How long handlers ran, by job.\n# TYPE jobs_duration_seconds histogram"
        );
        for job in &names {
            let m = &self.jobs[**job];
            let job = escape(job);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "jobs_duration_seconds_bucket{{job=\"{job}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += m.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jobs_duration_seconds_bucket{{job=\"{job}\",le=\"+Inf\"}} {cumulative}"
            );
            #[allow(clippy::cast_precision_loss, reason = "a metric")]
            let sum = m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "jobs_duration_seconds_sum{{job=\"{job}\"}} {sum}");
            let _ = writeln!(
                out,
                "jobs_duration_seconds_count{{job=\"{job}\"}} {}",
                m.count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// One job's counters at one moment, for the fleet's reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct JobCounts {
    /// The job's name.
    pub(crate) job: String,
    /// Handlers running now.
    pub(crate) in_flight: i64,
    /// Handler runs that succeeded.
    pub(crate) succeeded: u64,
    /// Failed attempts sent to a retry queue.
    pub(crate) retried: u64,
    /// Jobs moved to the error queue.
    pub(crate) failed: u64,
    /// Whether the job's kill switch is open on this worker.
    pub(crate) switch_open: bool,
}

impl Metrics {
    /// Every job's counters now.
    pub(crate) fn snapshot(&self) -> Vec<JobCounts> {
        self.jobs
            .iter()
            .map(|(name, m)| JobCounts {
                job: (*name).to_owned(),
                in_flight: m.in_flight.load(Ordering::Relaxed),
                succeeded: m.succeeded.load(Ordering::Relaxed),
                retried: m.retried.load(Ordering::Relaxed),
                failed: m
                    .failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .sum(),
                switch_open: m.switch_open.load(Ordering::Relaxed) == 1,
            })
            .collect()
    }
}

impl JobMetrics {
    fn observe(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Observer for Metrics {
    fn on_event(&self, event: &Event<'_>) {
        let Some(m) = self.jobs.get(event.job.name()) else {
            return;
        };
        match event.kind {
            EventKind::Started => {
                m.started.fetch_add(1, Ordering::Relaxed);
                m.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            EventKind::Succeeded { elapsed } => {
                m.succeeded.fetch_add(1, Ordering::Relaxed);
                m.observe(elapsed);
                m.finished();
            }
            EventKind::Retried {
                elapsed, started, ..
            } => {
                m.retried.fetch_add(1, Ordering::Relaxed);
                if started {
                    m.observe(elapsed);
                    m.finished();
                }
            }
            EventKind::Failed { kind, started, .. } => {
                if started {
                    m.finished();
                }
                let mut counts = m
                    .failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *counts.entry(kind.as_str()).or_default() += 1;
            }
            EventKind::PublishFailed { .. } => {
                m.publish_failures.fetch_add(1, Ordering::Relaxed);
            }
            EventKind::Requeued { started, .. } => {
                m.requeued.fetch_add(1, Ordering::Relaxed);
                if started {
                    m.finished();
                }
            }
            EventKind::SwitchTripped { .. } => {
                m.trips.fetch_add(1, Ordering::Relaxed);
                m.switch_open.store(1, Ordering::Relaxed);
            }
            EventKind::SwitchClosed => m.switch_open.store(0, Ordering::Relaxed),
            _ => {}
        }
    }
}

/// Whether a failure of this kind ran its handler first.
/// A label value with `\`, `"` and newlines escaped.
/// The `jobs_paused` gauge: 1 for each job paused on this worker, 0 for the others; empty
/// without jobs.
pub(crate) fn paused_gauge(jobs: &[(&str, bool)]) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    let mut out =
        "# HELP jobs_paused Whether the job is paused (jobs-worker pause).\n# TYPE jobs_paused gauge\n"
            .to_owned();
    for (job, paused) in jobs {
        let _ = writeln!(
            out,
            "jobs_paused{{job=\"{}\"}} {}",
            escape(job),
            u8::from(*paused)
        );
    }
    out
}

/// The broker's counts of each job's queues, as gauges: `jobs_queue_ready` (what KEDA's and
/// the HPA's RabbitMQ scalers read) and `jobs_queue_consumers`, labelled by job, queue and role
/// (`work`, `retry` or `error`). A queue the broker could not count is left out.
pub(crate) fn queue_gauges(jobs: &[(&str, Vec<crate::queues::QueueCounts>)]) -> String {
    let mut out = String::new();
    let mut gauge =
        |name: &str, help: &str, get: &dyn Fn(&crate::queues::QueueCounts) -> Option<u64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (job, queues) in jobs {
                for queue in queues {
                    if let Some(value) = get(queue) {
                        let _ = writeln!(
                            out,
                            "{name}{{job=\"{}\",queue=\"{}\",role=\"{}\"}} {value}",
                            escape(job),
                            escape(&queue.name),
                            queue.role.as_str()
                        );
                    }
                }
            }
        };
    gauge(
        "jobs_queue_ready",
        "Messages ready in the job's queues, as the broker counts them for every worker.",
        &|queue| queue.ready,
    );
    gauge(
        "jobs_queue_consumers",
        "Consumers of the job's queues, as the broker counts them.",
        &|queue| queue.consumers.map(u64::from),
    );
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jobs_core::testing::TestApp;
    use jobs_core::{JobContext, JobError, job};

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Work {
        #[prost(uint32, tag = "1")]
        fail: u32,
    }

    #[job(
        exchange = "metrics.test",
        routing_key = "work",
        retries = 1,
        backoff = "1ms"
    )]
    async fn work(work: Work, _ctx: JobContext) -> Result<(), JobError> {
        match work.fail {
            0 => Ok(()),
            1 => Err(JobError::fatal("no")),
            _ => Err(JobError::retry("later")),
        }
    }

    #[test]
    fn the_paused_gauge_is_one_per_paused_job() {
        assert_eq!(paused_gauge(&[]), "");
        let text = paused_gauge(&[("a", true), ("b\"", false)]);
        assert!(
            text.ends_with("jobs_paused{job=\"a\"} 1\njobs_paused{job=\"b\\\"\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_counters_and_the_histogram() {
        let metrics = Metrics::new([&work::JOB]);
        let emit = |kind| {
            metrics.on_event(&Event {
                job: &work::JOB,
                message_id: None,
                attempt: 1,
                kind,
            });
        };
        emit(EventKind::Started);
        emit(EventKind::Started);
        emit(EventKind::Succeeded {
            elapsed: Duration::from_millis(20),
        });
        let text = metrics.render();
        assert!(
            text.contains("jobs_started_total{job=\"work\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_succeeded_total{job=\"work\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("jobs_in_flight{job=\"work\"} 1\n"), "{text}");
        assert!(
            text.contains("jobs_duration_seconds_bucket{job=\"work\",le=\"0.01\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_duration_seconds_bucket{job=\"work\",le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_duration_seconds_bucket{job=\"work\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_duration_seconds_sum{job=\"work\"} 0.02\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_duration_seconds_count{job=\"work\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE jobs_duration_seconds histogram\n"));
    }

    #[tokio::test]
    async fn counts_what_the_engine_reports() {
        let metrics = std::sync::Arc::new(Metrics::new([&work::JOB]));
        let app = TestApp::builder()
            .job(&work::JOB)
            .observer(metrics.clone())
            .build()
            .unwrap();
        for fail in [0, 0, 1, 2] {
            work::enqueue(&app, Work { fail }).await.unwrap();
        }
        app.run_until_idle().await;
        let text = metrics.render();
        assert!(
            text.contains("jobs_succeeded_total{job=\"work\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_retried_total{job=\"work\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jobs_failed_total{job=\"work\",kind=\"fatal\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("jobs_in_flight{job=\"work\"} 0\n"), "{text}");
    }
}
