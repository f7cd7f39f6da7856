//! One reading of the broker shared by every viewer for a moment.
//!
//! An overview asks the broker for every job's queue counts, its pause state and the delay
//! levels: a few requests per job, each on a channel of its own. Each open dashboard polls it,
//! so without sharing the broker's load would grow with the number of people looking. Here one
//! reading serves every request for [`FRESH_FOR`], and requests that come while it is being
//! read wait for it instead of reading again. An action clears it, so that the next poll shows
//! what the action did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use tokio::time::Instant;

/// How long one reading serves: under the page's poll interval, so that a single viewer still
/// sees every poll read afresh.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(1);

/// The last reading, as the JSON served, and when it was taken.
#[derive(Debug, Default)]
pub(super) struct SharedRead {
    last: Mutex<Option<(Instant, Bytes)>>,
    /// Held while a reading is taken, so that viewers arriving meanwhile share it.
    reading: tokio::sync::Mutex<()>,
    /// Counts the clears: a reading begun before an action cleared the last one may show the
    /// state before the action, so it is served to whoever asked but not kept.
    clears: AtomicU64,
}

impl SharedRead {
    /// The last reading if it was taken under [`FRESH_FOR`] ago, or else one taken now by
    /// `read` (started at most once however many ask at the same time).
    pub(super) async fn get<F>(&self, read: F) -> Bytes
    where
        F: AsyncFnOnce() -> Bytes,
    {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let _reading = self.reading.lock().await;
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let (taken, clears) = (Instant::now(), self.clears.load(Ordering::SeqCst));
        let body = read().await;
        let mut slot = self.slot();
        if self.clears.load(Ordering::SeqCst) == clears {
            *slot = Some((taken, body.clone()));
        }
        body
    }

    /// Forgets the last reading, and any being taken: the next request reads the broker.
    pub(super) fn clear(&self) {
        let mut slot = self.slot();
        self.clears.fetch_add(1, Ordering::SeqCst);
        *slot = None;
    }

    fn fresh(&self) -> Option<Bytes> {
        self.slot()
            .as_ref()
            .filter(|(taken, _)| taken.elapsed() < FRESH_FOR)
            .map(|(_, body)| body.clone())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Bytes)>> {
        // The slot holds a plain value, valid whatever a panicking holder was doing.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn read(shared: &SharedRead, reads: &AtomicUsize) -> Bytes {
        shared
            .get(async || {
                let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Bytes::from(n.to_string())
            })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn one_reading_serves_every_viewer_until_it_is_stale_or_cleared() {
        let (shared, reads) = (SharedRead::default(), AtomicUsize::new(0));
        // Three viewers at once: one reading.
        let (a, b, c) = tokio::join!(
            read(&shared, &reads),
            read(&shared, &reads),
            read(&shared, &reads)
        );
        assert_eq!(
            (a, b, c),
            (Bytes::from("1"), Bytes::from("1"), Bytes::from("1"))
        );

        tokio::time::advance(FRESH_FOR / 2).await;
        assert_eq!(read(&shared, &reads).await, "1");

        tokio::time::advance(FRESH_FOR).await;
        assert_eq!(read(&shared, &reads).await, "2");

        shared.clear();
        assert_eq!(read(&shared, &reads).await, "3");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_begun_before_a_clear_is_not_kept() {
        let (shared, reads) = (SharedRead::default(), AtomicUsize::new(0));
        let (before, ()) = tokio::join!(read(&shared, &reads), async {
            // The reading takes 100 ms; the action ends in the middle of it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            shared.clear();
        });
        assert_eq!(before, "1");
        assert_eq!(read(&shared, &reads).await, "2");
        assert_eq!(read(&shared, &reads).await, "2");
    }
}
