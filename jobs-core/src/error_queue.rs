//! Reading and acting on an error queue (`Q.err`) without losing a message or counting a read
//! against a delivery limit.
//!
//! AMQP 0-9-1 cannot peek. Consuming and giving messages back (nack with requeue, or a closed
//! channel) counts as a delivery on a quorum queue, and with any delivery limit (a policy, or
//! RabbitMQ 4's default of 20) an error queue, which dead-letters nowhere, would drop failures
//! after enough reads. So [`ErrorQueue::walk`] never gives a message back: it visits each
//! message once, in order, and for a message it keeps it publishes a copy to the back of the
//! queue (with a confirm) before acking the original. Walking every message of a queue leaves it
//! in the order it had, each message with a fresh delivery count.
//!
//! It also never holds more than a bounded number of messages: acks free the prefetch credit as
//! the walk goes, and the last acks wait until the consumer is cancelled, so the broker never
//! delivers more than the walk asked for.
//!
//! Copies keep the body and the properties the framework reads (see
//! [`Properties`](crate::envelope::Properties)), are persistent, and drop the broker's
//! `x-delivery-count`. A reader that stops between a copy's confirm and the original's ack
//! leaves both: a duplicate, never a loss. Two walks of one queue at once each see part of it,
//! and may see a copy the other made.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;

use crate::error::{Error, Result};
use crate::failed_job::FailedJob;
use crate::producer::Producer;
use crate::settings::error_queue_name;
use crate::transport::{Consumer, Publish, Settlement, Transport};

/// Messages delivered to a walk at once, at most.
const MAX_PREFETCH: u64 = 256;
/// Publishes awaiting their confirm at once, at most.
const WINDOW: usize = 64;
/// How long a walk waits for the next message of a queue that said it had more: another
/// consumer may have taken the rest.
const NEXT_MESSAGE: Duration = Duration::from_secs(10);

/// A job's error queue, for the operator's commands.
///
/// ```
/// use std::sync::Arc;
/// use jobs_core::error_queue::{Action, ErrorQueue};
/// use jobs_core::{job, testing::TestApp, JobError};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// pub struct Ping {}
///
/// #[job(exchange = "docs.error_queue", routing_key = "ping")]
/// async fn ping(_: Ping) -> Result<(), JobError> {
///     Err(JobError::fatal("down"))
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> jobs_core::Result<()> {
/// let app = TestApp::builder().job(&ping::JOB).build()?;
/// ping::enqueue(&app, Ping {}).await?;
/// app.run_until_idle().await;
///
/// let errors = ErrorQueue::new(Arc::new(app.transport().clone()), ping::QUEUE);
/// let mut seen = Vec::new();
/// let walked = errors
///     .walk(None, |failed| {
///         seen.push(failed.error().unwrap_or_default().to_owned());
///         Action::Keep
///     })
///     .await?;
/// assert_eq!((walked.kept, seen), (1, vec!["down".to_owned()]));
/// assert_eq!(errors.len().await?, 1, "reading leaves it in the queue");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ErrorQueue {
    transport: Arc<dyn Transport>,
    producer: Producer,
    name: String,
    work_queue: String,
}

/// What a walk does with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave it in the error queue (a copy goes to the back, the original is acked).
    Keep,
    /// Publish it to the job's work queue at attempt 1 (see [`FailedJob::replay_to`]), then
    /// remove it. A replay the broker does not confirm keeps the message instead.
    Replay,
    /// Remove it.
    Remove,
}

/// What a walk did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Walked {
    /// Messages visited.
    pub visited: u64,
    /// Messages left in the queue, including replays that failed.
    pub kept: u64,
    /// Messages replayed.
    pub replayed: u64,
    /// Messages removed.
    pub removed: u64,
    /// Replays the broker did not confirm: the message id and why. Each message stays in the
    /// error queue.
    pub not_replayed: Vec<(Option<String>, Error)>,
    /// Why the walk stopped before visiting everything it was asked to, when it did: a copy
    /// the broker would not take. The messages whose copy failed went back to the queue.
    pub stopped: Option<Error>,
}

impl ErrorQueue {
    /// The error queue of the job whose work queue is `work_queue`.
    pub fn new(transport: Arc<dyn Transport>, work_queue: &str) -> Self {
        Self {
            producer: Producer::new(Arc::clone(&transport)),
            transport,
            name: error_queue_name(work_queue),
            work_queue: work_queue.to_owned(),
        }
    }

    /// Its name, `Q.err`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The work queue replays go to.
    #[must_use]
    pub fn work_queue(&self) -> &str {
        &self.work_queue
    }

