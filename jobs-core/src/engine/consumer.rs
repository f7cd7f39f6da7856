//! One job's consumer: a supervisor that (re)attaches it, and the loop that hands each
//! delivery to a handler task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::dispatch::{self, JobRuntime};
use super::settle;
use crate::transport::{Consumer, Transport};

/// `None` while running; `Some(deadline)` once shutdown starts.
pub(crate) type StopSignal = watch::Receiver<Option<Instant>>;

/// The longest wait between two attempts to attach a consumer.
const MAX_ATTACH_BACKOFF: Duration = Duration::from_secs(30);

/// Serves `first`, the consumer the engine attached at start, then keeps a consumer attached to
/// the job's queue until the stop signal.
pub(crate) async fn supervise(
    transport: Arc<dyn Transport>,
    runtime: Arc<JobRuntime>,
    first: Consumer,
    mut stop: StopSignal,
    ready: Arc<AtomicBool>,
) {
    let queue = runtime.settings.job().queue();
    let prefetch = runtime.prefetch;
    let mut backoff = Duration::from_millis(100);
    let mut attached = Some(first);
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let consumer = match attached.take() {
            Some(consumer) => Ok(consumer),
            None => transport.consume(queue, prefetch).await,
        };
        match consumer {
            Ok(consumer) => {
                backoff = Duration::from_millis(100);
                ready.store(true, Ordering::Release);
                let ended = serve(consumer, &runtime, &mut stop).await;
                ready.store(false, Ordering::Release);
                if ended == Ended::Stopped {
                    return;
                }
                tracing::warn!(queue, "consumer ended; attaching a new one");
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

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The broker ended the stream: attach again.
    Stream,
    /// Shutdown.
    Stopped,
}

async fn serve(consumer: Consumer, runtime: &Arc<JobRuntime>, stop: &mut StopSignal) -> Ended {
    let Consumer {
        mut deliveries,
        settler,
    } = consumer;
    let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
    let settling = tokio::spawn(settle::run(settler, outcomes_rx));
    let mut handlers = JoinSet::new();
    let mut last_tag = 0;
    // Set when a prefetched delivery was never started because shutdown came first.
    let skipped = Arc::new(AtomicBool::new(false));
    // Handlers waiting for a slot watch the stop signal through their own receivers.
    let handler_stop = stop.clone();
    // One wait for the loop's lifetime: a new one per delivery would register a waiter each time.
    let ended = {
        let stopping = stop.wait_for(Option::is_some);
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopping => break Ended::Stopped,
                Some(joined) = handlers.join_next(), if !handlers.is_empty() => {
                    if let Err(err) = joined {
                        // The handler's own panics are caught in dispatch; this is the engine's.
                        tracing::error!(error = %err, "handler task failed; its delivery stays unsettled");
                    }
                }
                next = deliveries.next() => match next {
                    Some(delivery) => {
                        last_tag = delivery.tag;
                        let runtime = Arc::clone(runtime);
                        let outcomes = outcomes.clone();
                        // Boxed: the task is moved on spawn and overwritten when reaped, and these
                        // copies of a large future cost more than one allocation.
                        let waiting = runtime.permits.as_ref().map(|_| handler_stop.clone());
                        let skipped = Arc::clone(&skipped);
                        handlers.spawn(Box::pin(async move {
                            let tag = delivery.tag;
                            // With a prefetch above the concurrency, a delivery waits for a
                            // handler slot; at shutdown it is not started, and goes back.
                            let _permit = match (&runtime.permits, waiting) {
                                (Some(permits), Some(mut waiting)) => tokio::select! {
                                    biased;
                                    _ = waiting.wait_for(Option::is_some) => {
                                        skipped.store(true, Ordering::Relaxed);
                                        return;
                                    }
                                    permit = Arc::clone(permits).acquire_owned() => permit.ok(),
                                },
                                _ => None,
                            };
                            let verdict = dispatch::process(&runtime, delivery).await;
                            // The receiver outlives every handler task.
                            let _ = outcomes.send((tag, verdict));
                        }));
                    }
                    None => break Ended::Stream,
                },
            }
        }
    };
    // No more deliveries: for a broker-ended stream the channel is gone, and at shutdown this
    // is the cancel that stops the broker sending more.
    drop(deliveries);
    drop(outcomes);

    if ended == Ended::Stream {
        // Finish what is running in the background while a new consumer attaches; the broker
        // redelivers what the dead channel cannot settle.
        tokio::spawn(async move {
            while handlers.join_next().await.is_some() {}
            let _ = settling.await;
        });
        return ended;
    }

    let deadline = stop.borrow().unwrap_or_else(Instant::now);
    let drained = tokio::time::timeout_at(deadline, async {
        while handlers.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            queue = runtime.settings.job().queue(),
            "shutdown deadline passed; requeueing unfinished jobs"
        );
        handlers.shutdown().await;
    }
    if let Ok(settler) = settling.await {
        if !drained || skipped.load(Ordering::Relaxed) {
            settle::requeue_rest(&*settler, last_tag).await;
        }
        // Before the channel closes with the settler, within the deadline.
        let _ = tokio::time::timeout_at(deadline, settler.finish()).await;
    }
    ended
}
