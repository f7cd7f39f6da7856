//! The results of every run, their medians, and the table and JSON they are printed as.

use std::fmt::Write as _;

use serde::Serialize;

use crate::growth::report::{BacklogRow, GrowthSamples, TypesRow};
use crate::measure::median;
use crate::rounds::{Round, RoundsRow};

/// Which client a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The raw lapin reference.
    Raw,
    /// The framework.
    Framework,
}

/// Which column of the second table a figure belongs to: whether the jobs waited in the
/// broker's shared delay cascade or went straight to their queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A plain enqueue, or a backoff retry through the job's own retry queue.
    Direct,
    /// A delayed enqueue, or a `retry_after` retry, through the delay cascade.
    Cascade,
}

/// One line of a table: a measure on one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    queue: String,
    measure: String,
    unit: &'static str,
}

/// One line of the calls table: a measure on one queue at one number of callers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CallLine {
    queue: String,
    callers: usize,
    measure: String,
    unit: &'static str,
}

/// The samples of one table with `N` columns, by line, in the order the lines first appeared.
#[derive(Debug)]
struct Columns<K, const N: usize> {
    lines: Vec<K>,
    samples: Vec<[Vec<f64>; N]>,
}

impl<K, const N: usize> Default for Columns<K, N> {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            samples: Vec::new(),
        }
    }
}

impl<K: PartialEq, const N: usize> Columns<K, N> {
    fn add(&mut self, line: K, column: usize, value: f64) {
        let index = if let Some(index) = self.lines.iter().position(|l| *l == line) {
            index
        } else {
            self.lines.push(line);
            self.samples.push(std::array::from_fn(|_| Vec::new()));
            self.lines.len() - 1
        };
        self.samples[index][column].push(value);
    }

    /// Each line with the median of each column.
    fn medians(&self) -> impl Iterator<Item = (&K, [Option<f64>; N])> {
        self.lines
            .iter()
            .zip(&self.samples)
            .map(|(line, samples)| (line, std::array::from_fn(|i| median(&samples[i]))))
    }
}

/// `right / left`, when both are there and `left` is positive.
fn ratio(left: Option<f64>, right: Option<f64>) -> Option<f64> {
    match (left, right) {
        (Some(left), Some(right)) if left > 0.0 => Some(right / left),
        _ => None,
    }
}

/// Which column of the outbox table a figure belongs to: how the job reached the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A plain `enqueue` from the framework's producer, confirmed by the broker.
    Enqueue,
    /// `enqueue_in` a PostgreSQL transaction, published by the outbox relay after the commit.
    Outbox,
}

/// Which column of the calls table a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Raw lapin over direct reply-to.
    Raw,
    /// The framework's `my_job::call`.
    Framework,
    /// A tonic gRPC unary call on loopback.
    Grpc,
}

/// Every sample of every run: the framework against raw lapin, the direct path against the
/// delay cascade, request/reply calls, scale-out, and plain enqueues against the outbox.
#[derive(Debug, Default)]
pub struct Samples {
    /// Raw lapin, then the framework.
    clients: Columns<Line, 2>,
    /// The direct path, then the cascade.
    paths: Columns<Line, 2>,
    /// Raw lapin, the framework, then tonic.
    calls: Columns<CallLine, 3>,
    /// Every run of every scale-out row, in the order they ran.
    scale: Vec<ScaleSample>,
    /// Plain enqueues, then the outbox.
    outbox: Columns<Line, 2>,
    /// Every paired latency round, in the order they ran.
    rounds: Vec<Round>,
    /// Every run of every growth row.
    growth: GrowthSamples,
}

impl Samples {
    /// Adds one run's `value` of `measure` on `queue` for `side`.
    pub fn add(&mut self, queue: &str, measure: &str, unit: &'static str, side: Side, value: f64) {
        let column = match side {
            Side::Raw => 0,
            Side::Framework => 1,
        };
        self.clients.add(line(queue, measure, unit), column, value);
    }

    /// Adds one run's `value` of `measure` on `queue` for `path`, to the second table.
    pub fn add_path(
        &mut self,
        queue: &str,
        measure: &str,
        unit: &'static str,
        path: Path,
        value: f64,
    ) {
        let column = match path {
            Path::Direct => 0,
            Path::Cascade => 1,
        };
        self.paths.add(line(queue, measure, unit), column, value);
    }

