//! The outbox and the inbox on PostgreSQL, publishing to the in-memory broker of a `TestApp`.

#[path = "support/outage.rs"]
mod outage;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use jobs_core::testing::{Outcome, TestApp};
use jobs_core::transport::Transport as _;
use jobs_core::{JobContext, JobError, State, job};
use jobs_outbox::{Error, InboxExt as _, InboxStore as _, OutboxEnqueue as _, Relay};
use sqlx::PgPool;
use support::{fresh_pool, outbox_rows};

/// An order, the message of the tests' jobs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Order {
    /// The order's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[job(exchange = "outbox_tests", routing_key = "invoice")]
async fn invoice(_order: Order) -> Result<(), JobError> {
    Ok(())
}

/// Records its effect in the `effects` table through the inbox: once per message.
#[job(exchange = "outbox_tests", routing_key = "ship", concurrency = 4)]
async fn ship(order: Order, ctx: JobContext, pool: State<PgPool>) -> Result<(), JobError> {
    let Some(mut tx) = ctx.inbox(&*pool).await.map_err(JobError::retry)? else {
        return Ok(());
    };
    sqlx::query("INSERT INTO effects (order_id) VALUES ($1)")
        .bind(order.id as i64)
        .execute(&mut *tx)
        .await
        .map_err(JobError::retry)?;
    tx.commit().await.map_err(JobError::retry)?;
    Ok(())
}

fn app() -> TestApp {
    TestApp::builder()
        .job(&invoice::JOB)
        .build()
        .expect("an app")
}

/// The message ids the app's handlers finished.
fn succeeded(app: &TestApp) -> BTreeSet<String> {
    app.events()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect()
}

#[tokio::test]
async fn only_committed_transactions_send_their_jobs() {
    let Some(pool) = fresh_pool("outbox_commit").await else {
        return;
    };
    let app = app();
    let mut committed = BTreeSet::new();
    for n in 0..40 {
        let mut tx = pool.begin().await.unwrap();
        let id = invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        if n % 2 == 0 {
            tx.commit().await.unwrap();
            committed.insert(id.to_string());
        } else {
            tx.rollback().await.unwrap();
        }
    }
    assert_eq!(
        outbox_rows(&pool).await,
        20,
        "only the committed rows are visible"
    );

    let relay = Relay::new(pool.clone(), app.producer().clone()).batch(8);
    let mut locked = 0;
    loop {
        let n = relay.run_once().await.unwrap();
        if n == 0 {
            break;
        }
        locked += n;
    }
    app.run_until_idle().await;
    assert_eq!(locked, 20);
    assert_eq!(relay.published(), 20);
    assert_eq!(succeeded(&app), committed, "exactly the committed ids ran");
    assert_eq!(outbox_rows(&pool).await, 0, "published rows are deleted");
}

#[tokio::test]
async fn a_relayed_job_is_the_message_enqueue_would_have_published() {
    let Some(pool) = fresh_pool("outbox_same_message").await else {
        return;
    };
    let app = app();
    let mut tx = pool.begin().await.unwrap();
    let id = invoice::with(Order { id: 7 })
        .header("tenant", "acme")
        .header("n", 3_i64)
        .message_id("order-7")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Relay::new(pool, app.producer().clone())
        .run_once()
        .await
        .unwrap();
    let direct = invoice::with(Order { id: 7 })
        .header("tenant", "acme")
        .header("n", 3_i64)
        .message_id("order-7")
        .enqueue(&app)
        .await
        .unwrap();
    assert_eq!(id, direct);

    let sent = app.enqueued(&invoice::JOB);
    assert_eq!(sent.len(), 2);
    let (relayed, enqueued) = (&sent[0], &sent[1]);
    assert_eq!(relayed.exchange, enqueued.exchange);
    assert_eq!(relayed.routing_key, enqueued.routing_key);
    assert_eq!(relayed.mandatory, enqueued.mandatory);
    assert_eq!(relayed.envelope.body, enqueued.envelope.body);
    let (mut a, mut b) = (
        relayed.envelope.properties.clone(),
        enqueued.envelope.properties.clone(),
    );
    // The enqueue times may differ by a second; the rest is the same message.
    a.timestamp = None;
    b.timestamp = None;
    assert_eq!(a, b);
}

