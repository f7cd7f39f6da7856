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
//!
//! The waiting workers' wakers are kept under the queue's own lock, not in a
//! [`tokio::sync::Notify`]: a delivery then takes one lock where it took two (the queue's and
//! the `Notify`'s own), and a waiting worker registers in the same critical section that found
//! the queue empty.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

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
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<(T, Running)>,
    /// The wakers of the workers waiting for a delivery, the last to wait last; a push takes
    /// one out and wakes it, a close wakes them all.
    waiting: Vec<Waker>,
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
    pub(super) fn next(&mut self) -> impl Future<Output = Option<(T, Running)>> + '_ {
        // Where this worker's waker went in `waiting`: a push takes only the last one out, so
        // the waker stays at that index for as long as it waits there.
        let mut slot = None;
        std::future::poll_fn(move |cx| {
            let mut state = self.shared.lock();
            if let Some(next) = state.queue.pop_front() {
                return Poll::Ready(Some(next));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            // Registered under the lock that found the queue empty, so that the next push or
            // the close finds this worker among the waiting. Polled again with nothing queued
            // (another worker took what it was woken for, or something else woke its task),
            // it may still be registered: it is not registered twice.
            let registered = slot.is_some_and(|index| {
                state
                    .waiting
                    .get(index)
                    .is_some_and(|waker: &Waker| waker.will_wake(cx.waker()))
            });
            if !registered {
                slot = Some(state.waiting.len());
                state.waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

impl<T: Send + 'static> Handlers<T> {
    /// A pool of at most `max_workers` workers (at least one), none spawned yet.
    pub(super) fn new(max_workers: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    waiting: Vec::new(),
                    closed: false,
                }),
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
            // The worker that waited last: its stack is the likeliest to be in the cache.
            match state.waiting.pop() {
                Some(waker) => (Some(waker), false),
                None => (None, self.workers.len() < self.max_workers),
            }
        };
        // Woken outside the lock, which the worker takes as soon as it runs.
        if let Some(waker) = wake {
            waker.wake();
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
        let (unhandled, waiting) = {
            let mut state = self.shared.lock();
            state.closed = true;
            (
                std::mem::take(&mut state.queue),
                std::mem::take(&mut state.waiting),
            )
        };
        for waker in waiting {
            waker.wake();
        }
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

    /// Lets every task that can run, run.
    async fn run_the_others() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_worker_woken_for_a_delivery_another_took_waits_for_the_next() {
        type Held = (Arc<AtomicUsize>, tokio::sync::oneshot::Receiver<()>);
        async fn count_and_hold(mut worker: Worker<Held>) {
            while let Some(((taken, wait), _running)) = worker.next().await {
                taken.fetch_add(1, Ordering::AcqRel);
                let _ = wait.await;
            }
        }
        let taken = Arc::new(AtomicUsize::new(0));
        let mut handlers = Handlers::new(2);
        let deliver = |handlers: &mut Handlers<Held>| {
            let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
            handlers.push((Arc::clone(&taken), receiver), count_and_hold);
            sender
        };
        // Two workers, each holding one delivery.
        let first = deliver(&mut handlers);
        run_the_others().await;
        let second = deliver(&mut handlers);
        run_the_others().await;
        assert_eq!(handlers.workers.len(), 2);
        assert_eq!(taken.load(Ordering::Acquire), 2);
        // The first worker's done and waits; the second is done just as a third delivery
        // wakes the first: the second, scheduled first, takes it.
        drop(first);
        run_the_others().await;
        drop(second);
        let _third = deliver(&mut handlers);
        run_the_others().await;
        assert_eq!(taken.load(Ordering::Acquire), 3);
        // The first worker found nothing and waits again: a fourth delivery wakes it.
        let _fourth = deliver(&mut handlers);
        run_the_others().await;
        assert_eq!(taken.load(Ordering::Acquire), 4, "the fourth was taken");
        assert_eq!(handlers.workers.len(), 2);
        handlers.shutdown().await;
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
