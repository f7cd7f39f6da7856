//! The transactional outbox (jobs-outbox) under faults, against a private RabbitMQ node and the
//! test's PostgreSQL, every transaction counted by a ledger:
//!
//! * two relays at once, no fault: no row is published twice;
//! * half the transactions rolled back, the relay process killed (SIGKILL) three times and
//!   restarted, the node killed and restarted once: exactly the committed jobs are handled, a
//!   row published again keeps its message id, and the inbox makes each effect once;
//! * the relay's database black-holed while the application commits: the relay's `/metrics`
//!   answer within their bound, saying the database is down, and once the network is back
//!   every committed job is handled, once.
//!
//! The application's transactions write an order and its job (`enqueue_in`) and commit or roll
//! back; an in-process engine handles the job, recording every delivery before the inbox. The
//! scenarios share one node (a node boots in about ten seconds) and run one after the other,
//! each in a PostgreSQL schema of its own.

mod outbox_support;

use std::time::{Duration, Instant};

use jobs_faults::proxy::{FaultProxy, Mode, url_through};
use jobs_faults::scenario::{sized, until, until_async};
use jobs_faults::{Ledger, PrivateNode, skip_without_rabbitmq};
use outbox_support::{
    BATCH, Database, Delivery, IN_FLIGHT, InProcessRelay, Moment, SETTLE, Seen, Written,
    all_handled, check_effects, engine, kill_in_pass, reports_an_empty_outbox, settle, start_relay,
    start_relay_at, stop, terminate, thousands, transactions, wait_in_pass,
};

/// The application's transactions running at once.
const CONCURRENCY: usize = 16;

/// The relay process's kills (SIGKILL), in order; it is restarted after each. The kill after
/// the confirms comes first, while most transactions are still to come: it needs a pass.
const RELAY_KILLS: [Moment; 3] = [Moment::AfterConfirms, Moment::InPass, Moment::InPass];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_sends_the_committed_jobs_once_each_and_their_effects_happen_once() {
    if skip_without_rabbitmq() {
        return;
    }
    // The database first: without one the test skips before booting a node.
    let Some(relays_db) = Database::fresh("faults_outbox_relays").await else {
        return;
    };
    let Some(kills_db) = Database::fresh("faults_outbox_kills").await else {
        return;
    };
    let Some(hole_db) = Database::fresh("faults_outbox_hole").await else {
        return;
    };
    let started = Instant::now();
    let mut node = PrivateNode::start_new()
        .await
        .expect("the private node starts");
    eprintln!("node {} up in {:?}", node.name(), started.elapsed());

    two_relays_at_once(&node, relays_db).await;
    relay_and_broker_killed(&mut node, kills_db).await;
    database_black_holed(&node, hole_db).await;
    eprintln!("outbox faults done in {:?}", started.elapsed());
}

/// Two relays, each with its own connections to the broker and the database, share the rows
/// of transactions committed while both run: each row is published once, by one of them.
async fn two_relays_at_once(node: &PrivateNode, db: Database) {
    let total = sized(2_000, 10_000);
    let scenario = format!("outbox: {} jobs, two relays at once", thousands(total));
    let first_id = 1_000_000;
    let ledger = Ledger::new();
    let seen = Seen::new(&ledger);
    let engine = engine(&node.url(), "relays", &seen, &db).await;

    let mut running = Vec::new();
    for name in ["relay_a", "relay_b"] {
        running.push(InProcessRelay::start(&node.url(), &db, name).await);
    }
    // Both listen before the first commit, so both are woken by every commit and compete.
    for name in ["relay_a", "relay_b"] {
        let db = &db;
        until_async(
            &format!("{scenario}: {name} listens"),
            Duration::from_secs(30),
            || async move { db.listening(name).await },
        )
        .await;
    }

    let begun = Instant::now();
    let written = transactions(
        db.pool().clone(),
        ledger.clone(),
        first_id..first_id + total,
        |_| true,
        CONCURRENCY,
    )
    .await;
    let committed_in = begun.elapsed();
    until(&format!("{scenario}: every job handled"), SETTLE, || {
        ledger.report().lost.is_empty()
    })
    .await;
    eprintln!(
        "{scenario}: {total} transactions committed in {committed_in:?}, all handled after {:?}",
        begun.elapsed()
    );
    let mut published = Vec::new();
    for relay in running {
        published.push(relay.stop().await);
    }
    settle(&engine, &db, &scenario).await;
    engine.shutdown(Duration::from_secs(10)).await;

    let deliveries = seen.deliveries();
    let mut twice: Vec<(&u64, &Vec<Delivery>)> =
        deliveries.iter().filter(|(_, all)| all.len() > 1).collect();
    twice.sort();
    eprintln!(
        "{scenario}: relay a published {}, relay b {}; {} jobs delivered more than once",
        published[0],
        published[1],
        twice.len()
    );
    assert!(
        twice.is_empty(),
        "{scenario}: {} rows published twice, first {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    assert_eq!(
        published.iter().sum::<u64>(),
        total,
        "{scenario}: the relays published every row once between them"
    );
    assert!(
        published.iter().all(|&n| n > 0),
        "{scenario}: both relays took rows: {published:?}"
    );
    check_effects(&db, &written, &deliveries, &scenario).await;
    ledger.report().check(&scenario, 0);
    db.remove().await;
}

