//! The dashboard in a browser: headless Chromium loads the page of a worker on RabbitMQ whose
//! error queue holds 300 failures of 3 causes, sees 3 groups of 100, is refused a replay without
//! the token, replays one group with it (that group is handled, the others stay), and deletes
//! one message (exactly one gone). The broker's counts are checked after each action. With a
//! PostgreSQL, the worker also runs an outbox relay, and the page shows it up.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/foreign-deps installs them); skips
//! without them or without a broker, unless `JOBS_REQUIRE_BROKER` is set.
//!
//! `JOBS_SCREENSHOT=1` writes the page at 1,280 px to docs/dashboard.png (the README's).

#[path = "support/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobs_core::transport::Transport;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobContext, JobDefaults, JobError, JobSettings, Producer, job};
use jobs_worker::{DashboardToken, Worker, WorkerConfig};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use webdriver::Browser;

const EXCHANGE: &str = "tests.dashboard";
const QUEUE: &str = "tests.dashboard.fail";
const ERROR_QUEUE: &str = "tests.dashboard.fail.err";
/// The three causes of failure; 100 messages fail with each.
const CAUSES: [&str; 3] = [
    "dashboard test: the disk is full",
    "dashboard test: the address is invalid",
    "dashboard test: the upstream timed out",
];
const PER_CAUSE: u32 = 100;
/// How long the browser or the broker may take to show what an action did.
const WAIT: Duration = Duration::from_secs(60);

/// Which cause a message fails with.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Failing {
    /// An index into [`CAUSES`].
    #[prost(uint32, tag = "1")]
    pub cause: u32,
    /// The message's number within its cause.
    #[prost(uint32, tag = "2")]
    pub seq: u32,
}

/// What the handler did: it fails fatally until `healed`, then succeeds.
#[derive(Debug, Default)]
pub struct Outcomes {
    healed: AtomicBool,
    runs: AtomicUsize,
    handled: [AtomicUsize; 3],
}

impl Outcomes {
    fn handled(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.handled[i].load(Ordering::SeqCst))
    }
}

/// Fails fatally with its message's cause until the test heals it: replayed messages succeed.
#[job(
    exchange = "tests.dashboard",
    routing_key = "fail",
    queue = "tests.dashboard.fail"
)]
async fn dashboard_fail(message: Failing, ctx: JobContext) -> Result<(), JobError> {
    let outcomes = ctx.state::<Arc<Outcomes>>()?;
    outcomes.runs.fetch_add(1, Ordering::SeqCst);
    let cause = usize::try_from(message.cause).unwrap_or(usize::MAX).min(2);
    if outcomes.healed.load(Ordering::SeqCst) {
        outcomes.handled[cause].fetch_add(1, Ordering::SeqCst);
        Ok(())
    } else {
        Err(JobError::fatal(CAUSES[cause].to_owned()))
    }
}

/// Every queue the job declares, and its exchange, deleted on a connection of its own.
async fn clean_up(url: &str) {
    let settings = JobSettings::resolve(&dashboard_fail::JOB, &JobDefaults::default());
    let mut queues = vec![QUEUE.to_owned(), ERROR_QUEUE.to_owned()];
    queues.extend(settings.retry_queues().iter().cloned());
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("a connection to clean up");
    let channel = connection.create_channel().await.expect("a channel");
    for queue in &queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("queue deleted");
    }
    channel
        .exchange_delete(EXCHANGE.into(), ExchangeDeleteOptions::default())
        .await
        .expect("exchange deleted");
    let _ = connection.close(200, "cleaned up".into()).await;
}

