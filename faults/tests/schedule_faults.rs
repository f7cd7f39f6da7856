//! A periodic job under faults: three worker processes serve a job that runs every second, all
//! three run its scheduler, and the broker makes one of them active (a single-active-consumer
//! tick queue). The active scheduler is killed (SIGKILL) twice, each time restarted, and every slot
//! between the first fired and the end must fire, at most once more per kill (a kill between
//! the run's publish and the record of its slot fires the slot again, under the same id), with
//! no gap between two slots' runs longer than a heartbeat and a period.
//!
//! Against the shared RabbitMQ on 127.0.0.1:5672, as the other worker-process scenarios: the
//! job has queues of its own (`jobs_faults.workers.schedule`, `jobs.schedule.fault_schedule` and
//! its `.last`) and the broker is not reconfigured; its ticks pass through the shared delay
//! cascade.

#[path = "../src/fault_jobs.rs"]
#[allow(dead_code, reason = "each test binary uses some of the fault jobs")]
mod fault_jobs;
#[allow(dead_code, reason = "each test binary uses some of the shared support")]
mod workers_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobs_core::envelope::header;
use jobs_core::schedule::{last_fired, last_queue, run_id, tick_queue};
use jobs_core::testing::broker_url;
use jobs_core::transport::Transport;
use jobs_core::{HeaderValue, Job};
use jobs_faults::scenario::{drain, sized};
use jobs_faults::{Ledger, WorkerProcess};
use workers_support::{WORKER, scratch, setup};

/// Worker processes serving the schedule at any time.
const WORKERS: usize = 3;
/// How many times the active scheduler is killed with SIGKILL.
const KILLS: usize = 2;
/// The schedule's period: `every = "1s"`.
const PERIOD: Duration = Duration::from_secs(1);
/// The heartbeat the workers ask for (`?heartbeat=` on their URL): a worker whose connection
/// went silent without closing is given up after this. A SIGKILL closes the socket, so the
/// broker hands the tick queue over at once; the heartbeat is the bound all the same.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// The runs a worker can hold unacked: the job's concurrency (= prefetch).
const RUNS_IN_FLIGHT: usize = 4;
/// What the active scheduler's worker logs for each slot it fires.
const FIRED_LOG: &str = "scheduled job enqueued";

/// One run of the job, as a handled file's line says.
#[derive(Clone, Debug)]
struct Run {
    /// Its message id.
    id: String,
    /// Its slot, Unix seconds (the `x-jobs-slot` header).
    slot: u64,
    /// When its handler started, Unix milliseconds; `None` for a run found in the queue at the
    /// end (fired, never handled: every worker had stopped).
    started_ms: Option<u64>,
    /// Whether the broker redelivered it: a worker killed with the run unacked. Not a slot
    /// fired again, which comes as a new message.
    redelivered: bool,
}

/// A worker process of the scenario and its file of runs.
struct Scheduler {
    /// The number it was started with: its connection name and file name carry it.
    number: usize,
    process: WorkerProcess,
}

impl Scheduler {
    fn start(url: &str, job: &Job, dir: &Path, number: usize) -> Self {
        let file = handled_file(dir, number);
        let name = format!("jobs-faults-schedule-{number}-{}", std::process::id());
        let args = ["--jobs", job.name(), "--connection-name", &name];
        let env = [
            (fault_jobs::HANDLED_FILE, file.into_os_string()),
            // The scheduler's info lines name each slot it fires: how the test sees which
            // worker is the active scheduler, without reading the broker's record under it.
            ("RUST_LOG", "warn,jobs_core::schedule=info".into()),
        ];
        let mut process = WorkerProcess::start(Path::new(WORKER), url, &args, &env)
            .expect("the fault worker starts");
        process
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("{error}"));
        Self { number, process }
    }

    /// The run id of the latest slot this worker's scheduler fired, from its log.
    fn last_fired(&self) -> Option<String> {
        self.process
            .output()
            .lines()
            .filter(|line| line.contains(FIRED_LOG))
            .filter_map(|line| {
                let start = line.find("fault_schedule@")?;
                let id = &line[start..];
                Some(id[..id.find('Z')? + 1].to_owned())
            })
            .max()
    }
}

