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
        if mem != rmq {
            found.push(format!(
                "at the end, queue {queue} holds, head first:\n  in memory:   {}\n  on RabbitMQ: {}",
                list(mem),
                list(rmq)
            ));
        }
    }
    found
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
