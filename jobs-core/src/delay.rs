//! Delayed delivery on the broker alone: a cascade of delay levels that every job shares.
//!
//! Level `L` (0 to 27) is a durable quorum queue `jobs.delay.L` whose `x-message-ttl` is 2^L
//! seconds, and a topic exchange of the same name. A delayed message's routing key spells its
//! delay in binary, one word per level from the highest, then the name of the queue it is
//! for: a delay of 5 s to `uploads.oss` is `0.0.…0.1.0.1.uploads.oss`. The exchange of level
//! `L` routes a key whose level-`L` word is `1` into its queue, and one whose word is `0`
//! straight on to the exchange of level `L - 1` (an exchange-to-exchange binding). When a
//! message's TTL passes, its queue dead-letters it, with its key, into the exchange of the
//! level below; after level 0 the exchange `jobs.delay.deliver` routes it by the queue name
//! to the job's queue.
//!
//! So a delay of `d` seconds waits in popcount(`d`) queues, each holding messages of one TTL
//! only: no message waits behind a longer one (a queue expires from its head), no broker
//! plugin is needed, and the levels are quorum queues dead-lettering at least once, so a
//! broker crash mid-wait loses nothing. Delays run from 0 to [`MAX_DELAY`] (2^28 − 1 s, eight
//! and a half years), to the second: a delay is rounded up to whole seconds.
//!
//! A message that passed a level once carries an `x-death` entry for it; RabbitMQ drops a
//! message dead-lettered again into a queue it was dead-lettered from (cycle detection), so
//! whatever enters the cascade leaves its dead-lettering headers behind
//! ([`strip_death_headers`]). This is the flaw that made Celery's copy of this scheme drop
//! messages when quorum queues, delays and retries combined.

use std::time::Duration;

use crate::envelope::{Headers, header};
use crate::error::{Error, Result};
use crate::job::{ExchangeKind, QueueType};
use crate::topology::{
    BindingSpec, ExchangeBindingSpec, ExchangeSpec, QueueSpec, Topology, argument,
};

/// The number of levels: delays up to 2^28 − 1 seconds.
pub const LEVELS: u32 = 28;

/// The longest delay: 2^28 − 1 seconds (about 8.5 years).
pub const MAX_DELAY: Duration = Duration::from_secs((1 << LEVELS) - 1);

/// The exchange after the last level, which routes each message to its job's queue.
pub const DELIVER_EXCHANGE: &str = "jobs.delay.deliver";

/// The queue and exchange of level `level`: `jobs.delay.L`.
#[must_use]
pub fn level_name(level: u32) -> String {
    format!("jobs.delay.{level}")
}

/// Removes the headers RabbitMQ adds when it dead-letters a message, and a quorum queue's
/// delivery count ([`header::BROKER`]), so that a message entering the cascade again is not
/// taken for a dead-letter cycle and dropped.
pub fn strip_death_headers(headers: &mut Headers) {
    if !headers.is_empty() {
        headers.retain(|name, _| !header::BROKER.contains(&name));
    }
}

/// A delay in whole seconds, rounded up (never earlier than asked).
///
/// # Errors
///
/// [`Error::Config`] for a delay over [`MAX_DELAY`].
pub fn seconds(delay: Duration) -> Result<u64> {
    let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    if whole > MAX_DELAY.as_secs() {
        return Err(Error::Config(format!(
            "a delay of {delay:?} is over the longest the cascade holds, {} s",
            MAX_DELAY.as_secs()
        )));
    }
    Ok(whole)
}

