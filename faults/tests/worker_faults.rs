//! Worker processes under faults, against the shared RabbitMQ on 127.0.0.1:5672, each scenario
//! on its own job's queues, every job counted by a [`Ledger`]: SIGKILL with hundreds of jobs in
//! flight, SIGTERM drain, poison jobs, and a job that kills its worker every time.

#[path = "../src/fault_jobs.rs"]
#[allow(dead_code, reason = "each test binary uses some of the fault jobs")]
mod fault_jobs;
mod workers_support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fault_jobs::Tracked;
use futures_util::StreamExt as _;
use jobs_core::control;
use jobs_core::envelope::header;
use jobs_core::testing::broker_url;
use jobs_core::transport::Transport;
use jobs_core::{Job, Producer};
use jobs_faults::scenario::{drain, full};
use jobs_faults::{Ledger, WorkerProcess};
use prost::Message as _;
use tokio::time::Instant;
use workers_support::{WORKER, scratch, setup, wait_count};

/// Held by the scenarios that run three worker processes each, one at a time: together, beside
/// the others, they starve a 2-core machine.
static THREE_WORKERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often the concurrency-limit scenario reads the workers' in-flight gauges.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// The signal `std::process::abort` raises.
const SIGABRT: i32 = 6;
const SIGTERM: i32 = 15;

/// Starts the fault worker serving `job`, with `args` and the record files `env`.
fn start(url: &str, job: &Job, args: &[&str], env: &[(&str, &Path)]) -> WorkerProcess {
    let mut worker = spawn(url, job, args, env);
    worker
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));
    worker
}

/// Starts the fault worker serving `job`, without waiting for it to be ready.
fn spawn(url: &str, job: &Job, args: &[&str], env: &[(&str, &Path)]) -> WorkerProcess {
    let mut all = vec!["--jobs", job.name()];
    all.extend_from_slice(args);
    WorkerProcess::start(Path::new(WORKER), url, &all, env).expect("the fault worker starts")
}

/// Loads the record files a scenario's workers wrote into `ledger`; a worker that handled
/// nothing wrote none.
fn load_handled(ledger: &Ledger, files: &[&Path]) {
    for file in files.iter().filter(|file| file.exists()) {
        ledger.load_handled(file).expect("a handled file");
    }
}

/// Stops `worker` with SIGTERM, and asserts that it drained and exited 0 within 30 s, without
/// a panic in its output.
fn terminate(worker: &mut WorkerProcess) {
    worker.signal("TERM").expect("kill -TERM");
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit {status}:\n{}", worker.output());
    assert!(!worker.output().contains("panicked"), "{}", worker.output());
}

