//! The operator commands on the in-memory broker, with the real engine putting failed jobs in
//! error queues.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ops::OpsContext;
use jobs_core::testing::{Outcome, TestApp};
use jobs_core::topology::{QueueSpec, Topology};
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{Headers, JobError, job};

/// A numbered message.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Item {
    /// Which one.
    #[prost(uint32, tag = "1")]
    pub(super) n: u32,
}

/// Whether `flaky` fails (fatally): true until a test flips it.
static FLAKY_FAILS: AtomicBool = AtomicBool::new(true);

#[job(exchange = "ops-test", routing_key = "flaky", timeout = "5s")]
async fn flaky(item: Item) -> Result<(), JobError> {
    if FLAKY_FAILS.load(Ordering::SeqCst) {
        return Err(JobError::fatal(format!(
            "item {} failed\nsecond line",
            item.n
        )));
    }
    Ok(())
}

#[job(exchange = "ops-test", routing_key = "steady", retries = 2)]
async fn steady(_: Item) -> Result<(), JobError> {
    Ok(())
}

fn context(app: &TestApp) -> OpsContext {
    OpsContext {
        connected: true,
        transport: Arc::new(app.transport().clone()),
        jobs: app.engine().jobs().to_vec(),
    }
}

fn ids(app: &TestApp, queue: &str) -> Vec<String> {
    app.transport()
        .messages(queue)
        .iter()
        .map(|e| e.properties.message_id.clone().unwrap())
        .collect()
}

const ERR: &str = "ops-test.flaky.err";

/// One test, since `FLAKY_FAILS` is shared: list, show, purge refused, replay, purge.
use super::run;

#[tokio::test]
async fn error_queue_list_show_replay_and_purge() {
    let app = TestApp::builder().job(&flaky::JOB).build().unwrap();
    for n in 0..5 {
        flaky::enqueue(&app, Item { n }).await.unwrap();
    }
    app.run_until_idle().await;
    let ctx = context(&app);
    let before = ids(&app, ERR);
    assert_eq!(before.len(), 5);

    // list: one line per message, in queue order, and nothing moves.
    let (code, out) = run(&ctx, "errors list flaky --limit 3").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{ERR}: 5 message(s)"));
    assert!(lines[1].starts_with("ID "), "{out}");
    for (line, id) in lines[2..5].iter().zip(&before) {
        assert!(line.starts_with(id.as_str()), "{out}");
        assert!(line.contains(" flaky "), "{out}");
        assert!(line.contains(" fatal "), "{out}");
        assert!(
            line.ends_with(" failed"),
            "first line of the error only: {out}"
        );
        assert!(line.contains("T00:00:") || line.contains('-'), "{out}");
    }
    assert_eq!(lines[5], "(showing 3 of 5; see --limit)");
    assert_eq!(ids(&app, ERR), before, "listing loses and reorders nothing");
    assert_eq!(app.transport().unacked(ERR), 0);

    // The queue can be named as the work queue or the error queue too.
    for name in ["ops-test.flaky", ERR] {
        let (_, out) = run(&ctx, &format!("errors list {name}")).await;
        assert_eq!(out.lines().count(), 2 + 5, "{out}");
    }
    assert_eq!(ids(&app, ERR), before);

    // show: every header and the body.
    let (code, out) = run(&ctx, &format!("errors show {}", before[1])).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains(&format!("message id: {:?}", before[1])),
        "{out}"
    );
    assert!(out.contains("  x-jobs-error-kind: \"fatal\""), "{out}");
    assert!(out.contains("  x-jobs-exchange: \"ops-test\""), "{out}");
    // The body decoded as the job's message.
    assert!(
        out.ends_with("body: 2 bytes, a `Item`:\n  Item {\n      n: 1,\n  }\n"),
        "{out}"
    );
    let (code, out) = run(&ctx, "errors show nope --queue flaky").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(out, format!("no message `nope` in {ERR}\n"));
    assert_eq!(ids(&app, ERR), before);

    // purge refuses without --yes.
    let (code, out) = run(&ctx, "errors purge flaky").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(
        out,
        format!("would purge 5 message(s) from {ERR}; pass --yes to purge\n")
    );
    assert_eq!(ids(&app, ERR).len(), 5);

    // Reading never gave a message back to the (quorum) error queue: none has a delivery count.
    assert_eq!(app.transport().returns(ERR), [0; 5]);

    // replay: the first two go to the job's queue and are handled again.
    FLAKY_FAILS.store(false, Ordering::SeqCst);
    let (code, out) = run(&ctx, "errors replay flaky --count 2").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out, format!("{ERR}: replayed 2, failed 0\n"));
    app.run_until_idle().await;
    assert_eq!(ids(&app, ERR), before[2..]);
    let succeeded: Vec<_> = app
        .events()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Succeeded)
        .map(|e| (e.message_id.unwrap(), e.attempt))
        .collect();
    assert_eq!(
        succeeded,
        [(before[0].clone(), 1), (before[1].clone(), 1)],
        "replayed as attempt 1, same id"
    );
    // Straight to the work queue, not through the exchange.
    let replayed: Vec<_> = app
        .transport()
        .published()
        .into_iter()
        .filter(|p| p.exchange.is_empty() && p.routing_key == "ops-test.flaky")
        .collect();
    assert_eq!(replayed.len(), 2);
    for publish in &replayed {
        let headers = &publish.envelope.properties.headers;
        assert_eq!(headers.get("x-delivery-count"), None, "{headers:?}");
        assert_eq!(headers.get("x-jobs-error"), None, "{headers:?}");
        assert_eq!(publish.envelope.attempt(), Ok(1));
    }

    // A queue that does not exist is said to be missing.
    let (code, out) = run(&ctx, "errors list nowhere").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(out, "nowhere.err: no such queue\n");

    // purge --yes empties it.
    let (code, out) = run(&ctx, "errors purge --all --yes").await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, format!("{ERR}: purged 3 message(s)\n"));
    assert!(ids(&app, ERR).is_empty());
}

