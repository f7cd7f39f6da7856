//! What one measurement yields: jobs per second and client CPU per job, or latency percentiles.

use std::future::Future;
use std::time::Instant;

use cpu_time::ProcessTime;
use serde::Serialize;

/// Throughput of one timed section.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Throughput {
    /// Jobs per second of wall time.
    pub jobs_per_sec: f64,
    /// CPU time of this whole process (every thread) per job, in microseconds.
    pub cpu_us_per_job: f64,
}

/// Runs `section`, which moves `jobs` jobs, and measures its wall and CPU time.
///
/// # Errors
///
/// The section's error.
pub async fn timed<T>(
    jobs: u64,
    section: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(Throughput, T)> {
    let cpu = ProcessTime::try_now()?;
    let wall = Instant::now();
    let output = section.await?;
    let wall = wall.elapsed().as_secs_f64();
    let cpu = cpu.try_elapsed()?.as_secs_f64();
    let jobs = as_f64(jobs);
    let throughput = Throughput {
        jobs_per_sec: jobs / wall,
        cpu_us_per_job: cpu * 1e6 / jobs,
    };
    Ok((throughput, output))
}

/// Send-to-handle latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    /// The median.
    pub p50_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
}

impl Latency {
    /// The percentiles of `nanos`; zero for an empty sample.
    #[must_use]
    pub fn of(mut nanos: Vec<u64>) -> Self {
        nanos.sort_unstable();
        let at = |q: f64| {
            if nanos.is_empty() {
                return 0.0;
            }
            let last = nanos.len() - 1;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an index within 0..=last"
            )]
            let index = (q * as_f64(last as u64)).round() as usize;
            as_f64(nanos[index.min(last)]) / 1e3
        };
        Self {
            p50_us: at(0.50),
            p99_us: at(0.99),
        }
    }
}

/// How late jobs started against when they were due, in milliseconds (negative: early).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lateness {
    /// The earliest.
    pub min_ms: f64,
    /// The median.
    pub p50_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The latest.
    pub max_ms: f64,
    /// Jobs that started before they were due, or more than the tolerance after.
    pub outside: u64,
}

impl Lateness {
    /// The statistics of `nanos`, each a job's start less its due time, counting those outside
    /// `[0, tolerance]`; zero for an empty sample.
    #[must_use]
    pub fn of(mut nanos: Vec<i64>, tolerance: std::time::Duration) -> Self {
        nanos.sort_unstable();
        let tolerance = i64::try_from(tolerance.as_nanos()).unwrap_or(i64::MAX);
        let outside = nanos
            .iter()
            .filter(|&&late| !(0..=tolerance).contains(&late))
            .count();
        let at = |q: f64| {
            if nanos.is_empty() {
                return 0.0;
            }
            let last = nanos.len() - 1;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an index within 0..=last"
            )]
            let index = (q * as_f64(last as u64)).round() as usize;
            #[allow(clippy::cast_precision_loss, reason = "nanoseconds well below 2^53")]
            let late = nanos[index.min(last)] as f64;
            late / 1e6
        };
        Self {
            min_ms: at(0.0),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            outside: u64::try_from(outside).unwrap_or(u64::MAX),
        }
    }
}

/// The median of `values` (the upper one of an even count); `None` for none.
#[must_use]
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// A count as a float for rates; exact below 2^53, far above any run's size.
#[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
#[must_use]
pub fn as_f64(count: u64) -> f64 {
    count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let latency = Latency::of((1..=100).rev().map(|us| us * 1000).collect());
        assert!((latency.p50_us - 51.0).abs() < 1e-9, "{latency:?}");
        assert!((latency.p99_us - 99.0).abs() < 1e-9, "{latency:?}");
    }

    #[test]
    fn lateness_counts_the_early_and_the_too_late() {
        let ms = |ms: i64| ms * 1_000_000;
        let mut sample: Vec<i64> = (0..98).map(|i| ms(10 + i)).collect();
        sample.extend([ms(-3), ms(2000)]);
        let lateness = Lateness::of(sample, std::time::Duration::from_millis(1500));
        assert!((lateness.min_ms + 3.0).abs() < 1e-9, "{lateness:?}");
        assert!((lateness.max_ms - 2000.0).abs() < 1e-9, "{lateness:?}");
        assert!((lateness.p99_ms - 107.0).abs() < 1e-9, "{lateness:?}");
        assert_eq!(lateness.outside, 2);
        assert_eq!(
            Lateness::of(Vec::new(), std::time::Duration::ZERO).outside,
            0
        );
    }

    #[test]
    fn median_of_an_odd_and_an_empty_set() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