/// Where a message delayed by `seconds` for `queue` is published: the exchange of its highest
/// level (the levels above would only pass it on), and the routing key that spells its delay.
///
/// # Errors
///
/// [`Error::Config`] for a delay over [`MAX_DELAY`] or a key over AMQP's 255 bytes.
pub fn route(seconds: u64, queue: &str) -> Result<(String, String)> {
    if seconds > MAX_DELAY.as_secs() {
        return Err(Error::Config(format!(
            "a delay of {seconds} s is over the longest the cascade holds, {} s",
            MAX_DELAY.as_secs()
        )));
    }
    let mut key = String::with_capacity(2 * LEVELS as usize + queue.len());
    for level in (0..LEVELS).rev() {
        key.push(if seconds >> level & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(queue);
    if key.len() > 255 {
        return Err(Error::Config(format!(
            "queue `{queue}` is too long to be delayed: its delay routing key takes {} bytes, \
             more than AMQP's 255",
            key.len()
        )));
    }
    let exchange = match seconds.checked_ilog2() {
        Some(top) => level_name(top),
        None => DELIVER_EXCHANGE.to_owned(),
    };
    Ok((exchange, key))
}

/// The binding key of level `level` that matches `bit` in that level's word.
fn level_pattern(level: u32, bit: char) -> String {
    let mut pattern = "*.".repeat((LEVELS - 1 - level) as usize);
    pattern.push(bit);
    pattern.push_str(".#");
    pattern
}

/// The binding of `queue` to the delivery exchange: the words of every level, then the name.
#[must_use]
pub fn deliver_binding(queue: &str) -> BindingSpec {
    BindingSpec {
        queue: queue.to_owned(),
        exchange: DELIVER_EXCHANGE.to_owned(),
        routing_key: format!("{}{queue}", "*.".repeat(LEVELS as usize)),
        arguments: Headers::new(),
    }
}

/// The cascade: every level's exchange and queue, their bindings, and the delivery exchange.
/// Jobs add their own [`deliver_binding`].
#[must_use]
pub fn cascade() -> Topology {
    let mut topology = Topology::default();
    topology.exchanges.push(ExchangeSpec {
        name: DELIVER_EXCHANGE.to_owned(),
        kind: ExchangeKind::Topic,
    });
    for level in 0..LEVELS {
        let name = level_name(level);
        let below = match level.checked_sub(1) {
            Some(below) => level_name(below),
            None => DELIVER_EXCHANGE.to_owned(),
        };
        topology.exchanges.push(ExchangeSpec {
            name: name.clone(),
            kind: ExchangeKind::Topic,
        });
        let ttl = i64::try_from(Duration::from_secs(1 << level).as_millis()).unwrap_or(i64::MAX);
        let mut arguments =
            Headers::from_iter([(argument::QUEUE_TYPE, QueueType::Quorum.as_str())]);
        arguments.insert(argument::MESSAGE_TTL, ttl);
        arguments.insert(argument::DEAD_LETTER_EXCHANGE, below.clone());
        arguments.insert(argument::DEAD_LETTER_STRATEGY, "at-least-once");
        arguments.insert(argument::OVERFLOW, "reject-publish");
        topology.queues.push(QueueSpec {
            name: name.clone(),
            arguments,
        });
        topology.bindings.push(BindingSpec {
            queue: name.clone(),
            exchange: name.clone(),
            routing_key: level_pattern(level, '1'),
            arguments: Headers::new(),
        });
        topology.exchange_bindings.push(ExchangeBindingSpec {
            destination: below,
            source: name,
            routing_key: level_pattern(level, '0'),
            arguments: Headers::new(),
        });
    }
    topology
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_spelled_from_the_highest_level_and_enters_at_its_top_bit() {
        let (exchange, key) = route(5, "uploads.oss").unwrap();
        assert_eq!(exchange, "jobs.delay.2");
        assert_eq!(key, format!("{}1.0.1.uploads.oss", "0.".repeat(25)));
        let (exchange, key) = route(0, "q").unwrap();
        assert_eq!(exchange, DELIVER_EXCHANGE);
        assert_eq!(key, format!("{}q", "0.".repeat(28)));
        let (exchange, _) = route(1 << 27, "q").unwrap();
        assert_eq!(exchange, "jobs.delay.27");
        assert!(route(1 << 28, "q").is_err());
    }

    #[test]
    fn delays_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::ZERO).unwrap(), 0);
        assert_eq!(seconds(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(seconds(Duration::from_millis(1000)).unwrap(), 1);
        assert_eq!(seconds(Duration::from_millis(1001)).unwrap(), 2);
        assert_eq!(seconds(MAX_DELAY).unwrap(), (1 << 28) - 1);
        assert!(seconds(MAX_DELAY + Duration::from_millis(1)).is_err());
    }

    #[test]
    fn each_level_matches_its_own_word() {
        assert_eq!(level_pattern(27, '1'), "1.#");
        assert_eq!(level_pattern(0, '0'), format!("{}0.#", "*.".repeat(27)));
        assert_eq!(
            deliver_binding("a.b").routing_key,
            format!("{}a.b", "*.".repeat(28))
        );
    }

    #[test]
    fn the_cascade_has_a_queue_and_an_exchange_per_level() {
        let cascade = cascade();
        assert_eq!(cascade.queues.len(), LEVELS as usize);
        assert_eq!(cascade.exchanges.len(), LEVELS as usize + 1);
        assert_eq!(cascade.bindings.len(), LEVELS as usize);
        assert_eq!(cascade.exchange_bindings.len(), LEVELS as usize);
        let level0 = &cascade.queues[0];
        assert_eq!(
            level0.arguments.get_str(argument::DEAD_LETTER_EXCHANGE),
            Some(DELIVER_EXCHANGE)
        );
    }

    #[test]
    fn death_headers_are_stripped_and_the_rest_kept() {
        let mut headers = Headers::from_iter([("x-death", "…"), ("x-jobs-attempt", "2")]);
        headers.insert("x-first-death-queue", "q");
        strip_death_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.get("x-jobs-attempt").is_some());
    }
}