/// Half the transactions roll back, while the relay process is killed three times (restarted
/// each time) and the node once (SIGKILL, then restarted on its data): the committed jobs are
/// all handled and no rolled-back one ever is; rows a killed relay had published and not yet
/// deleted come again with their message ids, and the inbox makes each effect once.
async fn relay_and_broker_killed(node: &mut PrivateNode, db: Database) {
    let total = sized(2_000, 10_000);
    let committed = total / 2;
    let scenario = format!(
        "outbox: {} transactions, half rolled back, relay SIGKILL x{}, broker SIGKILL + \
         restart; each effect once (inbox)",
        thousands(total),
        RELAY_KILLS.len()
    );
    let first_id = 2_000_000;
    let ledger = Ledger::new();
    let seen = Seen::new(&ledger);
    db.install_hold().await;
    let engine = engine(&node.url(), "kills", &seen, &db).await;
    let mut relay = start_relay(&node.url(), &db, "relay_0");

    let begun = Instant::now();
    let application = tokio::spawn(transactions(
        db.pool().clone(),
        ledger.clone(),
        first_id..first_id + total,
        |id| id.is_multiple_of(2),
        CONCURRENCY,
    ));
    let done = || application.is_finished();
    // Rows relayed so far: committed, and no longer in the outbox. The faults come at marks of
    // it, so that each hits a relay at work on rows committed after the previous fault.
    let relayed = || {
        let (ledger, db) = (&ledger, &db);
        async move { (ledger.confirmed_count() as u64).saturating_sub(db.outbox_rows().await) }
    };
    let mut relay_name = "relay_0".to_owned();
    for (kill, moment) in (1..).zip(RELAY_KILLS) {
        let mark = kill * committed / (RELAY_KILLS.len() as u64 + 3);
        until_async(
            &format!("{scenario}: {mark} relayed before relay kill {kill}"),
            SETTLE,
            || async { relayed().await >= mark },
        )
        .await;
        kill_in_pass(&mut relay, &relay_name, moment, &db, &done).await;
        eprintln!(
            "{scenario}: relay kill {kill} {moment:?} at {:?}: {} relayed, {} rows waiting, {} \
             transactions committed",
            begun.elapsed(),
            relayed().await,
            db.outbox_rows().await,
            ledger.confirmed_count()
        );
        relay_name = format!("relay_{kill}");
        relay = start_relay(&node.url(), &db, &relay_name);
    }

    let mark = (RELAY_KILLS.len() as u64 + 1) * committed / (RELAY_KILLS.len() as u64 + 3);
    until_async(
        &format!("{scenario}: {mark} relayed before the node is killed"),
        SETTLE,
        || async { relayed().await >= mark },
    )
    .await;
    // In a pass too: its publishes are cut off with the connection, confirmed or not.
    wait_in_pass(&db, &relay_name, &done).await;
    let waiting = db.outbox_rows().await;
    let down = Instant::now();
    node.kill().await.expect("the node is killed");
    node.start().await.expect("the node starts again");
    // The application went on committing while the node was down: its jobs waited here.
    eprintln!(
        "{scenario}: node killed at {:?} with {waiting} rows waiting, back after {:?} with {} \
         rows waiting, {} transactions committed",
        begun.elapsed() - down.elapsed(),
        down.elapsed(),
        db.outbox_rows().await,
        ledger.confirmed_count()
    );

    let written: Written = tokio::time::timeout(SETTLE, application)
        .await
        .expect("the transactions end in time")
        .expect("the transactions do not panic");
    eprintln!(
        "{scenario}: {} committed, {} rolled back, the last at {:?}",
        written.committed.len(),
        written.rolled_back.len(),
        begun.elapsed()
    );
    assert_eq!(written.committed.len() as u64, committed);
    all_handled(&ledger, &engine, &db, &scenario, begun).await;
    // The relay process's own `/metrics` say so too.
    reports_an_empty_outbox(&relay, &scenario).await;
    terminate(&mut relay);
    engine.shutdown(Duration::from_secs(10)).await;

    let deliveries = seen.deliveries();
    let again = deliveries.values().filter(|all| all.len() > 1).count();
    let extra: usize = deliveries.values().map(|all| all.len() - 1).sum();
    let redelivered = deliveries
        .values()
        .flatten()
        .filter(|delivery| delivery.redelivered)
        .count();
    // A copy a relay published again arrives as a new message, not redelivered: per job, the
    // deliveries not flagged redelivered beyond the first. (A job's first run may itself be a
    // redelivery, of a delivery the engine had taken but not run when the node died, so
    // subtracting the redeliveries from the extra deliveries undercounts.)
    let republished: usize = deliveries
        .values()
        .map(|all| {
            all.iter()
                .filter(|delivery| !delivery.redelivered)
                .count()
                .saturating_sub(1)
        })
        .sum();
    eprintln!(
        "{scenario}: {again} jobs delivered more than once, {extra} extra deliveries: \
         {republished} published again by a relay, {redelivered} redelivered by the broker; \
         each with the message id enqueue_in returned"
    );
    // The kill after the confirms left its pass's rows to be published again: the duplicates
    // whose message ids check_effects compares are there.
    assert!(
        republished > 0,
        "{scenario}: no row was published again after a relay died between confirm and commit"
    );
    check_effects(&db, &written, &deliveries, &scenario).await;
    // Each relay kill can publish again the rows of the pass it cut (one batch); the node's
    // kill, the pass whose confirms it lost (one batch) and the deliveries the engine had
    // unacked.
    ledger.report().check(
        &scenario,
        RELAY_KILLS.len() as u64 * BATCH + BATCH + IN_FLIGHT,
    );
    db.remove().await;
}

