//! The handler tasks of one consumer: a pool of long-lived tasks that take deliveries from a
//! queue, counted so that the serve loop can wait for the work in hand, and abortable at the
//! shutdown deadline.
//!
//! A task per delivery did this before, at a cost the in-memory broker made plain: each
//! delivery allocated its boxed future and tokio's task cell (an aligned allocation that
//! glibc's per-thread cache never serves), and freed both on whichever thread ran it, about a
//! fifth of a no-op job's instructions. A worker here is spawned once, when a delivery finds
//! every worker busy and fewer than the prefetch run; after that a delivery costs a queue push
//! and, when a worker waits, its wake-up.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The workers of one consumer, and the deliveries (`T`) waiting for one.
#[derive(Debug)]
pub(super) struct Handlers<T> {
    shared: Arc<Shared<T>>,
    count: Arc<Count>,
    /// At most this many workers: the consumer's prefetch, the most deliveries it holds.
    max_workers: usize,
    /// Of every worker spawned, all alive until the pool closes (a worker catches what its
    /// deliveries panic with); only an abort at shutdown uses them.
    workers: Vec<AbortHandle>,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes a waiting worker: one per queued delivery while any waits, all when closed.
    wake: Notify,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<(T, Running)>,
    /// Workers waiting for a delivery, less those already woken for one.
    waiting: usize,
    /// No more deliveries: waiting workers end.
    closed: bool,
}

#[derive(Debug, Default)]
struct Count {
    /// Deliveries queued or being handled.
    running: AtomicUsize,
    /// Notified when `running` drops to zero.
    idle: Notify,
}

/// Held with each delivery until its worker is done with it, or it is dropped unhandled.
#[derive(Debug)]
pub(super) struct Running(Arc<Count>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A worker's end of the queue.
#[derive(Debug)]
pub(super) struct Worker<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Worker<T> {
    /// The next delivery, with the count it holds until it is handled; `None` once the pool is
    /// closed.
    pub(super) async fn next(&mut self) -> Option<(T, Running)> {
        loop {
            let woken = self.shared.wake.notified();
            tokio::pin!(woken);
            {
                let mut state = self.shared.lock();
                if let Some(next) = state.queue.pop_front() {
                    return Some(next);
                }
                if state.closed {
                    return None;
                }
                state.waiting += 1;
                // Registered under the lock, so that the push that counts this worker as
                // waiting, or the close, finds it among the waiters.
                woken.as_mut().enable();
            }
            woken.await;
        }
    }
}

impl<T: Send + 'static> Handlers<T> {
    /// A pool of at most `max_workers` workers (at least one), none spawned yet.
    pub(super) fn new(max_workers: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    waiting: 0,
                    closed: false,
                }),
                wake: Notify::new(),
            }),
            count: Arc::default(),
            max_workers: max_workers.max(1),
            workers: Vec::new(),
        }
    }

    /// Queues `delivery` for a worker: wakes one that waits, or else spawns one with `work`
    /// while fewer than the most run; otherwise a busy worker takes it when it is done. After
    /// [`shutdown`](Self::shutdown) it is dropped unhandled.
    pub(super) fn push<F, W>(&mut self, delivery: T, work: W)
    where
        W: FnOnce(Worker<T>) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        self.count.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.count));
        let (wake, spawn) = {
            let mut state = self.shared.lock();
            if state.closed {
                drop(state);
                drop((delivery, running));
                return;
            }
            state.queue.push_back((delivery, running));
            if state.waiting > 0 {
                state.waiting -= 1;
                (true, false)
            } else if self.workers.len() < self.max_workers {
                (false, true)
            } else {
                (false, false)
            }
        };
        if wake {
            // The worker that waited last: its stack is the likeliest to be in the cache.
            self.shared.wake.notify_last();
        }
        if spawn {
            let worker = Worker {
                shared: Arc::clone(&self.shared),
            };
            self.workers.push(tokio::spawn(work(worker)).abort_handle());
        }
    }

    /// Resolves once no delivery is queued or being handled.
    pub(super) async fn idle(&self) {
        let count = Arc::clone(&self.count);
        loop {
            let notified = count.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a delivery handled in between still wakes it.
            notified.as_mut().enable();
            if count.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Drops the queued deliveries unhandled, aborts every worker, and resolves once each is
    /// gone (the promises of what they held have requeued it).
    pub(super) async fn shutdown(&mut self) {
        drop(self.close());
        for worker in self.workers.drain(..) {
            worker.abort();
        }
        self.idle().await;
    }
}

impl<T> Handlers<T> {
    /// Closes the queue and wakes the waiting workers to end; returns what was still queued,
    /// for the caller to drop outside the lock.
    fn close(&self) -> VecDeque<(T, Running)> {
        let unhandled = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        self.shared.wake.notify_waiters();
        unhandled
    }
}

impl<T> Drop for Handlers<T> {
    fn drop(&mut self) {
        // Idle workers end; a busy one ends once it is done with what it holds. What is still
        // queued is dropped here, outside the lock, and its promise gives it back.
        drop(self.close());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn work(mut worker: Worker<tokio::sync::oneshot::Receiver<()>>) {
        while let Some((wait, _running)) = worker.next().await {
            let _ = wait.await;
        }
    }

    #[tokio::test]
    async fn waits_for_every_delivery_and_aborts_what_is_left() {
        let mut handlers = Handlers::new(4);
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        handlers.push(receiver, work);
        // A thousand more through the other workers, never more workers than the most.
        for _ in 0..1000 {
            let (done, receiver) = tokio::sync::oneshot::channel::<()>();
            drop(done);
            handlers.push(receiver, work);
            tokio::task::yield_now().await;
            assert!(handlers.workers.len() <= 4, "{}", handlers.workers.len());
        }
        let idle = tokio::time::timeout(Duration::from_millis(20), handlers.idle()).await;
        assert!(idle.is_err(), "one delivery is still being handled");
        drop(sender);
        handlers.idle().await;

        // Every worker busy: the last of these waits in the queue, and is dropped unhandled.
        let mut held = Vec::new();
        for _ in 0..5 {
            let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
            held.push(sender);
            handlers.push(receiver, work);
        }
        tokio::time::timeout(Duration::from_secs(5), handlers.shutdown())
            .await
            .expect("aborted workers end");
        assert!(held.iter().all(tokio::sync::oneshot::Sender::is_closed));

        // Nothing is taken after the shutdown: it is dropped, and the count stays at zero.
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        handlers.push(receiver, work);
        assert!(sender.is_closed());
        handlers.idle().await;
    }

    #[tokio::test]
    async fn a_dropped_pool_ends_its_waiting_workers() {
        let mut handlers = Handlers::new(2);
        let (done, receiver) = tokio::sync::oneshot::channel::<()>();
        drop(done);
        let (ended, ended_rx) = tokio::sync::oneshot::channel::<()>();
        handlers.push(receiver, |worker| async move {
            work(worker).await;
            let _ = ended.send(());
        });
        handlers.idle().await;
        drop(handlers);
        tokio::time::timeout(Duration::from_secs(5), ended_rx)
            .await
            .expect("the worker ends")
            .expect("and says so");
    }
}
