//! Competing consumers and scale-out: 1, 2 and 4 worker processes draining one queue.
//!
//! Each row pre-fills the quorum queue of the job `bench_scale_out` with `--n` jobs (the
//! benchmark's ~100-byte [`BenchJob`](crate::message::BenchJob)), then starts K
//! `jobs-bench-worker` processes (`--scale-workers`, 1, 2 and 4 by default) serving it, each a
//! separate OS process with its own connection and `/metrics`. The clock starts once every
//! process answers `/readyz` (all K consumers attached) and stops when the processes' summed
//! `jobs_succeeded_total` reaches `--n`: the jobs handled before the last process was ready
//! (by the ones ready sooner) are left out of the rate, which is the timed jobs over the timed
//! seconds. CPU per job is the user and system time the worker processes, and the broker's
//! Erlang VM(s), spent over the same window (`/proc/PID/stat`), over the timed jobs.
//!
//! Two setups (`--scale-setups`):
//!
//! * **single**: the broker of `--url`, its VM found in `/proc` (or given with
//!   `--broker-pid`); nothing on it is reconfigured, and the job's queues are deleted after.
//! * **cluster**: a private three-node cluster of [`jobs_faults::Cluster`] on loopback. The
//!   queue is declared and filled through node 0, which leads it; worker `i` connects to node
//!   `1 + i mod 2`, so the workers spread over the two followers and every delivery crosses
//!   from the leader's node. The broker CPU is the three VMs'. The nodes are killed and their
//!   directories removed at the end.
//!
//! The handler does nothing (`--scale-sleep-ms` makes it sleep instead): the rows measure what
//! the framework and the broker spend per job, which is what more processes share.

mod job;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::redact_url;
use jobs_faults::{Cluster, WorkerProcess};

use crate::framework::Framework;
use crate::measure::as_f64;
use crate::plan::{Options, stall_limit};
use crate::raw::Raw;
use crate::report::{Samples, ScaleSample};

/// How often the drain is checked: each check reads every worker's `/metrics`.
const POLL: Duration = Duration::from_millis(20);
/// How long a worker process may take to attach its consumer.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a worker process may take to exit after SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// How long a connection to a node may take before the run gives up, rather than hang on a
/// broker that accepts TCP and never answers the handshake.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

/// Where the workers of a row connect and whose VMs are the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleSetup {
    /// One broker, the one of `--url`.
    Single,
    /// A private three-node cluster, the queue led by node 0 and the workers on nodes 1 and 2.
    Cluster,
}

impl ScaleSetup {
    /// The setup's name in the table.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Single => "single node",
            Self::Cluster => "3-node cluster, leader elsewhere",
        }
    }
}

/// One setup's broker, as the rows use it.
struct Place {
    setup: ScaleSetup,
    /// Where the queue is declared and filled.
    fill_url: String,
    /// Worker `i` connects to `worker_urls[i % len]`.
    worker_urls: Vec<String>,
    /// The broker's Erlang VMs, for their CPU time.
    broker_pids: Vec<u32>,
}

