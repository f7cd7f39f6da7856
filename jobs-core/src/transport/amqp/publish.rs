//! Publishing on the publishing connection: with publisher confirms, or (for what the sender
//! may lose, such as replies to calls) on a channel of its own without them.

use std::sync::{Arc, PoisonError};

use lapin::Channel;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use crate::error::{Error, Result};
use crate::transport::Publish;

/// One channel shared by every publish, in confirm mode or not, opened again after it closes.
#[derive(Debug)]
pub(super) struct Publisher {
    link: Arc<Link>,
    /// Whether the channel is in confirm mode: each publish then resolves with the confirm.
    confirms: bool,
    /// The open channel: every publish takes it under this lock, which no await ever holds.
    channel: std::sync::Mutex<Option<Open>>,
    /// Held while a channel opens, so that a lost channel is replaced once, not once per
    /// publish waiting for it.
    opening: tokio::sync::Mutex<()>,
}

/// The open confirm-mode channel, and the largest frame its connection takes.
#[derive(Clone, Debug)]
pub(super) struct Open {
    pub(super) channel: Arc<Channel>,
    /// The negotiated `frame_max`; 0 means no limit.
    pub(super) frame_max: usize,
}

impl Publisher {
    pub(super) fn new(link: Arc<Link>, confirms: bool) -> Self {
        Self {
            link,
            confirms,
            channel: std::sync::Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn link(&self) -> &Link {
        &self.link
    }

    /// The confirm-mode channel, opened when there is none or it closed.
    pub(super) async fn channel(&self) -> Result<Open> {
        if let Some(open) = self.open_channel() {
            return Ok(open);
        }
        let _opening = self.opening.lock().await;
        if let Some(open) = self.open_channel() {
            return Ok(open);
        }
        let (channel, frame_max) = self.link.channel_and_frame_max().await?;
        if self.confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|err| error_map::map(&err, Subject::Other))?;
        }
        let open = Open {
            channel: Arc::new(channel),
            frame_max,
        };
        *self.slot() = Some(open.clone());
        Ok(open)
    }

    fn open_channel(&self) -> Option<Open> {
        self.slot()
            .as_ref()
            .filter(|open| open.channel.status().connected())
            .cloned()
    }

    /// Stops handing out `channel`, if it is still the open one: the next publish opens another.
    /// Publishes in flight on it finish there; it closes when the last of them lets it go.
    fn retire(&self, channel: &Arc<Channel>) {
        let mut slot = self.slot();
        if slot
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(&open.channel, channel))
        {
            *slot = None;
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        // The slot holds a plain value, valid whatever a panicking holder was doing.
        self.channel.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A frame's type, channel and size before its payload, and its end marker after.
const FRAME_OVERHEAD: usize = 8;

pub(super) async fn publish(publisher: Arc<Publisher>, mut publish: Publish) -> Result<()> {
    let names = Names::of(&publish)?;
    let Open { channel, frame_max } = publisher.channel().await?;
    let sent = send(&channel, frame_max, names, &mut publish, publisher.confirms).await;
    if matches!(sent, Err(Error::Nacked { .. })) {
        // RabbitMQ 3.10 keeps nacking a channel's publishes to a quorum queue that once
        // rejected them (a length limit with `reject-publish`) after the queue has room
        // again; a new channel is not held to it.
        publisher.retire(&channel);
    }
    sent
}

/// A publish's exchange and routing key, checked against AMQP's limits before any channel is
/// taken.
pub(super) struct Names {
    exchange: ShortString,
    routing_key: ShortString,
}

impl Names {
    pub(super) fn of(publish: &Publish) -> Result<Self> {
        Ok(Self {
            exchange: convert::short("exchange", &publish.exchange)?,
            routing_key: convert::short("routing key", &publish.routing_key)?,
        })
    }
}

/// Publishes on `channel` and, when it is in confirm mode (`confirmed`), resolves with the
/// broker's confirm, otherwise once the message is written:
/// [`Error::Unroutable`] for a returned `mandatory` message, [`Error::Nacked`] for a negative
/// confirm, [`Error::HeadersTooLarge`] before anything is sent for a header table larger than
/// a frame of `frame_max` bytes (0: no limit). It takes the properties out of `publish`, and
/// its body once sent.
///
/// `publish` is borrowed, not taken: the caller's future already holds it, and a second copy in
/// this one would make every publish's future larger by a `Publish`, a cost paid in its
/// allocation and moves on each enqueue.
pub(super) async fn send(
    channel: &Channel,
    frame_max: usize,
    names: Names,
    publish: &mut Publish,
    confirmed: bool,
) -> Result<()> {
    let Names {
        exchange,
        routing_key,
    } = names;
    let properties = std::mem::take(&mut publish.envelope.properties);
    // A content-header frame cannot be split: one larger than the connection's frame size
    // makes the broker close the whole connection, failing every publish on it. Only a header
    // table can make one that large.
    if !properties.headers.is_empty() && frame_max > 0 {
        let size = convert::properties_len(&properties);
        let limit = frame_max.saturating_sub(FRAME_OVERHEAD);
        if size > limit {
            return Err(Error::HeadersTooLarge { size, limit });
        }
    }
    let properties = convert::properties_to_amqp(properties)?;
    let options = BasicPublishOptions {
        mandatory: publish.mandatory,
        immediate: false,
    };
    let failed = |err, publish: &Publish| {
        refine(
            error_map::map(&err, Subject::Exchange(&publish.exchange)),
            publish,
        )
    };
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key,
            options,
            &publish.envelope.body,
            properties,
        )
        .await
        .map_err(|err| failed(err, publish))?;
    // lapin has copied the body into its frames: freed now rather than when the confirm comes
    // back, so that publishes waiting for their confirms (a thousand of them, under load) do
    // not each hold a body the size of the job.
    drop(std::mem::take(&mut publish.envelope.body));
    if !confirmed {
        return Ok(());
    }
    match confirm.await.map_err(|err| failed(err, publish))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(Error::Unroutable {
            exchange: publish.exchange.to_string(),
            routing_key: publish.routing_key.to_string(),
        }),
        Confirmation::Nack(_) => Err(Error::Nacked {
            exchange: publish.exchange.to_string(),
        }),
        Confirmation::NotRequested => Err(Error::Broker(
            "the publishing channel is not in confirm mode".to_owned(),
        )),
    }
}

/// A channel error fails every publish in flight on the channel, not only the one that caused
/// it; for the others it is a lost channel, worth retrying, not their own missing exchange.
fn refine(err: Error, publish: &Publish) -> Error {
    match err {
        Error::NotFound { what, name } if what != "exchange" || name != publish.exchange => {
            Error::Connection(
                format!("the publishing channel closed: {what} `{name}` does not exist").into(),
            )
        }
        other => other,
    }
}
