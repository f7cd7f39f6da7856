//! Shrinking a failing scenario: smaller variants are tried, biggest cuts first, and the first
//! that still fails replaces it, until none does or the budget of runs is spent.
//!
//! On RabbitMQ a run takes seconds, so the budget is small and the cuts are coarse: drop an
//! operation; drop a job's delay or its last step; make a step `ok`, or a failing one `retry`;
//! make an abrupt restart graceful; halve a pause.

use std::time::Duration;

use super::scenario::{Op, Restart, Scenario};
use super::script::Step;

/// What shrinking ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The smallest scenario found that still fails.
    pub scenario: Scenario,
    /// How many candidate runs it took.
    pub runs: usize,
}

/// Shrinks `scenario`, which `fails`, trying at most `budget` candidates.
pub fn shrink(
    scenario: &Scenario,
    budget: usize,
    mut fails: impl FnMut(&Scenario) -> bool,
) -> Shrunk {
    let mut current = scenario.clone();
    let mut runs = 0;
    'smaller: loop {
        for candidate in candidates(&current) {
            if runs == budget {
                break 'smaller;
            }
            runs += 1;
            if fails(&candidate) {
                current = candidate;
                continue 'smaller;
            }
        }
        break;
    }
    Shrunk {
        scenario: current,
        runs,
    }
}

/// The variants of `scenario` one cut smaller, biggest cuts first; each keeps a job.
#[must_use]
pub fn candidates(scenario: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let with = |index: usize, op: Option<Op>| {
        let mut ops = scenario.ops.clone();
        match op {
            Some(op) => ops[index] = op,
            None => {
                ops.remove(index);
            }
        }
        Scenario { ops }
    };
    for index in 0..scenario.ops.len() {
        let smaller = with(index, None);
        if smaller.job_count() > 0 {
            out.push(smaller);
        }
    }
    for (index, op) in scenario.ops.iter().enumerate() {
        match op {
            Op::Enqueue(spec) => {
                if spec.delay.is_some() {
                    let mut spec = spec.clone();
                    spec.delay = None;
                    out.push(with(index, Some(Op::Enqueue(spec))));
                }
                if !spec.steps.is_empty() {
                    let mut shorter = spec.clone();
                    shorter.steps.pop();
                    out.push(with(index, Some(Op::Enqueue(shorter))));
                }
                for (step, &was) in spec.steps.iter().enumerate() {
                    // `ok` is the plainest step, and `retry` the plainest failure.
                    let plainer = match was {
                        Step::Ok => &[][..],
                        Step::Retry => &[Step::Ok][..],
                        _ => &[Step::Ok, Step::Retry][..],
                    };
                    for &instead in plainer {
                        let mut plainer = spec.clone();
                        plainer.steps[step] = instead;
                        out.push(with(index, Some(Op::Enqueue(plainer))));
                    }
                }
            }
            Op::Restart(Restart::Abrupt) => {
                out.push(with(index, Some(Op::Restart(Restart::Graceful))));
            }
            Op::Pause(pause) if *pause >= Duration::from_millis(100) => {
                out.push(with(index, Some(Op::Pause(*pause / 2))));
            }
            Op::Pause(_) | Op::Restart(Restart::Graceful) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_needing_one_job_and_one_restart_shrinks_to_them() {
        let scenario: Scenario =
            "enqueue quorum ok; pause 300ms; enqueue classic retry,panic delay 1s; \
                                  restart abrupt; enqueue quorum timeout; restart graceful"
                .parse()
                .unwrap();
        // Fails whenever a classic job with a panic comes before an abrupt restart.
        let fails = |s: &Scenario| {
            let text = s.to_string();
            let panic = text
                .find("classic")
                .is_some_and(|c| text[c..].contains("panic"));
            let restart = text.find("restart abrupt");
            panic && restart.is_some_and(|r| text.find("classic").is_some_and(|c| c < r))
        };
        let shrunk = shrink(&scenario, 1000, fails);
        assert_eq!(
            shrunk.scenario.to_string(),
            "enqueue classic ok,panic; restart abrupt"
        );
    }
}
