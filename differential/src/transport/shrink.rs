//! Shrinking: from a failing scenario, smaller ones, tried until none of them fails.
//!
//! Greedy, as delta debugging does it: the first smaller candidate that still fails replaces
//! the scenario, and the candidates of the new one are tried, until none fails or the budget
//! of runs is spent. Candidates, largest cut first: chunks of steps, whole queues and
//! exchanges with what names them, single bindings, then one queue feature or one step
//! detail at a time. Every candidate keeps the generator's rules ([`valid`]).

use std::collections::BTreeMap;

use super::generator::{
    keep_at_least_once_away_from_full_queues, keep_expiries_from_meeting,
    keep_expiry_away_from_ttl_queues,
};
use super::scenario::{Key, Scenario, Step};

/// Shrinks `scenario` while `fails` says a candidate still fails, trying at most `budget`
/// candidates; returns the smallest failing scenario found.
pub async fn shrink(
    scenario: Scenario,
    budget: usize,
    mut fails: impl AsyncFnMut(&Scenario) -> bool,
) -> Scenario {
    let mut current = scenario;
    let mut tried = 0;
    'outer: loop {
        for candidate in candidates(&current) {
            if tried >= budget {
                break 'outer;
            }
            tried += 1;
            if fails(&candidate).await {
                current = candidate;
                continue 'outer;
            }
        }
        break;
    }
    current
}

/// Smaller scenarios than `scenario`, largest cuts first, each [`valid`].
#[must_use]
pub fn candidates(scenario: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let steps = scenario.steps.len();
    let mut chunk = steps.div_ceil(2);
    while chunk >= 1 {
        let mut start = 0;
        while start < steps {
            let mut smaller = scenario.clone();
            smaller.steps.drain(start..(start + chunk).min(steps));
            out.push(smaller);
            start += chunk;
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    for queue in &scenario.queues {
        out.push(without_queue(scenario, &queue.name));
    }
    for exchange in &scenario.exchanges {
        out.push(without_exchange(scenario, &exchange.name));
    }
    for index in 0..scenario.bindings.len() {
        let mut smaller = scenario.clone();
        smaller.bindings.remove(index);
        out.push(smaller);
    }
    for index in 0..scenario.exchange_bindings.len() {
        let mut smaller = scenario.clone();
        smaller.exchange_bindings.remove(index);
        out.push(smaller);
    }
    for index in 0..scenario.queues.len() {
        out.extend(simpler_queue(scenario, index));
    }
    for index in 0..steps {
        out.extend(simpler_step(scenario, index));
    }
    out.into_iter()
        .map(|mut candidate| {
            keep_expiry_away_from_ttl_queues(&mut candidate);
            keep_expiries_from_meeting(&mut candidate);
            keep_at_least_once_away_from_full_queues(&mut candidate);
            candidate
        })
        .filter(|candidate| candidate != scenario && valid(candidate))
        .collect()
}

/// Whether `scenario` keeps the generator's rules: only a quorum single-active-consumer queue
/// ever has two consumers taking deliveries at once, none of those has a TTL, and no quorum
/// queue has a length limit with `reject-publish` (see the generator's notes on RabbitMQ
/// 3.10.8).
#[must_use]
pub fn valid(scenario: &Scenario) -> bool {
    if scenario.queues.iter().any(|q| {
        q.quorum
            && ((q.single_active && q.ttl_ticks.is_some())
                || q.max_length
                    .is_some_and(|limit| limit.reject_publish || q.at_least_once))
    }) {
        return false;
    }
    // Per consumer: its queue, and whether it still takes deliveries.
    let mut consumers: BTreeMap<u32, (String, bool)> = BTreeMap::new();
    for step in &scenario.steps {
        match step {
            Step::Consume {
                consumer, queue, ..
            } => {
                if consumers.contains_key(consumer) {
                    return false;
                }
                let single = scenario
                    .queue(queue)
                    .is_some_and(|q| q.single_active && q.quorum);
                let taking = consumers
                    .values()
                    .filter(|(q, taking)| q == queue && *taking)
                    .count();
                if !single && taking > 0 {
                    return false;
                }
                consumers.insert(*consumer, (queue.clone(), true));
            }
            Step::Cancel { consumer } | Step::Close { consumer } => {
                if let Some(state) = consumers.get_mut(consumer) {
                    state.1 = false;
                }
            }
            _ => {}
        }
    }
    true
}

fn without_queue(scenario: &Scenario, name: &str) -> Scenario {
    let mut smaller = scenario.clone();
    smaller.queues.retain(|queue| queue.name != name);
    smaller.bindings.retain(|binding| binding.queue != name);
    let gone: Vec<u32> = smaller
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Consume {
                consumer, queue, ..
            } if queue == name => Some(*consumer),
            _ => None,
        })
        .collect();
    smaller.steps.retain(|step| {
        step.consumer()
            .is_none_or(|consumer| !gone.contains(&consumer))
    });
    smaller
}

