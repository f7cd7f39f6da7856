//! Consumers: push delivery with prefetch credit, settlement by delivery tag, cancel and
//! channel close.
//!
//! Each consumer stands for a channel with one consumer on it, as the worker engine opens
//! them. The delivery stream and the settler share the channel: dropping the stream cancels
//! the consumer, and dropping both closes the channel, which returns its unacked messages.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use super::broker::{Broker, Shared};
use super::dead_letter::Reason;
use super::queue::{Message, Queue, QueueId};
use super::unacked::{Drain, Unacked};
use crate::error::{BoxError, Error, Result};
use crate::transport::{BoxFuture, Consumer, Delivery, Settle, Settlement};

/// The broker's side of a consumer.
#[derive(Debug)]
pub(super) struct ConsumerState {
    pub(super) id: u64,
    /// Where deliveries go; `None` once the consumer is cancelled.
    pub(super) sender: Option<mpsc::UnboundedSender<Delivery>>,
    /// Unsettled deliveries allowed at once; 0 is unlimited, as in AMQP.
    prefetch: u16,
    pub(super) next_tag: u64,
    /// Delivered and unsettled, by tag.
    pub(super) unacked: Unacked,
    /// Set when the channel closes, so the stream ends at once rather than after what it has
    /// buffered.
    closed: Arc<AtomicBool>,
}

impl ConsumerState {
    /// Whether the consumer still takes deliveries: it is not cancelled.
    pub(super) fn is_consuming(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether the consumer takes a delivery now.
    pub(super) fn has_credit(&self) -> bool {
        self.is_consuming()
            && (self.prefetch == 0 || self.unacked.len() < usize::from(self.prefetch))
    }

    /// Hands a delivery to the consumer's stream; `false` when the stream is gone.
    pub(super) fn send(&self, delivery: Delivery) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|sender| sender.send(delivery).is_ok())
    }

    /// Drops the deliveries an ack of `tag` covers, as [`take`](Self::take) would take them:
    /// how many, or `None` for a tag that is not unacked.
    fn ack(&mut self, tag: u64, multiple: bool) -> Option<usize> {
        match (multiple, tag) {
            (true, 0) => Some(self.unacked.discard_through(None)),
            (true, _) if self.unacked.contains(tag) => {
                Some(self.unacked.discard_through(Some(tag)))
            }
            (true, _) => None,
            (false, _) => self.unacked.remove(tag).map(|_| 1),
        }
    }

    /// Removes the deliveries a settlement of `tag` covers, oldest first, as RabbitMQ's
    /// channel does: `None` for a tag that is not unacked (which closes the channel there).
    fn take(&mut self, tag: u64, multiple: bool) -> Option<Taken> {
        if multiple && tag == 0 {
            // AMQP: tag 0 with `multiple` settles every outstanding delivery.
            return Some(Taken::Many(self.unacked.take_all()));
        }
        if !multiple {
            return self.unacked.remove(tag).map(|m| Taken::One(Some(m)));
        }
        if !self.unacked.contains(tag) {
            return None;
        }
        Some(Taken::Many(self.unacked.take_through(tag)))
    }
}

/// The messages one settlement covers, oldest first.
#[allow(
    clippy::large_enum_variant,
    reason = "lives on the stack for one settle; boxing would allocate per ack"
)]
enum Taken {
    One(Option<Message>),
    Many(Drain),
}

impl Iterator for Taken {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        match self {
            Self::One(message) => message.take(),
            Self::Many(messages) => messages.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::One(message) => (
                usize::from(message.is_some()),
                Some(usize::from(message.is_some())),
            ),
            Self::Many(messages) => messages.size_hint(),
        }
    }
}

impl ExactSizeIterator for Taken {}

/// The error of any operation on a closed channel.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory channel is closed")]
struct ChannelClosed;

pub(super) fn channel_closed() -> Error {
    Error::Connection(Box::new(ChannelClosed) as BoxError)
}

// ===== impl Broker (consumers) =====

