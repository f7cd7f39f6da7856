//! The fleet: what every worker serving the jobs is doing, for a dashboard served by any one
//! of them.
//!
//! Counters live in each worker's memory, so each worker reports them: every
//! [`REPORT_EVERY`] it publishes its [`Report`] (JSON) to the control exchange
//! (`jobs.control`) with the routing key `stats.<worker id>`, unconfirmed and transient, since
//! the next report replaces a lost one. A dashboard subscribes to `stats.*` with a queue of its
//! own that the broker deletes with its connection, so nobody's reports pile up, and adds up
//! the latest report of each worker heard from within [`FORGET_AFTER`]. Rates are each
//! worker's counter differences between its last two reports, summed.
//!
//! Reports are input from the network: one that does not parse, or that would grow the table
//! past [`MAX_WORKERS`], is dropped.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use jobs_core::control;
use jobs_core::envelope::{Envelope, Properties};
use jobs_core::transport::{Publish, Transport};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::{JobCounts, Metrics};

/// How often a worker reports.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A worker not heard from for this long is left out: it stopped, or lost its connection.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(10);
/// The most workers kept; reports from more are dropped.
pub(crate) const MAX_WORKERS: usize = 4096;
/// The routing key pattern of every report.
const REPORTS: &str = "stats.*";
/// How long a dashboard waits before subscribing again after losing its subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// What one worker reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Unique per worker process.
    pub(crate) id: String,
    /// Its connection name.
    pub(crate) name: String,
    /// The broker nodes its connections are on, passwords hidden (empty when unknown).
    #[serde(default)]
    pub(crate) nodes: Vec<String>,
    /// Its jobs' counters.
    pub(crate) jobs: Vec<JobCounts>,
}

/// A new worker id: the process id and the start time, unique enough across a fleet.
pub(crate) fn worker_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Publishes this worker's report every [`REPORT_EVERY`], until dropped. A failed publish is
/// only logged: the next report replaces it.
pub(crate) async fn report(
    transport: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
    id: String,
    name: String,
) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let nodes = transport.nodes().await;
        let report = Report {
            id: id.clone(),
            name: name.clone(),
            nodes,
            jobs: metrics.snapshot(),
        };
        let Ok(body) = serde_json::to_vec(&report) else {
            continue;
        };
        let publish = Publish {
            exchange: Cow::Borrowed(control::EXCHANGE),
            routing_key: Cow::Owned(format!("stats.{id}")),
            mandatory: false,
            envelope: Envelope {
                properties: Properties {
                    content_type: Some(Cow::Borrowed("application/json")),
                    ..Properties::default()
                },
                body: body.into(),
            },
        };
        if let Err(err) = transport.publish_unconfirmed(publish).await {
            tracing::debug!(error = %err, "fleet report not sent");
        }
    }
}

/// The latest reports heard, for the dashboard.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    workers: Mutex<HashMap<String, Heard>>,
}

#[derive(Debug)]
struct Heard {
    name: String,
    nodes: Vec<String>,
    at: Instant,
    jobs: Vec<JobCounts>,
    /// Per job: succeeded, retried and failed per second since the report before.
    rates: BTreeMap<String, Rates>,
}

/// A figure per outcome of one job: counts, or rates per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct PerOutcome<T> {
    /// Handler runs that succeeded.
    pub(crate) succeeded: T,
    /// Failed attempts sent to a retry queue.
    pub(crate) retried: T,
    /// Jobs moved to the error queue.
    pub(crate) failed: T,
}

/// Per-second rates of one job.
pub(crate) type Rates = PerOutcome<f64>;
/// Totals of one job over the fleet.
pub(crate) type Totals = PerOutcome<u64>;

/// One job as the fleet sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct JobView {
    /// Handlers running now, over every worker.
    pub(crate) in_flight: i64,
    /// Counters since each worker started.
    pub(crate) totals: Totals,
    /// Per second, over the last reports.
    pub(crate) rates: Rates,
    /// Whether some worker has the job's kill switch open.
    pub(crate) tripped: bool,
}

/// A worker heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WorkerView {
    /// Its id.
    pub(crate) id: String,
    /// Its connection name.
    pub(crate) name: String,
    /// The broker nodes it is connected to.
    pub(crate) nodes: Vec<String>,
    /// How long ago its last report came.
    pub(crate) seen_ms_ago: u64,
}

