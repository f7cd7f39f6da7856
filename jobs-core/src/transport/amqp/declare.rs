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
use crate::broker::BrokerBehaviour;
use crate::error::{Error, Result};
use crate::job::ExchangeKind;
use crate::topology::{BindingSpec, ExchangeBindingSpec, ExchangeSpec, QueueSpec, Topology};
use crate::transport::Declare;

/// Declares on channels of its own (see [`declare_on_lanes`]): the first error ends the
/// declaration, and the channels are closed whatever happened, so a failed step never poisons
/// a later call nor leaks a channel.
///
/// The topology is first adapted to the broker's version (see
/// [`BrokerBehaviour::adapt`](crate::broker::BrokerBehaviour::adapt)), read from the connection
/// the channel is opened on. A queue the adaptation gave `x-delivery-limit = -1` that exists
/// without it (made by an earlier version of the framework, or on RabbitMQ 3 before an
/// upgrade) is taken as it is, with a warning: refusing to start would stop every worker on
/// the first start after an upgrade, for a queue that works, though with RabbitMQ 4's default
/// limit until it is recreated or a `delivery-limit` policy of -1 covers it.
pub(super) async fn declare(link: &Link, topology: &Topology, mode: Declare) -> Result<()> {
    let behaviour = BrokerBehaviour::for_version(link.broker_version());
    let mut adapted = behaviour.adapt(topology);
    // Each pass takes one more existing queue as it is; a topology has that many at most.
    for _ in 0..=topology.queues.len() {
        let declared = declare_on_lanes(link, &adapted, mode).await;
        match declared {
            Err(err)
                if mode == Declare::Create && keep_as_it_is(adapted.to_mut(), topology, &err) => {}
            other => return other,
        }
    }
    Err(Error::Topology(
        "declaring the topology: queues kept failing as they exist".to_owned(),
    ))
}

/// The most channels one declaration spreads its steps over.
///
/// Each step is a broker round trip, and a durable queue's declaration a disk write on the
/// broker: one after another, a worker with a hundred jobs took over a second to declare. Steps
/// of one kind do not depend on each other, so they run on several channels at once; the kinds
/// still go in order (exchanges, queues, then the bindings between them).
const LANES: usize = 8;

/// Declares `topology` on up to [`LANES`] channels of its own, closed afterwards whatever
/// happened. Each channel stops at its first error (the broker closed it); the error returned
/// is the one of the earliest step that failed, as one channel declaring in order would have
/// returned.
async fn declare_on_lanes(link: &Link, topology: &Topology, mode: Declare) -> Result<()> {
    let steps = Step::all(topology, mode);
    let lanes = steps
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .clamp(1, LANES);
    let mut channels = Vec::with_capacity(lanes);
    let mut outcome = Ok(());
    for opened in futures_util::future::join_all((0..lanes).map(|_| link.channel())).await {
        match opened {
            Ok(channel) => channels.push(channel),
            Err(err) => outcome = outcome.and(Err(err)),
        }
    }
    if outcome.is_ok() {
        for kind in &steps {
            if let Err(err) = run_kind(&channels, kind, mode).await {
                outcome = Err(err);
                break;
            }
        }
    }
    futures_util::future::join_all(channels.iter().map(|channel| close(link, channel))).await;
    outcome
}

