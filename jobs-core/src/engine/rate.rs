//! The engine's side of a job's rate (see [`crate::control`]): the keeper, which publishes the
//! job's tickets on whichever worker holds the keeper queue, and the tickets this worker's
//! handlers start with.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use tokio::time::MissedTickBehavior;

use super::consumer::{Abandon, StopSignal};
use super::slots;
use crate::control::{self, Rate};
use crate::envelope::Envelope;
use crate::transport::{Consumer, Publish, ReplyStream, Settlement, Transport};

/// The tickets of one job on this worker: one delivery of the ticket queue at a time, taken by
/// the handlers in the order they asked.
pub(crate) struct Tickets {
    transport: Arc<dyn Transport>,
    queue: String,
    /// The ticket consumer, while handlers wait for tickets: it holds at most one ticket ahead.
    consumer: tokio::sync::Mutex<Option<Consumer>>,
    /// Handlers waiting for a ticket.
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// The tickets of the job named `job`.
    pub(crate) fn new(transport: Arc<dyn Transport>, job: &str) -> Self {
        Self {
            transport,
            queue: control::tickets_queue(job),
            consumer: tokio::sync::Mutex::new(None),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a ticket and uses it up; `false` when the delivery was abandoned first (its
    /// consumer is gone, shutdown began, or the job was paused).
    pub(crate) async fn take(&self, abandon: &Abandon) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let taken = self.wait(abandon).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        taken
    }

    async fn wait(&self, abandon: &Abandon) -> bool {
        let mut slot = tokio::select! {
            slot = self.consumer.lock() => slot,
            () = abandon.lost_stopped_or_paused() => return false,
        };
        loop {
            let Some(consumer) = slot.as_mut() else {
                match self.transport.consume(&self.queue, 1).await {
                    Ok(consumer) => *slot = Some(consumer),
                    Err(error) => {
                        tracing::warn!(queue = self.queue, %error, "could not read the tickets");
                        tokio::select! {
                            () = tokio::time::sleep(slots::RETRY) => {}
                            () = abandon.lost_stopped_or_paused() => return false,
                        }
                    }
                }
                continue;
            };
            let ticket = tokio::select! {
                ticket = consumer.deliveries.next() => ticket,
                () = abandon.lost_stopped_or_paused() => return false,
            };
            let Some(ticket) = ticket else {
                // Its channel closed: read them on a new one.
                *slot = None;
                continue;
            };
            // A ticket is used up as it is taken, whether or not the ack arrives: one lost
            // ticket only slows the job a little.
            let acked = consumer.settler.settle(Settlement::Ack {
                tag: ticket.tag,
                multiple: false,
            });
            if let Err(error) = acked.await {
                tracing::debug!(queue = self.queue, %error, "a ticket's ack failed");
            }
            // No handler waits behind this one: let go of the consumer, and of the ticket it
            // would hold ahead, so that other workers get it.
            if self.waiting.load(Ordering::Acquire) <= 1 {
                *slot = None;
            }
            return true;
        }
    }
}

/// Keeps trying to be the keeper of `job`'s rate, and while it is, publishes its tickets, until
/// `stop`.
pub(crate) async fn keep(
    transport: Arc<dyn Transport>,
    job: &'static str,
    rate: Rate,
    mut stop: StopSignal,
) {
    loop {
        match transport.hold(&control::keeper_queue(job)).await {
            Ok(Some(hold)) => {
                tracing::info!(job, %rate, "keeping the job's rate: publishing its tickets");
                if publish_tickets(transport.as_ref(), job, rate, hold, &mut stop).await {
                    return;
                }
                tracing::warn!(job, "no longer the keeper of the job's rate");
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(job, %error, "could not try to keep the job's rate"),
        }
        tokio::select! {
            _ = stop.wait_for(Option::is_some) => return,
            () = tokio::time::sleep(slots::retry_after()) => {}
        }
    }
}

/// Publishes the tickets while `hold` lasts; `true` at shutdown.
async fn publish_tickets(
    transport: &dyn Transport,
    job: &str,
    rate: Rate,
    mut hold: ReplyStream,
    stop: &mut StopSignal,
) -> bool {
    let (every, per_tick) = rate.tick();
    let queue = control::tickets_queue(job);
    let mut ticks = tokio::time::interval(every);
    // After a stall, carry on at the rate rather than catch up in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(Option::is_some) => return true,
            // The keeper queue holds no messages: the stream ends when the hold does.
            None = hold.next() => return false,
            _ = ticks.tick() => {}
        }
        let published =
            join_all((0..per_tick).map(|_| transport.publish_unconfirmed(ticket(&queue)))).await;
        match published.into_iter().find_map(Result::err) {
            Some(error) if !failing => {
                tracing::warn!(job, %error, "could not publish the job's tickets");
                failing = true;
            }
            Some(_) => {}
            None => failing = false,
        }
    }
}

/// A ticket: an empty message, neither persistent nor confirmed (a lost ticket only slows the
/// job for a tick).
fn ticket(queue: &str) -> Publish {
    Publish {
        exchange: Cow::Borrowed(""),
        routing_key: Cow::Owned(queue.to_owned()),
        mandatory: false,
        envelope: Envelope::default(),
    }
}
