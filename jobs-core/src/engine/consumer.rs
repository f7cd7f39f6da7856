//! One job's consumer: a supervisor that (re)attaches it, the loop that hands each delivery
//! to the consumer's pool of handler tasks, and what each of those does with one.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::dispatch::{self, JobRuntime, Received};
use super::handlers::{Handlers, Worker};
use super::settle::{self, SettleOnce, Verdict};
use super::slots;
use crate::broker::{BrokerBehaviour, FailedReturn};
use crate::transport::{Consumer, Transport};

/// `None` while running; `Some(deadline)` once shutdown starts.
pub(crate) type StopSignal = watch::Receiver<Option<Instant>>;

/// The longest wait between two attempts to attach a consumer.
const MAX_ATTACH_BACKOFF: Duration = Duration::from_secs(30);

/// A delivery as a worker takes it: what its handler needs, and its promise to be settled.
type Queued = (Received, SettleOnce);

/// `true` while the job is paused (see [`crate::control`]).
pub(crate) type PauseSignal = watch::Receiver<bool>;

/// Serves `first`, the consumer the engine attached at start (none when the job started
/// paused), then keeps a consumer attached to the job's queue until the stop signal, but for
/// while the job is paused.
pub(crate) async fn supervise(
    transport: Arc<dyn Transport>,
    runtime: Arc<JobRuntime>,
    first: Option<Consumer>,
    mut stop: StopSignal,
    ready: Arc<AtomicBool>,
    mut paused: PauseSignal,
) {
    let queue = runtime.settings.job().queue();
    let prefetch = runtime.prefetch;
    let mut backoff = Duration::from_millis(100);
    let mut attached = first;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        if *paused.borrow_and_update() {
            // A consumer attached before the pause took effect goes, with what it holds.
            drop(attached.take());
            // Paused is a state of the job, not a fault of the worker: probes stay ready.
            ready.store(true, Ordering::Release);
            tokio::select! {
                _ = stop.wait_for(Option::is_some) => return,
                resumed = paused.wait_for(|paused| !*paused) => {
                    if resumed.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        // A job with `max_running` consumes with one delivery per slot it holds, and not at all
        // while it holds none; the consumer stops as for a pause when a slot is lost.
        let (prefetch, held) = match runtime.settings.max_running() {
            None => (prefetch, None),
            Some(max) => {
                let want = max.min(runtime.settings.concurrency());
                match slots::acquire(transport.as_ref(), runtime.settings.job().name(), max, want)
                    .await
                {
                    Ok(Some(held)) => (held.count(), Some(held)),
                    outcome => {
                        if let Err(error) = outcome {
                            tracing::warn!(queue, %error, "could not take a slot");
                        }
                        // Every slot is held elsewhere: a state of the cluster, not a fault.
                        ready.store(true, Ordering::Release);
                        tokio::select! {
                            _ = stop.wait_for(Option::is_some) => return,
                            Ok(()) = paused.changed() => {}
                            () = tokio::time::sleep(slots::retry_after()) => {}
                        }
                        continue;
                    }
                }
            }
        };
        let consumer = match attached.take() {
            Some(consumer) => Ok(consumer),
            None => transport.consume(queue, prefetch).await,
        };
        match consumer {
            Ok(consumer) => {
                backoff = Duration::from_millis(100);
                ready.store(true, Ordering::Release);
                let halt = match &held {
                    Some(held) => super::pauses::either(paused.clone(), held.lost(), stop.clone()),
                    None => paused.clone(),
                };
                // Read per consumer: a new connection may reach a node of another version.
                let failed_return =
                    BrokerBehaviour::for_version(transport.broker_version()).failed_return;
                let ended =
                    serve(consumer, failed_return, &runtime, &mut stop, &ready, &halt).await;
                ready.store(false, Ordering::Release);
                // Let go of the slots before waiting for anything: another worker may run them.
                drop(held);
                match ended {
                    Ended::Stopped => return,
                    Ended::Paused => continue,
                    Ended::Stream | Ended::Settling => {}
                }
                tracing::warn!(
                    queue,
                    reason = ended.as_str(),
                    "consumer ended; attaching a new one"
                );
            }
            Err(err) => {
                tracing::warn!(queue, error = %err, retry_in = ?backoff, "could not attach consumer");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_ATTACH_BACKOFF);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The broker ended the stream: attach again.
    Stream,
    /// The settle pipeline stopped, so deliveries could no longer be settled: attach again.
    Settling,
    /// The job was paused: its running handlers finished and settled.
    Paused,
    /// Shutdown.
    Stopped,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "the delivery stream ended",
            Self::Settling => "settling failed",
            Self::Paused => "paused",
            Self::Stopped => "shutdown",
        }
    }
}

/// Why a delivery that has not settled yet should give up: its consumer is gone (the broker
/// took the delivery back), or shutdown began; and, for one that has not started, the job
/// was paused. Each handler task holds one.
///
/// The signals are shared by the consumer's tasks behind one `Arc`: a handler task takes one
/// count on it where three signals of its own took six, each a write to a line every core
/// shares, and a delivery that is never abandoned only reads them.
#[derive(Clone, Debug)]
pub(crate) struct Abandon(Arc<Signals>);

#[derive(Debug)]
struct Signals {
    stop: StopSignal,
    /// Changes once, to `true`, when the consumer is gone.
    lost: watch::Receiver<bool>,
    paused: PauseSignal,
}

impl Abandon {
    fn new(stop: StopSignal, lost: watch::Receiver<bool>, paused: PauseSignal) -> Self {
        Self(Arc::new(Signals { stop, lost, paused }))
    }

    /// Whether the consumer is gone: the broker has requeued every delivery it held, so
    /// working on one any further only makes a duplicate.
    pub(crate) fn is_lost(&self) -> bool {
        // The signal only ever changes to `true`, so a change is the loss; reading the version
        // takes no lock, where reading the value does. A closed signal is read as it was left.
        match self.0.lost.has_changed() {
            Ok(changed) => changed,
            Err(_) => *self.0.lost.borrow(),
        }
    }

    /// Resolves once the consumer is gone.
    pub(crate) async fn lost(&self) {
        // An error means the serve loop is gone, which only happens after it marked the loss.
        let _ = self.0.lost.clone().wait_for(|lost| *lost).await;
    }

    /// Resolves once the consumer is gone, shutdown began or the job was paused: a delivery
    /// waiting for a handler slot then goes back to the queue rather than start.
    pub(crate) async fn lost_stopped_or_paused(&self) {
        let (mut stop, mut lost, mut paused) = (
            self.0.stop.clone(),
            self.0.lost.clone(),
            self.0.paused.clone(),
        );
        tokio::select! {
            () = async { let _ = stop.wait_for(Option::is_some).await; } => {}
            _ = lost.wait_for(|lost| *lost) => {}
            Ok(_) = paused.wait_for(|paused| *paused) => {}
        }
    }
}

async fn serve(
    consumer: Consumer,
    failed_return: FailedReturn,
    runtime: &Arc<JobRuntime>,
    stop: &mut StopSignal,
    ready: &AtomicBool,
    paused: &PauseSignal,
) -> Ended {
    let Consumer {
        mut deliveries,
        settler,
    } = consumer;
    let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
    let mut settling = tokio::spawn(settle::run(settler, outcomes_rx, failed_return));
    let mut handlers = Handlers::new(usize::from(runtime.prefetch));
    let (lost, lost_rx) = watch::channel(false);
    let abandon = Abandon::new(stop.clone(), lost_rx, paused.clone());
    // Settled exactly once from here on, whatever happens to it: a verdict, or a requeue when
    // it is dropped without one.
    let mut hand_over = |delivery: crate::transport::Delivery| {
        let settle = SettleOnce::new(delivery.tag, outcomes.clone());
        let received = Received::new(delivery);
        handlers.push((received, settle), |queue| {
            work(Arc::clone(runtime), abandon.clone(), queue)
        });
    };
    let mut pausing = paused.clone();
    // What the loop below checks between deliveries, read without registering any waiter.
    let (stop_now, pause_now) = (stop.clone(), paused.clone());
    // One wait each for the loop's lifetime: a new one per delivery would register a waiter
    // each time.
    let ended = {
        let stopping = stop.wait_for(Option::is_some);
        tokio::pin!(stopping);
        let pause = pausing.wait_for(|paused| *paused);
        tokio::pin!(pause);
        // A signal whose sender is gone never pauses.
        let mut can_pause = true;
        'serve: loop {
            tokio::select! {
                biased;
                _ = &mut stopping => break Ended::Stopped,
                paused = &mut pause, if can_pause => match paused {
                    Ok(_) => break Ended::Paused,
                    Err(_) => can_pause = false,
                },
                // The settle pipeline ends early only when the channel refused a settlement:
                // nothing more it holds can be settled, so this consumer is of no use.
                _ = &mut settling => break Ended::Settling,
                next = deliveries.next() => match next {
                    Some(delivery) => hand_over(delivery),
                    None => break Ended::Stream,
                },
            }
            // Then every delivery already there, checking the same conditions without polling
            // the waits above once per delivery, which cost more than the delivery itself.
            while stop_now.borrow().is_none()
                && !(can_pause && *pause_now.borrow())
                && !settling.is_finished()
            {
                let next = std::future::poll_fn(|cx| match deliveries.poll_next_unpin(cx) {
                    Poll::Ready(next) => Poll::Ready(Some(next)),
                    Poll::Pending => Poll::Ready(None),
                })
                .await;
                match next {
                    Some(Some(delivery)) => hand_over(delivery),
                    Some(None) => break 'serve Ended::Stream,
                    None => break,
                }
            }
        }
    };
    let channel_lost = matches!(ended, Ended::Stream | Ended::Settling);
    if channel_lost {
        ready.store(false, Ordering::Release);
        // Deliveries still waiting for a handler slot went back to the queue with the channel:
        // they must not run here.
        lost.send_replace(true);
    }
    // No more deliveries: for a broker-ended stream the channel is gone, and at shutdown or
    // pause this is the cancel that stops the broker sending more.
    drop(deliveries);
    drop(outcomes);

    if ended == Ended::Paused {
        // The running handlers finish and settle on this channel; the deliveries waiting for a
        // slot go back to the queue (their `Abandon` saw the pause). Shutdown meanwhile makes
        // this a shutdown, with its deadline.
        let drained = tokio::select! {
            () = handlers.idle() => true,
            _ = stop.wait_for(Option::is_some) => false,
        };
        if drained {
            drop(lost);
            if let Ok(settler) = settling.await {
                settler.finish().await;
            }
            return Ended::Paused;
        }
    }

    if channel_lost {
        // Finish what is running in the background while a new consumer attaches; the broker
        // redelivers what the dead channel cannot settle.
        tokio::spawn(async move {
            handlers.idle().await;
            drop(lost);
            if ended != Ended::Settling {
                let _ = settling.await;
            }
        });
        return ended;
    }

    let deadline = stop.borrow().unwrap_or_else(Instant::now);
    let drained = tokio::time::timeout_at(deadline, handlers.idle())
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            queue = runtime.settings.job().queue(),
            "shutdown deadline passed; requeueing unfinished jobs"
        );
        // Each aborted task's `SettleOnce` requeues its delivery.
        handlers.shutdown().await;
    }
    drop(lost);
    if let Ok(settler) = settling.await {
        // Before the channel closes with the settler, within the deadline.
        let _ = tokio::time::timeout_at(deadline, settler.finish()).await;
    }
    Ended::Stopped
}

