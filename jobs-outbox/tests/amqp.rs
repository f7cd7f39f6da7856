//! The outbox end to end on RabbitMQ: jobs written in PostgreSQL transactions, relayed with
//! confirms by a running relay, handled by an engine whose handler records its effect through
//! the inbox.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::{Outcome, Recorder, broker_url};
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::{JobContext, JobError, Producer, State, job};
use jobs_outbox::{InboxExt as _, OutboxEnqueue as _, Relay};
use sqlx::PgPool;
use support::{fresh_pool, outbox_rows};

/// An order, the message of the test's job.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Order {
    /// The order's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[job(
    exchange = "outbox_amqp_tests",
    routing_key = "ship",
    queue = "outbox_amqp_tests.ship",
    concurrency = 8
)]
async fn ship_on_rabbitmq(
    order: Order,
    ctx: JobContext,
    pool: State<PgPool>,
) -> Result<(), JobError> {
    let Some(mut tx) = ctx.inbox(&*pool).await.map_err(JobError::retry)? else {
        return Ok(());
    };
    sqlx::query("INSERT INTO effects (order_id) VALUES ($1)")
        .bind(i64::try_from(order.id).map_err(JobError::fatal)?)
        .execute(&mut *tx)
        .await
        .map_err(JobError::retry)?;
    tx.commit().await.map_err(JobError::retry)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_jobs_reach_rabbitmq_once_and_their_effect_happens_once() {
    let Some(url) = broker_url() else {
        return;
    };
    let Some(pool) = fresh_pool("outbox_amqp").await else {
        return;
    };
    sqlx::query("CREATE TABLE effects (order_id bigint NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let transport = Arc::new(AmqpTransport::connect(&url).await.expect("connected"));
    let recorder = Arc::new(Recorder::new());
    let engine = Engine::builder(transport.clone())
        .job(&ship_on_rabbitmq::JOB)
        .state(pool.clone())
        .observer(Arc::clone(&recorder) as _)
        .start()
        .await
        .expect("started");
    engine
        .producer()
        .transport()
        .purge("outbox_amqp_tests.ship")
        .await
        .unwrap();

    let relay = Relay::new(pool.clone(), Producer::new(transport.clone()));
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

    let mut committed = BTreeSet::new();
    for n in 0..200_u64 {
        let mut tx = pool.begin().await.unwrap();
        let id = ship_on_rabbitmq::with(Order { id: n })
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
    // One committed job published a second time with its message id, as a relay that died
    // between the confirm and its commit would: the inbox keeps its effect single.
    let again = committed.iter().next().cloned().unwrap();
    let mut tx = pool.begin().await.unwrap();
    ship_on_rabbitmq::with(Order { id: 0 })
        .message_id(again.clone())
        .enqueue_in(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let handled = recorder
        .wait_until(Duration::from_secs(30), || {
            let done = recorder
                .events()
                .into_iter()
                .filter(|e| e.outcome == Outcome::Succeeded)
                .count();
            (done > committed.len()).then_some(done)
        })
        .await
        .expect("every committed job handled within 30 s");
    assert_eq!(handled, committed.len() + 1, "each delivery handled once");
    let succeeded: BTreeSet<String> = recorder
        .events()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Succeeded)
        .filter_map(|e| e.message_id)
        .collect();
    assert_eq!(
        succeeded, committed,
        "exactly the committed ids, none rolled back"
    );

    let effects: Vec<i64> = sqlx::query_scalar("SELECT order_id FROM effects ORDER BY order_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let expected: Vec<i64> = (0..200).step_by(2).collect();
    assert_eq!(effects, expected, "one effect per committed order");
    assert_eq!(outbox_rows(&pool).await, 0);
    assert_eq!(relay.published(), 101);

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    engine.shutdown(Duration::from_secs(5)).await;
    // A run leaves the shared broker as it found it; best effort, as a queue left behind
    // fails nothing.
    if let Err(err) = jobs_core::testing::delete_job_queues(&url, &[&ship_on_rabbitmq::JOB]).await {
        eprintln!("the test's queues stay on the broker: {err}");
    }
}