/// Runs the steps of one kind, spread over `channels`, and returns the earliest step's error.
async fn run_kind(channels: &[lapin::Channel], steps: &[Step<'_>], mode: Declare) -> Result<()> {
    let lanes = channels
        .iter()
        .enumerate()
        .map(|(lane, channel)| async move {
            for (index, step) in steps.iter().enumerate().skip(lane).step_by(channels.len()) {
                if let Err(err) = step.run(channel, mode).await {
                    return Some((index, err));
                }
            }
            None
        });
    let failed = futures_util::future::join_all(lanes).await;
    match failed.into_iter().flatten().min_by_key(|(index, _)| *index) {
        Some((_, err)) => Err(err),
        None => Ok(()),
    }
}

/// Whether `err` says a queue that `adapted` gave `x-delivery-limit` exists without it, and
/// if so takes that queue back to its `original` arguments, with a warning, so that the next
/// declaration accepts it as it is.
fn keep_as_it_is(adapted: &mut Topology, original: &Topology, err: &Error) -> bool {
    let Error::QueueMismatch {
        queue,
        argument,
        existing,
        declared,
    } = err
    else {
        return false;
    };
    if argument != crate::topology::argument::DELIVERY_LIMIT || existing != "none" {
        return false;
    }
    let Some(original) = original.queues.iter().find(|spec| &spec.name == queue) else {
        return false;
    };
    let Some(spec) = adapted.queues.iter_mut().find(|spec| &spec.name == queue) else {
        return false;
    };
    if spec.arguments == original.arguments {
        // Not the adaptation's doing: the framework asked for this limit itself.
        return false;
    }
    spec.arguments = original.arguments.clone();
    tracing::warn!(
        %queue,
        "the queue exists without x-delivery-limit = {declared}: RabbitMQ 4's default limit of \
         20 applies to it; recreate it, or cover it with a `delivery-limit` policy of -1 (see \
         docs/rabbitmq.md)"
    );
    true
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

/// One declaration: an exchange, a queue, or a binding.
enum Step<'a> {
    Exchange(&'a ExchangeSpec),
    Queue(&'a QueueSpec),
    Binding(&'a BindingSpec),
    ExchangeBinding(&'a ExchangeBindingSpec),
}

impl<'a> Step<'a> {
    /// The steps of `topology`, by kind, in the order the kinds must go.
    fn all(topology: &'a Topology, mode: Declare) -> Vec<Vec<Self>> {
        let mut kinds = vec![
            topology
                .exchanges
                .iter()
                // The default exchange always exists and cannot be declared.
                .filter(|exchange| !exchange.name.is_empty())
                .map(Step::Exchange)
                .collect(),
            topology.queues.iter().map(Step::Queue).collect(),
        ];
        // Bindings cannot be checked passively in AMQP 0-9-1.
        if mode == Declare::Create {
            kinds.push(topology.bindings.iter().map(Step::Binding).collect());
            kinds.push(
                topology
                    .exchange_bindings
                    .iter()
                    .map(Step::ExchangeBinding)
                    .collect(),
            );
        }
        kinds
    }

    async fn run(&self, channel: &lapin::Channel, mode: Declare) -> Result<()> {
        match self {
            Step::Exchange(exchange) => {
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
            Step::Queue(queue) => {
                let name = convert::short("queue", &queue.name)?;
                for &passive in passive_steps(mode) {
                    let arguments = if passive {
                        FieldTable::default()
                    } else {
                        convert::headers_to_amqp(queue.arguments.clone())?
                    };
                    channel
                        .queue_declare(name.clone(), queue_options(passive), arguments)
                        .await
                        .map_err(|err| error_map::map(&err, Subject::Queue(&queue.name)))?;
                }
            }
            Step::Binding(binding) => {
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
            Step::ExchangeBinding(binding) => {
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
}

/// How every queue of a topology is declared: durable, neither exclusive nor auto-delete.
/// Never a transient queue that is not exclusive, which RabbitMQ 4 deprecates
/// (`transient_nonexcl_queues`) and refuses where that feature is denied.
pub(super) fn queue_options(passive: bool) -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
    }
}

/// How many ready messages `queue` holds: a passive declare's message count.
pub(super) async fn message_count(link: &Link, queue: &str) -> Result<u64> {
    Ok(queue_stats(link, queue).await?.ready)
}

/// Ready messages and consumers of `queue`, by a passive declare.
pub(super) async fn queue_stats(link: &Link, queue: &str) -> Result<super::super::QueueStats> {
    let name = convert::short("queue", queue)?;
    let channel = link.channel().await?;
    let declared = channel
        .queue_declare(name, queue_options(true), FieldTable::default())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerVersion;
    use crate::topology::{QueueSpec, argument};

    fn topology() -> Topology {
        let quorum = || crate::Headers::from_iter([(argument::QUEUE_TYPE, "quorum")]);
        let mut work = quorum();
        work.insert(argument::DELIVERY_LIMIT, 10_i64);
        work.insert(argument::DEAD_LETTER_EXCHANGE, "");
        Topology {
            queues: vec![
                QueueSpec {
                    name: "q".to_owned(),
                    arguments: work,
                },
                QueueSpec {
                    name: "q.err".to_owned(),
                    arguments: quorum(),
                },
            ],
            ..Topology::default()
        }
    }

    fn mismatch(queue: &str, existing: &str, declared: &str) -> Error {
        Error::QueueMismatch {
            queue: queue.to_owned(),
            argument: argument::DELIVERY_LIMIT.to_owned(),
            existing: existing.to_owned(),
            declared: declared.to_owned(),
        }
    }

    #[test]
    fn an_error_queue_made_before_the_unlimited_limit_is_taken_as_it_is() {
        let original = topology();
        let behaviour = BrokerBehaviour::for_version(Some(BrokerVersion::new(4, 0, 0)));
        let mut adapted = behaviour.adapt(&original).into_owned();
        assert_ne!(adapted, original);
        assert!(keep_as_it_is(
            &mut adapted,
            &original,
            &mismatch("q.err", "none", "-1")
        ));
        assert_eq!(
            adapted, original,
            "the error queue is declared as it exists"
        );
        // Anything else is the mismatch it always was.
        let mut adapted = behaviour.adapt(&original).into_owned();
        assert!(!keep_as_it_is(
            &mut adapted,
            &original,
            &mismatch("q.err", "5", "-1")
        ));
        assert!(!keep_as_it_is(
            &mut adapted,
            &original,
            &mismatch("q", "none", "10")
        ));
        let other = Error::QueueMismatch {
            queue: "q.err".to_owned(),
            argument: argument::QUEUE_TYPE.to_owned(),
            existing: "classic".to_owned(),
            declared: "quorum".to_owned(),
        };
        assert!(!keep_as_it_is(&mut adapted, &original, &other));
        assert_ne!(adapted, original);
    }
}