    /// Adds one run's `value` of `measure` on `queue` for `route`, to the outbox table.
    pub fn add_outbox(
        &mut self,
        queue: &str,
        measure: &str,
        unit: &'static str,
        route: Route,
        value: f64,
    ) {
        let column = match route {
            Route::Enqueue => 0,
            Route::Outbox => 1,
        };
        self.outbox.add(line(queue, measure, unit), column, value);
    }

    /// Adds one run's `value` of `measure` for `caller` with `callers` concurrent callers, on
    /// `queue`, to the calls table.
    pub fn add_call(
        &mut self,
        queue: &str,
        callers: usize,
        (measure, unit): (&str, &'static str),
        caller: Caller,
        value: f64,
    ) {
        let line = CallLine {
            queue: queue.to_owned(),
            callers,
            measure: measure.to_owned(),
            unit,
        };
        let column = match caller {
            Caller::Raw => 0,
            Caller::Framework => 1,
            Caller::Grpc => 2,
        };
        self.calls.add(line, column, value);
    }

    /// Adds one paired latency round.
    pub fn add_round(&mut self, round: Round) {
        self.rounds.push(round);
    }

    /// The latency rounds, one row per queue and rate.
    #[must_use]
    pub fn round_rows(&self) -> Vec<RoundsRow> {
        crate::rounds::rows(&self.rounds)
    }

    /// Adds one run of a scale-out row.
    pub fn add_scale(&mut self, sample: ScaleSample) {
        self.scale.push(sample);
    }

    /// The medians of the scale-out table, one row per setup and number of workers, in the
    /// order they first ran (setups in turn, fewer workers first in the first run).
    #[must_use]
    pub fn scale_rows(&self) -> Vec<ScaleRow> {
        let mut keys: Vec<(&'static str, usize)> = Vec::new();
        for sample in &self.scale {
            let key = (sample.setup, sample.workers);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.into_iter()
            .map(|(setup, workers)| {
                let runs: Vec<&ScaleSample> = self
                    .scale
                    .iter()
                    .filter(|s| s.setup == setup && s.workers == workers)
                    .collect();
                let of = |figure: fn(&ScaleSample) -> f64| {
                    median(&runs.iter().map(|s| figure(s)).collect::<Vec<_>>())
                };
                let broker: Vec<f64> = runs
                    .iter()
                    .filter_map(|s| s.broker_cpu_us_per_job)
                    .collect();
                ScaleRow {
                    setup,
                    workers,
                    jobs: runs.first().map_or(0, |s| s.jobs),
                    timed_jobs: of(|s| crate::measure::as_f64(s.timed_jobs)).unwrap_or(0.0),
                    seconds: of(|s| s.seconds).unwrap_or(0.0),
                    jobs_per_sec: of(|s| s.jobs_per_sec).unwrap_or(0.0),
                    worker_cpu_us_per_job: of(|s| s.worker_cpu_us_per_job).unwrap_or(0.0),
                    broker_cpu_us_per_job: median(&broker),
                    runs: runs.len(),
                }
            })
            .collect()
    }

    /// Every run of every growth row.
    #[must_use]
    pub fn growth(&self) -> &GrowthSamples {
        &self.growth
    }

    /// Where the growth measure adds its runs.
    pub fn growth_mut(&mut self) -> &mut GrowthSamples {
        &mut self.growth
    }

    /// Every run of every scale-out row.
    #[must_use]
    pub fn scale_samples(&self) -> &[ScaleSample] {
        &self.scale
    }

    /// The medians, one row per line.
    #[must_use]
    pub fn rows(&self) -> Vec<Row> {
        self.clients
            .medians()
            .map(|(line, [raw, framework])| Row {
                queue: line.queue.clone(),
                measure: line.measure.clone(),
                unit: line.unit,
                raw,
                framework,
                ratio: ratio(raw, framework),
            })
            .collect()
    }

    /// The medians of the second table, one row per line.
    #[must_use]
    pub fn cascade_rows(&self) -> Vec<CascadeRow> {
        self.paths
            .medians()
            .map(|(line, [direct, cascade])| CascadeRow {
                queue: line.queue.clone(),
                measure: line.measure.clone(),
                unit: line.unit,
                direct,
                cascade,
                ratio: ratio(direct, cascade),
            })
            .collect()
    }

    /// The medians of the outbox table, one row per line.
    #[must_use]
    pub fn outbox_rows(&self) -> Vec<OutboxRow> {
        self.outbox
            .medians()
            .map(|(line, [enqueue, outbox])| OutboxRow {
                queue: line.queue.clone(),
                measure: line.measure.clone(),
                unit: line.unit,
                enqueue,
                outbox,
                ratio: ratio(enqueue, outbox),
            })
            .collect()
    }

    /// The medians of the calls table, one row per line.
    #[must_use]
    pub fn call_rows(&self) -> Vec<CallRow> {
        self.calls
            .medians()
            .map(|(line, [raw, framework, grpc])| CallRow {
                queue: line.queue.clone(),
                callers: line.callers,
                measure: line.measure.clone(),
                unit: line.unit,
                raw,
                framework,
                ratio: ratio(raw, framework),
                grpc,
            })
            .collect()
    }
}

fn line(queue: &str, measure: &str, unit: &'static str) -> Line {
    Line {
        queue: queue.to_owned(),
        measure: measure.to_owned(),
        unit,
    }
}

/// The median figures of one measure on one queue.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `classic`, `quorum` or `memory`.
    pub queue: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// Raw lapin's median, when it ran this measure.
    pub raw: Option<f64>,
    /// The framework's median.
    pub framework: Option<f64>,
    /// framework / raw.
    pub ratio: Option<f64>,
}

/// The median figures of one measure of delays and retries on one queue: the framework's jobs
/// straight to their queue (or through their own retry queue) against through the cascade.
#[derive(Clone, Debug, Serialize)]
pub struct CascadeRow {
    /// The type of the job's work queue.
    pub queue: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// The median without the cascade: plain enqueues, backoff retries.
    pub direct: Option<f64>,
    /// The median through the cascade: delayed enqueues, `retry_after` retries.
    pub cascade: Option<f64>,
    /// cascade / direct.
    pub ratio: Option<f64>,
}

/// The median figures of one measure of the outbox: plain enqueues against jobs written in a
/// PostgreSQL transaction and published by the relay.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxRow {
    /// The type of the job's work queue.
    pub queue: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// The median of plain `enqueue`s.
    pub enqueue: Option<f64>,
    /// The median through the outbox.
    pub outbox: Option<f64>,
    /// outbox / enqueue.
    pub ratio: Option<f64>,
}

/// The median figures of one measure of request/reply calls at one number of callers.
#[derive(Clone, Debug, Serialize)]
pub struct CallRow {
    /// The type of the queue the requests go through (tonic has none: it runs beside them).
    pub queue: String,
    /// Concurrent callers.
    pub callers: usize,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// Raw lapin's median.
    pub raw: Option<f64>,
    /// The framework's median.
    pub framework: Option<f64>,
    /// framework / raw.
    pub ratio: Option<f64>,
    /// tonic gRPC's median, for reference.
    pub grpc: Option<f64>,
}

/// One run of one scale-out row: worker processes draining a pre-filled queue.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleSample {
    /// The broker: one node, or a cluster with the queue's leader on another node.
    pub setup: &'static str,
    /// Worker processes.
    pub workers: usize,
    /// Jobs in the queue before the workers started.
    pub jobs: u64,
    /// Jobs handled once every worker was ready, over which the figures are taken.
    pub timed_jobs: u64,
    /// From every worker ready to the last job handled.
    pub seconds: f64,
    /// Timed jobs per second.
    pub jobs_per_sec: f64,
    /// The worker processes' CPU time (user + system) over the timed jobs, in microseconds.
    pub worker_cpu_us_per_job: f64,
    /// The broker's Erlang VMs' CPU time over the timed jobs, in microseconds, when known.
    pub broker_cpu_us_per_job: Option<f64>,
}

