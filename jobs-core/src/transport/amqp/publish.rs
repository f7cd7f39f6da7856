//! Publishing with publisher confirms on the publishing connection.

use std::sync::{Arc, PoisonError};

use lapin::Channel;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use super::connection::Link;
use super::convert;
use super::errors::{self, Subject};
use crate::error::{Error, Result};
use crate::transport::Publish;

/// One confirm-mode channel shared by every publish, opened again after it closes.
#[derive(Debug)]
pub(super) struct Publisher {
    link: Link,
    /// The open channel: every publish takes it under this lock, which no await ever holds.
    channel: std::sync::Mutex<Option<Arc<Channel>>>,
    /// Held while a channel opens, so that a lost channel is replaced once, not once per
    /// publish waiting for it.
    opening: tokio::sync::Mutex<()>,
}

impl Publisher {
    pub(super) fn new(link: Link) -> Self {
        Self {
            link,
            channel: std::sync::Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn link(&self) -> &Link {
        &self.link
    }

    /// The confirm-mode channel, opened when there is none or it closed.
    pub(super) async fn channel(&self) -> Result<Arc<Channel>> {
        if let Some(channel) = self.open_channel() {
            return Ok(channel);
        }
        let _opening = self.opening.lock().await;
        if let Some(channel) = self.open_channel() {
            return Ok(channel);
        }
        let channel = self.link.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|err| errors::map(err, Subject::Other))?;
        let channel = Arc::new(channel);
        *self.slot() = Some(Arc::clone(&channel));
        Ok(channel)
    }

    fn open_channel(&self) -> Option<Arc<Channel>> {
        self.slot()
            .as_ref()
            .filter(|channel| channel.status().connected())
            .cloned()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Channel>>> {
        // The slot holds a plain value, valid whatever a panicking holder was doing.
        self.channel.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) async fn publish(publisher: Arc<Publisher>, mut publish: Publish) -> Result<()> {
    let exchange = convert::short("exchange", &publish.exchange)?;
    let routing_key = convert::short("routing key", &publish.routing_key)?;
    let properties = std::mem::take(&mut publish.envelope.properties);
    let properties = convert::properties_to_amqp(properties)?;
    let options = BasicPublishOptions {
        mandatory: publish.mandatory,
        immediate: false,
    };
    let channel = publisher.channel().await?;
    let failed = |err| {
        refine(
            errors::map(err, Subject::Exchange(&publish.exchange)),
            &publish,
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
        .map_err(failed)?;
    match confirm.await.map_err(failed)? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(Error::Unroutable {
            exchange: publish.exchange.into_owned(),
            routing_key: publish.routing_key.into_owned(),
        }),
        Confirmation::Nack(_) => Err(Error::Nacked {
            exchange: publish.exchange.into_owned(),
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
