//! Subscriptions: a queue of the subscriber's own, named by the broker, exclusive to its
//! channel (so the broker deletes it with the channel or the connection), bound to an exchange
//! with the keys asked for and consumed without acks. What the engine's control messages travel
//! on: a subscriber hears what is published after it subscribed, and nothing is left behind
//! when it goes.

use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use super::requester::{Replies, consume_no_ack};
use crate::error::Result;
use crate::transport::ReplyStream;

/// How a subscription's queue is declared: exclusive, so neither transient-and-shared
/// (refused by RabbitMQ 4) nor left behind.
pub(super) fn queue_options() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: false,
        durable: false,
        exclusive: true,
        auto_delete: true,
        nowait: false,
    }
}

/// Subscribes on a channel of `link` to what `exchange` routes with one of `keys`.
pub(super) async fn subscribe(link: &Link, exchange: &str, keys: &[String]) -> Result<ReplyStream> {
    let exchange_name = convert::short("exchange", exchange)?;
    let channel = link.channel().await?;
    let failed = |err| error_map::map(&err, Subject::Other);
    let queue = channel
        .queue_declare(
            ShortString::default(),
            queue_options(),
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    for key in keys {
        channel
            .queue_bind(
                queue.name().clone(),
                exchange_name.clone(),
                convert::short("binding key", key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|err| error_map::map(&err, Subject::Exchange(exchange)))?;
    }
    let consumer = consume_no_ack(&channel, queue.name().clone(), true)
        .await
        .map_err(failed)?;
    Ok(Box::pin(Replies::new(consumer)))
}