#[job(
    exchange = "ops-test",
    routing_key = "retrying",
    retries = 2,
    backoff = "1m, 10m"
)]
async fn retrying(item: Item) -> Result<(), JobError> {
    Err(JobError::retry(format!("item {} is not ready", item.n)))
}

/// Retry delays pass on the paused clock; the error queue then holds the last attempt.
#[tokio::test(start_paused = true)]
async fn a_job_that_ran_out_of_retries_is_listed_with_its_last_attempt() {
    let app = TestApp::builder().job(&retrying::JOB).build().unwrap();
    let id = retrying::enqueue(&app, Item { n: 7 }).await.unwrap();
    let started = tokio::time::Instant::now();
    app.run_until_idle().await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(11 * 60));
    let (code, out) = run(&context(&app), "errors list retrying").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let columns: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        columns[..4],
        [id.as_str(), "retrying", "handler", "3"],
        "{out}"
    );
    assert!(lines[2].ends_with(" item 7 is not ready"), "{out}");
}

/// Whether `bulk` fails (fatally).
static BULK_FAILS: AtomicBool = AtomicBool::new(true);

#[job(exchange = "ops-test", routing_key = "bulk")]
async fn bulk(item: Item) -> Result<(), JobError> {
    if BULK_FAILS.load(Ordering::SeqCst) {
        return Err(JobError::fatal(format!("item {} failed", item.n)));
    }
    Ok(())
}

/// Thousands of messages: more than one prefetch and replay window, in batches.
#[tokio::test(start_paused = true)]
async fn replaying_thousands_in_batches_then_the_rest() {
    let app = TestApp::builder().job(&bulk::JOB).build().unwrap();
    for n in 0..3000 {
        bulk::enqueue(&app, Item { n }).await.unwrap();
    }
    app.run_until_idle().await;
    let err = "ops-test.bulk.err";
    let before = ids(&app, err);
    assert_eq!(before.len(), 3000);
    let ctx = context(&app);
    // Listing more than a replay's prefetch: nothing is acked, so it needs credit for all.
    let (code, out) = run(&ctx, "errors list bulk --limit 300").await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.lines().count(), 1 + 1 + 300 + 1, "{out}");
    assert!(
        out.ends_with("(showing 300 of 3000; see --limit)\n"),
        "{out}"
    );
    assert_eq!(ids(&app, err), before);
    BULK_FAILS.store(false, Ordering::SeqCst);

    let (code, out) = run(&ctx, "errors replay bulk --count 1000").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out, format!("{err}: replayed 1000, failed 0\n"));
    assert_eq!(
        ids(&app, err),
        before[1000..],
        "the first 1000 went, in order"
    );

    let (code, out) = run(&ctx, "errors replay --all-jobs --all").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out, format!("{err}: replayed 2000, failed 0\n"));
    app.run_until_idle().await;
    assert!(ids(&app, err).is_empty());
    assert_eq!(app.succeeded(&bulk::JOB), 3000);
}

