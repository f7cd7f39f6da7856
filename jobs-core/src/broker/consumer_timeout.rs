//! The broker's consumer timeout: a delivery held unacked longer than it makes RabbitMQ close
//! the consumer's channel, and every delivery on it goes back to the queue. A job whose handler
//! may run that long would have its channel closed under it, its job run again elsewhere, and
//! every other job on the channel with it: refused at startup instead.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::settings::JobSettings;
use crate::topology::{Topology, argument};

/// RabbitMQ's default consumer timeout, 30 minutes, from 3.8.15 and on every 4.x. The
/// broker does not say its own in the connection's properties: a worker whose broker sets
/// `consumer_timeout` otherwise is told with
/// [`EngineBuilder::broker_consumer_timeout`](crate::engine::EngineBuilder::broker_consumer_timeout).
pub const DEFAULT_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Checks every job's timeout against the consumer timeout of its queue: the queue's own
/// `x-consumer-timeout` when the topology declares one, otherwise `broker`.
///
/// # Errors
///
/// [`Error::ConsumerTimeout`] for the first job whose timeout is at or above it.
pub(crate) fn check(jobs: &[JobSettings], topology: &Topology, broker: Duration) -> Result<()> {
    for settings in jobs {
        let job = settings.job();
        check_one(
            job.name(),
            job.queue(),
            settings.timeout(),
            topology,
            broker,
        )?;
    }
    Ok(())
}

/// [`check`] for one job.
fn check_one(
    job: &'static str,
    queue: &str,
    timeout: Duration,
    topology: &Topology,
    broker: Duration,
) -> Result<()> {
    let declared = topology
        .queues
        .iter()
        .find(|spec| spec.name == queue)
        .and_then(|spec| spec.arguments.get(argument::CONSUMER_TIMEOUT))
        .and_then(crate::HeaderValue::as_i64)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis);
    let (consumer_timeout, origin) = match declared {
        Some(declared) => (declared, "the queue's x-consumer-timeout"),
        None => (broker, "the broker's consumer timeout"),
    };
    if timeout >= consumer_timeout {
        return Err(Error::ConsumerTimeout {
            job,
            timeout,
            consumer_timeout,
            origin,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::QueueSpec;

    const MINUTE: Duration = Duration::from_secs(60);

    fn with_queue(arguments: crate::Headers) -> Topology {
        Topology {
            queues: vec![QueueSpec {
                name: "ct.queue".to_owned(),
                arguments,
            }],
            ..Topology::default()
        }
    }

    #[test]
    fn a_timeout_at_or_above_the_consumer_timeout_is_refused_naming_both() {
        let topology = with_queue(crate::Headers::new());
        let check = |timeout, broker| check_one("slow", "ct.queue", timeout, &topology, broker);
        assert!(check(29 * MINUTE, DEFAULT_CONSUMER_TIMEOUT).is_ok());
        for timeout in [30 * MINUTE, 31 * MINUTE] {
            let err = check(timeout, DEFAULT_CONSUMER_TIMEOUT).unwrap_err();
            let Error::ConsumerTimeout {
                job,
                timeout: got,
                consumer_timeout,
                ..
            } = &err
            else {
                panic!("{err:?}");
            };
            assert_eq!(
                (*job, *got, *consumer_timeout),
                ("slow", timeout, DEFAULT_CONSUMER_TIMEOUT)
            );
            let text = err.to_string();
            assert!(text.contains("`slow`"), "{text}");
            assert!(text.contains(&format!("{timeout:?}")), "{text}");
            assert!(text.contains("1800s"), "{text}");
        }
        // An operator's longer broker setting lets it through.
        assert!(check(31 * MINUTE, 60 * MINUTE).is_ok());
    }

    #[test]
    fn a_declared_x_consumer_timeout_wins_over_the_broker_setting() {
        let mut arguments = crate::Headers::new();
        arguments.insert(argument::CONSUMER_TIMEOUT, 60_000_i64);
        let topology = with_queue(arguments);
        let check = |timeout| {
            check_one(
                "slow",
                "ct.queue",
                timeout,
                &topology,
                DEFAULT_CONSUMER_TIMEOUT,
            )
        };
        let err = check(Duration::from_secs(90)).unwrap_err();
        assert!(err.to_string().contains("x-consumer-timeout"), "{err}");
        assert!(err.to_string().contains("60s"), "{err}");
        assert!(check(Duration::from_secs(59)).is_ok());
    }
}