/// The median figures of one scale-out row over its runs.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    /// The broker: one node, or a cluster with the queue's leader on another node.
    pub setup: &'static str,
    /// Worker processes.
    pub workers: usize,
    /// Jobs in the queue before the workers started.
    pub jobs: u64,
    /// The median of the jobs handled once every worker was ready.
    pub timed_jobs: f64,
    /// The median of the seconds timed.
    pub seconds: f64,
    /// The median rate.
    pub jobs_per_sec: f64,
    /// The median of the workers' CPU per job, in microseconds.
    pub worker_cpu_us_per_job: f64,
    /// The median of the broker's CPU per job, in microseconds, when known.
    pub broker_cpu_us_per_job: Option<f64>,
    /// How many runs the medians are of.
    pub runs: usize,
}

/// Every table's rows.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The framework against raw lapin.
    pub rows: Vec<Row>,
    /// Delays and retries: direct against through the cascade.
    pub cascade: Vec<CascadeRow>,
    /// Request/reply calls: the framework against raw lapin, and tonic.
    pub calls: Vec<CallRow>,
    /// Scale-out: worker processes draining one queue.
    pub scale: Vec<ScaleRow>,
    /// The outbox: plain enqueues against through PostgreSQL and the relay.
    pub outbox: Vec<OutboxRow>,
    /// Tail latency in paired rounds: raw lapin against the framework.
    pub rounds: Vec<RoundsRow>,
    /// Growth: one worker serving more job types.
    pub growth_types: Vec<TypesRow>,
    /// Growth: one worker draining longer backlogs.
    pub growth_backlogs: Vec<BacklogRow>,
}

