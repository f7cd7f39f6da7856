//! The growth measure's samples, their medians over the runs, and its two tables: one row per
//! number of job types, one per backlog.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::{as_f64, median};

/// One run of one job-types row: a worker process serving `types` job types.
#[derive(Clone, Debug, Serialize)]
pub struct TypesSample {
    /// Job types the worker serves.
    pub types: usize,
    /// From starting the process to `/readyz` answering 200: every job's topology declared and
    /// its consumer attached.
    pub startup_secs: f64,
    /// The worker's CPU time (user + system) while idle, as a percentage of one core.
    pub idle_cpu_percent: f64,
    /// The worker's resident set (`VmRSS`) at the end of the idle window, in MiB.
    pub idle_rss_mib: f64,
    /// Jobs of the end-to-end throughput, spread evenly over the types.
    pub jobs: u64,
    /// Jobs per second from the first enqueue to the last job handled.
    pub jobs_per_sec: f64,
    /// The worker's CPU time over those jobs, in microseconds per job.
    pub worker_cpu_us_per_job: f64,
    /// The worker's peak resident set (`VmHWM`) once it had handled them, in MiB.
    pub peak_rss_mib: f64,
}

/// One run of one backlog row: a worker process draining a queue filled before it started.
#[derive(Clone, Debug, Serialize)]
pub struct BacklogSample {
    /// Jobs waiting in the queue when the worker started.
    pub backlog: u64,
    /// Jobs handled once the worker was ready, over which the rate is taken.
    pub timed_jobs: u64,
    /// From the worker ready to the last job handled.
    pub seconds: f64,
    /// Timed jobs per second.
    pub jobs_per_sec: f64,
    /// The worker's CPU time over the timed jobs, in microseconds per job.
    pub worker_cpu_us_per_job: f64,
    /// The worker's peak resident set (`VmHWM`) over the whole drain, in MiB.
    pub peak_rss_mib: f64,
    /// The worker's resident set (`VmRSS`) once the queue was empty, in MiB.
    pub end_rss_mib: f64,
}

/// The median figures of one job-types row over its runs.
#[derive(Clone, Debug, Serialize)]
pub struct TypesRow {
    /// Job types the worker serves.
    pub types: usize,
    /// Seconds from the process's start to every consumer attached.
    pub startup_secs: f64,
    /// Idle CPU, as a percentage of one core.
    pub idle_cpu_percent: f64,
    /// Idle resident set, in MiB.
    pub idle_rss_mib: f64,
    /// Jobs of the end-to-end throughput.
    pub jobs: u64,
    /// End-to-end jobs per second.
    pub jobs_per_sec: f64,
    /// The worker's CPU per job, in microseconds.
    pub worker_cpu_us_per_job: f64,
    /// Peak resident set after the throughput, in MiB.
    pub peak_rss_mib: f64,
    /// How many runs the medians are of.
    pub runs: usize,
}

/// The median figures of one backlog row over its runs.
#[derive(Clone, Debug, Serialize)]
pub struct BacklogRow {
    /// Jobs waiting when the worker started.
    pub backlog: u64,
    /// Drained jobs per second.
    pub jobs_per_sec: f64,
    /// The worker's CPU per job, in microseconds.
    pub worker_cpu_us_per_job: f64,
    /// Peak resident set over the drain, in MiB.
    pub peak_rss_mib: f64,
    /// Resident set once drained, in MiB.
    pub end_rss_mib: f64,
    /// How many runs the medians are of.
    pub runs: usize,
}

/// Every run of every growth row, in the order they ran.
#[derive(Debug, Default, Serialize)]
pub struct GrowthSamples {
    /// The job-types rows' runs.
    pub types: Vec<TypesSample>,
    /// The backlog rows' runs.
    pub backlogs: Vec<BacklogSample>,
}

/// The median of `figure` over `runs`; 0 for no runs.
fn median_of<T>(runs: &[&T], figure: impl Fn(&T) -> f64) -> f64 {
    median(&runs.iter().map(|run| figure(run)).collect::<Vec<_>>()).unwrap_or(0.0)
}

