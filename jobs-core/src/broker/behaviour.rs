//! What the framework does differently per broker version: a pure function of the version,
//! tested over a matrix of versions.

use std::borrow::Cow;

use super::BrokerVersion;
use crate::envelope::HeaderValue;
use crate::job::QueueType;
use crate::topology::{Topology, argument};

/// From this version quorum queues have a delivery limit (20) even without an argument, and
/// a limit of -1, as a queue argument, turns it off.
pub(crate) const DEFAULT_LIMIT_FROM: BrokerVersion = BrokerVersion::new(4, 0, 0);
/// From this version `basic.nack` with requeue no longer counts toward a quorum queue's
/// delivery limit, and `basic.reject` with requeue does.
pub(crate) const NACK_UNCOUNTED_FROM: BrokerVersion = BrokerVersion::new(4, 3, 0);

/// How a delivery is given back to its queue as failed, so that a quorum queue counts it
/// toward its delivery limit: the crash-loop backstop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedReturn {
    /// `basic.nack` with requeue: counted by RabbitMQ before 4.3.
    Nack,
    /// `basic.reject` with requeue: counted by every version; on 4.3 and later the only one
    /// of the two that counts.
    Reject,
}

/// What the framework does on a broker: decided once from its version by
/// [`BrokerBehaviour::for_version`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerBehaviour {
    /// The version it was decided from; `None` when the broker did not say, or said
    /// something that does not parse: then RabbitMQ 3 behaviour is assumed.
    pub version: Option<BrokerVersion>,
    /// Whether quorum queues that dead-letter nowhere (error queues, a schedule's queues, a
    /// pause marker) are declared with `x-delivery-limit = -1`: on RabbitMQ 4 they would
    /// otherwise have the default limit of 20 and drop a message returned that often.
    pub unlimited_dead_ends: bool,
    /// How a delivery goes back as failed.
    pub failed_return: FailedReturn,
}

impl BrokerBehaviour {
    /// The behaviour for a broker of `version`: RabbitMQ 3's, exactly as before versions were
    /// read, for `None` and anything before 4.0.
    #[must_use]
    pub fn for_version(version: Option<BrokerVersion>) -> Self {
        let at_least = |from: BrokerVersion| version.is_some_and(|version| version >= from);
        Self {
            version,
            unlimited_dead_ends: at_least(DEFAULT_LIMIT_FROM),
            failed_return: if at_least(NACK_UNCOUNTED_FROM) {
                FailedReturn::Reject
            } else {
                FailedReturn::Nack
            },
        }
    }

    /// `topology` as this broker needs it declared: on RabbitMQ 4, every quorum queue that
    /// has no delivery limit of its own and no dead-letter exchange gets
    /// `x-delivery-limit = -1`. Such a queue's messages have nowhere to go: the broker's
    /// default limit would drop them. On RabbitMQ 3 the topology is returned unchanged (a
    /// negative limit there dead-letters at the first return).
    #[must_use]
    pub fn adapt<'a>(&self, topology: &'a Topology) -> Cow<'a, Topology> {
        if !self.unlimited_dead_ends
            || !topology
                .queues
                .iter()
                .any(|queue| is_dead_end(&queue.arguments))
        {
            return Cow::Borrowed(topology);
        }
        let mut adapted = topology.clone();
        for queue in &mut adapted.queues {
            if is_dead_end(&queue.arguments) {
                queue.arguments.insert(argument::DELIVERY_LIMIT, -1_i64);
            }
        }
        Cow::Owned(adapted)
    }
}

impl Default for BrokerBehaviour {
    /// RabbitMQ 3's behaviour: the version unknown.
    fn default() -> Self {
        Self::for_version(None)
    }
}

/// Whether a queue with `arguments` is a quorum queue with no delivery limit set and no
/// dead-letter target.
fn is_dead_end(arguments: &crate::Headers) -> bool {
    arguments.get(argument::QUEUE_TYPE) == Some(&HeaderValue::from(QueueType::Quorum.as_str()))
        && arguments.get(argument::DELIVERY_LIMIT).is_none()
        && arguments.get(argument::DEAD_LETTER_EXCHANGE).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;
    use crate::topology::QueueSpec;

    /// The matrix: each version, what is decided for it.
    const MATRIX: [(Option<&str>, bool, FailedReturn); 7] = [
        (Some("3.10.0"), false, FailedReturn::Nack),
        (Some("3.13.7"), false, FailedReturn::Nack),
        (Some("4.0.0"), true, FailedReturn::Nack),
        (Some("4.1.3"), true, FailedReturn::Nack),
        (Some("4.2.0"), true, FailedReturn::Nack),
        (Some("4.3.0"), true, FailedReturn::Reject),
        (None, false, FailedReturn::Nack),
    ];

    fn behaviour(version: Option<&str>) -> BrokerBehaviour {
        BrokerBehaviour::for_version(version.and_then(BrokerVersion::parse))
    }

    #[test]
    fn each_version_gets_its_behaviour() {
        for (version, unlimited, failed_return) in MATRIX {
            let behaviour = behaviour(version);
            assert_eq!(behaviour.unlimited_dead_ends, unlimited, "{version:?}");
            assert_eq!(behaviour.failed_return, failed_return, "{version:?}");
        }
        assert_eq!(
            behaviour(Some("not a version")),
            BrokerBehaviour::default(),
            "an unparsable version is RabbitMQ 3"
        );
        assert_eq!(
            behaviour(Some("4.3.0-rc.1")).failed_return,
            FailedReturn::Reject
        );
    }

    fn queue(name: &str, arguments: &[(&'static str, HeaderValue)]) -> QueueSpec {
        QueueSpec {
            name: name.to_owned(),
            arguments: arguments.iter().cloned().collect::<Headers>(),
        }
    }

    fn quorum() -> (&'static str, HeaderValue) {
        (argument::QUEUE_TYPE, HeaderValue::from("quorum"))
    }

    #[test]
    fn only_quorum_queues_that_dead_letter_nowhere_get_an_unlimited_limit_and_only_on_4() {
        let topology = Topology {
            queues: vec![
                queue("q.err", &[quorum()]),
                queue(
                    "q",
                    &[
                        quorum(),
                        (argument::DELIVERY_LIMIT, HeaderValue::from(10_i64)),
                        (argument::DEAD_LETTER_EXCHANGE, HeaderValue::from("")),
                    ],
                ),
                queue(
                    "q.retry.1",
                    &[
                        quorum(),
                        (argument::DEAD_LETTER_EXCHANGE, HeaderValue::from("")),
                    ],
                ),
                queue(
                    "classic.err",
                    &[(argument::QUEUE_TYPE, HeaderValue::from("classic"))],
                ),
                queue("untyped", &[]),
            ],
            ..Topology::default()
        };
        for (version, unlimited, _) in MATRIX {
            let adapted = behaviour(version).adapt(&topology);
            let limits: Vec<Option<&HeaderValue>> = adapted
                .queues
                .iter()
                .map(|queue| queue.arguments.get(argument::DELIVERY_LIMIT))
                .collect();
            let err_limit = unlimited.then_some(HeaderValue::from(-1_i64));
            assert_eq!(
                limits,
                [
                    err_limit.as_ref(),
                    Some(&HeaderValue::from(10_i64)),
                    None,
                    None,
                    None
                ],
                "{version:?}"
            );
            if !unlimited {
                assert!(
                    matches!(adapted, Cow::Borrowed(_)),
                    "RabbitMQ 3 declares exactly what it did: {version:?}"
                );
            }
        }
    }
}
