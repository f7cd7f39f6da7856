//! The handler tasks of one consumer: one task per delivery, counted so that the serve loop can
//! wait for them, and abortable at the shutdown deadline.
//!
//! A `JoinSet` did this before, at a cost per delivery the in-memory broker made plain: an entry
//! allocated and locked into its lists, and a wake-up of the serve loop for each task that
//! finished, just to reap it. Here a task that finishes only decrements a counter; the abort
//! handles are kept in delivery order and dropped from the front as their tasks finish.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Below this many abort handles kept, finished tasks behind an unfinished one are not looked
/// for.
const PRUNE_FLOOR: usize = 64;

/// The running handler tasks of one consumer.
#[derive(Debug)]
pub(super) struct Handlers {
    count: Arc<Count>,
    /// Of the tasks spawned, oldest first; some may have finished.
    aborts: VecDeque<AbortHandle>,
    /// When `aborts` grows past this, the finished tasks anywhere in it are dropped.
    prune_at: usize,
}

#[derive(Debug, Default)]
struct Count {
    running: AtomicUsize,
    /// Notified when `running` drops to zero.
    idle: Notify,
}

/// Held by each task until it ends, however it ends: finished, aborted or unwinding.
struct Running(Arc<Count>);

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // tokio drops a task that panicked while the panic unwinds; its `SettleOnce` gave
            // the delivery back as failed, so that one that panics every time meets the
            // delivery limit.
            tracing::error!(
                "a handler task panicked outside the handler; its delivery was requeued"
            );
        }
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Handlers {
    pub(super) fn new() -> Self {
        Self {
            count: Arc::default(),
            aborts: VecDeque::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    /// Runs `task` as a task of its own.
    pub(super) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.count.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.count));
        let spawned = tokio::spawn(async move {
            let _running = running;
            task.await;
        });
        self.aborts.push_back(spawned.abort_handle());
        // Tasks mostly finish in the order they started, so this keeps the handles few; one
        // long task at the front is stepped over by the occasional full pass.
        while self.aborts.front().is_some_and(AbortHandle::is_finished) {
            self.aborts.pop_front();
        }
        if self.aborts.len() > self.prune_at {
            self.aborts.retain(|handle| !handle.is_finished());
            self.prune_at = (self.aborts.len() * 2).max(PRUNE_FLOOR);
        }
    }

    /// Resolves once no task runs.
    pub(super) async fn idle(&self) {
        let count = Arc::clone(&self.count);
        loop {
            let notified = count.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a task that ends in between still wakes it.
            notified.as_mut().enable();
            if count.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Aborts every task, and resolves once each is gone (its `SettleOnce` has requeued its
    /// delivery).
    pub(super) async fn shutdown(&mut self) {
        for handle in self.aborts.drain(..) {
            handle.abort();
        }
        self.idle().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waits_for_every_task_and_aborts_what_is_left() {
        let mut handlers = Handlers::new();
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        handlers.spawn(async move {
            let _ = receiver.await;
        });
        // Finished tasks behind the one still running are dropped now and then.
        for _ in 0..1000 {
            handlers.spawn(async {});
            tokio::task::yield_now().await;
            assert!(
                handlers.aborts.len() <= 2 * PRUNE_FLOOR + 2,
                "{}",
                handlers.aborts.len()
            );
        }
        let idle = tokio::time::timeout(Duration::from_millis(20), handlers.idle()).await;
        assert!(idle.is_err(), "one task still runs");
        drop(sender);
        handlers.idle().await;

        handlers.spawn(std::future::pending());
        tokio::time::timeout(Duration::from_secs(5), handlers.shutdown())
            .await
            .expect("an aborted task ends");
    }
}