/// The table, in Markdown so that it pastes into the README as it is.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| queue | measure | raw lapin | framework | framework/raw |\n|---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} |",
            row.queue,
            row.measure,
            figure(row.raw),
            figure(row.framework),
        );
    }
    out
}

/// The second table, of delays and retries, in Markdown.
#[must_use]
pub fn cascade_table(rows: &[CascadeRow]) -> String {
    let mut out = String::from(
        "| queue | measure | direct | cascade | cascade/direct |\n|---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} |",
            row.queue,
            row.measure,
            figure(row.direct),
            figure(row.cascade),
        );
    }
    out
}

/// The outbox table, in Markdown.
#[must_use]
pub fn outbox_table(rows: &[OutboxRow]) -> String {
    let mut out = String::from(
        "| queue | measure | enqueue | outbox | outbox/enqueue |\n|---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} |",
            row.queue,
            row.measure,
            figure(row.enqueue),
            figure(row.outbox),
        );
    }
    out
}

/// The calls table, in Markdown.
#[must_use]
pub fn calls_table(rows: &[CallRow]) -> String {
    let mut out = String::from(
        "| queue | callers | measure | raw lapin | framework | framework/raw | tonic gRPC |\n\
         |---|---:|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {ratio} | {} |",
            row.queue,
            row.callers,
            row.measure,
            figure(row.raw),
            figure(row.framework),
            figure(row.grpc),
        );
    }
    out
}