    /// How many messages it holds, not counting those a reader holds now.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the queue does not exist, and connection errors.
    pub async fn len(&self) -> Result<u64> {
        self.transport.message_count(&self.name).await
    }

    /// Removes every message; returns how many went.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the queue does not exist, and connection errors.
    pub async fn purge(&self) -> Result<u64> {
        self.transport.purge(&self.name).await
    }

    /// Visits the first `limit` messages (every message when `None`) of the queue as it is now,
    /// in order, and does with each what `visit` says. See the [module docs](self) for how it
    /// reads without giving messages back.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the queue does not exist, and errors of the broker or the
    /// connection before the walk began. Errors during it are in the [`Walked`] report.
    pub async fn walk(
        &self,
        limit: Option<u64>,
        mut visit: impl FnMut(&FailedJob) -> Action,
    ) -> Result<Walked> {
        let total = self.len().await?;
        let count = limit.map_or(total, |limit| limit.min(total));
        let mut walked = Walked::default();
        if count == 0 {
            return Ok(walked);
        }
        let prefetch = count.min(MAX_PREFETCH);
        let Consumer {
            mut deliveries,
            settler,
        } = self
            .transport
            .consume(&self.name, u16::try_from(prefetch).unwrap_or(1))
            .await?;
        // Acks free prefetch credit, which the broker fills with more messages: the last
        // `prefetch` acks wait until the consumer is cancelled, so no message past `count` is
        // ever delivered to be given back.
        let ack_budget = count - prefetch;
        let mut acked = 0u64;
        let mut held = Vec::new();
        // Messages whose copy failed: they go back to the queue at the end.
        let mut returned = Vec::new();
        let mut received = 0u64;
        let mut receiving = true;
        let mut pending = FuturesOrdered::new();
        loop {
            if !receiving && pending.is_empty() {
                break;
            }
            tokio::select! {
                next = tokio::time::timeout(NEXT_MESSAGE, deliveries.next()),
                    if receiving && pending.len() < WINDOW =>
                {
                    let Ok(Some(delivery)) = next else {
                        receiving = false;
                        continue;
                    };
                    received += 1;
                    receiving = received < count;
                    walked.visited += 1;
                    let letter = FailedJob::new(Arc::unwrap_or_clone(delivery.envelope));
                    let action = visit(&letter);
                    pending.push_back(self.act(delivery.tag, &letter, action));
                }
                Some(done) = pending.next(), if !pending.is_empty() => {
                    let Done { tag, action, message_id, result } = done;
                    match result {
                        Ok(()) => match action {
                            Action::Keep => walked.kept += 1,
                            Action::Replay => walked.replayed += 1,
                            Action::Remove => walked.removed += 1,
                        },
                        Err(NotDone::Replay(error)) => {
                            walked.kept += 1;
                            walked.not_replayed.push((message_id, error));
                        }
                        Err(NotDone::Copy(error)) => {
                            walked.stopped.get_or_insert(error);
                            receiving = false;
                            returned.push(tag);
                            continue;
                        }
                    }
                    if acked < ack_budget {
                        acked += 1;
                        let ack = Settlement::Ack { tag, multiple: false };
                        if let Err(error) = settler.settle(ack).await {
                            walked.stopped.get_or_insert(error);
                            receiving = false;
                        }
                    } else {
                        held.push(tag);
                    }
                }
            }
        }
        // Cancelled before the last acks, so they free no credit for more deliveries.
        if let Err(error) = settler.cancel().await {
            walked.stopped.get_or_insert(error);
        }
        drop(deliveries);
        // Requeues first: the `multiple` ack below must not be the one that settles them.
        for tag in returned {
            let nack = Settlement::Nack {
                tag,
                multiple: false,
                requeue: true,
            };
            let _ = settler.settle(nack).await;
        }
        // Every tag below the highest held one is settled by now, so one `multiple` ack settles
        // exactly the held ones: one command, where a burst of single acks could be held back
        // by a quorum queue's client and dropped when the channel closes.
        if let Some(&tag) = held.iter().max() {
            let ack = Settlement::Ack {
                tag,
                multiple: true,
            };
            if let Err(error) = settler.settle(ack).await {
                // The channel is gone: the broker returns the originals, so the copies made
                // of them are duplicates, not losses.
                walked.stopped.get_or_insert(error);
            }
        }
        settler.finish().await;
        Ok(walked)
    }

