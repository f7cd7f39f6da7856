//! Comparing two observations of one scenario, job by job, in the form the scenario says
//! each job is compared in.

use std::fmt;

use super::observe::{Compared, Observation};
use super::scenario::{JobSpec, Scenario};

/// One job whose two observations differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The job's number in the scenario (its enqueue's rank, from 0).
    pub job: usize,
    /// The job as the scenario enqueues it.
    pub spec: JobSpec,
    /// The first side's name and what it showed.
    pub left: (&'static str, Compared),
    /// The second side's name and what it showed.
    pub right: (&'static str, Compared),
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.left.0.len().max(self.right.0.len());
        write!(
            f,
            "job {} (enqueue {}):\n    {:width$}: {}\n    {:width$}: {}",
            self.job, self.spec, self.left.0, self.left.1, self.right.0, self.right.1
        )
    }
}

/// The jobs of `scenario` whose observations differ between `left` and `right` (each named
/// for the report). A job missing from one side counts as observed with nothing.
#[must_use]
pub fn compare(
    scenario: &Scenario,
    left: (&'static str, &Observation),
    right: (&'static str, &Observation),
) -> Vec<Divergence> {
    let exposed = scenario.exposed();
    scenario
        .jobs()
        .enumerate()
        .filter_map(|(job, spec)| {
            let exposed = exposed.get(job).copied().unwrap_or(true);
            let side = |observation: &Observation| {
                observation
                    .jobs
                    .get(job)
                    .cloned()
                    .unwrap_or_default()
                    .compared(exposed)
            };
            let (l, r) = (side(left.1), side(right.1));
            (l != r).then(|| Divergence {
                job,
                spec: spec.clone(),
                left: (left.0, l),
                right: (right.0, r),
            })
        })
        .collect()
}