/// The scale-out table, in Markdown.
#[must_use]
pub fn scale_table(rows: &[ScaleRow]) -> String {
    let mut out = String::from(
        "| setup | workers | jobs | timed jobs | seconds | jobs/s | worker CPU µs/job | broker CPU µs/job |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let broker = row
            .broker_cpu_us_per_job
            .map_or_else(|| "—".to_owned(), |cpu| format!("{cpu:.1}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {broker} |",
            row.setup,
            row.workers,
            row.jobs,
            row.timed_jobs,
            row.seconds,
            row.jobs_per_sec,
            row.worker_cpu_us_per_job,
        );
    }
    out
}

fn format_figure(value: f64, unit: &str) -> String {
    match unit {
        "jobs/s" | "jobs" | "calls/s" => format!("{value:.0} {unit}"),
        "s" => format!("{value:.2} {unit}"),
        _ => format!("{value:.1} {unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hold_the_medians_and_their_ratio() {
        let mut samples = Samples::default();
        for (raw, framework) in [(100.0, 90.0), (120.0, 130.0), (110.0, 99.0)] {
            samples.add("classic", "end to end", "jobs/s", Side::Raw, raw);
            samples.add(
                "classic",
                "end to end",
                "jobs/s",
                Side::Framework,
                framework,
            );
        }
        samples.add("memory", "end to end", "jobs/s", Side::Framework, 5.0);
        let rows = samples.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].raw, rows[0].framework), (Some(110.0), Some(99.0)));
        assert!((rows[0].ratio.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!((rows[1].raw, rows[1].ratio), (None, None));
        let table = table(&rows);
        assert!(
            table.contains("| classic | end to end | 110 jobs/s | 99 jobs/s | 0.90 |"),
            "{table}"
        );
        assert!(
            table.contains("| memory | end to end | — | 5 jobs/s | — |"),
            "{table}"
        );
    }

    #[test]
    fn the_second_table_holds_direct_against_cascade() {
        let mut samples = Samples::default();
        for (direct, cascade) in [(1.0, 3.0), (2.0, 2.0), (1.5, 2.5)] {
            samples.add_path("quorum", "retry wall", "s", Path::Direct, direct);
            samples.add_path("quorum", "retry wall", "s", Path::Cascade, cascade);
        }
        samples.add_path("quorum", "late", "jobs", Path::Cascade, 4.0);
        assert!(samples.rows().is_empty());
        let rows = samples.cascade_rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].direct, rows[0].cascade), (Some(1.5), Some(2.5)));
        let table = cascade_table(&rows);
        assert!(
            table.contains("| quorum | retry wall | 1.50 s | 2.50 s | 1.67 |"),
            "{table}"
        );
        assert!(
            table.contains("| quorum | late | — | 4 jobs | — |"),
            "{table}"
        );
    }

    #[test]
    fn the_outbox_table_holds_enqueue_against_outbox() {
        let mut samples = Samples::default();
        for (enqueue, outbox) in [(9000.0, 900.0), (10_000.0, 1000.0), (11_000.0, 1100.0)] {
            samples.add_outbox("quorum", "handled rate", "jobs/s", Route::Enqueue, enqueue);
            samples.add_outbox("quorum", "handled rate", "jobs/s", Route::Outbox, outbox);
        }
        samples.add_outbox("quorum", "p50 latency", "µs", Route::Outbox, 800.0);
        assert!(samples.rows().is_empty() && samples.cascade_rows().is_empty());
        let rows = samples.outbox_rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].enqueue, rows[0].outbox),
            (Some(10_000.0), Some(1000.0))
        );
        let table = outbox_table(&rows);
        assert!(
            table.contains("| quorum | handled rate | 10000 jobs/s | 1000 jobs/s | 0.10 |"),
            "{table}"
        );
        assert!(
            table.contains("| quorum | p50 latency | — | 800.0 µs | — |"),
            "{table}"
        );
    }

    #[test]
    fn the_scale_table_holds_the_medians_by_setup_and_workers() {
        let mut samples = Samples::default();
        for (workers, rate, broker) in [
            (1, 100.0, Some(5.0)),
            (2, 150.0, None),
            (1, 120.0, Some(7.0)),
            (1, 110.0, Some(6.0)),
        ] {
            samples.add_scale(ScaleSample {
                setup: "single node",
                workers,
                jobs: 1000,
                timed_jobs: 900,
                seconds: 9.0,
                jobs_per_sec: rate,
                worker_cpu_us_per_job: 10.0,
                broker_cpu_us_per_job: broker,
            });
        }
        let rows = samples.scale_rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].workers, rows[0].runs), (1, 3));
        assert!((rows[0].jobs_per_sec - 110.0).abs() < 1e-9);
        assert_eq!(rows[0].broker_cpu_us_per_job, Some(6.0));
        assert_eq!(rows[1].broker_cpu_us_per_job, None);
        let table = scale_table(&rows);
        assert!(
            table.contains("| single node | 1 | 1000 | 900 | 9.00 | 110 | 10.0 | 6.0 |"),
            "{table}"
        );
        assert!(
            table.contains("| single node | 2 | 1000 | 900 | 9.00 | 150 | 10.0 | — |"),
            "{table}"
        );
    }

    #[test]
    fn the_calls_table_holds_each_caller_by_number_of_callers() {
        let mut samples = Samples::default();
        let rate = ("calls/s", "calls/s");
        for (raw, framework, grpc) in [(1000.0, 950.0, 4000.0), (800.0, 700.0, 5000.0)] {
            for (callers, n) in [(1, 1.0), (10, 10.0)] {
                samples.add_call("quorum", callers, rate, Caller::Raw, raw * n);
                samples.add_call("quorum", callers, rate, Caller::Framework, framework * n);
                samples.add_call("quorum", callers, rate, Caller::Grpc, grpc * n);
            }
        }
        samples.add_call("quorum", 1, ("p99 latency", "µs"), Caller::Grpc, 80.0);
        assert!(samples.rows().is_empty() && samples.cascade_rows().is_empty());
        let rows = samples.call_rows();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].callers, rows[1].callers), (1, 10));
        // The upper median of two runs.
        assert_eq!(
            (rows[1].raw, rows[1].framework, rows[1].grpc),
            (Some(10_000.0), Some(9_500.0), Some(50_000.0))
        );
        let table = calls_table(&rows);
        assert!(
            table.contains(
                "| quorum | 10 | calls/s | 10000 calls/s | 9500 calls/s | 0.95 | 50000 calls/s |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| quorum | 1 | p99 latency | — | — | — | 80.0 µs |"),
            "{table}"
        );
    }
}
