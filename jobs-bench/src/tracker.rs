//! Per job of a measurement: when it was due from and when it first started, and a count of
//! started jobs to wait on. The handlers of the delay and outbox measures report here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::message::now_nanos;

/// Per job of a measurement, two times in [`now_nanos`] plus one (zero: not yet), and how many
/// jobs started, to wait on.
#[derive(Debug)]
pub struct Tracker {
    slots: RwLock<Vec<Slot>>,
    started: AtomicU64,
    duplicates: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

#[derive(Debug, Default)]
struct Slot {
    from: AtomicU64,
    start: AtomicU64,
}

impl Tracker {
    /// An empty tracker, for a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            slots: RwLock::new(Vec::new()),
            started: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Notify::const_new(),
        }
    }

    /// Starts a measurement of jobs `0..jobs`.
    pub(crate) fn reset(&self, jobs: u64) {
        let mut slots = self
            .slots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.clear();
        slots.resize_with(usize::try_from(jobs).unwrap_or(usize::MAX), Slot::default);
        self.started.store(0, Ordering::SeqCst);
        self.duplicates.store(0, Ordering::SeqCst);
        self.target.store(jobs, Ordering::SeqCst);
    }

    fn slots(&self) -> RwLockReadGuard<'_, Vec<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Job `seq`'s first attempt failed now.
    pub(crate) fn fail(&self, seq: u64) {
        if let Some(slot) = self.slots().get(index(seq)) {
            slot.from.store(now_nanos() + 1, Ordering::Release);
        }
    }

    /// Job `seq` was enqueued at `sent_nanos` (or committed, for the outbox).
    pub(crate) fn sent(&self, seq: u64, sent_nanos: u64) {
        if let Some(slot) = self.slots().get(index(seq)) {
            slot.from.store(sent_nanos + 1, Ordering::Release);
        }
    }

    /// Job `seq` starts now: the first start counts, a later one is a duplicate.
    pub(crate) fn start(&self, seq: u64) {
        let now = now_nanos() + 1;
        let first = self.slots().get(index(seq)).map(|slot| {
            slot.start
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        match first {
            Some(true) => {
                let started = self.started.fetch_add(1, Ordering::AcqRel) + 1;
                if started == self.target.load(Ordering::Acquire) {
                    self.reached.notify_one();
                }
            }
            Some(false) => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            // A job of an earlier measurement.
            None => {}
        }
    }

    /// Waits until every job started, until `deadline`; whether they did.
    pub(crate) async fn wait_until(&self, deadline: Instant) -> bool {
        let target = self.target.load(Ordering::Acquire);
        let reached = async {
            while self.started.load(Ordering::Acquire) < target {
                self.reached.notified().await;
            }
        };
        tokio::time::timeout_at(deadline, reached).await.is_ok()
    }

    /// Jobs started once or more since the last reset.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Starts after a job's first since the last reset: redeliveries.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Acquire)
    }

    /// Each started job's start less its due time, `due_after(seq)` after it was due from, in
    /// nanoseconds; and how many jobs never started.
    pub(crate) fn lateness(&self, due_after: impl Fn(u64) -> Duration) -> (Vec<i64>, u64) {
        let slots = self.slots();
        let mut lateness = Vec::with_capacity(slots.len());
        let mut missing = 0;
        for (seq, slot) in (0..).zip(slots.iter()) {
            let (from, start) = (
                slot.from.load(Ordering::Acquire),
                slot.start.load(Ordering::Acquire),
            );
            if from == 0 || start == 0 {
                missing += 1;
                continue;
            }
            let due = i128::from(from) + i128::try_from(due_after(seq).as_nanos()).unwrap_or(0);
            let late = i128::from(start) - due;
            lateness.push(i64::try_from(late).unwrap_or(i64::MAX));
        }
        (lateness, missing)
    }

    /// From the earliest due-from time to the latest start.
    pub(crate) fn span(&self) -> Duration {
        let slots = self.slots();
        let first = slots
            .iter()
            .map(|slot| slot.from.load(Ordering::Acquire))
            .filter(|&from| from > 0)
            .min()
            .unwrap_or(0);
        let last = slots
            .iter()
            .map(|slot| slot.start.load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        Duration::from_nanos(last.saturating_sub(first))
    }
}

/// Job `seq`'s slot.
fn index(seq: u64) -> usize {
    usize::try_from(seq).unwrap_or(usize::MAX)
}
