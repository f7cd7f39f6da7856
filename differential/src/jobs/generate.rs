//! Random scenarios from a seed: the same seed gives the same scenario, on every machine.
//!
//! The generator keeps RabbitMQ runs short (pauses up to 300 ms, delays of 1 or 2 s, at most
//! three restarts) while still putting restarts where jobs are in flight: mid-handler, in a
//! retry queue, or in the delay cascade.

use std::time::Duration;

use super::handlers::JobKind;
use super::scenario::{JobSpec, Op, Restart, Scenario};
use super::script::Step;

/// The most restarts a scenario has.
const MAX_RESTARTS: usize = 3;

/// `SplitMix64`: small, seedable, and the same everywhere; no dependency for it.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` above 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// One of `choices`, each as likely as its weight.
    pub fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> Option<T> {
        let total: u64 = choices.iter().map(|(_, weight)| weight).sum();
        let mut pick = self.below(total);
        for &(choice, weight) in choices {
            if pick < weight {
                return Some(choice);
            }
            pick -= weight;
        }
        None
    }
}

/// The seed of case `index` of a run started from `base`: case 0's is `base` itself, so a
/// printed case seed, given as the base of a one-case run, reruns that case.
#[must_use]
pub fn case_seed(base: u64, index: u64) -> u64 {
    base.wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

#[derive(Clone, Copy)]
enum Kind {
    Enqueue,
    Pause,
    Restart,
}

/// The scenario of `seed`: 2 to 12 operations, at least one of them an enqueue.
#[must_use]
pub fn generate(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let len = 2 + rng.below(11);
    let mut ops = Vec::new();
    let mut restarts = 0;
    for _ in 0..len {
        let kind = rng
            .weighted(&[(Kind::Enqueue, 55), (Kind::Pause, 27), (Kind::Restart, 18)])
            .unwrap_or(Kind::Enqueue);
        let op = match kind {
            Kind::Restart if restarts < MAX_RESTARTS => {
                restarts += 1;
                let restart = rng
                    .weighted(&[(Restart::Graceful, 1), (Restart::Abrupt, 1)])
                    .unwrap_or(Restart::Graceful);
                Op::Restart(restart)
            }
            Kind::Pause => Op::Pause(Duration::from_millis(50 * (1 + rng.below(6)))),
            Kind::Enqueue | Kind::Restart => Op::Enqueue(job(&mut rng)),
        };
        ops.push(op);
    }
    if !ops.iter().any(|op| matches!(op, Op::Enqueue(_))) {
        ops.insert(0, Op::Enqueue(job(&mut rng)));
    }
    Scenario { ops }
}

fn job(rng: &mut Rng) -> JobSpec {
    let kind = rng
        .weighted(&[(JobKind::Quorum, 3), (JobKind::Classic, 2)])
        .unwrap_or(JobKind::Quorum);
    let steps = (0..rng.below(5))
        .map(|_| {
            rng.weighted(&[
                (Step::Ok, 12),
                (Step::Slow, 10),
                (Step::Retry, 26),
                (Step::Later, 8),
                (Step::Fatal, 10),
                (Step::Panic, 14),
                (Step::Timeout, 20),
            ])
            .unwrap_or(Step::Ok)
        })
        .collect();
    let delay = rng
        .weighted(&[(0, 16), (1, 3), (2, 1)])
        .filter(|&secs| secs > 0)
        .map(Duration::from_secs);
    JobSpec { kind, steps, delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_scenario_and_case_zero_is_the_base() {
        assert_eq!(generate(7), generate(7));
        assert_ne!(generate(7), generate(8));
        assert_eq!(case_seed(42, 0), 42);
        for seed in 0..200 {
            let scenario = generate(seed);
            assert!(scenario.job_count() >= 1);
            let text = scenario.to_string();
            assert_eq!(text.parse::<Scenario>().unwrap(), scenario, "{text}");
        }
    }
}
