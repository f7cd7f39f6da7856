//! What a run shows of each job (its attempts, in order, and its final places), and the form
//! it is compared in: exact, or under the at-least-once rules for a job an abrupt restart may
//! have redelivered. The rules are listed in the [module docs](crate::jobs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jobs_core::FailedJob;
use jobs_core::testing::{Outcome, Recorded};

/// How one attempt ended, as the engine reported it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttemptOutcome {
    /// The handler started and no outcome followed: the attempt was cut off by an abrupt
    /// restart (or never ended).
    Unfinished,
    /// The handler succeeded.
    Succeeded,
    /// The attempt failed with `kind` and the job waits `delay` for its next one.
    Retried {
        /// The failure kind's name.
        kind: &'static str,
        /// The wait before the next attempt, as the engine decided it.
        delay: Duration,
    },
    /// The attempt failed with `kind` and the job went to its error queue.
    Failed {
        /// The failure kind's name.
        kind: &'static str,
    },
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unfinished => f.write_str("unfinished"),
            Self::Succeeded => f.write_str("ok"),
            Self::Retried { kind, delay } => write!(f, "{kind}, retry in {delay:?}"),
            Self::Failed { kind } => write!(f, "{kind}, failed"),
        }
    }
}

/// Where a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// A handler succeeded.
    Handled,
    /// The job's error queue holds it, with these failure headers.
    ErrorQueue {
        /// `x-jobs-error-kind` (or RabbitMQ's delivery-limit reason); `none` when neither.
        kind: &'static str,
        /// `x-jobs-attempt`, when it reads.
        attempt: Option<u32>,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handled => f.write_str("handled"),
            Self::ErrorQueue {
                kind,
                attempt: Some(attempt),
            } => write!(f, "error queue ({kind}, attempt {attempt})"),
            Self::ErrorQueue {
                kind,
                attempt: None,
            } => write!(f, "error queue ({kind}, no attempt)"),
        }
    }
}

/// What a run showed of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobObservation {
    /// Its attempts in the order they started: the attempt number and how it ended.
    pub attempts: Vec<(u32, AttemptOutcome)>,
    /// Its final places: one per successful handler, one per message in its error queue.
    pub places: Vec<Place>,
}

/// What a run showed of every job of its scenario, in enqueue order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// One per job.
    pub jobs: Vec<JobObservation>,
}

impl Observation {
    /// The observation of the jobs with message ids `ids`, from the engine's events and the
    /// error queues' messages; events and messages of other ids are left out.
    #[must_use]
    pub fn new(events: &[Recorded], letters: &[FailedJob], ids: &[String]) -> Self {
        let jobs = ids
            .iter()
            .map(|id| {
                let mine = events
                    .iter()
                    .filter(|event| event.message_id.as_deref() == Some(id));
                let mut job = JobObservation::from_events(mine);
                job.places.extend(
                    letters
                        .iter()
                        .filter(|letter| letter.message_id() == Some(id))
                        .map(|letter| Place::ErrorQueue {
                            kind: letter.kind().map_or("none", |kind| kind.as_str()),
                            attempt: letter.attempt(),
                        }),
                );
                job.places.sort();
                job
            })
            .collect();
        Self { jobs }
    }
}

impl JobObservation {
    /// Attempts and handled places from one job's events. An outcome belongs to the latest
    /// unfinished start of its attempt: a start an abrupt restart cut off is older than the
    /// run of the same attempt that ended. An outcome without a start (a decision published
    /// again without running the handler) is an attempt of its own. `PublishFailed` and `Requeued` are
    /// left out: the engine tries the publish again, and its outcome shows when it is done.
    fn from_events<'a>(events: impl Iterator<Item = &'a Recorded>) -> Self {
        let mut job = Self::default();
        for event in events {
            let outcome = match &event.outcome {
                Outcome::Started => {
                    job.attempts
                        .push((event.attempt, AttemptOutcome::Unfinished));
                    continue;
                }
                Outcome::Succeeded => {
                    job.places.push(Place::Handled);
                    AttemptOutcome::Succeeded
                }
                Outcome::Retried { kind, delay, .. } => AttemptOutcome::Retried {
                    kind: kind.as_str(),
                    delay: *delay,
                },
                Outcome::Failed { kind, .. } => AttemptOutcome::Failed {
                    kind: kind.as_str(),
                },
                _ => continue,
            };
            let started = job.attempts.iter_mut().rev().find(|(attempt, ended)| {
                *attempt == event.attempt && *ended == AttemptOutcome::Unfinished
            });
            match started {
                Some((_, ended)) => *ended = outcome,
                None => job.attempts.push((event.attempt, outcome)),
            }
        }
        job
    }

    /// The form this job is compared in: [`Compared::Exact`], or [`Compared::AtLeastOnce`]
    /// when an abrupt restart came after its enqueue.
    #[must_use]
    pub fn compared(&self, exposed: bool) -> Compared {
        if !exposed {
            return Compared::Exact(self.clone());
        }
        let mut attempts: BTreeMap<u32, BTreeSet<AttemptOutcome>> = BTreeMap::new();
        for (attempt, outcome) in &self.attempts {
            attempts
                .entry(*attempt)
                .or_default()
                .insert(outcome.clone());
        }
        for outcomes in attempts.values_mut() {
            if outcomes.len() > 1 {
                outcomes.remove(&AttemptOutcome::Unfinished);
            }
        }
        Compared::AtLeastOnce {
            attempts,
            places: self.places.iter().cloned().collect(),
        }
    }
}

/// One job's observation in the form it is compared in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compared {
    /// Every attempt in order, and every place: a job no abrupt restart touched.
    Exact(JobObservation),
    /// After an abrupt restart: each attempt number's distinct outcomes (a start cut off by
    /// the restart left out when the attempt also ended), and the distinct places.
    AtLeastOnce {
        /// Each attempt number's outcomes.
        attempts: BTreeMap<u32, BTreeSet<AttemptOutcome>>,
        /// The distinct final places.
        places: BTreeSet<Place>,
    },
}

impl fmt::Display for Compared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(job) => {
                f.write_str("[")?;
                for (i, (attempt, outcome)) in job.attempts.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}#{attempt} {outcome}")?;
                }
                f.write_str("] -> ")?;
                write_places(f, &job.places)
            }
            Self::AtLeastOnce { attempts, places } => {
                f.write_str("at least once: [")?;
                for (i, (attempt, outcomes)) in attempts.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    let outcomes: Vec<String> = outcomes.iter().map(ToString::to_string).collect();
                    write!(f, "{sep}#{attempt} {}", outcomes.join(" | "))?;
                }
                f.write_str("] -> ")?;
                write_places(f, places)
            }
        }
    }
}

fn write_places<'a>(
    f: &mut fmt::Formatter<'_>,
    places: impl IntoIterator<Item = &'a Place>,
) -> fmt::Result {
    let places: Vec<String> = places.into_iter().map(ToString::to_string).collect();
    if places.is_empty() {
        f.write_str("nowhere")
    } else {
        f.write_str(&places.join(" + "))
    }
}