/// Polls the broker until `queue` holds `want` ready messages; fails after [`WAIT`].
async fn wait_for_count(transport: &dyn Transport, queue: &str, want: u64, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = transport.message_count(queue).await.expect("a count");
        if count == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {queue} holds {count} messages after {WAIT:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `outcomes` until the handler has succeeded `want` times per cause; fails after
/// [`WAIT`].
async fn wait_for_handled(outcomes: &Outcomes, want: [usize; 3]) {
    let deadline = Instant::now() + WAIT;
    while outcomes.handled() != want {
        assert!(
            Instant::now() < deadline,
            "handled per cause {:?} after {WAIT:?}, not {want:?}",
            outcomes.handled()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the worker's `/readyz` until it answers 200.
async fn wait_until_ready(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = tokio::task::block_in_place(|| {
            webdriver::http(addr, "GET", "/readyz", None, Duration::from_secs(5))
        })
        .is_ok_and(|(status, _)| status == 200);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the worker is not ready after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's error groups, once they are exactly `want` (error text, count), sorted.
fn wait_for_groups(browser: &Browser, want: &[(&str, u32)], what: &str) {
    let want: Vec<Value> = want
        .iter()
        .map(|(error, count)| json!([error, count.to_string()]))
        .collect();
    browser.wait_for(
        what,
        "const rows = Array.from(document.querySelectorAll('[data-testid=error-group]'))\n\
           .map(r => [r.dataset.error, r.querySelector('[data-testid=group-count]').textContent.trim(), r.dataset.count]);\n\
         if (rows.some(r => r[1] !== r[2])) return null;\n\
         const seen = JSON.stringify(rows.map(r => [r[0], r[1]]).sort());\n\
         return seen === JSON.stringify(args[0].slice().sort()) ? true : null;",
        &[Value::Array(want)],
        WAIT,
    );
}

/// The error text of the worker's refusal of a replay of the group of `cause` without the
/// token; checks it is a 401.
fn refusal(addr: SocketAddr, cause: &str) -> String {
    let body = json!({"queue": ERROR_QUEUE, "kind": "fatal", "error": cause});
    let (status, answer) = tokio::task::block_in_place(|| {
        webdriver::http(
            addr,
            "POST",
            "/api/errors/replay",
            Some(&body),
            Duration::from_secs(30),
        )
    })
    .expect("the worker answers");
    assert_eq!(status, 401, "a replay without the token");
    let answer: Value = serde_json::from_slice(&answer).expect("a JSON error");
    answer["error"].as_str().expect("an error text").to_owned()
}

/// The button `testid` of the group of `cause`.
fn group_button(browser: &Browser, cause: &str, testid: &str) -> Value {
    browser.wait_for(
        &format!("the {testid} button of the group \"{cause}\""),
        "const row = Array.from(document.querySelectorAll('[data-testid=error-group]'))\n\
           .find(r => r.dataset.error === args[0] && r.dataset.job === 'dashboard_fail');\n\
         const button = row && row.querySelector(`[data-testid=${args[1]}]`);\n\
         return button && !button.disabled ? button : null;",
        &[json!(cause), json!(testid)],
        WAIT,
    )
}

/// The status line once an action finished after `after` actions had, and the line shows:
/// `(seq, text, state)`.
fn wait_for_status(browser: &Browser, after: u64, what: &str) -> (u64, String, String) {
    let status = browser.wait_for(
        what,
        "const s = document.querySelector('[data-testid=status]');\n\
         const seq = Number(s.dataset.seq);\n\
         const shown = s.getClientRects().length > 0;\n\
         return seq > args[0] && shown ? [seq, s.textContent, s.dataset.state] : null;",
        &[json!(after)],
        WAIT,
    );
    (
        status[0].as_u64().expect("a number"),
        status[1].as_str().expect("text").to_owned(),
        status[2].as_str().expect("a state").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_groups_replays_and_deletes_failures_in_a_browser() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    let missing = webdriver::missing();
    if !missing.is_empty() {
        let missing = missing.join(", ");
        assert!(
            std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
            "JOBS_REQUIRE_BROKER is set and the dashboard test needs the Debian packages \
             {missing}; scripts/foreign-deps installs them"
        );
        eprintln!("skipped: the dashboard test needs the Debian packages {missing}");
        return;
    }
    // Leftovers of an interrupted run would change the counts.
    clean_up(&url).await;

    // A token of this run only; never printed.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("dashboard-test-{nanos:032x}");
    let metrics_addr = webdriver::free_addr();
    let outcomes = Arc::new(Outcomes::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = WorkerConfig::default()
        .with_url(url.clone())
        .with_connection_name("jobs-tests-dashboard")
        .with_metrics_addr(metrics_addr)
        .with_dashboard_token(DashboardToken::new(token.clone()).expect("a long enough token"));
    // The relay makes the outbox's tables in a schema of this test's own.
    let outbox = jobs_outbox::testing::fresh_schema("tests_dashboard_outbox").await;
    let config = match &outbox {
        Some(outbox) => config.with_outbox_url(outbox.clone()),
        None => config,
    };
    let worker = tokio::spawn(
        Worker::builder()
            .jobs([&dashboard_fail::JOB])
            .state(Arc::clone(&outcomes))
            .config(config)
            .shutdown_signal(async move {
                let _ = stopped.await;
            })
            .run(),
    );
    wait_until_ready(metrics_addr).await;

    // 300 failures, 100 of each cause.
    let transport: Arc<dyn Transport> =
        Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let producer = Producer::new(Arc::clone(&transport));
    for seq in 0..PER_CAUSE {
        for cause in 0..3 {
            dashboard_fail::enqueue(&producer, Failing { cause, seq })
                .await
                .expect("confirmed");
        }
    }
    let total = u64::from(PER_CAUSE) * 3;
    wait_for_count(&*transport, ERROR_QUEUE, total, "every message fails").await;
    assert_eq!(outcomes.runs.load(Ordering::SeqCst), 300);

    // The page sees 3 groups of 100.
    let browser = Browser::start(1280, 1100);
    browser.goto(&format!("http://{metrics_addr}/"));
    wait_for_groups(
        &browser,
        &[(CAUSES[0], 100), (CAUSES[1], 100), (CAUSES[2], 100)],
        "3 groups of 100",
    );

    // The relay's panel: its database answers and the outbox is empty.
    if outbox.is_some() {
        browser.wait_for(
            "the outbox relay up, nothing waiting",
            "const panel = document.querySelector('[data-testid=outbox]');\n\
             const oldest = document.querySelector('[data-testid=outbox-oldest]');\n\
             return panel.offsetParent !== null && panel.dataset.state === 'up'\n\
               && oldest.textContent === 'none waiting';",
            &[],
            WAIT,
        );
    }

    // Without the token a replay is refused, and nothing moves.
    let replay = group_button(&browser, CAUSES[0], "replay-group");
    browser.click(&replay);
    let (seq, text, state) = wait_for_status(&browser, 0, "the refusal of a replay");
    assert_eq!(state, "error", "{text}");
    // The server's own refusal, as it gives it to a request without the token.
    let refusal = refusal(metrics_addr, CAUSES[0]);
    assert!(text.contains("(401)"), "{text}");
    assert!(text.contains(&refusal), "{text} does not show {refusal:?}");
    assert_eq!(
        transport.message_count(ERROR_QUEUE).await.expect("a count"),
        total
    );
    assert_eq!(
        outcomes.runs.load(Ordering::SeqCst),
        300,
        "nothing replayed"
    );

    // With the token the group of the first cause is replayed, and handled this time.
    outcomes.healed.store(true, Ordering::SeqCst);
    let input = browser.wait_for(
        "the token field",
        "return document.querySelector('[data-testid=token]');",
        &[],
        WAIT,
    );
    browser.type_into(&input, &token);
    let replay = group_button(&browser, CAUSES[0], "replay-group");
    browser.click(&replay);
    let (seq, text, state) = wait_for_status(&browser, seq, "the replay of a group");
    assert_eq!(state, "ok", "{text}");
    assert!(text.contains("replayed 100"), "{text}");
    wait_for_handled(&outcomes, [100, 0, 0]).await;
    wait_for_count(
        &*transport,
        ERROR_QUEUE,
        total - 100,
        "the replayed group left",
    )
    .await;
    wait_for_count(&*transport, QUEUE, 0, "the replayed group was handled").await;
    wait_for_groups(
        &browser,
        &[(CAUSES[1], 100), (CAUSES[2], 100)],
        "the replayed group gone, the others untouched",
    );
    // The overview's totals count the handled group.
    browser.wait_for(
        "the job's totals with the replayed group handled",
        "const job = document.querySelector('[data-testid=job][data-job=dashboard_fail]');\n\
         return job && job.textContent.includes('100 succeeded');",
        &[],
        WAIT,
    );
    if std::env::var_os("JOBS_SCREENSHOT").is_some_and(|v| v == "1") {
        browser.run(
            "window.scrollTo(0, 0); if (document.activeElement) document.activeElement.blur();",
            &[],
        );
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&path, png).expect("the screenshot written");
        eprintln!("wrote {}", path.display());
    }

    // One message of the second cause deleted: exactly one gone.
    let show = group_button(&browser, CAUSES[1], "show-messages");
    browser.click(&show);
    let first = browser.wait_for(
        "the messages of the second group",
        "const rows = document.querySelectorAll('[data-testid=error-message]');\n\
         return rows.length === 100 ? rows[0].dataset.id : null;",
        &[],
        WAIT,
    );
    // The failure in full: its error, and its body decoded.
    let show = browser.run(
        "return document.querySelector(`[data-testid=error-message][data-id=\"${CSS.escape(arguments[0])}\"] [data-testid=show-message]`);",
        std::slice::from_ref(&first),
    );
    browser.click(&show);
    let detail = browser.wait_for(
        "the failure in full",
        "const d = document.querySelector(`[data-testid=message-detail][data-id=\"${CSS.escape(args[0])}\"]`);\n\
         return d ? [d.querySelector('[data-testid=message-error]').textContent,\n\
                     (d.querySelector('[data-testid=message-body]') || {}).textContent || ''] : null;",
        std::slice::from_ref(&first),
        WAIT,
    );
    let (error, body) = (detail[0].as_str().unwrap(), detail[1].as_str().unwrap());
    assert!(error.contains(CAUSES[1]), "{error}");
    assert!(body.contains("cause: 1"), "the body decoded: {body:?}");
    let delete = browser.run(
        "return document.querySelector(`[data-testid=error-message][data-id=\"${CSS.escape(arguments[0])}\"] [data-testid=delete-message]`);",
        std::slice::from_ref(&first),
    );
    browser.click(&delete);
    let (_, text, state) = wait_for_status(&browser, seq, "the deletion of a message");
    assert_eq!(state, "ok", "{text}");
    wait_for_count(&*transport, ERROR_QUEUE, total - 101, "one message deleted").await;
    wait_for_groups(
        &browser,
        &[(CAUSES[1], 99), (CAUSES[2], 100)],
        "one message fewer in its group",
    );
    browser.wait_for(
        "the deleted message gone from the list",
        "const rows = Array.from(document.querySelectorAll('[data-testid=error-message]'));\n\
         return rows.length === 99 && rows.every(r => r.dataset.id !== args[0]);",
        &[first],
        WAIT,
    );
    assert_eq!(
        transport.message_count(ERROR_QUEUE).await.expect("a count"),
        total - 101
    );
    assert_eq!(
        outcomes.handled(),
        [100, 0, 0],
        "only the replayed group ran"
    );
    assert_eq!(outcomes.runs.load(Ordering::SeqCst), 400);

    drop(browser);
    let _ = stop.send(());
    worker
        .await
        .expect("the worker task")
        .expect("the worker ran");
    clean_up(&url).await;
}
