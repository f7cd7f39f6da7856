//! The operator commands against RabbitMQ: `JOBS_AMQP_URL`, or the local default.
//!
//! Without a broker the tests skip, unless `JOBS_REQUIRE_BROKER` is set, when they fail. Each
//! test works on the queues of its own job, named `jobs-worker.ops-amqp.*`, and deletes them
//! (with `rabbitmqctl`) before and after.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ops::OpsContext;
use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder};
use jobs_core::topology::{Topology, argument};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{JobDefaults, JobError, JobSettings, job};

/// Generous: a bound on a wait that should end soon, not a timing assumption.
const WAIT: Duration = Duration::from_secs(30);

/// A numbered message.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Item {
    /// Which one.
    #[prost(uint32, tag = "1")]
    pub(super) n: u32,
}

/// Whether `ops_amqp_flaky` fails (fatally): until the test flips it.
static FAILS: AtomicBool = AtomicBool::new(true);

#[job(
    exchange = "jobs-worker.ops-amqp",
    routing_key = "flaky",
    queue = "jobs-worker.ops-amqp.flaky",
    retries = 1
)]
async fn ops_amqp_flaky(item: Item) -> Result<(), JobError> {
    if FAILS.load(Ordering::SeqCst) {
        return Err(JobError::fatal(format!("item {} failed", item.n)));
    }
    Ok(())
}

#[job(
    exchange = "jobs-worker.ops-amqp",
    routing_key = "drift",
    queue = "jobs-worker.ops-amqp.drift",
    retries = 1
)]
async fn ops_amqp_drift(_: Item) -> Result<(), JobError> {
    Ok(())
}

use super::run;

fn settings(job: &'static jobs_core::Job) -> JobSettings {
    JobSettings::resolve(job, &JobDefaults::default())
}

/// Deletes the queues of `settings`: ours, by their names.
fn delete_queues(settings: &JobSettings) {
    let topology = Topology::for_jobs([settings]).unwrap();
    for queue in topology.job_queues() {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["delete_queue", "-q", &queue.name])
            .output()
            .expect("rabbitmqctl runs");
        // A queue that is not there is fine.
        drop(status);
    }
}

/// Waits until `queue` holds `n` ready messages: the broker counts a message settled on another
/// connection a moment later. Each check is a round trip to the broker.
async fn count_becomes(ctx: &OpsContext, queue: &str, n: u64) {
    let counted = tokio::time::timeout(WAIT, async {
        while ctx.transport.message_count(queue).await.unwrap() != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "{queue} holds {} messages, not {n}",
        ctx.transport.message_count(queue).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_verify_names_the_drift_and_passes_on_the_declared_topology() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let job = settings(&ops_amqp_drift::JOB);
    delete_queues(&job);
    let transport = Arc::new(AmqpTransport::connect(&url).await.unwrap());
    let ctx = OpsContext {
        connected: true,
        transport: transport.clone(),
        jobs: vec![job.clone()],
    };
    let expected = Topology::for_jobs([&job]).unwrap();
    let work = expected
        .queues
        .iter()
        .find(|q| q.name == "jobs-worker.ops-amqp.drift")
        .unwrap()
        .clone();

    // The work queue made classic by hand, without the arguments only quorum queues take.
    let mut classic = work.clone();
    classic.arguments.insert(argument::QUEUE_TYPE, "classic");
    for quorum_only in [argument::DELIVERY_LIMIT, argument::DEAD_LETTER_STRATEGY] {
        classic.arguments.remove(quorum_only);
    }
    let by_hand = |queue| Topology {
        queues: vec![queue],
        ..Topology::default()
    };
    transport
        .declare(&by_hand(classic), Declare::Create)
        .await
        .unwrap();
    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(
        out.contains(
            "differs: queue `jobs-worker.ops-amqp.drift` has x-queue-type = classic on the broker, expected quorum\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("missing: queue `jobs-worker.ops-amqp.drift.err`\n"),
        "{out}"
    );
    assert_eq!(
        transport
            .message_count("jobs-worker.ops-amqp.drift.err")
            .await
            .ok(),
        None,
        "verify created nothing"
    );

    // Declared right but for its delivery limit.
    delete_queues(&job);
    let mut limited = work.clone();
    limited.arguments.insert(argument::DELIVERY_LIMIT, 3i64);
    transport
        .declare(&by_hand(limited), Declare::Create)
        .await
        .unwrap();
    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(
        out.contains(
            "differs: queue `jobs-worker.ops-amqp.drift` has x-delivery-limit = 3 on the broker, expected 10\n"
        ),
        "{out}"
    );

    // Declared as the job wants it.
    delete_queues(&job);
    let (code, out) = run(&ctx, "topology declare").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("topology ok: "), "{out}");
    delete_queues(&job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_replay_moves_messages_to_their_job_queue_and_they_are_handled() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let job = settings(&ops_amqp_flaky::JOB);
    delete_queues(&job);
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(Arc::new(AmqpTransport::connect(&url).await.unwrap()))
        .job(&ops_amqp_flaky::JOB)
        .observer(Arc::clone(&recorder) as _)
        .start()
        .await
        .expect("started");
    let ctx = OpsContext {
        connected: true,
        transport: Arc::new(AmqpTransport::connect(&url).await.unwrap()),
        jobs: engine.jobs().to_vec(),
    };
    let mut ids = Vec::new();
    // More than one prefetch (256) and replay window (64).
    const N: usize = 300;
    for n in 0..N {
        let n = u32::try_from(n).unwrap();
        ids.push(ops_amqp_flaky::enqueue(&engine, Item { n }).await.unwrap());
    }
    let dead = |o: &Outcome| matches!(o, Outcome::Failed { .. });
    recorder
        .wait_until(WAIT, || {
            (recorder.count(&ops_amqp_flaky::JOB, dead) == N).then_some(())
        })
        .await
        .expect("every job failed");
    let err = "jobs-worker.ops-amqp.flaky.err";
    count_becomes(&ctx, err, N as u64).await;

    let (code, out) = run(&ctx, "errors list ops_amqp_flaky --limit 3").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{err}: {N} message(s)"), "{out}");
    // The engine handles deliveries concurrently, so the error queue's order is not the
    // enqueue order; each line is one of ours.
    for line in &lines[2..5] {
        assert!(ids.iter().any(|id| line.starts_with(id.as_str())), "{out}");
        assert!(line.contains(" fatal "), "{out}");
    }
    assert_eq!(
        lines[5],
        format!("(showing 3 of {N}; see --limit)"),
        "{out}"
    );
    // Listing put them back.
    count_becomes(&ctx, err, N as u64).await;

    FAILS.store(false, Ordering::SeqCst);
    let (code, out) = run(&ctx, "errors replay jobs-worker.ops-amqp.flaky --all").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out, format!("{err}: replayed {N}, failed 0\n"));
    recorder
        .wait_until(WAIT, || {
            (recorder.count(&ops_amqp_flaky::JOB, |o| *o == Outcome::Succeeded) == N).then_some(())
        })
        .await
        .expect("the replayed jobs were handled");
    count_becomes(&ctx, err, 0).await;

    engine.shutdown(Duration::from_secs(5)).await;
    delete_queues(&job);
}
