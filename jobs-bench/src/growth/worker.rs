//! A `jobs-bench-worker` process serving some of the growth measure's jobs: started, probed
//! for readiness and handled jobs, measured from `/proc`, and stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use jobs_core::Job;
use jobs_faults::WorkerProcess;

use crate::plan::stall_limit;

/// How long a worker may take to declare its jobs and attach their consumers.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long a worker may take to exit after SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// How often the drain is checked: each check reads the worker's whole `/metrics`, a few lines
/// per job type, which a tighter loop would make a cost of the row.
const POLL: Duration = Duration::from_millis(50);
/// How often the first handled job is looked for: the drain is timed from it, so the poll
/// bounds how many jobs go untimed.
const FIRST_POLL: Duration = Duration::from_millis(5);
/// The series of handled jobs, one per job type.
const SUCCEEDED: &str = "jobs_succeeded_total{";

/// A worker process, killed if dropped before [`Worker::stop`].
#[derive(Debug)]
pub(super) struct Worker {
    process: WorkerProcess,
}

impl Worker {
    /// Starts `binary` serving `jobs`.
    pub(super) fn start(binary: &Path, url: &str, jobs: &[&'static Job]) -> anyhow::Result<Self> {
        let names = jobs
            .iter()
            .map(|job| job.name())
            .collect::<Vec<_>>()
            .join(",");
        let args = ["--jobs", &names, "--connection-name", "jobs-bench-growth"];
        let env: [(&str, &str); 0] = [];
        let process = WorkerProcess::start(binary, url, &args, &env)
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { process })
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until `/readyz` answers 200.
    pub(super) fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.process
            .wait_ready(READY_WITHIN)
            .map_err(|error| anyhow!(error))
    }

    /// Jobs handled so far, over every job type.
    pub(super) fn handled(&self) -> anyhow::Result<u64> {
        let (_, body) = self
            .process
            .get("/metrics")
            .ok_or_else(|| anyhow!("worker {} does not answer /metrics", self.pid()))?;
        Ok(body
            .lines()
            .filter(|line| line.starts_with(SUCCEEDED))
            .filter_map(|line| line.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
            .sum())
    }

    /// Waits until the worker has handled its first job, and returns how many it has handled
    /// by then. Its metrics endpoint may not answer yet when this starts.
    pub(super) fn wait_first_handled(&mut self) -> anyhow::Result<u64> {
        let started = Instant::now();
        loop {
            if let Ok(handled @ 1..) = self.handled() {
                return Ok(handled);
            }
            if started.elapsed() > READY_WITHIN {
                bail!("the worker handled no job within {READY_WITHIN:?}");
            }
            std::thread::sleep(FIRST_POLL);
        }
    }

    /// Waits until the worker has handled `target` jobs in all.
    pub(super) fn wait_handled(&mut self, target: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        let limit = stall_limit(target);
        loop {
            let handled = self.handled()?;
            if handled >= target {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("the worker stalled: {handled} of {target} jobs handled after {limit:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// The CPU time its threads have run so far, in seconds, to the nanosecond.
    pub(super) fn thread_cpu_seconds(&self) -> anyhow::Result<f64> {
        thread_cpu_seconds(self.pid())
    }

    /// The resident set now (`VmRSS`), in KiB.
    pub(super) fn rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmRSS:")
    }

    /// The peak resident set so far (`VmHWM`), in KiB.
    pub(super) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_kib(self.pid(), "VmHWM:")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        self.process.signal("TERM").context("stopping the worker")?;
        self.process
            .wait_exit(EXIT_WITHIN)
            .map_err(|error| anyhow!(error))?;
        Ok(())
    }
}

/// The CPU time the process's threads have run so far, in seconds, to the nanosecond: the sum
/// of the first field of each `/proc/PID/task/TID/schedstat`. An idle worker runs for less
/// than one clock tick (10 ms) in seconds, so `/proc/PID/stat` would round its idle CPU to 0.
/// Threads that have exited are not counted, which an idle window does not miss.
fn thread_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let dir = format!("/proc/{pid}/task");
    let mut nanos: u64 = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread can end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ran = stat
            .split_whitespace()
            .next()
            .and_then(|ran| ran.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("malformed {}", path.display()))?;
        nanos = nanos.saturating_add(ran);
    }
    Ok(crate::measure::as_f64(nanos) / 1e9)
}

/// A `kB` field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_kib(&status, field).ok_or_else(|| anyhow!("no {field} in {path}"))
}

fn parse_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tjobs-bench-worker\nVmHWM:\t   20480 kB\nVmRSS:\t   18000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(20_480));
        assert_eq!(parse_kib(status, "VmRSS:"), Some(18_000));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_run() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(5) {}
        assert!(thread_cpu_seconds(std::process::id()).unwrap() > 0.0);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(status_kib(std::process::id(), "VmRSS:").unwrap() > 0);
    }
}