#[tokio::test]
async fn a_replay_that_cannot_be_published_stays_in_the_error_queue() {
    let app = TestApp::builder().job(&steady::JOB).build().unwrap();
    let ctx = context(&app);
    // An error queue whose work queue is gone: replays have nowhere to go.
    let err = "ops-test.gone.err";
    let topology = Topology {
        queues: vec![QueueSpec {
            name: err.into(),
            arguments: Headers::new(),
        }],
        ..Topology::default()
    };
    app.transport()
        .declare(&topology, Declare::Create)
        .await
        .unwrap();
    for id in ["first", "second"] {
        let mut envelope = jobs_core::Envelope::default();
        envelope.properties.message_id = Some(id.into());
        app.transport()
            .publish(jobs_core::transport::Publish {
                exchange: "".into(),
                routing_key: err.into(),
                mandatory: true,
                envelope,
            })
            .await
            .unwrap();
    }
    let (code, out) = run(&ctx, &format!("errors replay {err} --all")).await;
    assert_eq!(code, ExitCode::FAILURE, "a partial failure is a failure");
    assert_eq!(
        out,
        format!(
            "not replayed: first: no queue is bound to exchange `` for routing key `ops-test.gone`\n\
             not replayed: second: no queue is bound to exchange `` for routing key `ops-test.gone`\n\
             {err}: replayed 0, failed 2\n"
        )
    );
    assert_eq!(ids(&app, err), ["first", "second"], "both stay, in order");
    assert_eq!(app.transport().unacked(err), 0);
}

#[tokio::test]
async fn jobs_lists_every_job() {
    let app = TestApp::builder()
        .job(&flaky::JOB)
        .job(&steady::JOB)
        .build()
        .unwrap();
    let (code, out) = run(&context(&app), "jobs").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    let columns: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        columns[0],
        [
            "NAME", "EXCHANGE", "KIND", "BINDING", "QUEUE", "RETRIES", "TIMEOUT", "SCHEDULE",
            "STATE"
        ]
    );
    assert_eq!(
        columns[1],
        [
            "flaky",
            "ops-test",
            "direct",
            "flaky",
            "ops-test.flaky",
            "5",
            "5s",
            "-",
            "running"
        ]
    );
    assert_eq!(
        columns[2][..6],
        [
            "steady",
            "ops-test",
            "direct",
            "steady",
            "ops-test.steady",
            "2"
        ]
    );
    assert!(out.ends_with("\ndelayed jobs: none waiting\n"), "{out}");

    // Two jobs delayed 5 s and one 20 s: each waits in the level of its delay's top bit.
    for delay in [5, 5, 20] {
        steady::with(Item { n: delay })
            .delay(std::time::Duration::from_secs(delay.into()))
            .enqueue(&app)
            .await
            .unwrap();
    }
    let (code, out) = run(&context(&app), "jobs").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let (_, delayed) = out.split_once("\n\n").unwrap();
    let rows: Vec<Vec<&str>> = delayed
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        delayed.starts_with("delayed jobs: 3 waiting, by level (every job's):\nLEVEL"),
        "{out}"
    );
    assert_eq!(
        rows,
        [["jobs.delay.2", "4s", "2"], ["jobs.delay.4", "16s", "1"]]
    );
}

