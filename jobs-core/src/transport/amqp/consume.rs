//! A consumer's delivery stream and its settler.

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use super::publish::{Names, send};
use crate::error::Result;
use crate::transport::{
    BoxFuture, Consumer, Delivery, Publish, Reply, ReplyChannel, Settle, Settlement,
};

pub(super) async fn consume(link: &Link, queue: &str, prefetch: u16) -> Result<Consumer> {
    let name = convert::short("queue", queue)?;
    let (channel, frame_max) = link.channel_and_frame_max().await?;
    let failed = |err| error_map::map(&err, Subject::Queue(queue));
    channel
        .basic_qos(prefetch, qos_options())
        .await
        .map_err(failed)?;
    let consumer: lapin::Consumer = channel
        .basic_consume(
            name,
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    let tag = consumer.tag();
    let reply = ReplyChannel(Arc::new(ChannelReply {
        channel: channel.clone(),
        frame_max,
    }));
    Ok(Consumer {
        deliveries: Box::pin(Deliveries {
            consumer: Some(consumer),
            reply,
        }),
        settler: Box::new(Settler { channel, tag }),
    })
}

/// Per-consumer `basic.qos`: `global = false`, the only kind the framework asks for. RabbitMQ 4
/// deprecates a global one (`global_qos`) and refuses it where that feature is denied.
pub(super) fn qos_options() -> BasicQosOptions {
    BasicQosOptions { global: false }
}

/// Yields deliveries until the consumer is cancelled or its channel or connection is lost.
///
/// The first error ends the stream for good: without auto-recovery lapin never delivers on this
/// consumer again, and a new consumer would number its deliveries from 1 again.
struct Deliveries {
    consumer: Option<lapin::Consumer>,
    /// Handed to each request delivered, for its reply.
    reply: ReplyChannel,
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(consumer).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(delivery))) => {
                let reply = delivery
                    .properties
                    .reply_to()
                    .is_some()
                    .then(|| self.reply.clone());
                Poll::Ready(Some(Delivery {
                    tag: delivery.delivery_tag,
                    redelivered: delivery.redelivered,
                    exchange: Cow::Owned(delivery.exchange.into()),
                    routing_key: Cow::Owned(delivery.routing_key.into()),
                    envelope: Arc::new(convert::envelope_from_amqp(
                        &delivery.properties,
                        delivery.data,
                    )),
                    reply,
                }))
            }
            Poll::Ready(Some(Err(err))) => {
                let queue = self.consumer.take().map(|c| c.queue());
                tracing::warn!(?queue, error = %err, "consumer lost its channel");
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.consumer = None;
                Poll::Ready(None)
            }
        }
    }
}

/// Replies on the consumer's channel, without confirms (a consumer's channel is not in
/// confirm mode): the channel's order delivers a reply to the broker before the ack that
/// follows it, so the ack needs no confirm of the reply to wait for, and one connection
/// carries the worker's whole side of a call.
struct ChannelReply {
    channel: Channel,
    frame_max: usize,
}

impl fmt::Debug for ChannelReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReply")
            .field("channel", &self.channel.id())
            .finish()
    }
}

impl Reply for ChannelReply {
    fn reply(&self, mut publish: Publish) -> BoxFuture<'static, Result<()>> {
        let channel = self.channel.clone();
        let frame_max = self.frame_max;
        Box::pin(async move {
            let names = Names::of(&publish)?;
            send(&channel, frame_max, names, &mut publish, false).await
        })
    }
}

/// Acks and nacks on the consumer's channel.
///
/// Dropping the stream cancels the consumer (lapin does that); deliveries already received stay
/// settleable here. Dropping the last clone of the channel closes it, and the broker requeues
/// whatever is still unsettled.
struct Settler {
    channel: Channel,
    /// The consumer's tag, for `basic.cancel`.
    tag: ShortString,
}

impl fmt::Debug for Settler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settler")
            .field("channel", &self.channel.id())
            .finish()
    }
}

impl Settle for Settler {
    fn settle(&self, settlement: Settlement) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let channel = &self.channel;
            let sent = match settlement {
                Settlement::Ack { tag, multiple } => {
                    channel.basic_ack(tag, BasicAckOptions { multiple }).await
                }
                Settlement::Nack {
                    tag,
                    multiple,
                    requeue,
                } => {
                    channel
                        .basic_nack(tag, BasicNackOptions { multiple, requeue })
                        .await
                }
                Settlement::Reject { tag, requeue } => {
                    channel
                        .basic_reject(tag, BasicRejectOptions { requeue })
                        .await
                }
            };
            sent.map_err(|err| error_map::map(&err, Subject::Other))
        })
    }

    fn cancel(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.channel
                .basic_cancel(self.tag.clone(), BasicCancelOptions::default())
                .await
                .map_err(|err| error_map::map(&err, Subject::Other))
        })
    }

    /// The acks are sent, but a quorum queue may not have them yet: RabbitMQ's quorum-queue
    /// client holds settlements back once 32 are pending and drops what it holds when the
    /// channel closes, and the queue then redelivers jobs that ran to completion. What it
    /// holds drains within milliseconds as the queue applies what is pending, and AMQP has no
    /// reply that says so: keep the channel open a moment.
    fn finish(&self) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(SETTLE_LINGER))
    }
}

/// How long a consumer's channel stays open after its last settlement; see [`Settler::finish`].
const SETTLE_LINGER: std::time::Duration = std::time::Duration::from_millis(250);
