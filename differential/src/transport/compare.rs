//! Comparing two observations of one scenario: every difference, in words, step by step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::observe::{Observation, Seen};

/// The differences between the in-memory run (`memory`) and the RabbitMQ run (`rabbitmq`) of
/// one scenario: empty when they agree.
#[must_use]
pub fn differences(memory: &Observation, rabbitmq: &Observation) -> Vec<String> {
    let mut found = Vec::new();
    let steps = memory.steps.len().max(rabbitmq.steps.len());
    for index in 0..steps {
        let (Some(mem), Some(rmq)) = (memory.steps.get(index), rabbitmq.steps.get(index)) else {
            found.push(format!(
                "step {index}: only one run has it ({} vs {} steps)",
                memory.steps.len(),
                rabbitmq.steps.len()
            ));
            break;
        };
        let at = format!("step {index} ({})", mem.step);
        if mem.outcome != rmq.outcome {
            found.push(format!(
                "{at}: returned {} in memory, {} on RabbitMQ",
                mem.outcome, rmq.outcome
            ));
        }
        compare_deliveries(&at, &mem.deliveries, &rmq.deliveries, &mut found);
        for (queue, counts) in &mem.queues {
            let theirs = rmq.queues.get(queue);
            if theirs != Some(counts) {
                found.push(format!(
                    "{at}: queue {queue} has (ready, consumers) {counts:?} in memory, {theirs:?} \
                     on RabbitMQ"
                ));
            }
        }
    }
    for ((queue, mem), (_, rmq)) in memory.drained.iter().zip(&rabbitmq.drained) {
        if by_sender(mem) != by_sender(rmq) {
            found.push(format!(
                "at the end, queue {queue} holds, head first:\n  in memory:   {}\n  on RabbitMQ: {}",
                list(mem),
                list(rmq)
            ));
        }
    }
    found
}

/// A queue's messages sender by sender, each sender's in order, tags left out (the module
/// docs' rule 7): the client's publishes under `""`, and what each queue dead-lettered
/// under its name, from the newest `x-death` entry.
fn by_sender(seen: &[Seen]) -> BTreeMap<&str, Vec<Seen>> {
    let mut senders: BTreeMap<&str, Vec<Seen>> = BTreeMap::new();
    for message in seen {
        let sender = message
            .headers
            .iter()
            .find(|(name, _)| name == "x-death")
            .and_then(|(_, deaths)| newest_death_queue(deaths))
            .unwrap_or("");
        senders.entry(sender).or_default().push(Seen {
            tag: 0,
            ..message.clone()
        });
    }
    senders
}

/// The queue of the first (newest) entry of a rendered `x-death` array.
fn newest_death_queue(deaths: &str) -> Option<&str> {
    let (_, rest) = deaths.split_once("queue: \"")?;
    rest.split_once('"').map(|(queue, _)| queue)
}

fn compare_deliveries(
    at: &str,
    memory: &BTreeMap<u32, Vec<Seen>>,
    rabbitmq: &BTreeMap<u32, Vec<Seen>>,
    found: &mut Vec<String>,
) {
    let none = Vec::new();
    let consumers: std::collections::BTreeSet<&u32> =
        memory.keys().chain(rabbitmq.keys()).collect();
    for consumer in consumers {
        let mem = memory.get(consumer).unwrap_or(&none);
        let rmq = rabbitmq.get(consumer).unwrap_or(&none);
        if mem != rmq {
            found.push(format!(
                "{at}: c{consumer} received\n  in memory:   {}\n  on RabbitMQ: {}",
                list(mem),
                list(rmq)
            ));
        }
    }
}

fn list(seen: &[Seen]) -> String {
    if seen.is_empty() {
        return "nothing".to_owned();
    }
    let mut out = String::new();
    for (n, one) in seen.iter().enumerate() {
        if n > 0 {
            out.push_str("\n               ");
        }
        let _ = write!(out, "{one}");
    }
    out
}

/// The whole of one run, step by step: what a failing case prints.
#[must_use]
pub fn transcript(observation: &Observation) -> String {
    let mut out = String::new();
    for (index, step) in observation.steps.iter().enumerate() {
        let _ = writeln!(out, "  {index:2}. {} -> {}", step.step, step.outcome);
        for (consumer, seen) in &step.deliveries {
            for one in seen {
                let _ = writeln!(out, "        c{consumer} <- {one}");
            }
        }
    }
    for (queue, seen) in &observation.drained {
        let _ = writeln!(out, "  end: {queue} holds {}", list(seen));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, tag: u64, from: Option<&str>) -> Seen {
        Seen {
            id: id.to_owned(),
            tag,
            redelivered: false,
            exchange: "x0".to_owned(),
            routing_key: String::new(),
            headers: from
                .map(|queue| {
                    (
                        "x-death".to_owned(),
                        format!("[{{count: 1, exchange: \"x0\", queue: \"{queue}\"}}]"),
                    )
                })
                .into_iter()
                .collect(),
        }
    }

    fn drained(messages: Vec<Seen>) -> Observation {
        Observation {
            drained: vec![("q0".to_owned(), messages)],
            ..Observation::default()
        }
    }

    #[test]
    fn a_queue_is_compared_sender_by_sender() {
        let publish_first = drained(vec![seen("m1", 1, None), seen("m0", 2, Some("q1"))]);
        let dead_letter_first = drained(vec![seen("m0", 1, Some("q1")), seen("m1", 2, None)]);
        assert!(differences(&publish_first, &dead_letter_first).is_empty());
        let swapped = drained(vec![seen("m2", 1, Some("q1")), seen("m1", 2, Some("q1"))]);
        let kept = drained(vec![seen("m1", 1, Some("q1")), seen("m2", 2, Some("q1"))]);
        assert_eq!(
            differences(&swapped, &kept).len(),
            1,
            "one sender's order is compared"
        );
        let missing = drained(vec![seen("m1", 1, None)]);
        assert_eq!(differences(&publish_first, &missing).len(), 1);
    }
}