    /// Publishes what `action` needs for one message and reports; the ack is the walk's.
    fn act(
        &self,
        tag: u64,
        letter: &FailedJob,
        action: Action,
    ) -> impl Future<Output = Done> + use<> {
        let producer = self.producer.clone();
        let message_id = letter.message_id().map(str::to_owned);
        let publish = match action {
            Action::Keep => Some(Ok(self.copy(letter))),
            Action::Replay => Some(Err((letter.replay_to(&self.work_queue), self.copy(letter)))),
            Action::Remove => None,
        };
        async move {
            let result = match publish {
                None => Ok(()),
                Some(Ok(copy)) => producer.publish(copy).await.map_err(NotDone::Copy),
                Some(Err((replay, copy))) => match producer.publish(replay).await {
                    Ok(()) => Ok(()),
                    // Kept instead: copied to the back like any message the walk keeps.
                    Err(error) => match producer.publish(copy).await {
                        Ok(()) => Err(NotDone::Replay(error)),
                        Err(copy_error) => Err(NotDone::Copy(copy_error)),
                    },
                },
            };
            Done {
                tag,
                action,
                message_id,
                result,
            }
        }
    }

    /// The copy of `letter` that keeps it at the back of the queue.
    fn copy(&self, letter: &FailedJob) -> Publish {
        let mut envelope = letter.envelope().clone();
        envelope.properties.persistent = true;
        envelope.properties.headers.remove("x-delivery-count");
        Publish {
            exchange: "".into(),
            routing_key: self.name.clone().into(),
            mandatory: true,
            envelope,
        }
    }
}

/// One message's publishes, done.
struct Done {
    tag: u64,
    action: Action,
    message_id: Option<String>,
    result: std::result::Result<(), NotDone>,
}

enum NotDone {
    /// The replay failed; the message was kept.
    Replay(Error),
    /// The copy that keeps the message failed: it must go back unacked.
    Copy(Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, Headers};
    use crate::topology::{QueueSpec, Topology, argument};
    use crate::transport::Declare;
    use crate::transport::memory::MemoryTransport;

    /// A work queue and its quorum error queue holding `n` messages, ids `0..n`.
    async fn queue_of(n: usize) -> (MemoryTransport, ErrorQueue) {
        let broker = MemoryTransport::new();
        let quorum = || Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]);
        let topology = Topology {
            queues: vec![
                QueueSpec {
                    name: "work".into(),
                    arguments: quorum(),
                },
                QueueSpec {
                    name: "work.err".into(),
                    arguments: quorum(),
                },
            ],
            ..Topology::default()
        };
        broker.declare(&topology, Declare::Create).await.unwrap();
        for id in 0..n {
            let mut envelope = Envelope::default();
            envelope.properties.message_id = Some(id.to_string());
            let publish = Publish {
                exchange: "".into(),
                routing_key: "work.err".into(),
                mandatory: true,
                envelope,
            };
            broker.publish(publish).await.unwrap();
        }
        let queue = ErrorQueue::new(Arc::new(broker.clone()), "work");
        (broker, queue)
    }

    fn ids(broker: &MemoryTransport, queue: &str) -> Vec<String> {
        broker
            .messages(queue)
            .into_iter()
            .map(|e| e.properties.message_id.unwrap_or_default())
            .collect()
    }

    fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| n.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keeping_every_message_leaves_the_queue_as_it_was_without_delivery_counts() {
        let (broker, queue) = queue_of(300).await;
        let mut seen = Vec::new();
        let walked = queue
            .walk(None, |letter| {
                seen.push(letter.message_id().unwrap().to_owned());
                Action::Keep
            })
            .await
            .unwrap();
        assert_eq!((walked.visited, walked.kept), (300, 300));
        assert!(walked.stopped.is_none());
        assert_eq!(seen, numbered(0..300));
        assert_eq!(ids(&broker, "work.err"), numbered(0..300));
        assert_eq!(broker.unacked("work.err"), 0);
        assert_eq!(broker.returns("work.err"), [0; 300]);
        assert!(
            broker
                .messages("work.err")
                .iter()
                .all(|e| e.properties.persistent)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_limited_walk_touches_only_the_first_messages() {
        let (broker, queue) = queue_of(10).await;
        let walked = queue.walk(Some(3), |_| Action::Replay).await.unwrap();
        assert_eq!((walked.visited, walked.replayed), (3, 3));
        assert_eq!(ids(&broker, "work"), numbered(0..3));
        assert_eq!(ids(&broker, "work.err"), numbered(3..10));
        assert_eq!(
            broker.returns("work.err"),
            [0; 7],
            "no message past the limit was delivered and given back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn remove_and_keep_mix_in_order() {
        let (broker, queue) = queue_of(5).await;
        let walked = queue
            .walk(None, |letter| match letter.message_id() {
                Some("1" | "3") => Action::Remove,
                _ => Action::Keep,
            })
            .await
            .unwrap();
        assert_eq!((walked.kept, walked.removed), (3, 2));
        assert_eq!(ids(&broker, "work.err"), ["0", "2", "4"]);
    }
}