/// The relay process reaches its database through a proxy that turns into a black hole
/// (forwarding nothing, keeping the connections open) while the application goes on
/// committing: the relay's `/metrics` answer within their bound with `jobs_outbox_up 0`, the
/// rows committed meanwhile wait in the outbox, and once the network is back the relay goes on
/// where it stopped: every committed job handled, each effect once.
async fn database_black_holed(node: &PrivateNode, db: Database) {
    let total = sized(1_000, 4_000);
    let scenario = format!(
        "outbox: {} transactions, the relay's database black-holed",
        thousands(total)
    );
    let first_id = 3_000_000;
    let ledger = Ledger::new();
    let seen = Seen::new(&ledger);
    let engine = engine(&node.url(), "hole", &seen, &db).await;
    let proxy = FaultProxy::start(db.server())
        .await
        .expect("the proxy starts");
    let name = "relay_hole";
    let mut relay = start_relay_at(&node.url(), &url_through(&db.url_for(name), proxy.addr()));
    until_async(
        &format!("{scenario}: {name} listens"),
        Duration::from_secs(60),
        || async { db.listening(name).await },
    )
    .await;

    let begun = Instant::now();
    let application = tokio::spawn(transactions(
        db.pool().clone(),
        ledger.clone(),
        first_id..first_id + total,
        |_| true,
        CONCURRENCY,
    ));
    let relayed = || {
        let (ledger, db) = (&ledger, &db);
        async move { (ledger.confirmed_count() as u64).saturating_sub(db.outbox_rows().await) }
    };
    let mark = total / 4;
    until_async(
        &format!("{scenario}: {mark} relayed before the black hole"),
        SETTLE,
        || async { relayed().await >= mark },
    )
    .await;
    proxy.set_mode(Mode::Freeze);
    let frozen = Instant::now();
    // The scrape waits for the outbox's lag at most 5 s, then says the database is down: a
    // bound of the worker's, which the test's 30 s only back up.
    let metrics = relay
        .get_within("/metrics", Duration::from_secs(30))
        .map(|(_, body)| body);
    let scraped_in = frozen.elapsed();
    let metrics = metrics.unwrap_or_else(|| {
        panic!(
            "{scenario}: /metrics did not answer in 30 s with the database black-holed:\n{}",
            relay.output()
        )
    });
    assert!(
        metrics.contains("\njobs_outbox_up 0\n") && !metrics.contains("jobs_outbox_oldest_seconds"),
        "{scenario}: /metrics with the database black-holed: {metrics}"
    );
    let written: Written = tokio::time::timeout(SETTLE, application)
        .await
        .expect("the transactions end in time")
        .expect("the transactions do not panic");
    let waiting = db.outbox_rows().await;
    eprintln!(
        "{scenario}: /metrics answered in {scraped_in:?} with the database black-holed; the \
         application committed {} in {:?}; {waiting} rows waiting when the network came back, \
         {:?} after it went",
        written.committed.len(),
        begun.elapsed(),
        frozen.elapsed()
    );
    assert!(
        waiting > 0,
        "{scenario}: the relay relayed rows committed while it could not reach its database"
    );
    proxy.set_mode(Mode::Pass);
    all_handled(&ledger, &engine, &db, &scenario, begun).await;
    // The connection the timed-out scrape left behind serves again.
    reports_an_empty_outbox(&relay, &scenario).await;
    stop(&mut relay);
    engine.shutdown(Duration::from_secs(10)).await;

    check_effects(&db, &written, &seen.deliveries(), &scenario).await;
    // A pass cut off by the black hole before its commit is published again (one batch), and
    // the engine's unacked deliveries may come again.
    ledger.report().check(&scenario, BATCH + IN_FLIGHT);
    db.remove().await;
}
