//! Calls over RabbitMQ's direct reply-to: a channel that publishes requests and receives their
//! replies, with no reply queue.
//!
//! The channel consumes the pseudo-queue `amq.rabbitmq.reply-to` with automatic acks (the
//! broker refuses any other mode), and every request published on that same channel carries
//! `reply_to = "amq.rabbitmq.reply-to"`, which the broker rewrites to the channel's own address
//! (`amq.rabbitmq.reply-to.…`). A reply published to that address goes straight to the
//! channel's consumer; one sent after the channel closed is dropped.
//!
//! The consumer is started before the requester is handed out, so it precedes the first
//! publish as the broker requires. The channel is in confirm mode too: the broker numbers the
//! channel's publishes for confirms and its deliveries for the consumer separately, and a
//! no-ack delivery is settled by the broker as it is sent, so the two share the channel
//! without touching each other. lapin's deliveries carry an acker, which is never used here: an
//! ack for a no-ack delivery would be a protocol error.
//!
//! The channel lives as long as either half of the [`Requester`]: lapin closes it once the
//! publisher and the reply stream are both dropped. A channel error (a request to a missing
//! exchange) or a lost connection ends it for good: the reply stream ends, and later requests
//! fail with [`Error::Connection`](crate::Error::Connection). The caller fails its calls in
//! flight and opens a new requester; unlike [`Transport::publish`], nothing reopens the channel
//! underneath, since the replies to calls in flight would go to the old address.
//!
//! [`Transport::publish`]: crate::transport::Transport::publish

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use super::publish::{self, Names};
use crate::envelope::Envelope;
use crate::error::Result;
use crate::transport::{BoxFuture, Publish, PublishRequest, Requester};

/// The pseudo-queue a requester consumes, and the `reply_to` of its requests.
pub(super) const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Opens a confirm-mode channel on `link` and starts its reply consumer.
///
/// Dropped before it resolves (the caller's deadline), it drops the channel, which closes.
pub(super) async fn requester(link: &Link) -> Result<Requester> {
    let (channel, frame_max) = link.channel_and_frame_max().await?;
    let failed = |err| error_map::map(&err, Subject::Other);
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(failed)?;
    let consumer = consume_no_ack(&channel, ShortString::from(REPLY_TO), false)
        .await
        .map_err(failed)?;
    Ok(Requester {
        publisher: Box::new(RequestPublisher {
            channel: Arc::new(channel),
            frame_max,
        }),
        replies: Box::pin(Replies::new(consumer)),
    })
}

/// Starts a consumer of `queue` on `channel` without acks (the broker settles each delivery
/// as it sends it), `exclusive` or not: a requester's, a subscription's, a hold's.
pub(super) async fn consume_no_ack(
    channel: &Channel,
    queue: ShortString,
    exclusive: bool,
) -> std::result::Result<lapin::Consumer, lapin::Error> {
    channel
        .basic_consume(
            queue,
            ShortString::default(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Publishes requests, with confirms, on the requester's channel.
struct RequestPublisher {
    channel: Arc<Channel>,
    /// The negotiated `frame_max` of the channel's connection; 0 means no limit.
    frame_max: usize,
}

impl PublishRequest for RequestPublisher {
    fn publish(&self, mut publish: Publish) -> BoxFuture<'static, Result<()>> {
        let channel = Arc::clone(&self.channel);
        let frame_max = self.frame_max;
        Box::pin(async move {
            publish.envelope.properties.reply_to = Some(REPLY_TO.to_owned());
            let names = Names::of(&publish)?;
            // A nack is not followed by a new channel, as on the transport's publishing
            // channel: this one is the requester's address.
            publish::send(&channel, frame_max, names, &mut publish, true).await
        })
    }
}

impl fmt::Debug for RequestPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestPublisher")
            .field("channel", &self.channel.id())
            .field("connected", &self.channel.status().connected())
            .finish_non_exhaustive()
    }
}

/// The deliveries of a consumer without acks (a requester's replies, a subscription's
/// messages), until the channel or its connection closes.
///
/// Dropping it cancels the consumer (lapin does that); requests published after that make the
/// broker close the channel, as a request whose channel has no reply consumer.
pub(super) struct Replies {
    consumer: Option<lapin::Consumer>,
}

impl Replies {
    /// The envelopes `consumer` receives.
    pub(super) fn new(consumer: lapin::Consumer) -> Self {
        Self {
            consumer: Some(consumer),
        }
    }
}

impl Stream for Replies {
    type Item = Envelope;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(consumer).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            // No-ack: the broker settled it as it sent it.
            Poll::Ready(Some(Ok(delivery))) => Poll::Ready(Some(convert::envelope_from_amqp(
                &delivery.properties,
                delivery.data,
            ))),
            Poll::Ready(Some(Err(err))) => {
                self.consumer = None;
                tracing::debug!(error = %err, "a no-ack consumer's channel closed");
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.consumer = None;
                Poll::Ready(None)
            }
        }
    }
}