impl Broker {
    /// Attaches a consumer to `queue` and delivers what it can take.
    pub(super) fn consume(&mut self, queue: &str, prefetch: u16) -> Result<Attached> {
        let id = self.queue_id(queue).ok_or_else(|| Error::NotFound {
            what: "queue",
            name: queue.to_owned(),
        })?;
        if self.queues[id].is_held() {
            // RabbitMQ closes the channel: ACCESS_REFUSED.
            return Err(Error::Broker(format!(
                "ACCESS_REFUSED - queue '{queue}' in exclusive use"
            )));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let consumer = self.next_consumer;
        self.next_consumer += 1;
        let closed = Arc::new(AtomicBool::new(false));
        let queue = &mut self.queues[id];
        queue.consumers.push(ConsumerState {
            id: consumer,
            sender: Some(sender),
            prefetch,
            next_tag: 1,
            unacked: Unacked::default(),
            closed: Arc::clone(&closed),
        });
        queue.active_consumers += 1;
        self.drain(id);
        Ok(Attached {
            queue: id,
            consumer,
            receiver,
            closed,
        })
    }

    /// Attaches an exclusive consumer to `queue` (no prefetch limit), or `None` when it has an
    /// active consumer already.
    pub(super) fn hold(&mut self, queue: &str) -> Result<Option<Attached>> {
        let id = self.queue_id(queue).ok_or_else(|| Error::NotFound {
            what: "queue",
            name: queue.to_owned(),
        })?;
        if self.queues[id].active_consumers > 0 {
            return Ok(None);
        }
        let attached = self.consume(queue, 0)?;
        self.queues[id].exclusive = Some(attached.consumer);
        Ok(Some(attached))
    }

    /// Acks or nacks deliveries of one consumer.
    pub(super) fn settle(
        &mut self,
        id: QueueId,
        consumer: u64,
        settlement: Settlement,
    ) -> Result<()> {
        let queue = &mut self.queues[id];
        let index = queue.consumer(consumer).ok_or_else(channel_closed)?;
        // Acks, the common case, drop what they settle where it lies.
        if let Settlement::Ack { tag, multiple } = settlement {
            let Some(acked) = queue.consumers[index].ack(tag, multiple) else {
                self.close_channel(id, consumer);
                return Err(Error::Broker(format!("unknown delivery tag {tag}")));
            };
            queue.unacked -= acked;
            self.drain(id);
            return Ok(());
        }
        let (tag, multiple) = match settlement {
            Settlement::Ack { tag, multiple } | Settlement::Nack { tag, multiple, .. } => {
                (tag, multiple)
            }
            Settlement::Reject { tag, .. } => (tag, false),
        };
        let Some(taken) = queue.consumers[index].take(tag, multiple) else {
            // RabbitMQ closes the channel with PRECONDITION_FAILED: the stream ends and every
            // unacked delivery of the consumer goes back to the queue.
            self.close_channel(id, consumer);
            return Err(Error::Broker(format!("unknown delivery tag {tag}")));
        };
        queue.unacked -= taken.len();
        match settlement {
            Settlement::Ack { .. } => drop(taken),
            // RabbitMQ 4.3 stopped counting a requeueing nack; a reject counts on every version.
            Settlement::Nack { requeue: true, .. } => {
                let counted = self.version < crate::broker::NACK_UNCOUNTED_FROM;
                self.return_messages(id, taken, counted, true);
            }
            Settlement::Reject { requeue: true, .. } => {
                self.return_messages(id, taken, true, true);
            }
            Settlement::Nack { requeue: false, .. } | Settlement::Reject { requeue: false, .. } => {
                let rejected: Vec<Message> = taken.collect();
                // The queue first delivers with the credit this freed: RabbitMQ publishes what
                // it dead-letters apart, and it arrives (back here too) after that.
                self.drain(id);
                for message in rejected {
                    self.dead_letter(id, message, Reason::Rejected);
                }
            }
        }
        self.drain(id);
        Ok(())
    }

    /// `basic.cancel`: no more deliveries; unacked ones stay unacked and can be settled.
    fn cancel(&mut self, id: QueueId, consumer: u64) {
        let queue = &mut self.queues[id];
        if let Some(index) = queue.consumer(consumer)
            && queue.consumers[index].sender.take().is_some()
        {
            queue.active_consumers -= 1;
            // On a single-active-consumer queue the next consumer takes over now.
            self.drain(id);
        }
    }

    /// Closes a consumer's channel: its stream ends and its unacked messages go back to the
    /// queue, redelivered.
    pub(super) fn close_channel(&mut self, id: QueueId, consumer: u64) {
        let queue = &mut self.queues[id];
        let Some(index) = queue.consumer(consumer) else {
            return;
        };
        if index < queue.cursor {
            queue.cursor -= 1;
        }
        let unacked = queue.detach(index);
        // A consumer gone with its deliveries counts on every version, as a crash must.
        self.return_messages(id, unacked, true, false);
        self.drain(id);
    }

    /// Closes every channel, as a lost connection does: every consumer is gone before any
    /// message goes back, so that none is delivered again to a consumer about to close (which
    /// would count one return twice toward a delivery limit).
    pub(super) fn disconnect(&mut self) {
        let mut returned = Vec::new();
        for (id, queue) in self.queues.iter_mut().enumerate() {
            if queue.consumers.is_empty() {
                continue;
            }
            queue.cursor = 0;
            let mut unacked = Vec::new();
            while !queue.consumers.is_empty() {
                unacked.extend(queue.detach(0));
            }
            returned.push((id, unacked));
        }
        for (id, unacked) in returned {
            self.return_messages(id, unacked, true, false);
            self.drain(id);
        }
    }
}

impl Queue {
    /// Removes the consumer at `index` and ends its stream; returns its unacked messages.
    fn detach(&mut self, index: usize) -> impl Iterator<Item = Message> + use<> {
        let state = self.consumers.remove(index);
        if state.is_consuming() {
            self.active_consumers -= 1;
        }
        self.unacked -= state.unacked.len();
        // Before the sender drops: the stream, woken by the drop, must see the close.
        state.closed.store(true, Ordering::Release);
        drop(state.sender);
        let mut unacked = state.unacked;
        unacked.take_all()
    }
}

/// A consumer just attached, before it is wrapped for the caller.
pub(super) struct Attached {
    queue: QueueId,
    consumer: u64,
    receiver: mpsc::UnboundedReceiver<Delivery>,
    closed: Arc<AtomicBool>,
}

impl Attached {
    /// Wraps the consumer in its stream and settler, which share its channel.
    pub(super) fn into_consumer(self, shared: Arc<Shared>) -> Consumer {
        let channel = Arc::new(Channel {
            shared,
            queue: self.queue,
            consumer: self.consumer,
            closed: self.closed,
        });
        Consumer {
            deliveries: Box::pin(Deliveries {
                channel: Arc::clone(&channel),
                receiver: self.receiver,
            }),
            settler: Box::new(Settler { channel }),
        }
    }
}

// ===== impl Channel =====

/// A consumer's channel, shared by its stream and its settler; it closes when both are gone.
struct Channel {
    shared: Arc<Shared>,
    queue: QueueId,
    consumer: u64,
    closed: Arc<AtomicBool>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.shared.lock().close_channel(self.queue, self.consumer);
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("consumer", &self.consumer)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The deliveries of one consumer.
struct Deliveries {
    channel: Arc<Channel>,
    receiver: mpsc::UnboundedReceiver<Delivery>,
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let next = self.receiver.poll_recv(cx);
        // Checked after receiving: a delivery buffered before a close is not handed out.
        if self.channel.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        next
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        self.channel
            .shared
            .lock()
            .cancel(self.channel.queue, self.channel.consumer);
    }
}

/// Settles the deliveries of one consumer.
#[derive(Debug)]
struct Settler {
    channel: Arc<Channel>,
}

impl Settle for Settler {
    fn settle(&self, settlement: Settlement) -> BoxFuture<'_, Result<()>> {
        let channel = &self.channel;
        let outcome = if channel.closed.load(Ordering::Acquire) {
            Err(channel_closed())
        } else {
            channel
                .shared
                .lock()
                .settle(channel.queue, channel.consumer, settlement)
        };
        Box::pin(std::future::ready(outcome))
    }

    fn cancel(&self) -> BoxFuture<'_, Result<()>> {
        let channel = &self.channel;
        let outcome = if channel.closed.load(Ordering::Acquire) {
            Err(channel_closed())
        } else {
            channel
                .shared
                .lock()
                .cancel(channel.queue, channel.consumer);
            Ok(())
        };
        Box::pin(std::future::ready(outcome))
    }
}
