//! Declaring exchanges, queues and bindings, or checking them ([`Declare::Passive`] and
//! [`Declare::Verify`] act alike here: both compare types and arguments).

use super::broker::Broker;
use super::queue::{Queue, QueueArgs, QueueId};
use super::routing::Exchange;
use crate::envelope::Headers;
use crate::error::{Error, Result};
use crate::job::ExchangeKind;
use crate::topology::{BindingSpec, ExchangeSpec, QueueSpec, Topology};
use crate::transport::Declare;

impl Broker {
    /// Declares (or checks) `topology` in order: exchanges, queues, bindings. As on a broker,
    /// what was declared before an error stays declared.
    pub(super) fn declare(&mut self, topology: &Topology, mode: Declare) -> Result<()> {
        for exchange in &topology.exchanges {
            self.declare_exchange(exchange, mode)?;
        }
        for queue in &topology.queues {
            self.declare_queue(queue, mode)?;
        }
        for binding in &topology.bindings {
            self.bind(binding, mode)?;
        }
        Ok(())
    }

    fn declare_exchange(&mut self, spec: &ExchangeSpec, mode: Declare) -> Result<()> {
        let existing = if spec.name.is_empty() {
            Some(ExchangeKind::Direct)
        } else {
            self.exchanges.get(&spec.name).map(|e| e.kind)
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
                self.exchanges
                    .insert(spec.name.clone(), Exchange::new(spec.kind));
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
        let args = QueueArgs::parse(&spec.name, &spec.arguments)?;
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
        let exchange = self
            .exchanges
            .get_mut(&spec.exchange)
            .ok_or_else(|| Error::NotFound {
                what: "exchange",
                name: spec.exchange.clone(),
            })?;
        // AMQP has no passive bind: a broker cannot be asked whether a binding exists.
        if mode != Declare::Create {
            return Ok(());
        }
        exchange.bind(queue, &spec.routing_key, &spec.arguments)
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