#[tokio::test]
async fn topology_print_declare_and_verify() {
    let settings = TestApp::builder()
        .job(&steady::JOB)
        .build()
        .unwrap()
        .engine()
        .jobs()
        .to_vec();
    let broker = MemoryTransport::new();
    let ctx = OpsContext {
        connected: true,
        transport: Arc::new(broker.clone()),
        jobs: settings,
    };

    let (code, out) = run(&ctx, "topology print").await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(
        out.starts_with("exchanges:\n  ops-test (direct)\n  jobs.delay.deliver (topic)\n"),
        "{out}"
    );
    assert!(
        out.contains("  ops-test.steady.retry.1 [x-queue-type=\"quorum\", x-message-ttl="),
        "{out}"
    );
    assert!(
        out.contains("bindings:\n  ops-test -> ops-test.steady (key \"steady\")\n"),
        "{out}"
    );
    // The delay cascade every job shares: 28 levels, each an exchange and a queue; then the
    // control exchange.
    assert!(
        out.contains("  jobs.delay.27 (topic)\n  jobs.control (topic)\nqueues:\n"),
        "{out}"
    );
    assert!(
        out.ends_with("  jobs.delay.27 -> exchange jobs.delay.26 (key \"0.#\")\n"),
        "{out}"
    );

    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        out.starts_with("missing: exchange `ops-test`\nmissing: exchange `jobs.delay.deliver`\n"),
        "{out}"
    );
    assert!(out.contains("missing: queue `ops-test.steady`\n"), "{out}");
    // The job's exchange and 4 queues, the cascade's 29 exchanges and 28 queues, and the
    // control exchange.
    assert!(out.ends_with("topology drift: 63 problem(s)\n"), "{out}");
    assert_eq!(
        broker.queue_len("ops-test.steady"),
        None,
        "verify creates nothing"
    );

    let (code, out) = run(&ctx, "topology declare").await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out, "declared 31 exchanges, 32 queues, 58 bindings\n");
    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(
        out,
        "topology ok: 31 exchanges and 32 queues match (bindings are not checked)\n"
    );

    // Another broker where the error queue was made classic by hand.
    let drifted = MemoryTransport::new();
    let classic = Topology {
        queues: vec![QueueSpec {
            name: "ops-test.steady.err".into(),
            arguments: Headers::from_iter([("x-queue-type", "classic")]),
        }],
        ..Topology::default()
    };
    drifted.declare(&classic, Declare::Create).await.unwrap();
    let ctx = OpsContext {
        connected: true,
        transport: Arc::new(drifted),
        ..ctx
    };
    let (code, out) = run(&ctx, "topology verify").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        out.contains(
            "differs: queue `ops-test.steady.err` has x-queue-type = \"classic\" on the broker, expected \"quorum\"\n"
        ),
        "{out}"
    );
}

#[job(exchange = "ops-test", routing_key = "minutely", every = "1m")]
async fn minutely(_: Item) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn schedules_lists_the_last_and_next_slot_of_each_periodic_job() {
    let app = TestApp::builder()
        .job(&minutely::JOB)
        .job(&steady::JOB)
        .build()
        .unwrap();
    let start = app
        .transport()
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (code, out) = run(&context(&app), "schedules").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "SCHEDULE", "MISSED", "LAST", "FIRED", "BY", "NEXT"]
    );
    assert_eq!(lines[1][..4], ["minutely", "every", "1m", "fire-once"]);
    assert_eq!(lines[1][4..6], ["never", "-"]);
    assert_eq!(lines.len(), 2, "one periodic job: {out}");

    // Two or three slots later: the last one fired is listed, with the worker that fired it.
    // The wait ends half a minute past a slot, whatever second the test started at: right at a
    // minute's turn, that slot could be due and not yet fired.
    let offset = (start + 150) % 60;
    let wait = 150 + (90 - offset) % 60;
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let now = app.transport().now();
    let (code, out) = run(&context(&app), "schedules").await;
    assert_eq!(code, ExitCode::SUCCESS);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    let slot = |seconds: u64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
        )
        .to_string()
    };
    let now = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(row[4], slot(now - now % 60));
    assert_eq!(row[5..7], ["jobs", "on"]);
    assert_eq!(
        row.last().copied(),
        Some(slot(now - now % 60 + 60).as_str())
    );
    assert_eq!(
        app.succeeded(&minutely::JOB),
        usize::try_from(now / 60 - start / 60).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn pause_stops_the_job_and_resume_brings_it_back() {
    let app = TestApp::builder().job(&steady::JOB).build().unwrap();
    let ctx = context(&app);
    let (code, out) = run(&ctx, "pause steady").await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("paused `steady`"), "{out}");
    // The engine hears of it through the control exchange.
    let heard = async {
        while !app.engine().is_paused(&steady::JOB) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), heard)
        .await
        .expect("the engine hears of the pause");
    let (_, out) = run(&ctx, "jobs").await;
    assert!(out.lines().nth(1).unwrap().ends_with("paused"), "{out}");

    steady::enqueue(&app, Item { n: 1 }).await.unwrap();
    app.run_until_idle().await;
    assert_eq!(app.succeeded(&steady::JOB), 0, "nothing runs while paused");
    assert_eq!(app.transport().queue_len(steady::QUEUE), Some(1));

    let (code, out) = run(&ctx, "resume steady").await;
    assert_eq!(
        (code, out.as_str()),
        (ExitCode::SUCCESS, "resumed `steady`\n")
    );
    let resumed = async {
        while app.succeeded(&steady::JOB) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), resumed)
        .await
        .expect("the job runs once resumed");
    let (_, out) = run(&ctx, "jobs").await;
    assert!(out.lines().nth(1).unwrap().ends_with("running"), "{out}");

    let (code, out) = run(&ctx, "pause nosuch").await;
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(out, "no job named `nosuch`; this binary's jobs: steady\n");
}
