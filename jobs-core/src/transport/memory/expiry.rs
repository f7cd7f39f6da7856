//! Per-queue message TTL: one timer task per queue that holds messages waiting to expire.
//!
//! A queue has one TTL, so its messages expire in FIFO order and the timer only ever watches
//! the head. Time is tokio's, so on a paused clock the runtime jumps straight to the next
//! expiry once everything else is idle.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::broker::{Broker, Shared};
use super::dead_letter::Reason;
use super::queue::QueueId;

impl Broker {
    /// Makes sure a timer watches queue `id`; with `head_changed`, wakes a running one, whose
    /// deadline may now be too late.
    pub(super) fn ensure_timer(&mut self, id: QueueId, head_changed: bool) {
        if let Some(wake) = &self.queues[id].timer {
            if head_changed {
                wake.notify_one();
            }
            return;
        }
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle,
            Err(_) => match &self.runtime {
                Some(handle) => handle.clone(),
                // Outside any runtime there is no time to pass; the next enqueue starts one.
                None => return,
            },
        };
        let wake = Arc::new(Notify::new());
        self.queues[id].timer = Some(Arc::clone(&wake));
        runtime.spawn(run(self.shared.clone(), id, wake));
    }

    /// Dead-letters the messages at the head of queue `id` whose time has come, and returns
    /// when the next one expires; `None` when no message is waiting, which stops the timer.
    fn expire(&mut self, id: QueueId, now: Instant) -> Option<Instant> {
        let next = self.holding(|broker| {
            loop {
                let queue = &mut broker.queues[id];
                let Some(at) = queue.ready.front().and_then(|m| m.expires_at) else {
                    queue.timer = None;
                    break None;
                };
                if at > now {
                    break Some(at);
                }
                if let Some(message) = queue.ready.pop_front() {
                    broker.dead_letter(id, message, Reason::Expired);
                }
            }
        });
        // Fewer ready messages may reopen a quorum queue that refuses publishes.
        self.apply_limit(id);
        self.refresh(id);
        next
    }
}

/// The timer of queue `id`: expires its head messages on time until none is left.
async fn run(shared: Weak<Shared>, id: QueueId, wake: Arc<Notify>) {
    loop {
        let next = {
            // The transport may be gone; then so are its messages.
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut broker = shared.lock();
            broker.expire(id, Instant::now())
        };
        let Some(deadline) = next else { return };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = wake.notified() => {}
        }
    }
}