/// The ids in record files, each with how many whole lines name it.
///
/// Each worker process gets a file of its own: were a SIGKILL ever to tear a last line, the
/// next worker's first line would otherwise be glued to it into a wrong id.
fn counts(paths: &[&Path]) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for id in text
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .filter_map(|line| line.trim().parse().ok())
        {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Enqueues `Tracked` jobs `ids` through `enqueue`, 256 at a time, recording each in the
/// ledger; without faults on the way, every one must be confirmed.
async fn enqueue_all<F, Fut>(
    producer: &Producer,
    ledger: &Ledger,
    ids: std::ops::Range<u64>,
    enqueue: F,
) where
    F: Fn(Producer, u64) -> Fut,
    Fut: Future<Output = jobs_core::Result<jobs_core::MessageId>>,
{
    futures_util::stream::iter(ids)
        .map(|id| {
            ledger.attempted(id);
            let sent = enqueue(producer.clone(), id);
            async move {
                sent.await.expect("a confirmed enqueue");
                ledger.confirmed(id);
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_hundreds_in_flight_then_a_second_worker_loses_nothing() {
    let Some(url) = broker_url() else { return };
    let job = &fault_jobs::tracked_kill::JOB;
    let (transport, producer) = setup(&url, job, "sigkill").await;
    let dir = scratch("sigkill");
    let total: u64 = if full() { 20_000 } else { 2_000 };
    let ledger = Ledger::new();
    // Handlers of 100 to 300 ms, so they finish all the time, not in waves: a kill lands
    // among handlers that have just finished and whose acks are on their way.
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        let sleep_ms = 100 + (id * 37 % 200) as u32;
        fault_jobs::tracked_kill::enqueue(&producer, Tracked::new(id, sleep_ms)).await
    })
    .await;

    // The job's concurrency (= prefetch) is 300: the worker holds 300 deliveries at once.
    // Kill it with hundreds running and some already acked; the full run kills three
    // workers in turn.
    let prefetch: u64 = 300;
    let kills: u64 = if full() { 3 } else { 1 };
    let in_flight = "jobs_in_flight{job=\"tracked_kill\"}";
    let files: Vec<PathBuf> = (0..=kills)
        .map(|worker| dir.join(format!("handled-{worker}")))
        .collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut running = Vec::new();
    for kill in 1..=kills {
        let env = [(fault_jobs::HANDLED_FILE, files[kill as usize - 1])];
        let mut worker = start(&url, job, &[], &env);
        let after = (kill as usize) * 500;
        worker
            .wait_for(
                &format!("250 in flight after {after} handled"),
                Duration::from_secs(30),
                |w| counts(&files).len() >= after && w.metric(in_flight).is_some_and(|n| n >= 250),
            )
            .unwrap_or_else(|error| panic!("{error}"));
        running.push(worker.metric(in_flight).expect("the in-flight gauge"));
        worker.signal("KILL").expect("kill -KILL");
        let status = worker
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!status.success(), "a killed worker: {status}");
        eprintln!(
            "kill {kill}: {} handlers running, {} jobs handled",
            running[running.len() - 1],
            counts(&files).len()
        );
    }

    let env = [(fault_jobs::HANDLED_FILE, files[kills as usize])];
    let mut second = start(&url, job, &[], &env);
    let timeout = Duration::from_secs(if full() { 300 } else { 60 });
    second
        .wait_for("every job handled", timeout, |_| {
            counts(&files).len() as u64 == total
        })
        .unwrap_or_else(|error| panic!("{error}"));
    terminate(&mut second);
    assert_eq!(
        transport.message_count(job.queue()).await.expect("a count"),
        0
    );

    for file in &files {
        ledger.load_handled(file).expect("a handled file");
    }
    let report = ledger.report();
    // Every duplicate is a delivery a killed worker had handled but whose ack the broker had
    // not processed: a delivery unacked at a kill. At most the prefetch are unacked at once
    // (the handlers running then had not finished, so their redelivery is their first
    // handling), hence the bound: the prefetch for each kill.
    let running: Vec<String> = running.iter().map(u64::to_string).collect();
    report.check(
        &format!("worker SIGKILL x{kills}, {} in flight", running.join("/")),
        prefetch * kills,
    );
    assert_eq!(report.handled as u64, total);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_jobs_exits_0_and_requeues_the_rest_once() {
    let Some(url) = broker_url() else { return };
    let job = &fault_jobs::tracked_term::JOB;
    let (transport, producer) = setup(&url, job, "sigterm").await;
    let dir = scratch("sigterm");
    let (handled_first, handled_second) = (dir.join("first"), dir.join("second"));
    let total: u64 = if full() { 15_000 } else { 1_500 };
    let ledger = Ledger::new();
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        fault_jobs::tracked_term::enqueue(&producer, Tracked::new(id, 300)).await
    })
    .await;

    // 100 handlers at once, 300 deliveries held: at SIGTERM 100 run and finish, and the 200
    // waiting go back to the queue without running.
    let args = ["--prefetch", "300", "--shutdown-timeout", "10s"];
    let env = [(fault_jobs::HANDLED_FILE, handled_first.as_path())];
    let in_flight = "jobs_in_flight{job=\"tracked_term\"}";
    let mut first = start(&url, job, &args, &env);
    first
        .wait_for(
            "80 in flight after 200 handled",
            Duration::from_secs(30),
            |w| {
                counts(&[&handled_first]).len() >= 200
                    && w.metric(in_flight).is_some_and(|n| n >= 80)
            },
        )
        .unwrap_or_else(|error| panic!("{error}"));
    let started = first
        .metric("jobs_started_total{job=\"tracked_term\"}")
        .expect("the started counter");
    first.signal("TERM").expect("kill -TERM");
    let status = first
        .wait_exit(Duration::from_secs(10 + 5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit {status}:\n{}", first.output());
    let by_first = counts(&[&handled_first]);
    assert!(
        by_first.len() as u64 >= started,
        "the {started} jobs started before SIGTERM finished; {} did",
        by_first.len()
    );
    assert!(!first.output().contains("panicked"), "{}", first.output());

    let env = [(fault_jobs::HANDLED_FILE, handled_second.as_path())];
    let mut second = start(&url, job, &["--concurrency", "300"], &env);
    let timeout = Duration::from_secs(if full() { 300 } else { 60 });
    second
        .wait_for("every job handled", timeout, |_| {
            counts(&[&handled_first, &handled_second]).len() >= total as usize
        })
        .unwrap_or_else(|error| panic!("{error}"));
    terminate(&mut second);
    assert_eq!(
        transport.message_count(job.queue()).await.expect("a count"),
        0
    );

    for file in [&handled_first, &handled_second] {
        ledger.load_handled(file).expect("a handled file");
    }
    // No fault: a drain finishes what runs and requeues only what never started, so nothing
    // is handled twice. (This caught the engine closing its channel right after the last acks:
    // a quorum queue had not applied them all, and redelivered up to 46 finished jobs.)
    ledger.report().check("worker SIGTERM drain", 0);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stops_three_workers_a_restarted_one_stays_paused_and_resume_loses_nothing() {
    let Some(url) = broker_url() else { return };
    let _alone = THREE_WORKERS.lock().await;
    let job = &fault_jobs::tracked_pause::JOB;
    let (transport, producer) = setup(&url, job, "pause").await;
    // Whatever an earlier run left.
    control::resume(&transport, job.name())
        .await
        .expect("resumed");
    let dir = scratch("pause");
    let total: u64 = if full() { 20_000 } else { 3_000 };
    let ledger = Ledger::new();
    // 100 ms handlers: three workers of 32 handlers run about 900 jobs a second.
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        fault_jobs::tracked_pause::enqueue(&producer, Tracked::new(id, 100)).await
    })
    .await;

    let files: Vec<PathBuf> = (0..4).map(|n| dir.join(format!("handled-{n}"))).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|n| start(&url, job, &[], &[(fault_jobs::HANDLED_FILE, files[n])]))
        .collect();
    workers[0]
        .wait_for("500 handled", Duration::from_secs(60), |_| {
            counts(&files).len() >= 500
        })
        .unwrap_or_else(|error| panic!("{error}"));

    // The pause reaches all three, and their running jobs finish, within 2 s.
    let paused = "jobs_paused{job=\"tracked_pause\"}";
    let in_flight = "jobs_in_flight{job=\"tracked_pause\"}";
    let pausing = Instant::now();
    control::pause(&transport, job.name())
        .await
        .expect("paused");
    for worker in &mut workers {
        let left = Duration::from_secs(2).saturating_sub(pausing.elapsed());
        worker
            .wait_for("paused, nothing running", left, |w| {
                w.metric(paused) == Some(1) && w.metric(in_flight) == Some(0)
            })
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let stopped_in = pausing.elapsed();
    let handled_at_stop = counts(&files).len();

    // A worker restarted while paused starts paused.
    terminate(&mut workers[0]);
    workers[0] = start(&url, job, &[], &[(fault_jobs::HANDLED_FILE, files[3])]);
    assert_eq!(
        workers[0].metric(paused),
        Some(1),
        "the restarted worker starts paused"
    );

    // Nothing runs while paused: every job not handled waits in the queue.
    wait_count(
        &transport,
        job.queue(),
        total - handled_at_stop as u64,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        counts(&files).len(),
        handled_at_stop,
        "nothing handled while paused"
    );

    control::resume(&transport, job.name())
        .await
        .expect("resumed");
    let timeout = Duration::from_secs(if full() { 300 } else { 60 });
    workers[0]
        .wait_for("every job handled", timeout, |_| {
            counts(&files).len() as u64 == total
        })
        .unwrap_or_else(|error| panic!("{error}"));
    for worker in &mut workers {
        assert_eq!(worker.metric(paused), Some(0), "resumed");
        terminate(worker);
    }
    eprintln!(
        "pause: 3 workers stopped in {stopped_in:?} with {handled_at_stop} of {total} handled"
    );

    load_handled(&ledger, &files);
    // No fault: a pause finishes what runs and takes nothing more, so nothing runs twice.
    ledger
        .report()
        .check("pause across 3 workers, one restarted while paused", 0);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_holds_across_three_workers_and_a_killed_workers_slots_come_back() {
    let Some(url) = broker_url() else { return };
    let _alone = THREE_WORKERS.lock().await;
    let job = &fault_jobs::tracked_limited::JOB;
    let (transport, producer) = setup(&url, job, "limited").await;
    let dir = scratch("limited");
    let total: u64 = if full() { 5_000 } else { 800 };
    let ledger = Ledger::new();
    // 50 ms handlers: four at once run about 80 a second.
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        fault_jobs::tracked_limited::enqueue(&producer, Tracked::new(id, 50)).await
    })
    .await;

    let files: Vec<PathBuf> = (0..3).map(|n| dir.join(format!("handled-{n}"))).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|n| start(&url, job, &[], &[(fault_jobs::HANDLED_FILE, files[n])]))
        .collect();
    let in_flight = "jobs_in_flight{job=\"tracked_limited\"}";
    // The handlers running across the live workers, read one worker after another.
    let running = |workers: &[WorkerProcess], alive: &[bool]| -> u64 {
        workers
            .iter()
            .zip(alive)
            .filter(|(_, alive)| **alive)
            .filter_map(|(worker, _)| worker.metric(in_flight))
            .sum()
    };
    let mut alive = [true; 3];
    let mut most = 0;
    // Sampled until a third of the jobs are handled, with the limit reached.
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&files).len() < total as usize / 3 {
        most = most.max(running(&workers, &alive));
        assert!(Instant::now() < deadline, "a third handled within 60 s");
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    assert_eq!(most, 4, "the limit was reached and never passed");

    // Kill the worker that started the most (the first one started holds every slot): its
    // slots come back to the others.
    let started = "jobs_started_total{job=\"tracked_limited\"}";
    let holder = (0..3)
        .max_by_key(|&n| workers[n].metric(started).unwrap_or(0))
        .expect("three workers");
    eprintln!(
        "started by each worker before the kill: {:?}",
        workers
            .iter()
            .map(|w| w.metric(started))
            .collect::<Vec<_>>()
    );
    workers[holder].signal("KILL").expect("kill -KILL");
    let status = workers[holder]
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!status.success(), "a killed worker: {status}");
    alive[holder] = false;
    let killed = Instant::now();
    let mut back_in = None;
    let deadline = Instant::now() + Duration::from_secs(if full() { 300 } else { 120 });
    while counts(&files).len() < total as usize {
        let now = running(&workers, &alive);
        most = most.max(now);
        if now == 4 && back_in.is_none() {
            back_in = Some(killed.elapsed());
        }
        assert!(Instant::now() < deadline, "every job handled in time");
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    assert!(most <= 4, "{most} handlers ran at once");
    let back_in = back_in.expect("four handlers ran again after the kill");
    // RabbitMQ's heartbeat timeout is 60 s; a killed process's sockets close at once.
    assert!(back_in < Duration::from_secs(60), "back in {back_in:?}");
    for (n, worker) in workers.iter_mut().enumerate() {
        if alive[n] {
            terminate(worker);
        }
    }
    eprintln!(
        "max_running 4: at most {most} at once across 3 workers; after a SIGKILL, 4 again in {back_in:?}"
    );
    // A worker that never held a slot handled nothing, and wrote no file.
    load_handled(&ledger, &files);
    // The killed worker's running jobs (at most its slots) run again.
    ledger
        .report()
        .check("max_running 4 across 3 workers, the holder SIGKILLed", 4);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_50_a_second_holds_across_three_workers() {
    let Some(url) = broker_url() else { return };
    let _alone = THREE_WORKERS.lock().await;
    let job = &fault_jobs::tracked_paced::JOB;
    let (transport, producer) = setup(&url, job, "paced").await;
    let dir = scratch("paced");
    let total: u64 = 1_000;
    let ledger = Ledger::new();
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        fault_jobs::tracked_paced::enqueue(&producer, Tracked::new(id, 0)).await
    })
    .await;
    let files: Vec<PathBuf> = (0..3).map(|n| dir.join(format!("handled-{n}"))).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    // Started together, not one after the other: the first handles jobs as soon as it is up,
    // and the clock below must see its first one.
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|n| spawn(&url, job, &[], &[(fault_jobs::HANDLED_FILE, files[n])]))
        .collect();

    // From the first job handled to the last: the rate allows one ticket ready and one held
    // by each worker ahead, so 1,000 jobs take at least (1,000 - 4) / 50 s.
    workers[0]
        .wait_for("a job handled", Duration::from_secs(60), |_| {
            !counts(&files).is_empty()
        })
        .unwrap_or_else(|error| panic!("{error}"));
    let first = Instant::now();
    workers[0]
        .wait_for("every job handled", Duration::from_secs(120), |_| {
            counts(&files).len() as u64 == total
        })
        .unwrap_or_else(|error| panic!("{error}"));
    let took = first.elapsed();
    assert!(
        took >= Duration::from_millis(19_500),
        "{total} jobs at 50/s took {took:?}"
    );
    for worker in &mut workers {
        terminate(worker);
    }
    eprintln!("rate 50/s: {total} jobs over 3 worker processes took {took:?}");
    load_handled(&ledger, &files);
    ledger
        .report()
        .check("rate 50/s across 3 workers, 1,000 jobs", 0);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_get_exactly_their_attempts_then_the_error_queue_with_headers() {
    let Some(url) = broker_url() else { return };
    let job = &fault_jobs::poison::JOB;
    let (transport, producer) = setup(&url, job, "poison").await;
    let dir = scratch("poison");
    let runs = dir.join("runs");
    let total: u64 = if full() { 500 } else { 40 };
    let ledger = Ledger::new();
    let mut worker = start(&url, job, &[], &[(fault_jobs::RUNS_FILE, runs.as_path())]);
    enqueue_all(&producer, &ledger, 0..total, |producer, id| async move {
        fault_jobs::poison::enqueue(&producer, Tracked::new(id, 0)).await
    })
    .await;

    let error_queue = format!("{}.err", job.queue());
    wait_count(&transport, &error_queue, total, Duration::from_secs(60)).await;
    terminate(&mut worker);

    // retries = 2: three runs of each job, no more, no fewer.
    let attempts = 3;
    let runs = counts(&[&runs]);
    assert_eq!(runs.len() as u64, total, "every poison job ran");
    let wrong: Vec<_> = runs.iter().filter(|(_, n)| **n != attempts).collect();
    assert!(
        wrong.is_empty(),
        "jobs run other than {attempts} times: {wrong:?}"
    );

    for delivery in drain(
        &transport,
        &error_queue,
        total as usize,
        Duration::from_secs(30),
    )
    .await
    {
        let envelope = &delivery.envelope;
        let id = Tracked::decode(envelope.body.clone())
            .expect("the original body in the error queue")
            .id;
        ledger.failed(id);
        let headers = &envelope.properties.headers;
        let text = |name| headers.get_str(name).unwrap_or_default().to_owned();
        assert_eq!(text(header::ERROR_KIND), "handler", "{headers:?}");
        assert!(
            text(header::ERROR).contains(&format!("poison job {id} refused on attempt {attempts}")),
            "{headers:?}"
        );
        assert_eq!(
            headers
                .get(header::ATTEMPT)
                .and_then(jobs_core::HeaderValue::as_i64),
            Some(i64::from(attempts)),
            "the attempt that failed last"
        );
        assert_eq!(text(header::EXCHANGE), fault_jobs::EXCHANGE);
        assert_eq!(text(header::ROUTING_KEY), "poison");
        assert_eq!(text(header::QUEUE), job.queue());
        assert!(headers.get(header::FAILED_AT).is_some() && headers.get(header::HOST).is_some());
        assert_eq!(envelope.properties.kind.as_deref(), Some("poison"));
    }
    // No fault: each job reaches the error queue once.
    ledger.report().check("poison jobs, 3 attempts each", 0);
    transport.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_every_time_ends_in_the_error_queue() {
    let Some(url) = broker_url() else { return };
    let job = &fault_jobs::aborts_worker::JOB;
    let (transport, producer) = setup(&url, job, "abort").await;
    let error_queue = format!("{}.err", job.queue());
    let ledger = Ledger::new();
    let id = 7;
    enqueue_all(&producer, &ledger, id..id + 1, |producer, id| async move {
        fault_jobs::aborts_worker::enqueue(&producer, Tracked::new(id, 0)).await
    })
    .await;

    // The work queue's x-delivery-limit is the worker default, 10: the broker dead-letters
    // the message once it has been returned more than 10 times, so at most 11 deliveries,
    // each killing a worker. Restart the worker after each death, a bounded number of times.
    let limit = jobs_core::JobDefaults::default().delivery_limit;
    let mut deaths = 0;
    while transport
        .message_count(&error_queue)
        .await
        .expect("a count")
        == 0
    {
        assert!(
            deaths <= limit + 1,
            "still not dead-lettered after {deaths} worker deaths"
        );
        // Not waiting for /readyz: the delivery may kill it before it ever answers.
        let mut worker = spawn(&url, job, &[], &[]);
        // Either the delivery kills this worker, or the message is already in the error
        // queue (the broker dead-letters it when the previous death returned it).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = worker.try_exit().expect("the worker's state") {
                assert_eq!(status.signal(), Some(SIGABRT), "the job aborts its worker");
                deaths += 1;
                break;
            }
            if transport
                .message_count(&error_queue)
                .await
                .expect("a count")
                > 0
            {
                // It may have died of the delivery between the two checks: that death is
                // the one that dead-lettered the message. Otherwise it drains and exits 0, or,
                // signalled before it set its handlers (it was only just spawned), dies of the
                // SIGTERM itself, having taken nothing.
                let _ = worker.signal("TERM");
                let status = worker
                    .wait_exit(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{e}"));
                if status.success() || status.signal() == Some(SIGTERM) {
                    break;
                }
                assert_eq!(
                    status.to_string(),
                    "signal: 6 (SIGABRT)",
                    "{}",
                    worker.output()
                );
                deaths += 1;
                break;
            }
            assert!(Instant::now() < deadline, "neither died nor dead-lettered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("the job killed {deaths} workers before the delivery limit dead-lettered it");
    // Every death returns the message once; the return past the limit dead-letters it.
    assert_eq!(deaths, limit + 1, "deaths for a delivery limit of {limit}");

    let dead = drain(&transport, &error_queue, 1, Duration::from_secs(10)).await;
    let headers = &dead[0].envelope.properties.headers;
    assert_eq!(
        headers.get_str("x-first-death-reason"),
        Some("delivery_limit"),
        "{headers:?}"
    );
    let body = Tracked::decode(dead[0].envelope.body.clone()).expect("the original body");
    ledger.failed(body.id);
    assert_eq!(
        transport.message_count(job.queue()).await.expect("a count"),
        0
    );
    // No duplicates: the job never completes, and the broker dead-letters it once.
    ledger
        .report()
        .check(&format!("job killing its worker, {deaths} deaths"), 0);
    transport.close().await;
    // Its queues go: the suite must not leave every job's queues on the shared broker.
    jobs_core::testing::delete_job_queues(&url, &[job])
        .await
        .unwrap();
}
