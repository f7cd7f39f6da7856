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
    fn median_of_an_odd_and_an_empty_set() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
