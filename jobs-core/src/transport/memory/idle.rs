//! Quiescence: waiting, without polling, until nothing is left for the broker to do.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Wakes [`MemoryTransport::until_idle`](super::MemoryTransport::until_idle) callers when the
/// broker becomes quiescent. Signalling costs one atomic load while nobody waits.
#[derive(Debug, Default)]
pub(super) struct IdleSignal {
    notify: Notify,
    waiters: AtomicUsize,
}

impl IdleSignal {
    /// Called, under the broker lock, when the last busy queue calms down.
    pub(super) fn signal(&self) {
        // SeqCst pairs with the increment in `wait`: a waiter that checked the state before this
        // change had registered before taking the lock, so it is seen here.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Resolves once `is_idle` holds, re-checking it after every signal.
    pub(super) async fn wait(&self, is_idle: impl Fn() -> bool) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _registered = Registered(&self.waiters);
        loop {
            let mut notified = pin!(self.notify.notified());
            // Enabled before the check, so a signal between the check and the await is kept.
            notified.as_mut().enable();
            if is_idle() {
                return;
            }
            notified.await;
        }
    }
}

/// Unregisters a waiter when its future completes or is dropped.
struct Registered<'a>(&'a AtomicUsize);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