/// A worker of the consumer's pool: handles the deliveries it is given, one at a time, until
/// the pool closes.
async fn work(runtime: Arc<JobRuntime>, abandon: Abandon, mut queue: Worker<Queued>) {
    while let Some(((received, settle), _running)) = queue.next().await {
        let handled = AssertUnwindSafe(handle(&runtime, received, &abandon))
            .catch_unwind()
            .await;
        match handled {
            Ok(Some(verdict)) => settle.send(verdict),
            // Not started: the promise gives it back as it drops.
            Ok(None) => drop(settle),
            Err(_) => {
                // Given back as failed, so that a delivery that panics every time meets the
                // delivery limit.
                tracing::error!(
                    queue = runtime.settings.job().queue(),
                    "a handler task panicked outside the handler; its delivery goes back as failed"
                );
                settle.send(Verdict::Failed);
            }
        }
        // A worker whose deliveries never wait would otherwise keep its thread from the
        // runtime's other tasks.
        tokio::task::coop::consume_budget().await;
    }
}

/// One delivery: wait for a handler slot when the prefetch is above the concurrency, run it,
/// and say how to settle it; `None` when it is not to start, and goes back to the queue.
async fn handle(runtime: &JobRuntime, received: Received, abandon: &Abandon) -> Option<Verdict> {
    // With a prefetch above the concurrency, a delivery waits for a handler slot; at shutdown,
    // or once its channel is gone, it is not started.
    // The waits below are boxed: each serves jobs with an option set, and unboxed they would
    // grow every worker's future.
    // `None` when the delivery is not to start; a closed semaphore bounds nothing.
    let permit = match &runtime.permits {
        Some(permits) => {
            Box::pin(async {
                tokio::select! {
                    biased;
                    () = abandon.lost_stopped_or_paused() => None,
                    permit = Arc::clone(permits).acquire_owned() => Some(permit.ok()),
                }
            })
            .await
        }
        None => Some(None),
    };
    let _permit = permit?;
    if abandon.is_lost() {
        return None;
    }
    // While the kill switch is half-open, one delivery runs as the probe and the others wait.
    let _admission = match &runtime.switch {
        Some(switch) => Some(Box::pin(switch.admit(abandon)).await?),
        None => None,
    };
    // A job with a rate starts only with a ticket.
    if let Some(tickets) = &runtime.tickets
        && !Box::pin(tickets.take(abandon)).await
    {
        return None;
    }
    if let Some(decision) = dispatch::decided_before(runtime, &received) {
        // Boxed: a rare path must not grow every worker's future.
        return Some(Box::pin(dispatch::replay(runtime, received, decision, abandon)).await);
    }
    let Received {
        redelivered,
        origin,
        envelope,
    } = received;
    Some(dispatch::run(runtime, envelope, redelivered, origin, abandon).await)
}