/// The distinct values of `key` over `samples`, in the order they first appear.
fn keys<T, K: PartialEq>(samples: &[T], key: impl Fn(&T) -> K) -> Vec<K> {
    let mut keys = Vec::new();
    for sample in samples {
        let k = key(sample);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

impl GrowthSamples {
    /// The medians of the job-types rows, fewest types first.
    #[must_use]
    pub fn types_rows(&self) -> Vec<TypesRow> {
        let mut types = keys(&self.types, |s| s.types);
        types.sort_unstable();
        types
            .into_iter()
            .map(|types| {
                let runs: Vec<&TypesSample> =
                    self.types.iter().filter(|s| s.types == types).collect();
                TypesRow {
                    types,
                    startup_secs: median_of(&runs, |s| s.startup_secs),
                    idle_cpu_percent: median_of(&runs, |s| s.idle_cpu_percent),
                    idle_rss_mib: median_of(&runs, |s| s.idle_rss_mib),
                    jobs: runs.first().map_or(0, |s| s.jobs),
                    jobs_per_sec: median_of(&runs, |s| s.jobs_per_sec),
                    worker_cpu_us_per_job: median_of(&runs, |s| s.worker_cpu_us_per_job),
                    peak_rss_mib: median_of(&runs, |s| s.peak_rss_mib),
                    runs: runs.len(),
                }
            })
            .collect()
    }

    /// The medians of the backlog rows, smallest backlog first.
    #[must_use]
    pub fn backlog_rows(&self) -> Vec<BacklogRow> {
        let mut backlogs = keys(&self.backlogs, |s| s.backlog);
        backlogs.sort_unstable();
        backlogs
            .into_iter()
            .map(|backlog| {
                let runs: Vec<&BacklogSample> = self
                    .backlogs
                    .iter()
                    .filter(|s| s.backlog == backlog)
                    .collect();
                BacklogRow {
                    backlog,
                    jobs_per_sec: median_of(&runs, |s| s.jobs_per_sec),
                    worker_cpu_us_per_job: median_of(&runs, |s| s.worker_cpu_us_per_job),
                    peak_rss_mib: median_of(&runs, |s| s.peak_rss_mib),
                    end_rss_mib: median_of(&runs, |s| s.end_rss_mib),
                    runs: runs.len(),
                }
            })
            .collect()
    }
}

/// KiB as MiB.
#[must_use]
pub fn mib(kib: u64) -> f64 {
    as_f64(kib) / 1024.0
}

/// The job-types table, in Markdown.
#[must_use]
pub fn types_table(rows: &[TypesRow]) -> String {
    let mut out = String::from(
        "| job types | startup | idle CPU | idle RSS | jobs | jobs/s | worker CPU µs/job | peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {:.2} s | {:.2} % | {:.1} MiB | {} | {:.0} | {:.1} | {:.1} MiB |",
            row.types,
            row.startup_secs,
            row.idle_cpu_percent,
            row.idle_rss_mib,
            row.jobs,
            row.jobs_per_sec,
            row.worker_cpu_us_per_job,
            row.peak_rss_mib,
        );
    }
    out
}

/// The backlog table, in Markdown.
#[must_use]
pub fn backlog_table(rows: &[BacklogRow]) -> String {
    let mut out = String::from(
        "| backlog | drain jobs/s | worker CPU µs/job | peak RSS | RSS drained |\n\
         |---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {:.1} MiB | {:.1} MiB |",
            row.backlog,
            row.jobs_per_sec,
            row.worker_cpu_us_per_job,
            row.peak_rss_mib,
            row.end_rss_mib,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(types: usize, startup_secs: f64) -> TypesSample {
        TypesSample {
            types,
            startup_secs,
            idle_cpu_percent: 0.5,
            idle_rss_mib: 12.0,
            jobs: 1000,
            jobs_per_sec: 900.0,
            worker_cpu_us_per_job: 20.0,
            peak_rss_mib: 14.0,
        }
    }

    #[test]
    fn types_rows_hold_the_medians_fewest_types_first() {
        let samples = GrowthSamples {
            types: vec![types(10, 0.3), types(1, 0.1), types(1, 0.3), types(1, 0.2)],
            backlogs: Vec::new(),
        };
        let rows = samples.types_rows();
        assert_eq!((rows[0].types, rows[0].runs), (1, 3));
        assert!((rows[0].startup_secs - 0.2).abs() < 1e-9);
        assert_eq!(rows[1].types, 10);
        let table = types_table(&rows);
        assert!(
            table.contains("| 1 | 0.20 s | 0.50 % | 12.0 MiB | 1000 | 900 | 20.0 | 14.0 MiB |"),
            "{table}"
        );
    }

    #[test]
    fn backlog_rows_hold_the_medians_smallest_first() {
        let sample = |backlog, peak| BacklogSample {
            backlog,
            timed_jobs: backlog,
            seconds: 1.0,
            jobs_per_sec: 5000.0,
            worker_cpu_us_per_job: 9.0,
            peak_rss_mib: peak,
            end_rss_mib: 10.0,
        };
        let samples = GrowthSamples {
            types: Vec::new(),
            backlogs: vec![sample(100_000, 20.0), sample(10_000, 18.0)],
        };
        let rows = samples.backlog_rows();
        assert_eq!((rows[0].backlog, rows[1].backlog), (10_000, 100_000));
        let table = backlog_table(&rows);
        assert!(
            table.contains("| 10000 | 5000 | 9.0 | 18.0 MiB | 10.0 MiB |"),
            "{table}"
        );
        assert!((mib(2048) - 2.0).abs() < 1e-9);
    }
}