fn handled_file(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("runs-{number}"))
}

/// The worker whose scheduler fired the latest slot, and that slot's run id.
fn active(schedulers: &[Scheduler]) -> Option<(usize, String)> {
    schedulers
        .iter()
        .enumerate()
        .filter_map(|(index, scheduler)| Some((index, scheduler.last_fired()?)))
        .max_by(|a, b| a.1.cmp(&b.1))
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
}

/// Every whole line of the handled files `0..files`; a torn last line of a killed worker
/// counts as not written (that handling was not acked, and comes again).
fn runs(dir: &Path, files: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    for number in 0..files {
        let text = std::fs::read_to_string(handled_file(dir, number)).unwrap_or_default();
        for line in text
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, slot, started, _pid, redelivered] = fields[..] else {
                panic!("a malformed line in runs-{number}: {line:?}");
            };
            runs.push(Run {
                id: id.to_owned(),
                slot: slot
                    .parse()
                    .unwrap_or_else(|_| panic!("a run without its slot header: {line:?}")),
                started_ms: Some(started.parse().expect("a start time")),
                redelivered: redelivered == "1",
            });
        }
    }
    runs
}

/// Waits at most `within` until some run's slot is `slot` or later.
async fn until_slot(dir: &Path, files: usize, slot: u64, within: Duration) {
    let started = Instant::now();
    while !runs(dir, files).iter().any(|run| run.slot >= slot) {
        assert!(
            started.elapsed() < within,
            "no slot from {slot} on ran within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `url` asking for `heartbeat`.
fn with_heartbeat(url: &str, heartbeat: Duration) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat={}", heartbeat.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_survives_its_active_scheduler_killed_twice() {
    let Some(url) = broker_url() else { return };
    let job = &fault_jobs::fault_schedule::JOB;
    let (transport, _producer) = setup(&url, job, "schedule").await;
    // An earlier run's ticks and record would start this one from its slots.
    for queue in [tick_queue(job), last_queue(job)] {
        transport.purge(&queue).await.expect("the queue is purged");
    }
    let dir = scratch("schedule");
    let worker_url = with_heartbeat(&url, HEARTBEAT);
    let run_for = sized(Duration::from_secs(30), Duration::from_secs(120));
    // How long a slot may take to run after its slot time, with no fault: generous, for a
    // loaded machine; the check that matters is on the gaps.
    let settle = Duration::from_secs(30);

    let mut started = 0;
    let mut schedulers: Vec<Scheduler> = (0..WORKERS)
        .map(|_| {
            started += 1;
            Scheduler::start(&worker_url, job, &dir, started - 1)
        })
        .collect();
    until_slot(&dir, started, 0, settle).await;
    let began = Instant::now();
    let first_slot = runs(&dir, started)
        .iter()
        .map(|run| run.slot)
        .min()
        .expect("a first run");
    eprintln!("schedule: first slot {first_slot} fired");

    let mut pids = schedulers
        .iter()
        .map(|s| s.process.pid())
        .collect::<Vec<_>>();
    let mut takeovers = Vec::new();
    for kill in 1..=KILLS {
        // Scenario time: the schedule runs undisturbed for its share of the run.
        let share = run_for.mul_f64(kill as f64 / (KILLS + 1) as f64);
        tokio::time::sleep(share.saturating_sub(began.elapsed())).await;
        // The active scheduler is the one that fired the latest slot, and a slot fired within
        // the last two seconds: the one it fires next will be its own.
        let wait = Instant::now();
        let (index, fired) = loop {
            let now = unix_now().as_secs();
            let recent = run_id(job, UNIX_EPOCH + Duration::from_secs(now - 2));
            match active(&schedulers) {
                Some((index, fired)) if fired >= recent => break (index, fired),
                _ => {
                    assert!(
                        wait.elapsed() < settle,
                        "kill {kill}: no scheduler fired a slot in {settle:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        // The first kill lands wherever the active scheduler is (mostly waiting for its next
        // tick); the second as it fires a slot: right after its log line, which follows the
        // run's confirm and comes before the next tick and the record, so that the slot may
        // fire again under the new active scheduler.
        let fired = if kill.is_multiple_of(2) {
            let fires = Instant::now();
            loop {
                if let Some(next) = schedulers[index].last_fired()
                    && next > fired
                {
                    break next;
                }
                assert!(
                    fires.elapsed() < settle,
                    "kill {kill}: the active scheduler fired nothing after {fired}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            fired
        };
        let mut victim = schedulers.remove(index);
        victim.process.signal("KILL").expect("kill -KILL");
        let killed = Instant::now();
        let status = victim
            .process
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(!status.success(), "a killed worker: {status}");
        // Another worker's scheduler takes over and fires a later slot.
        let takeover = loop {
            if let Some((_, next)) = active(&schedulers)
                && next > fired
            {
                break next;
            }
            assert!(
                killed.elapsed() < settle,
                "kill {kill}: no other scheduler fired after {fired} within {settle:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "schedule: kill {kill} of worker {} (pid {}), the active scheduler, after it fired \
             {fired}; {takeover} fired by another {:?} after the kill",
            victim.number,
            victim.process.pid(),
            killed.elapsed()
        );
        takeovers.push((fired, killed.elapsed()));
        // Back to three: the new worker's scheduler starts a chain of its own, which must
        // merge into the running one rather than fire its slots again.
        started += 1;
        let replacement = Scheduler::start(&worker_url, job, &dir, started - 1);
        pids.push(replacement.process.pid());
        schedulers.push(replacement);
    }
    tokio::time::sleep(run_for.saturating_sub(began.elapsed())).await;

    // The end: the slot before now must have run; then every worker drains and stops.
    let last_slot = unix_now().as_secs() - 1;
    until_slot(&dir, started, last_slot, settle).await;
    for scheduler in &schedulers {
        scheduler.process.signal("TERM").expect("kill -TERM");
    }
    for scheduler in &mut schedulers {
        let status = scheduler
            .process
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            status.success(),
            "exit {status}:\n{}",
            scheduler.process.output()
        );
        assert!(
            !scheduler.process.output().contains("panicked"),
            "{}",
            scheduler.process.output()
        );
    }
    let mut all = runs(&dir, started);
    // Runs fired as the workers stopped wait in the queue: fired, never handled.
    let left = transport.message_count(job.queue()).await.expect("a count");
    for delivery in drain(
        &transport,
        job.queue(),
        usize::try_from(left).expect("a count"),
        Duration::from_secs(10),
    )
    .await
    {
        let properties = &delivery.envelope.properties;
        all.push(Run {
            id: properties.message_id.clone().unwrap_or_default(),
            slot: properties
                .headers
                .get(header::SLOT)
                .and_then(HeaderValue::as_i64)
                .and_then(|slot| u64::try_from(slot).ok())
                .expect("a run's slot header"),
            started_ms: None,
            redelivered: delivery.redelivered,
        });
    }

    // The record names the worker that fired the last slot: one of ours, by its pid.
    let record = last_fired(&transport, job)
        .await
        .expect("the record is read")
        .expect("a slot was recorded");
    assert!(
        pids.iter()
            .any(|pid| record.by.ends_with(&format!("(pid {pid})"))
                && record.by.starts_with("jobs-faults-schedule-")),
        "the last slot fired by {:?}, none of the workers {pids:?}",
        record.by
    );

    // Each run's id names its slot: a slot fired twice carries one id.
    for run in &all {
        assert_eq!(
            run.id,
            run_id(job, UNIX_EPOCH + Duration::from_secs(run.slot)),
            "a run's id and slot header disagree"
        );
    }
    let mut by_slot: BTreeMap<u64, Vec<&Run>> = BTreeMap::new();
    for run in &all {
        by_slot.entry(run.slot).or_default().push(run);
    }
    assert_eq!(
        by_slot.keys().next(),
        Some(&first_slot),
        "no slot before the first"
    );

    // Every slot from the first to the last is a job of the ledger: attempted and confirmed
    // as the schedule promises it, handled for each run.
    let ledger = Ledger::new();
    for slot in first_slot..=last_slot {
        ledger.attempted(slot);
        ledger.confirmed(slot);
    }
    // A slot's fires: its runs that came as new messages, or one when only a redelivery of
    // its run was recorded (the first handling's line torn by the kill). A redelivered run is
    // the job queue's at-least-once, not the scheduler's: counted apart.
    let fires = |runs: &[&Run]| {
        runs.iter()
            .filter(|run| !run.redelivered)
            .count()
            .max(usize::from(!runs.is_empty()))
    };
    for (slot, runs) in by_slot.range(first_slot..=last_slot) {
        for _ in 0..fires(runs) {
            ledger.handled(*slot);
        }
    }
    let duplicates: Vec<(u64, usize)> = by_slot
        .iter()
        .filter(|(_, runs)| fires(runs) > 1)
        .map(|(slot, runs)| (*slot, fires(runs)))
        .collect();
    let redelivered: Vec<u64> = all
        .iter()
        .filter(|run| run.redelivered)
        .map(|run| run.slot)
        .collect();

    // The gaps: between the first runs of consecutive slots, and how late each slot ran.
    let mut previous: Option<(u64, u64)> = None;
    let mut largest_gap = (Duration::ZERO, 0);
    let mut latest = (Duration::ZERO, 0);
    for (slot, runs) in by_slot.range(first_slot..=last_slot) {
        let Some(first_start) = runs.iter().filter_map(|run| run.started_ms).min() else {
            continue;
        };
        let late = Duration::from_millis(first_start.saturating_sub(slot * 1000));
        if late > latest.0 {
            latest = (late, *slot);
        }
        if let Some((_, before)) = previous {
            let gap = Duration::from_millis(first_start.saturating_sub(before));
            if gap > largest_gap.0 {
                largest_gap = (gap, *slot);
            }
        }
        previous = Some((*slot, first_start));
    }
    eprintln!(
        "schedule: slots {first_slot}..={last_slot}; slots fired more than once: \
         {duplicates:?}; runs redelivered: {redelivered:?}; largest gap {:?} before slot {}; latest run {:?} after slot {}; \
         takeovers {takeovers:?}",
        largest_gap.0, largest_gap.1, latest.0, latest.1
    );

    let report = ledger.report();
    // A kill between a slot's run and its record fires the slot again: one duplicate per kill
    // at most.
    report.check(
        &format!(
            "1 s schedule, {WORKERS} workers, {} s, active scheduler SIGKILLed {KILLS}x",
            run_for.as_secs()
        ),
        KILLS as u64,
    );
    // A killed worker held at most the runs it was handling, one a second.
    assert!(
        redelivered.len() <= KILLS * RUNS_IN_FLIGHT,
        "{} runs redelivered after {KILLS} kills: {redelivered:?}",
        redelivered.len()
    );
    assert!(
        largest_gap.0 <= HEARTBEAT + PERIOD,
        "a gap of {:?} between the runs of two slots (before slot {}), over the heartbeat \
         and a period",
        largest_gap.0,
        largest_gap.1
    );
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go, with the schedule's: the suite must not leave every job's queues on the
    // shared broker. Best effort: a queue left behind fails nothing.
    if let Err(err) = jobs_core::testing::delete_job_queues(&url, &[job]).await {
        eprintln!("the schedule's queues stay on the broker: {err}");
    }
}
