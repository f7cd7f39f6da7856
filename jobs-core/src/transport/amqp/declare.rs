//! Declaring the topology, or checking it passively.

use lapin::ExchangeKind as AmqpExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::connection::Link;
use super::convert;
use super::errors::{self, Subject};
use crate::error::Result;
use crate::job::ExchangeKind;
use crate::topology::Topology;
use crate::transport::Declare;

/// Declares on a channel of its own: the first error closes it, and ends the declaration, so a
/// failed step never poisons a later call.
pub(super) async fn declare(link: &Link, topology: &Topology, mode: Declare) -> Result<()> {
    let channel = link.channel().await?;
    let passive = mode == Declare::Passive;
    for exchange in &topology.exchanges {
        // The default exchange always exists and cannot be declared.
        if exchange.name.is_empty() {
            continue;
        }
        let options = ExchangeDeclareOptions {
            passive,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                convert::short("exchange", &exchange.name)?,
                kind(exchange.kind),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|err| errors::map(err, Subject::Exchange(&exchange.name)))?;
    }
    for queue in &topology.queues {
        let options = QueueDeclareOptions {
            passive,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let arguments = if passive {
            FieldTable::default()
        } else {
            convert::headers_to_amqp(&queue.arguments)?
        };
        channel
            .queue_declare(convert::short("queue", &queue.name)?, options, arguments)
            .await
            .map_err(|err| errors::map(err, Subject::Queue(&queue.name)))?;
    }
    // Bindings cannot be checked passively in AMQP 0-9-1.
    if !passive {
        for binding in &topology.bindings {
            channel
                .queue_bind(
                    convert::short("queue", &binding.queue)?,
                    convert::short("exchange", &binding.exchange)?,
                    convert::short("binding key", &binding.routing_key)?,
                    QueueBindOptions::default(),
                    convert::headers_to_amqp(&binding.arguments)?,
                )
                .await
                .map_err(|err| errors::map(err, Subject::Queue(&binding.queue)))?;
        }
    }
    if let Err(err) = channel.close(200, "declared".into()).await {
        tracing::debug!(connection = link.name(), error = %err, "closing the declaring channel failed");
    }
    Ok(())
}

fn kind(kind: ExchangeKind) -> AmqpExchangeKind {
    match kind {
        ExchangeKind::Direct => AmqpExchangeKind::Direct,
        ExchangeKind::Topic => AmqpExchangeKind::Topic,
        ExchangeKind::Fanout => AmqpExchangeKind::Fanout,
        ExchangeKind::Headers => AmqpExchangeKind::Headers,
    }
}