#[tokio::test]
async fn a_unique_key_is_held_until_the_job_is_handled() {
    let Some(pool) = fresh_pool("outbox_unique").await else {
        return;
    };
    let mut tx = pool.begin().await.unwrap();
    let first = invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let refused = invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await;
    match refused {
        Err(Error::Duplicate { key, message_id }) => {
            assert_eq!(
                (key.as_str(), message_id.as_str()),
                ("order-1", first.as_str())
            );
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // The refusal did not abort the application's transaction.
    invoice::with(Order { id: 2 })
        .enqueue_in(&mut tx)
        .await
        .expect("the transaction goes on");
    tx.commit().await.unwrap();

    // A rolled-back claim frees the key at once.
    let mut tx = pool.begin().await.unwrap();
    invoice::with(Order { id: 3 })
        .unique_key("order-3")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    invoice::with(Order { id: 3 })
        .unique_key("order-3")
        .enqueue_in(&mut tx)
        .await
        .expect("the rolled-back key is free");
    tx.commit().await.unwrap();

    // The handler's inbox transaction frees the key with its commit.
    let handling = pool
        .begin_handling(first.as_str(), invoice::JOB.name())
        .await
        .unwrap()
        .expect("not handled yet");
    handling.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await
        .expect("the handled job's key is free");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_inbox_runs_a_handlers_effect_once_per_message() {
    let Some(pool) = fresh_pool("outbox_inbox").await else {
        return;
    };
    sqlx::query("CREATE TABLE effects (order_id bigint NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let app = TestApp::builder()
        .job(&ship::JOB)
        .state(pool.clone())
        .build()
        .unwrap();
    // The same message three times, as redeliveries after lost acks would bring it.
    for _ in 0..3 {
        ship::with(Order { id: 9 })
            .message_id("ship-9")
            .enqueue(&app)
            .await
            .unwrap();
    }
    ship::with(Order { id: 10 })
        .message_id("ship-10")
        .enqueue(&app)
        .await
        .unwrap();
    app.run_until_idle().await;
    assert_eq!(app.succeeded(&ship::JOB), 4, "every delivery succeeds");
    let effects: Vec<i64> = sqlx::query_scalar("SELECT order_id FROM effects ORDER BY order_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(effects, [9, 10], "the effect happened once per message");

    // A handler that rolls back leaves the message unhandled.
    let tx = pool.begin_handling("ship-11", "ship").await.unwrap();
    drop(tx);
    assert!(
        pool.begin_handling("ship-11", "ship")
            .await
            .unwrap()
            .is_some()
    );

    // Old records are pruned; new ones stay.
    sqlx::query(
        "UPDATE jobs_inbox SET handled_at = now() - interval '2 days' WHERE message_id = 'ship-9'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let pruned = jobs_outbox::prune(&pool, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert!(
        pool.begin_handling("ship-10", "ship")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_row_that_cannot_be_published_stays_with_its_error() {
    let Some(pool) = fresh_pool("outbox_unroutable").await else {
        return;
    };
    let app = app();
    let mut tx = pool.begin().await.unwrap();
    invoice::with(Order { id: 1 })
        .routing_key("nobody.listens")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        jobs_outbox::oldest_waiting(&pool).await.unwrap().is_some(),
        "a row waits"
    );
    let relay = Relay::new(pool.clone(), app.producer().clone());
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!((relay.published(), relay.pushed_back()), (0, 1));
    let (attempts, error, due_later): (i32, Option<String>, bool) =
        sqlx::query_as("SELECT attempts, last_error, next_attempt_at > now() FROM jobs_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        error.is_some_and(|e| e.contains("no queue is bound")),
        "the reason is kept"
    );
    assert!(due_later, "tried again after a backoff");
    assert_eq!(relay.run_once().await.unwrap(), 0, "not due yet");
    assert_eq!(relay.pushed_back(), 1);
}

#[tokio::test]
async fn the_oldest_waiting_job_is_the_outbox_lag_and_an_empty_outbox_has_none() {
    let Some(pool) = fresh_pool("outbox_lag").await else {
        return;
    };
    assert_eq!(jobs_outbox::oldest_waiting(&pool).await.unwrap(), None);
    let mut tx = pool.begin().await.unwrap();
    invoice::with(Order { id: 1 })
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    invoice::with(Order { id: 2 })
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The first row as if written a minute ago: the lag is its age, not the newest row's.
    sqlx::query(
        "UPDATE jobs_outbox SET created_at = now() - interval '60 seconds' \
         WHERE id = (SELECT min(id) FROM jobs_outbox)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let lag = jobs_outbox::oldest_waiting(&pool).await.unwrap().unwrap();
    assert!(lag >= Duration::from_secs(60), "{lag:?}");
    assert!(lag < Duration::from_secs(3600), "{lag:?}");

    let app = app();
    let relay = Relay::new(pool.clone(), app.producer().clone());
    assert_eq!(relay.run_once().await.unwrap(), 2);
    assert_eq!(relay.published(), 2);
    assert_eq!(jobs_outbox::oldest_waiting(&pool).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_each_row_once() {
    let Some(pool) = fresh_pool("outbox_two_relays").await else {
        return;
    };
    let app = app();
    let mut ids = BTreeSet::new();
    let mut tx = pool.begin().await.unwrap();
    for n in 0..2_000 {
        let id = invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        ids.insert(id.to_string());
    }
    tx.commit().await.unwrap();

    let relays = [
        Relay::new(pool.clone(), app.producer().clone()).batch(50),
        Relay::new(pool.clone(), app.producer().clone()).batch(50),
    ];
    let drain = |relay: Relay| async move {
        while relay.run_once().await.unwrap() > 0 {}
        relay.published()
    };
    let (a, b) = tokio::join!(
        tokio::spawn(drain(relays[0].clone())),
        tokio::spawn(drain(relays[1].clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, 2_000, "relay a published {a}, relay b {b}");
    assert!(a > 0 && b > 0, "both relays took rows: {a} and {b}");
    let sent: Vec<String> = app
        .enqueued(&invoice::JOB)
        .into_iter()
        .filter_map(|p| p.envelope.properties.message_id)
        .collect();
    assert_eq!(sent.len(), 2_000, "no row was published twice");
    assert_eq!(sent.into_iter().collect::<BTreeSet<_>>(), ids);
}

#[tokio::test]
async fn a_running_relay_wakes_on_the_commit_not_on_its_poll() {
    let Some(pool) = fresh_pool("outbox_notify").await else {
        return;
    };
    let app = app();
    // A poll of an hour: only the notification can wake it within the test's bound.
    let relay =
        Relay::new(pool.clone(), app.producer().clone()).poll_every(Duration::from_secs(3600));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let relay = relay.clone();
        async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    // The relay listens before its first pass: a commit before it listens is found by that
    // pass, and every later one is announced by its notification.
    for n in 0..3 {
        let mut tx = pool.begin().await.unwrap();
        invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let published = tokio::time::timeout(Duration::from_secs(10), async {
            while relay.published() < n + 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(published.is_ok(), "job {n} was not relayed within 10 s");
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn rows_wait_out_a_broker_outage_untouched_and_go_when_it_is_back() {
    let Some(pool) = fresh_pool("outbox_outage").await else {
        return;
    };
    let broker = std::sync::Arc::new(outage::Outage::default());
    let producer = jobs_core::Producer::new(broker.clone());
    let mut tx = pool.begin().await.unwrap();
    for n in 0..5 {
        invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let relay = Relay::new(pool.clone(), producer);
    broker.set_down(true);
    match relay.run_once().await {
        Err(Error::Unavailable { unpublished, .. }) => assert_eq!(unpublished, 5),
        other => panic!("expected the broker unavailable, got {other:?}"),
    }
    let (attempts, due): (i64, i64) = sqlx::query_as(
        "SELECT sum(attempts), count(*) FILTER (WHERE next_attempt_at <= now()) FROM jobs_outbox",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (attempts, due),
        (0, 5),
        "the rows are not blamed, and stay due"
    );

    broker.set_down(false);
    assert_eq!(relay.run_once().await.unwrap(), 5);
    assert_eq!(relay.published(), 5);
    assert_eq!(outbox_rows(&pool).await, 0);
    assert_eq!(
        broker
            .broker
            .message_count(invoice::JOB.queue())
            .await
            .unwrap(),
        5
    );
}

#[tokio::test]
async fn with_notifications_off_a_running_relay_polls_fast_instead() {
    let Some(pool) = fresh_pool("outbox_no_notify").await else {
        return;
    };
    jobs_outbox::set_notify(&pool, false).await.unwrap();
    jobs_outbox::migrate(&pool).await.unwrap();
    let app = app();
    // Its slow poll is an hour: only the fast poll can find the job within the bound.
    let relay = Relay::new(pool.clone(), app.producer().clone())
        .poll_every(Duration::from_secs(3600))
        .fast_poll_every(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let relay = relay.clone();
        async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    for n in 0..3 {
        let mut tx = pool.begin().await.unwrap();
        invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let published = tokio::time::timeout(Duration::from_secs(10), async {
            while relay.published() < n + 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(published.is_ok(), "job {n} was not relayed within 10 s");
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // The setting survives `migrate`, and turns back on.
    let disabled: String = sqlx::query_scalar(
        "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'jobs_outbox_notify' \
         AND tgrelid = 'jobs_outbox'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(disabled, "D");
    jobs_outbox::set_notify(&pool, true).await.unwrap();
}
