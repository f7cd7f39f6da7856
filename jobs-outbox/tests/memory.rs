//! The in-memory outbox and inbox keep the PostgreSQL ones' rules (see `postgres.rs`), on a
//! `TestApp` and its paused clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use jobs_core::testing::{Outcome, TestApp};
use jobs_core::{JobContext, JobError, State, job};
use jobs_outbox::{Error, InboxExt as _, InboxStore as _, MemoryOutbox, OutboxEnqueue as _};

/// An order, the message of the tests' jobs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Order {
    /// The order's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[job(exchange = "outbox_memory_tests", routing_key = "invoice")]
async fn invoice(_order: Order) -> Result<(), JobError> {
    Ok(())
}

/// The orders shipped: the effect the inbox makes happen once per message.
#[derive(Debug, Default)]
struct Shipped(std::sync::Mutex<Vec<u64>>);

#[job(
    exchange = "outbox_memory_tests",
    routing_key = "ship",
    concurrency = 4
)]
async fn ship(
    order: Order,
    ctx: JobContext,
    outbox: State<MemoryOutbox>,
    shipped: State<Arc<Shipped>>,
) -> Result<(), JobError> {
    let Some(tx) = ctx.inbox(&*outbox).await.map_err(JobError::retry)? else {
        return Ok(());
    };
    // Let the other deliveries of the message run meanwhile: they must wait for this one.
    tokio::task::yield_now().await;
    let Shipped(list) = &**shipped;
    list.lock().unwrap().push(order.id);
    tx.commit();
    Ok(())
}

/// Two subscribers of one fanout exchange, each recording its effect through the inbox.
#[job(
    exchange = "outbox_memory_tests.events",
    kind = "fanout",
    routing_key = ""
)]
async fn notify_buyer(
    order: Order,
    ctx: JobContext,
    outbox: State<MemoryOutbox>,
    shipped: State<Arc<Shipped>>,
) -> Result<(), JobError> {
    record(order.id, &ctx, &outbox, &shipped).await
}

#[job(
    exchange = "outbox_memory_tests.events",
    kind = "fanout",
    routing_key = ""
)]
async fn notify_seller(
    order: Order,
    ctx: JobContext,
    outbox: State<MemoryOutbox>,
    shipped: State<Arc<Shipped>>,
) -> Result<(), JobError> {
    record(order.id + 100, &ctx, &outbox, &shipped).await
}

async fn record(
    effect: u64,
    ctx: &JobContext,
    outbox: &MemoryOutbox,
    shipped: &Shipped,
) -> Result<(), JobError> {
    if let Some(tx) = ctx.inbox(outbox).await.map_err(JobError::retry)? {
        shipped.0.lock().unwrap().push(effect);
        tx.commit();
    }
    Ok(())
}

fn succeeded(app: &TestApp) -> BTreeSet<String> {
    app.events()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn only_committed_transactions_send_their_jobs() {
    let app = TestApp::builder().job(&invoice::JOB).build().unwrap();
    let outbox = MemoryOutbox::new();
    let mut committed = BTreeSet::new();
    for n in 0..40 {
        let mut tx = outbox.begin();
        let id = invoice::with(Order { id: n })
            .enqueue_in(&mut tx)
            .await
            .unwrap();
        if n % 2 == 0 {
            tx.commit();
            committed.insert(id.to_string());
        } else {
            drop(tx);
        }
    }
    assert_eq!(outbox.pending(), 20, "only the committed rows are visible");
    assert_eq!(outbox.relay(app.producer()).await.unwrap(), 20);
    app.run_until_idle().await;
    assert_eq!(succeeded(&app), committed, "exactly the committed ids ran");
    assert_eq!(outbox.pending(), 0, "published rows are gone");
}

#[tokio::test(start_paused = true)]
async fn a_unique_key_is_held_until_the_job_is_handled() {
    let outbox = MemoryOutbox::new();
    let mut tx = outbox.begin();
    let first = invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit();

    let mut tx = outbox.begin();
    match invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await
    {
        Err(Error::Duplicate { key, message_id }) => {
            assert_eq!(
                (key.as_str(), message_id.as_str()),
                ("order-1", first.as_str())
            );
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    drop(tx);

    // A rolled-back claim frees the key at once.
    let mut tx = outbox.begin();
    invoice::with(Order { id: 3 })
        .unique_key("order-3")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    drop(tx);
    let mut tx = outbox.begin();
    invoice::with(Order { id: 3 })
        .unique_key("order-3")
        .enqueue_in(&mut tx)
        .await
        .expect("the rolled-back key is free");
    tx.commit();

    // The handler's inbox transaction frees the key with its commit.
    let handling = outbox
        .begin_handling(first.as_str(), invoice::JOB.name())
        .await
        .unwrap()
        .expect("not handled yet");
    handling.commit();
    let mut tx = outbox.begin();
    invoice::with(Order { id: 1 })
        .unique_key("order-1")
        .enqueue_in(&mut tx)
        .await
        .expect("the handled job's key is free");
    tx.commit();
}

#[tokio::test(start_paused = true)]
async fn the_inbox_runs_a_handlers_effect_once_per_message() {
    let outbox = MemoryOutbox::new();
    let shipped = Arc::new(Shipped::default());
    let app = TestApp::builder()
        .job(&ship::JOB)
        .state(outbox.clone())
        .state(Arc::clone(&shipped))
        .build()
        .unwrap();
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
    let mut effects = shipped.0.lock().unwrap().clone();
    effects.sort_unstable();
    assert_eq!(effects, [9, 10], "once per message");
    assert!(outbox.handled("ship-9", "ship"));

    // A handler that does not commit leaves the message unhandled.
    let tx = outbox.begin_handling("ship-11", "ship").await.unwrap();
    drop(tx);
    assert!(!outbox.handled("ship-11", "ship"));
}

#[tokio::test(start_paused = true)]
async fn a_row_that_cannot_be_published_stays() {
    let app = TestApp::builder().job(&invoice::JOB).build().unwrap();
    let outbox = MemoryOutbox::new();
    let mut tx = outbox.begin();
    invoice::with(Order { id: 1 })
        .routing_key("nobody.listens")
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit();
    let error = outbox.relay(app.producer()).await.unwrap_err();
    assert!(error.to_string().contains("no queue is bound"), "{error}");
    assert_eq!(outbox.pending(), 1, "kept for the next relay");
}

#[tokio::test(start_paused = true)]
async fn each_subscriber_of_a_fanout_handles_a_message_once() {
    let outbox = MemoryOutbox::new();
    let shipped = Arc::new(Shipped::default());
    let app = TestApp::builder()
        .job(&notify_buyer::JOB)
        .job(&notify_seller::JOB)
        .state(outbox.clone())
        .state(Arc::clone(&shipped))
        .build()
        .unwrap();
    // Published twice with one id: each subscriber gets both copies, and acts on one.
    for _ in 0..2 {
        notify_buyer::with(Order { id: 1 })
            .message_id("order-1-paid")
            .enqueue(&app)
            .await
            .unwrap();
    }
    app.run_until_idle().await;
    let mut effects = shipped.0.lock().unwrap().clone();
    effects.sort_unstable();
    assert_eq!(
        effects,
        [1, 101],
        "once per subscriber, keyed by the handling job"
    );
    assert!(outbox.handled("order-1-paid", "notify_buyer"));
    assert!(outbox.handled("order-1-paid", "notify_seller"));
}
