//! Declaring the topology, checking it passively, or verifying it.

use lapin::ExchangeKind as AmqpExchangeKind;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;

use super::connection::Link;
use super::convert;
use super::error_map::{self, Subject};
use crate::error::Result;
use crate::job::ExchangeKind;
use crate::topology::Topology;
use crate::transport::Declare;

/// Declares on a channel of its own: the first error ends the declaration, and the channel is
/// closed whatever happened, so a failed step never poisons a later call nor leaks a channel.
pub(super) async fn declare(link: &Link, topology: &Topology, mode: Declare) -> Result<()> {
    let channel = link.channel().await?;
    let declared = declare_on(&channel, topology, mode).await;
    close(link, &channel).await;
    declared
}

/// Per object, whether each declare is passive: Verify checks existence passively first,
/// since RabbitMQ's passive declare checks nothing else, then redeclares what exists as
/// declared, which creates nothing and fails on other arguments or another type.
fn passive_steps(mode: Declare) -> &'static [bool] {
    match mode {
        Declare::Create => &[false],
        Declare::Passive => &[true],
        Declare::Verify => &[true, false],
    }
}

async fn declare_on(channel: &lapin::Channel, topology: &Topology, mode: Declare) -> Result<()> {
    for exchange in &topology.exchanges {
        // The default exchange always exists and cannot be declared.
        if exchange.name.is_empty() {
            continue;
        }
        let name = convert::short("exchange", &exchange.name)?;
        for &passive in passive_steps(mode) {
            let options = ExchangeDeclareOptions {
                passive,
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    name.clone(),
                    kind(exchange.kind),
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|err| error_map::map(&err, Subject::Exchange(&exchange.name)))?;
        }
    }
    for queue in &topology.queues {
        let name = convert::short("queue", &queue.name)?;
        for &passive in passive_steps(mode) {
            let options = QueueDeclareOptions {
                passive,
                durable: true,
                ..QueueDeclareOptions::default()
            };
            let arguments = if passive {
                FieldTable::default()
            } else {
                convert::headers_to_amqp(queue.arguments.clone())?
            };
            channel
                .queue_declare(name.clone(), options, arguments)
                .await
                .map_err(|err| error_map::map(&err, Subject::Queue(&queue.name)))?;
        }
    }
    // Bindings cannot be checked passively in AMQP 0-9-1.
    if mode == Declare::Create {
        for binding in &topology.bindings {
            channel
                .queue_bind(
                    convert::short("queue", &binding.queue)?,
                    convert::short("exchange", &binding.exchange)?,
                    convert::short("binding key", &binding.routing_key)?,
                    QueueBindOptions::default(),
                    convert::headers_to_amqp(binding.arguments.clone())?,
                )
                .await
                .map_err(|err| error_map::map(&err, Subject::Queue(&binding.queue)))?;
        }
        for binding in &topology.exchange_bindings {
            channel
                .exchange_bind(
                    convert::short("exchange", &binding.destination)?,
                    convert::short("exchange", &binding.source)?,
                    convert::short("binding key", &binding.routing_key)?,
                    ExchangeBindOptions::default(),
                    convert::headers_to_amqp(binding.arguments.clone())?,
                )
                .await
                .map_err(|err| error_map::map(&err, Subject::Exchange(&binding.source)))?;
        }
    }
    Ok(())
}

/// How many ready messages `queue` holds: a passive declare's message count.
pub(super) async fn message_count(link: &Link, queue: &str) -> Result<u64> {
    Ok(queue_stats(link, queue).await?.ready)
}

/// Ready messages and consumers of `queue`, by a passive declare.
pub(super) async fn queue_stats(link: &Link, queue: &str) -> Result<super::super::QueueStats> {
    let name = convert::short("queue", queue)?;
    let options = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let channel = link.channel().await?;
    let declared = channel
        .queue_declare(name, options, FieldTable::default())
        .await;
    close(link, &channel).await;
    let declared = declared.map_err(|err| error_map::map(&err, Subject::Queue(queue)))?;
    Ok(super::super::QueueStats::new(
        u64::from(declared.message_count()),
        Some(declared.consumer_count()),
    ))
}

/// Purges `queue`, returning how many messages went.
pub(super) async fn purge(link: &Link, queue: &str) -> Result<u64> {
    let name = convert::short("queue", queue)?;
    let channel = link.channel().await?;
    let purged = channel
        .queue_purge(name, QueuePurgeOptions::default())
        .await;
    close(link, &channel).await;
    let purged = purged.map_err(|err| error_map::map(&err, Subject::Queue(queue)))?;
    Ok(u64::from(purged))
}

/// Deletes `queue` and its messages; a queue that does not exist is no error (RabbitMQ 3.10
/// answers `delete-ok` for it).
pub(super) async fn delete(link: &Link, queue: &str) -> Result<()> {
    let name = convert::short("queue", queue)?;
    let channel = link.channel().await?;
    let deleted = channel
        .queue_delete(name, QueueDeleteOptions::default())
        .await;
    close(link, &channel).await;
    deleted.map_err(|err| error_map::map(&err, Subject::Queue(queue)))?;
    Ok(())
}

/// Closes a channel of one operation. After a broker error the broker closed it already, and
/// this fails harmlessly.
async fn close(link: &Link, channel: &lapin::Channel) {
    if !channel.status().connected() {
        return;
    }
    if let Err(err) = channel.close(200, "done".into()).await {
        tracing::debug!(connection = link.name(), error = %err, "closing a channel failed");
    }
}

fn kind(kind: ExchangeKind) -> AmqpExchangeKind {
    match kind {
        ExchangeKind::Direct => AmqpExchangeKind::Direct,
        ExchangeKind::Topic => AmqpExchangeKind::Topic,
        ExchangeKind::Fanout => AmqpExchangeKind::Fanout,
        ExchangeKind::Headers => AmqpExchangeKind::Headers,
    }
}
