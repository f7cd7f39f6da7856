//! Holds: a queue's exclusive consumer, on a channel of its own. RabbitMQ refuses a second
//! exclusive consumer, and any consumer beside one, with `ACCESS_REFUSED`, and lets go of the
//! hold when the channel or its connection closes: a lease that a dead worker gives back by
//! itself. The engine's concurrency limits hold empty queues this way, one per slot.

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use super::requester::{Replies, consume_no_ack};
use crate::error::Result;
use crate::transport::ReplyStream;

/// Becomes the exclusive consumer of `queue` on a new channel of `link`, or `None` when
/// another consumer has the queue.
pub(super) async fn hold(link: &Link, queue: &str) -> Result<Option<ReplyStream>> {
    let name = convert::short("queue", queue)?;
    let channel = link.channel().await?;
    let consumed = consume_no_ack(&channel, name, true).await;
    match consumed {
        Ok(consumer) => Ok(Some(Box::pin(Replies::new(consumer)))),
        // The broker closed the channel as it refused.
        Err(err) if refused(&err) => Ok(None),
        Err(err) => Err(error_map::map(&err, Subject::Queue(queue))),
    }
}

fn refused(err: &lapin::Error) -> bool {
    matches!(err.kind(), ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)))
}
