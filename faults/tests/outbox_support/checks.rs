//! The end of a scenario: waiting until nothing is left to come, then the promise of the
//! outbox and the inbox.

use std::collections::{BTreeSet, HashMap};

use jobs_core::engine::Engine;
use jobs_faults::Ledger;
use jobs_faults::scenario::{until, until_async};
use std::time::Instant;

use super::{Database, Delivery, SETTLE, Written, queues};

/// Waits until every job the ledger confirmed (each committed transaction) has been handled,
/// reporting when that was after `begun`, then until nothing is left to come ([`settle`]).
pub(crate) async fn all_handled(
    ledger: &Ledger,
    engine: &Engine,
    db: &Database,
    scenario: &str,
    begun: Instant,
) {
    until(
        &format!("{scenario}: every committed job handled"),
        SETTLE,
        || ledger.report().lost.is_empty(),
    )
    .await;
    eprintln!("{scenario}: all handled after {:?}", begun.elapsed());
    settle(engine, db, scenario).await;
}

/// Waits until nothing is left to come: the outbox empty, and no message of the job waiting
/// in its queues (a row published twice is then handled, and counted, before the tally).
pub(crate) async fn settle(engine: &Engine, db: &Database, scenario: &str) {
    until_async(
        &format!("{scenario}: the outbox empties"),
        SETTLE,
        || async { db.outbox_rows().await == 0 },
    )
    .await;
    let transport = engine.producer().transport();
    until_async(
        &format!("{scenario}: the job's queues empty"),
        SETTLE,
        || async {
            let mut waiting = 0;
            for queue in queues() {
                waiting += transport.message_count(&queue).await.unwrap_or(1);
            }
            waiting == 0
        },
    )
    .await;
}

/// The promise of the outbox and the inbox: the committed jobs, and only they, reached the
/// handler, every delivery with the message id `enqueue_in` returned; each made its effect
/// once, in the inbox's transaction; the outbox is empty.
pub(crate) async fn check_effects(
    db: &Database,
    written: &Written,
    deliveries: &HashMap<u64, Vec<Delivery>>,
    scenario: &str,
) {
    let committed: BTreeSet<u64> = written.committed.keys().copied().collect();
    let handled: BTreeSet<u64> = deliveries.keys().copied().collect();
    let rolled_back_handled: Vec<&u64> = written.rolled_back.intersection(&handled).collect();
    assert!(
        rolled_back_handled.is_empty(),
        "{scenario}: {} rolled-back transactions' jobs were handled, first {:?}",
        rolled_back_handled.len(),
        &rolled_back_handled[..rolled_back_handled.len().min(20)]
    );
    assert_eq!(
        handled, committed,
        "{scenario}: the committed jobs reach the handler"
    );
    for (id, all) in deliveries {
        let original = &written.committed[id];
        assert!(
            all.iter().all(|delivery| delivery.message_id == *original),
            "{scenario}: job {id} came as {all:?}, written as {original}"
        );
    }
    let (effects, effect_ids) = db.effects().await;
    eprintln!(
        "{scenario}: {effects} effects of {} committed transactions",
        committed.len()
    );
    assert_eq!(
        effects,
        committed.len() as u64,
        "{scenario}: one effect per committed job"
    );
    assert_eq!(
        effect_ids, committed,
        "{scenario}: the effects are the committed jobs'"
    );
    assert_eq!(db.inbox_rows().await, committed.len() as u64);
    assert_eq!(db.orders().await, committed.len() as u64);
    assert_eq!(db.outbox_rows().await, 0, "{scenario}: the outbox is empty");
}