/// Runs every row of every setup `--runs` times, the numbers of workers in turn (ascending in
/// even runs, descending in odd ones), adding each row's figures to `samples`.
///
/// # Errors
///
/// When the worker binary is missing, a broker or cluster cannot be reached or started, a
/// worker does not get ready or stalls, or jobs are left in the queue.
pub async fn measure(options: &Options, samples: &mut Samples) -> anyhow::Result<()> {
    ensure!(
        !options.scale_workers.is_empty() && options.scale_workers.iter().all(|&k| k > 0),
        "--scale-workers must list numbers of at least 1"
    );
    let binary = worker_binary(options)?;
    let job = &job::bench_scale_out::JOB;
    let queues = Framework::job_queues(job)?;
    for &setup in &options.scale_setups {
        match setup {
            ScaleSetup::Single => {
                let broker_pids = match options.broker_pid {
                    Some(pid) => vec![pid],
                    None => shared_broker_pid().into_iter().collect(),
                };
                if broker_pids.is_empty() {
                    eprintln!(
                        "jobs-bench: scale-out: no single beam.smp found; the broker's CPU is \
                         left out (--broker-pid gives it)"
                    );
                }
                let place = Place {
                    setup: ScaleSetup::Single,
                    fill_url: options.url.clone(),
                    worker_urls: vec![options.url.clone()],
                    broker_pids,
                };
                Raw::delete(&options.url, &queues)
                    .await
                    .context("raw lapin")?;
                let result = rows(options, &binary, &place, samples).await;
                Raw::delete(&options.url, &queues)
                    .await
                    .context("raw lapin")?;
                result?;
            }
            ScaleSetup::Cluster => {
                jobs_faults::node::rabbitmq_installed()
                    .then_some(())
                    .ok_or_else(|| anyhow!("the cluster rows need the rabbitmq-server package"))?;
                let started = Instant::now();
                let cluster = Cluster::start(3).await.context("starting the cluster")?;
                eprintln!(
                    "jobs-bench: scale-out: cluster of 3 up in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                let broker_pids = (0..cluster.len())
                    .map(|i| cluster.node(i).beam_pid())
                    .collect::<Result<Vec<_>, _>>()
                    .context("the cluster's VMs")?;
                let place = Place {
                    setup: ScaleSetup::Cluster,
                    fill_url: cluster.node(0).url(),
                    worker_urls: vec![cluster.node(1).url(), cluster.node(2).url()],
                    broker_pids,
                };
                // Declared through node 0, so node 0 leads the queue.
                declare(&place).await?;
                let leader = cluster
                    .leader_of(job.queue(), 0)
                    .await
                    .context("the cluster's queues")?;
                ensure!(
                    leader == Some(0),
                    "{} is led by node {leader:?}, not node 0",
                    job.queue()
                );
                rows(options, &binary, &place, samples).await?;
                // Dropping the cluster kills its nodes and removes their directories.
                drop(cluster);
            }
        }
    }
    Ok(())
}

/// Declares the job's topology through the filling node.
async fn declare(place: &Place) -> anyhow::Result<()> {
    let transport = connect(&place.fill_url).await?;
    Framework::for_job(transport.clone(), &job::bench_scale_out::JOB, 1).await?;
    transport.close().await;
    Ok(())
}

pub(crate) async fn connect(url: &str) -> anyhow::Result<Arc<AmqpTransport>> {
    let connecting = AmqpTransport::builder(url)
        .connection_name("jobs-bench scale-out")
        .connect();
    let transport = tokio::time::timeout(CONNECT_WITHIN, connecting)
        .await
        .map_err(|_| anyhow!("no answer within {CONNECT_WITHIN:?}"))
        .and_then(|connected| connected.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to {}", redact_url(url)))?;
    Ok(Arc::new(transport))
}

/// Every run of every number of workers on one setup.
async fn rows(
    options: &Options,
    binary: &Path,
    place: &Place,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    for run in 0..options.runs {
        let mut order = options.scale_workers.clone();
        if run % 2 == 1 {
            order.reverse();
        }
        for &workers in &order {
            let sample = row(options, binary, place, workers).await?;
            eprintln!(
                "jobs-bench: scale-out: {}, {workers} workers, run {}: {:.0} jobs/s, \
                 {:.1} µs/job worker CPU, {} µs/job broker CPU ({} of {} jobs timed)",
                place.setup.label(),
                run + 1,
                sample.jobs_per_sec,
                sample.worker_cpu_us_per_job,
                sample
                    .broker_cpu_us_per_job
                    .map_or_else(|| "—".to_owned(), |cpu| format!("{cpu:.1}")),
                sample.timed_jobs,
                sample.jobs,
            );
            samples.add_scale(sample);
        }
    }
    Ok(())
}

/// One row once: fill the queue, start `workers` processes, time the drain.
async fn row(
    options: &Options,
    binary: &Path,
    place: &Place,
    workers: usize,
) -> anyhow::Result<ScaleSample> {
    let n = options.n;
    let job = &job::bench_scale_out::JOB;
    let transport = connect(&place.fill_url).await?;
    let framework = Framework::for_job(transport.clone(), job, options.producers).await?;
    framework.publish(n, None).await?;
    let ready = framework.ready().await?;
    ensure!(
        ready == n,
        "{ready} of {n} jobs in the queue after the fill"
    );

    let sleep = options.scale_sleep_ms.to_string();
    let mut processes = Vec::with_capacity(workers);
    for i in 0..workers {
        let url = &place.worker_urls[i % place.worker_urls.len()];
        let name = format!("jobs-bench-worker-{i}");
        let args = ["--jobs", job.name(), "--connection-name", &name];
        let env = [(job::SLEEP_VAR, sleep.as_str())];
        processes.push(
            WorkerProcess::start(binary, url, &args, &env)
                .with_context(|| format!("starting {}", binary.display()))?,
        );
    }
    let series = format!("jobs_succeeded_total{{job=\"{}\"}}", job.name());
    let timed = tokio::task::block_in_place(|| drain(&mut processes, &series, place, n));
    for process in &processes {
        let _ = process.signal("TERM");
    }
    for process in &mut processes {
        process
            .wait_exit(EXIT_WITHIN)
            .map_err(|error| anyhow!(error))?;
    }
    let (before, seconds, worker_cpu, broker_cpu) = timed?;
    let left = framework.ready().await?;
    transport.close().await;
    ensure!(left == 0, "{left} jobs left in the queue after the drain");

    let timed_jobs = n.saturating_sub(before);
    ensure!(
        timed_jobs > 0,
        "every job was handled before the last worker was ready"
    );
    let per_job = |secs: f64| secs * 1e6 / as_f64(timed_jobs);
    Ok(ScaleSample {
        setup: place.setup.label(),
        workers,
        jobs: n,
        timed_jobs,
        seconds,
        jobs_per_sec: as_f64(timed_jobs) / seconds,
        worker_cpu_us_per_job: per_job(worker_cpu),
        broker_cpu_us_per_job: broker_cpu.map(per_job),
    })
}

/// Waits until every process is ready, then until they have handled `n` jobs between them:
/// the jobs handled before the clock started, the seconds timed, and the CPU seconds the
/// workers and the broker (when its VMs are known) spent meanwhile.
fn drain(
    processes: &mut [WorkerProcess],
    series: &str,
    place: &Place,
    n: u64,
) -> anyhow::Result<(u64, f64, f64, Option<f64>)> {
    for process in processes.iter_mut() {
        process
            .wait_ready(READY_WITHIN)
            .map_err(|error| anyhow!(error))?;
    }
    let pids: Vec<u32> = processes.iter().map(WorkerProcess::pid).collect();
    let broker = |pids: &[u32]| (!pids.is_empty()).then(|| cpu_seconds(pids)).transpose();
    let (workers0, broker0) = (cpu_seconds(&pids)?, broker(&place.broker_pids)?);
    let handled = |processes: &[WorkerProcess]| -> anyhow::Result<u64> {
        let mut sum = 0;
        for process in processes {
            sum += process
                .metric(series)
                .ok_or_else(|| anyhow!("no {series} from worker {}", process.pid()))?;
        }
        Ok(sum)
    };
    let before = handled(processes)?;
    let started = Instant::now();
    let limit = stall_limit(n);
    while handled(processes)? < n {
        if started.elapsed() > limit {
            bail!(
                "the workers stalled: {} of {n} jobs handled after {limit:?}",
                handled(processes)?
            );
        }
        std::thread::sleep(POLL);
    }
    let seconds = started.elapsed().as_secs_f64();
    let workers = cpu_seconds(&pids)? - workers0;
    let broker = match (broker(&place.broker_pids)?, broker0) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
    Ok((before, seconds, workers, broker))
}

/// `jobs-bench-worker`: `--worker-binary`, or beside this program.
pub(crate) fn worker_binary(options: &Options) -> anyhow::Result<PathBuf> {
    let binary = match &options.worker_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?.with_file_name("jobs-bench-worker"),
    };
    ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release -p jobs-bench`",
        binary.display()
    );
    Ok(binary)
}

/// The user and system CPU seconds of `pids` so far, from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    let ticks = clock_ticks();
    let mut total = 0;
    for &pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        total += stat_ticks(&stat).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    }
    Ok(as_f64(total) / ticks)
}

/// utime + stime, in clock ticks, of a `/proc/PID/stat` line: fields 14 and 15, counted after
/// the command name in parentheses (which may hold spaces).
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|ticks| ticks.trim().parse::<u32>().ok())
        .map_or(100.0, f64::from)
}

/// The pid of the one `beam.smp` that is not a private node of the fault battery, if there is
/// exactly one: the shared broker's Erlang VM.
fn shared_broker_pid() -> Option<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "beam.smp" {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("jobs-faults-node") {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Some(*pid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces() {
        let stat = "2961 (beam (smp) x) S 1 2961 2961 0 -1 4194560 1 0 0 0 39571 9784 0 0 20 0";
        assert_eq!(stat_ticks(stat), Some(39_571 + 9_784));
        assert_eq!(stat_ticks("12 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let seconds = cpu_seconds(&[std::process::id()]).unwrap();
        assert!(seconds >= 0.0, "{seconds}");
    }
}
