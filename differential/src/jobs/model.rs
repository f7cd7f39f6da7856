//! What the engine's documented rules say each job of a scenario does, from its script alone:
//! the third party to every comparison, so that a bug both transports share (an engine bug)
//! shows too.
//!
//! Attempt `n` does step `n` of the script (past its end, it succeeds). A success ends the job
//! as handled; a fatal failure sends it to the error queue; any other failure (handler error,
//! panic, timeout) is retried while attempts are left (the first plus the job's retries),
//! after the job's backoff step or, for `later`, after its `retry_after` delay, and otherwise
//! sends it to the error queue with its kind and attempt. Restarts and delays change none of
//! this.

use super::observe::{AttemptOutcome, JobObservation, Observation, Place};
use super::scenario::{JobSpec, Scenario};
use super::script::{self, Step};

/// The observation a correct run of `scenario` gives, before normalisation.
#[must_use]
pub fn expected(scenario: &Scenario) -> Observation {
    Observation {
        jobs: scenario.jobs().map(expected_job).collect(),
    }
}

fn expected_job(spec: &JobSpec) -> JobObservation {
    // Every lane's jobs have the same options.
    let settings = spec.kind.settings(0);
    let mut job = JobObservation::default();
    for attempt in 1..=settings.max_attempts() {
        let step = spec
            .steps
            .get(attempt as usize - 1)
            .copied()
            .unwrap_or(Step::Ok);
        let Some(kind) = step.failure() else {
            job.attempts.push((attempt, AttemptOutcome::Succeeded));
            job.places.push(Place::Handled);
            return job;
        };
        let retry = kind.is_retryable() && attempt <= settings.retries();
        let delay = match step {
            Step::Later => Some(script::LATER),
            _ => settings.retry_level(attempt).map(|(_, delay)| delay),
        };
        match delay {
            Some(delay) if retry => job.attempts.push((
                attempt,
                AttemptOutcome::Retried {
                    kind: kind.as_str(),
                    delay,
                },
            )),
            _ => {
                job.attempts.push((
                    attempt,
                    AttemptOutcome::Failed {
                        kind: kind.as_str(),
                    },
                ));
                job.places.push(Place::ErrorQueue {
                    kind: kind.as_str(),
                    attempt: Some(attempt),
                });
                return job;
            }
        }
    }
    job
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::jobs::handlers::JobKind;

    #[test]
    fn a_quorum_job_failing_three_times_goes_to_the_error_queue_at_its_third_attempt() {
        let spec = JobSpec {
            kind: JobKind::Quorum,
            steps: vec![Step::Retry, Step::Later, Step::Timeout, Step::Ok],
            delay: None,
        };
        let job = expected_job(&spec);
        assert_eq!(
            job.attempts,
            [
                (
                    1,
                    AttemptOutcome::Retried {
                        kind: "handler",
                        delay: Duration::from_millis(100)
                    }
                ),
                (
                    2,
                    AttemptOutcome::Retried {
                        kind: "handler",
                        delay: Duration::from_secs(1)
                    }
                ),
                (3, AttemptOutcome::Failed { kind: "timeout" }),
            ]
        );
        assert_eq!(
            job.places,
            [Place::ErrorQueue {
                kind: "timeout",
                attempt: Some(3)
            }]
        );
    }
}
