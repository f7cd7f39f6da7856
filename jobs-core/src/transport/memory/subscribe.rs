//! Subscriptions ([`Transport::subscribe`](crate::transport::Transport::subscribe)): a queue
//! named `amq.gen-<n>`, bound to the exchange with the keys asked for, consumed by a stream
//! that settles each message as it hands it out, and deleted when the stream is dropped, as
//! RabbitMQ deletes an exclusive queue with its channel. And holds
//! ([`Transport::hold`](crate::transport::Transport::hold)): a queue's exclusive consumer,
//! read the same way.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::FutureExt as _;

use super::broker::Shared;
use crate::envelope::{Envelope, Headers};
use crate::error::Result;
use crate::topology::{BindingSpec, QueueSpec, Topology};
use crate::transport::{Consumer, Declare, ReplyStream, Settlement};

/// Declares and binds a subscription's queue and starts reading it.
pub(super) fn subscribe(
    shared: &Arc<Shared>,
    exchange: &str,
    keys: &[String],
) -> Result<ReplyStream> {
    let (queue, attached) = {
        let mut broker = shared.lock();
        broker.next_subscription += 1;
        let queue = format!("amq.gen-{}", broker.next_subscription);
        let topology = Topology {
            queues: vec![QueueSpec {
                name: queue.clone(),
                arguments: Headers::from_iter([(crate::topology::argument::QUEUE_TYPE, "classic")]),
            }],
            bindings: keys
                .iter()
                .map(|key| BindingSpec {
                    queue: queue.clone(),
                    exchange: exchange.to_owned(),
                    routing_key: key.clone(),
                    arguments: Headers::new(),
                })
                .collect(),
            ..Topology::default()
        };
        let declared = broker
            .declare(&topology, Declare::Create)
            .and_then(|()| broker.consume(&queue, 0));
        match declared {
            Ok(attached) => (queue, attached),
            Err(error) => {
                broker.delete_queue(&queue);
                return Err(error);
            }
        }
    };
    Ok(Box::pin(NoAck {
        consumer: Some(attached.into_consumer(Arc::clone(shared))),
        shared: Arc::clone(shared),
        delete: Some(queue),
    }))
}

/// Holds `queue` exclusively ([`Transport::hold`](crate::transport::Transport::hold)).
pub(super) fn hold(shared: &Arc<Shared>, queue: &str) -> Result<Option<ReplyStream>> {
    let attached = shared.lock().hold(queue)?;
    Ok(attached.map(|attached| {
        Box::pin(NoAck {
            consumer: Some(attached.into_consumer(Arc::clone(shared))),
            shared: Arc::clone(shared),
            delete: None,
        }) as ReplyStream
    }))
}

/// The messages of a consumer without acks, each settled as it is handed out: a
/// subscription's, whose queue goes with it, or a hold's.
struct NoAck {
    /// `None` once dropped.
    consumer: Option<Consumer>,
    shared: Arc<Shared>,
    /// The queue deleted with the stream: a subscription's.
    delete: Option<String>,
}

impl Stream for NoAck {
    type Item = Envelope;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Poll::Ready(None);
        };
        match consumer.deliveries.as_mut().poll_next(cx) {
            Poll::Ready(Some(delivery)) => {
                // No acks on a subscription: settled here, at once (the in-memory broker's
                // settlements complete as they are made).
                let settled = consumer.settler.settle(Settlement::Ack {
                    tag: delivery.tag,
                    multiple: false,
                });
                drop(settled.now_or_never());
                Poll::Ready(Some(Arc::unwrap_or_clone(delivery.envelope)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for NoAck {
    fn drop(&mut self) {
        // The channel first (which returns nothing: every delivery was settled), then the queue.
        drop(self.consumer.take());
        if let Some(queue) = &self.delete {
            self.shared.lock().delete_queue(queue);
        }
    }
}
