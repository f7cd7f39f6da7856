//! Publishing with publisher confirms on the publishing connection.

use std::sync::Arc;

use lapin::Channel;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use tokio::sync::Mutex;

use super::connection::Link;
use super::convert;
use super::errors::{self, Subject};
use crate::error::{Error, Result};
use crate::transport::Publish;

/// One confirm-mode channel shared by every publish, opened again after it closes.
#[derive(Debug)]
pub(super) struct Publisher {
    link: Link,
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    pub(super) fn new(link: Link) -> Self {
        Self {
            link,
            channel: Mutex::new(None),
        }
    }

    pub(super) fn link(&self) -> &Link {
        &self.link
    }

    /// The confirm-mode channel. The lock is held only to open it, never across a confirm.
    pub(super) async fn channel(&self) -> Result<Channel> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        *slot = None;
        let channel = self.link.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|err| errors::map(err, Subject::Other))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }
}

pub(super) async fn publish(publisher: Arc<Publisher>, publish: Publish) -> Result<()> {
    let exchange = convert::short("exchange", &publish.exchange)?;
    let routing_key = convert::short("routing key", &publish.routing_key)?;
    let properties = convert::properties_to_amqp(&publish.envelope.properties)?;
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