fn without_exchange(scenario: &Scenario, name: &str) -> Scenario {
    let mut smaller = scenario.clone();
    smaller.exchanges.retain(|exchange| exchange.name != name);
    smaller.bindings.retain(|binding| binding.exchange != name);
    smaller
        .exchange_bindings
        .retain(|binding| binding.source != name && binding.destination != name);
    for queue in &mut smaller.queues {
        if queue
            .dead_letter
            .as_ref()
            .is_some_and(|target| target.exchange.as_deref() == Some(name))
        {
            queue.dead_letter = None;
            queue.at_least_once = false;
        }
    }
    smaller.steps.retain(
        |step| !matches!(step, Step::Publish { exchange: Some(exchange), .. } if exchange == name),
    );
    smaller
}

/// `scenario` with one feature of queue `index` taken away, one candidate per feature.
fn simpler_queue(scenario: &Scenario, index: usize) -> Vec<Scenario> {
    let queue = &scenario.queues[index];
    let mut out = Vec::new();
    let mut change = |edit: &dyn Fn(&mut super::scenario::QueueDecl)| {
        let mut smaller = scenario.clone();
        edit(&mut smaller.queues[index]);
        out.push(smaller);
    };
    if queue.ttl_ticks.is_some() {
        change(&|q| q.ttl_ticks = None);
    }
    if queue.ttl_ticks.is_some_and(|ticks| ticks > 0) {
        change(&|q| q.ttl_ticks = Some(0));
    }
    if queue.dead_letter.is_some() {
        change(&|q| {
            q.dead_letter = None;
            q.at_least_once = false;
        });
    }
    if queue
        .dead_letter
        .as_ref()
        .is_some_and(|target| target.routing_key.is_some())
    {
        change(&|q| {
            if let Some(target) = &mut q.dead_letter {
                target.routing_key = None;
            }
        });
    }
    if queue.delivery_limit.is_some() {
        change(&|q| q.delivery_limit = None);
    }
    if queue.max_length.is_some() {
        change(&|q| q.max_length = None);
    }
    if queue.single_active {
        change(&|q| q.single_active = false);
    }
    if queue.at_least_once {
        change(&|q| q.at_least_once = false);
    }
    if queue.quorum {
        change(&|q| {
            q.quorum = false;
            q.delivery_limit = None;
            q.at_least_once = false;
        });
    }
    out
}

/// `scenario` with one detail of step `index` made simpler, one candidate per detail.
fn simpler_step(scenario: &Scenario, index: usize) -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut change = |edit: &dyn Fn(&mut Step)| {
        let mut smaller = scenario.clone();
        edit(&mut smaller.steps[index]);
        out.push(smaller);
    };
    match &scenario.steps[index] {
        Step::Publish {
            mandatory,
            headers,
            key,
            ..
        } => {
            if *mandatory {
                change(&|step| {
                    if let Step::Publish { mandatory, .. } = step {
                        *mandatory = false;
                    }
                });
            }
            if !headers.is_empty() {
                change(&|step| {
                    if let Step::Publish { headers, .. } = step {
                        headers.clear();
                    }
                });
            }
            if matches!(key, Key::Text(text) if !text.is_empty()) {
                change(&|step| {
                    if let Step::Publish { key, .. } = step {
                        *key = Key::Text(String::new());
                    }
                });
            }
        }
        Step::Consume { prefetch, .. } if *prefetch != 1 => change(&|step| {
            if let Step::Consume { prefetch, .. } = step {
                *prefetch = 1;
            }
        }),
        Step::Ack { pick, multiple, .. } | Step::Nack { pick, multiple, .. } => {
            if *multiple {
                change(&|step| {
                    if let Step::Ack { multiple, .. } | Step::Nack { multiple, .. } = step {
                        *multiple = false;
                    }
                });
            }
            if *pick != 0 {
                change(&|step| {
                    if let Step::Ack { pick, .. } | Step::Nack { pick, .. } = step {
                        *pick = 0;
                    }
                });
            }
        }
        Step::Reject { pick, .. } if *pick != 0 => change(&|step| {
            if let Step::Reject { pick, .. } = step {
                *pick = 0;
            }
        }),
        Step::Advance { ticks } if *ticks > 1 => change(&|step| {
            if let Step::Advance { ticks } = step {
                *ticks = 1;
            }
        }),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::generator::generate;

    #[test]
    fn every_candidate_is_valid_and_different() {
        for seed in 0..100 {
            let scenario = generate(seed);
            assert!(
                valid(&scenario),
                "seed {seed} generates an invalid scenario"
            );
            for candidate in candidates(&scenario) {
                assert!(valid(&candidate));
                assert_ne!(candidate, scenario);
            }
        }
    }

    #[tokio::test]
    async fn shrinking_finds_the_one_step_that_fails() {
        let scenario = generate(3);
        let culprit = Step::Advance { ticks: 1 };
        let mut failing = scenario.clone();
        failing.steps.push(culprit.clone());
        let shrunk = shrink(failing, 1000, async |candidate: &Scenario| {
            candidate.steps.contains(&culprit)
        })
        .await;
        assert_eq!(shrunk.steps, vec![culprit]);
    }
}
