//! Declaring exchanges, queues and bindings, or checking them ([`Declare::Passive`] and
//! [`Declare::Verify`] act alike here: both compare types and arguments).

use super::broker::Broker;
use super::exchange::{Destination, Exchange, ExchangeId};
use super::queue::{Queue, QueueArgs, QueueId};
use crate::broker::BrokerBehaviour;
use crate::envelope::Headers;
use crate::error::{Error, Result};
use crate::job::ExchangeKind;
use crate::topology::{BindingSpec, ExchangeBindingSpec, ExchangeSpec, QueueSpec, Topology};
use crate::transport::Declare;

impl Broker {
    /// Declares (or checks) `topology` in order: exchanges, queues, queue bindings, exchange
    /// bindings. As on a broker, what was declared before an error stays declared.
    ///
    /// The topology is adapted to the emulated version first, as the AMQP transport adapts it
    /// to the broker's (see [`BrokerBehaviour::adapt`]).
    pub(super) fn declare(&mut self, topology: &Topology, mode: Declare) -> Result<()> {
        let behaviour = BrokerBehaviour::for_version(Some(self.version));
        let topology = behaviour.adapt(topology);
        for exchange in &topology.exchanges {
            self.declare_exchange(exchange, mode)?;
        }
        for queue in &topology.queues {
            self.declare_queue(queue, mode)?;
        }
        for binding in &topology.bindings {
            self.bind(binding, mode)?;
        }
        for binding in &topology.exchange_bindings {
            self.bind_exchange(binding, mode)?;
        }
        Ok(())
    }

    fn declare_exchange(&mut self, spec: &ExchangeSpec, mode: Declare) -> Result<()> {
        let existing = if spec.name.is_empty() {
            Some(ExchangeKind::Direct)
        } else {
            self.exchange_id(&spec.name)
                .map(|id| self.exchanges[id].kind)
        };
        match existing {
            Some(kind) if kind == spec.kind => Ok(()),
            Some(kind) => Err(Error::Topology(format!(
                "exchange `{}` exists as `{kind}`, declared as `{}`",
                spec.name, spec.kind
            ))),
            None if mode != Declare::Create => Err(Error::NotFound {
                what: "exchange",
                name: spec.name.clone(),
            }),
            None => {
                self.exchange_ids
                    .insert(spec.name.clone(), self.exchanges.len());
                self.exchanges.push(Exchange::new(spec.kind));
                Ok(())
            }
        }
    }

    fn declare_queue(&mut self, spec: &QueueSpec, mode: Declare) -> Result<()> {
        if let Some(id) = self.queue_id(&spec.name) {
            return compare_arguments(&spec.name, &self.queues[id].arguments, &spec.arguments);
        }
        if mode != Declare::Create {
            return Err(Error::NotFound {
                what: "queue",
                name: spec.name.clone(),
            });
        }
        if spec.name.is_empty() {
            return Err(Error::Topology(
                "the in-memory broker does not name queues; declare them with a name".into(),
            ));
        }
        let args = QueueArgs::parse(&spec.name, &spec.arguments, self.version)?;
        let id = self.queues.len();
        self.queues
            .push(Queue::new(spec.name.clone(), spec.arguments.clone(), args));
        self.queue_ids.insert(spec.name.clone(), id);
        Ok(())
    }

    fn bind(&mut self, spec: &BindingSpec, mode: Declare) -> Result<()> {
        let queue: QueueId = self.queue_id(&spec.queue).ok_or_else(|| Error::NotFound {
            what: "queue",
            name: spec.queue.clone(),
        })?;
        if spec.exchange.is_empty() {
            return Err(Error::Topology(format!(
                "queue `{}` cannot be bound to the default exchange",
                spec.queue
            )));
        }
        let exchange = self.existing_exchange(&spec.exchange)?;
        // AMQP has no passive bind: a broker cannot be asked whether a binding exists.
        if mode != Declare::Create {
            return Ok(());
        }
        self.exchanges[exchange].bind(
            Destination::Queue(queue),
            &spec.routing_key,
            &spec.arguments,
        )
    }

    /// `exchange.bind`: what `source` routes with a matching key goes on to `destination`.
    fn bind_exchange(&mut self, spec: &ExchangeBindingSpec, mode: Declare) -> Result<()> {
        if spec.source.is_empty() || spec.destination.is_empty() {
            // RabbitMQ refuses it too: ACCESS_REFUSED, "operation not permitted on the default
            // exchange".
            return Err(Error::Topology(format!(
                "exchange `{}` cannot be bound to exchange `{}`: the default exchange takes no \
                 bindings",
                spec.destination, spec.source
            )));
        }
        let source = self.existing_exchange(&spec.source)?;
        let destination = self.existing_exchange(&spec.destination)?;
        if mode != Declare::Create {
            return Ok(());
        }
        self.exchanges[source].bind(
            Destination::Exchange(destination),
            &spec.routing_key,
            &spec.arguments,
        )
    }

    /// The declared exchange named `name`.
    fn existing_exchange(&self, name: &str) -> Result<ExchangeId> {
        self.exchange_id(name).ok_or_else(|| Error::NotFound {
            what: "exchange",
            name: name.to_owned(),
        })
    }
}

/// Checks a queue's declared arguments against the ones it exists with, argument by argument:
/// first those declared, then those only the existing queue has.
fn compare_arguments(queue: &str, existing: &Headers, declared: &Headers) -> Result<()> {
    let mismatch =
        |argument: &str, existing: Option<String>, declared: Option<String>| Error::QueueMismatch {
            queue: queue.to_owned(),
            argument: argument.to_owned(),
            existing: existing.unwrap_or_else(|| "none".to_owned()),
            declared: declared.unwrap_or_else(|| "none".to_owned()),
        };
    for (name, value) in declared.iter() {
        match existing.get(name) {
            Some(current) if current == value => {}
            current => {
                return Err(mismatch(
                    name,
                    current.map(ToString::to_string),
                    Some(value.to_string()),
                ));
            }
        }
    }
    match existing
        .iter()
        .find(|(name, _)| declared.get(name).is_none())
    {
        Some((name, value)) => Err(mismatch(name, Some(value.to_string()), None)),
        None => Ok(()),
    }
}