impl Fleet {
    /// Takes in `report`, heard at `now`.
    pub(crate) fn hear(&self, report: Report, now: Instant) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|_, heard| now.saturating_duration_since(heard.at) < FORGET_AFTER);
        if !workers.contains_key(&report.id) && workers.len() >= MAX_WORKERS {
            return;
        }
        let rates = workers
            .get(&report.id)
            .map_or_else(BTreeMap::new, |before| {
                let seconds = now.saturating_duration_since(before.at).as_secs_f64();
                report
                    .jobs
                    .iter()
                    .filter_map(|now| {
                        let then = before.jobs.iter().find(|then| then.job == now.job)?;
                        Some((now.job.clone(), per_second(then, now, seconds)))
                    })
                    .collect()
            });
        workers.insert(
            report.id,
            Heard {
                name: report.name,
                nodes: report.nodes,
                at: now,
                jobs: report.jobs,
                rates,
            },
        );
    }

    /// The job named `job` over every worker heard from within [`FORGET_AFTER`] of `now`.
    pub(crate) fn job(&self, job: &str, now: Instant) -> JobView {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut view = JobView::default();
        for heard in workers.values().filter(|heard| fresh(heard, now)) {
            if let Some(counts) = heard.jobs.iter().find(|counts| counts.job == job) {
                view.in_flight += counts.in_flight.max(0);
                view.totals.succeeded += counts.succeeded;
                view.totals.retried += counts.retried;
                view.totals.failed += counts.failed;
                view.tripped |= counts.switch_open;
            }
            if let Some(rates) = heard.rates.get(job) {
                view.rates.succeeded += rates.succeeded;
                view.rates.retried += rates.retried;
                view.rates.failed += rates.failed;
            }
        }
        view
    }

    /// The workers heard from within [`FORGET_AFTER`] of `now`, by name.
    pub(crate) fn workers(&self, now: Instant) -> Vec<WorkerView> {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen: Vec<WorkerView> = workers
            .iter()
            .filter(|(_, heard)| fresh(heard, now))
            .map(|(id, heard)| WorkerView {
                id: id.clone(),
                name: heard.name.clone(),
                nodes: heard.nodes.clone(),
                seen_ms_ago: u64::try_from(now.saturating_duration_since(heard.at).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect();
        seen.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        seen
    }

    /// Hears every report on `transport` until dropped, subscribing again when the
    /// subscription ends (its connection was lost).
    pub(crate) async fn listen(self: Arc<Self>, transport: Arc<dyn Transport>) {
        let keys = [REPORTS.to_owned()];
        loop {
            match transport.subscribe(control::EXCHANGE, &keys).await {
                Ok(mut reports) => {
                    while let Some(envelope) = reports.next().await {
                        match serde_json::from_slice::<Report>(&envelope.body) {
                            Ok(report) => self.hear(report, Instant::now()),
                            Err(err) => tracing::debug!(error = %err, "fleet report dropped"),
                        }
                    }
                }
                Err(err) => tracing::debug!(error = %err, "fleet reports: cannot subscribe"),
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
    }
}

fn fresh(heard: &Heard, now: Instant) -> bool {
    now.saturating_duration_since(heard.at) < FORGET_AFTER
}

/// The rates between two reports `seconds` apart; a counter that went down counts as 0.
fn per_second(then: &JobCounts, now: &JobCounts, seconds: f64) -> Rates {
    if seconds <= 0.0 {
        return Rates::default();
    }
    #[allow(clippy::cast_precision_loss, reason = "a rate for a chart")]
    let rate = |then: u64, now: u64| now.saturating_sub(then) as f64 / seconds;
    Rates {
        succeeded: rate(then.succeeded, now.succeeded),
        retried: rate(then.retried, now.retried),
        failed: rate(then.failed, now.failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(job: &str, succeeded: u64, in_flight: i64) -> JobCounts {
        JobCounts {
            job: job.to_owned(),
            in_flight,
            succeeded,
            ..JobCounts::default()
        }
    }

    fn report(id: &str, jobs: Vec<JobCounts>) -> Report {
        Report {
            id: id.to_owned(),
            name: format!("worker {id}"),
            nodes: Vec::new(),
            jobs,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sums_workers_and_forgets_the_silent_ones() {
        let fleet = Fleet::default();
        let start = Instant::now();
        fleet.hear(report("a", vec![counts("j", 10, 2)]), start);
        fleet.hear(report("b", vec![counts("j", 5, 1)]), start);
        let later = start + Duration::from_secs(2);
        fleet.hear(report("a", vec![counts("j", 30, 1)]), later);

        let view = fleet.job("j", later);
        assert_eq!(view.totals.succeeded, 35);
        assert_eq!(view.in_flight, 2);
        assert!((view.rates.succeeded - 10.0).abs() < 1e-9, "{view:?}");
        assert_eq!(fleet.workers(later).len(), 2);

        // b said nothing for FORGET_AFTER: only a counts.
        let much_later = start + FORGET_AFTER + Duration::from_millis(1);
        assert_eq!(fleet.job("j", much_later).totals.succeeded, 30);
        assert_eq!(fleet.workers(much_later).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_that_went_down_is_no_negative_rate() {
        let fleet = Fleet::default();
        let start = Instant::now();
        fleet.hear(report("a", vec![counts("j", 10, 0)]), start);
        fleet.hear(
            report("a", vec![counts("j", 3, 0)]),
            start + Duration::from_secs(1),
        );
        assert_eq!(
            fleet.job("j", start + Duration::from_secs(1)).rates,
            Rates::default()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded() {
        let fleet = Fleet::default();
        let now = Instant::now();
        for i in 0..=MAX_WORKERS {
            fleet.hear(report(&i.to_string(), Vec::new()), now);
        }
        assert_eq!(fleet.workers(now).len(), MAX_WORKERS);
    }

    /// Reports go through the broker: a report that cannot be published (no control exchange
    /// yet) is skipped and the next one goes; a body that is not a report is dropped; a
    /// listener whose subscription ends with its connection subscribes again.
    #[tokio::test(start_paused = true)]
    async fn reports_travel_through_the_broker_and_survive_its_failures() {
        use jobs_core::topology::{ExchangeSpec, Topology};
        use jobs_core::transport::Declare;
        use jobs_core::transport::memory::MemoryTransport;

        let broker = MemoryTransport::new();
        let transport: Arc<dyn Transport> = Arc::new(broker.clone());
        let fleet = Arc::new(Fleet::default());
        let reporting = tokio::spawn(super::report(
            Arc::clone(&transport),
            Arc::new(Metrics::new(std::iter::empty())),
            "a".to_owned(),
            "worker a".to_owned(),
        ));
        // The first report finds no exchange: it is not sent, and nothing stops.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(fleet.workers(Instant::now()).is_empty());
        let control = Topology {
            exchanges: vec![ExchangeSpec {
                name: control::EXCHANGE.to_owned(),
                kind: jobs_core::ExchangeKind::Topic,
            }],
            ..Topology::default()
        };
        transport.declare(&control, Declare::Create).await.unwrap();
        let listening = tokio::spawn(Arc::clone(&fleet).listen(Arc::clone(&transport)));
        tokio::time::sleep(Duration::from_millis(1)).await;

        // Garbage on the report key is dropped; the next report is heard.
        let garbage = Publish {
            exchange: Cow::Borrowed(control::EXCHANGE),
            routing_key: Cow::Borrowed("stats.garbage"),
            mandatory: false,
            envelope: Envelope {
                properties: Properties::default(),
                body: b"{not json".to_vec().into(),
            },
        };
        transport.publish(garbage).await.unwrap();
        tokio::time::sleep(REPORT_EVERY).await;
        let names: Vec<String> = fleet
            .workers(Instant::now())
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["worker a"]);

        // The subscription ends with the connection; the listener subscribes again and hears
        // the reports after it.
        broker.disconnect();
        tokio::time::sleep(FORGET_AFTER + RESUBSCRIBE_AFTER).await;
        let seen = fleet.workers(Instant::now());
        assert_eq!(seen.len(), 1, "heard again after the loss: {seen:?}");
        assert!(seen[0].seen_ms_ago < 2_500, "{seen:?}");

        reporting.abort();
        listening.abort();
    }
}
