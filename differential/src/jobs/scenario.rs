//! A job-level scenario: enqueues, pauses and worker restarts, in order, and its text form.
//!
//! The text form is what a run prints and what `JOBS_DIFF_JOB_SCENARIO` replays: operations
//! separated by `;`, each one of
//!
//! * `enqueue quorum retry,timeout` — enqueue a job of that kind whose attempts follow the
//!   script (`-` for an empty one, which succeeds at once), optionally followed by
//!   `delay 1s` (whole seconds, through the delay cascade);
//! * `pause 200ms` — let time pass (real time on RabbitMQ, virtual on the in-memory broker);
//! * `restart graceful` — shut the engine down, letting running handlers finish, and start a
//!   new one (on RabbitMQ, on a new connection);
//! * `restart abrupt` — drop the engine mid-run and cut its connection, as a crashed worker
//!   process, and start a new one.
//!
//! Jobs are numbered from 0 in the order of their `enqueue`s.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::handlers::JobKind;
use super::script::Step;

/// A scenario: what a run does, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Scenario {
    /// The operations, in order.
    pub ops: Vec<Op>,
}

/// One operation of a [`Scenario`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Enqueue a job.
    Enqueue(JobSpec),
    /// Let this much time pass.
    Pause(Duration),
    /// Stop the engine and start a new one.
    Restart(Restart),
}

/// A job a scenario enqueues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// Which job.
    pub kind: JobKind,
    /// What its handler does at each attempt; past the end, it succeeds.
    pub steps: Vec<Step>,
    /// Its delay, in whole seconds, if it is enqueued with one.
    pub delay: Option<Duration>,
}

/// How a worker restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// [`Engine::shutdown`](jobs_core::engine::Engine::shutdown) with a grace long enough
    /// for every running handler.
    Graceful,
    /// The engine dropped mid-run and its connection cut, as a crashed process.
    Abrupt,
}

impl Scenario {
    /// The jobs it enqueues, in order.
    pub fn jobs(&self) -> impl Iterator<Item = &JobSpec> {
        self.ops.iter().filter_map(|op| match op {
            Op::Enqueue(spec) => Some(spec),
            _ => None,
        })
    }

    /// How many jobs it enqueues.
    #[must_use]
    pub fn job_count(&self) -> usize {
        self.jobs().count()
    }

    /// For each job, whether an abrupt restart comes after its enqueue: such a job may be
    /// redelivered, and is compared under the at-least-once rules (see the
    /// [module docs](crate::jobs)).
    #[must_use]
    pub fn exposed(&self) -> Vec<bool> {
        let mut exposed = Vec::new();
        for op in &self.ops {
            match op {
                Op::Enqueue(_) => exposed.push(false),
                Op::Restart(Restart::Abrupt) => exposed.iter_mut().for_each(|e| *e = true),
                Op::Pause(_) | Op::Restart(Restart::Graceful) => {}
            }
        }
        exposed
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enqueue(spec) => write!(f, "enqueue {spec}"),
            Self::Pause(pause) => write!(f, "pause {}", duration_text(*pause)),
            Self::Restart(Restart::Graceful) => f.write_str("restart graceful"),
            Self::Restart(Restart::Abrupt) => f.write_str("restart abrupt"),
        }
    }
}

impl fmt::Display for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind)?;
        if self.steps.is_empty() {
            f.write_str("-")?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(step.as_str())?;
        }
        if let Some(delay) = self.delay {
            write!(f, " delay {}", duration_text(delay))?;
        }
        Ok(())
    }
}

/// `250ms`, or `2s` for whole seconds.
fn duration_text(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// `250ms` or `2s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, "ms"),
        None => (
            text.strip_suffix('s')
                .ok_or_else(|| format!("`{text}`: a duration ends in `ms` or `s`"))?,
            "s",
        ),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: not a whole number of {unit}"))?;
    Ok(if unit == "ms" {
        Duration::from_millis(value)
    } else {
        Duration::from_secs(value)
    })
}

/// A scenario text that does not read; says where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Scenario {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ops = text
            .split(';')
            .map(str::trim)
            .filter(|op| !op.is_empty())
            .map(|op| parse_op(op).map_err(|why| ParseError(format!("`{op}`: {why}"))))
            .collect::<Result<_, _>>()?;
        Ok(Self { ops })
    }
}

fn parse_op(text: &str) -> Result<Op, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["pause", pause] => Ok(Op::Pause(parse_duration(pause)?)),
        ["restart", "graceful"] => Ok(Op::Restart(Restart::Graceful)),
        ["restart", "abrupt"] => Ok(Op::Restart(Restart::Abrupt)),
        ["enqueue", kind, steps, rest @ ..] => {
            let kind = JobKind::parse(kind).ok_or_else(|| format!("no job kind `{kind}`"))?;
            let steps = if *steps == "-" {
                Vec::new()
            } else {
                steps
                    .split(',')
                    .map(|name| Step::parse(name).ok_or_else(|| format!("no step `{name}`")))
                    .collect::<Result<_, _>>()?
            };
            let delay = match rest {
                [] => None,
                ["delay", delay] => Some(parse_duration(delay)?),
                _ => return Err("after the script, only `delay <duration>`".into()),
            };
            Ok(Op::Enqueue(JobSpec { kind, steps, delay }))
        }
        _ => Err(
            "expected `enqueue KIND STEPS [delay D]`, `pause D` or `restart graceful|abrupt`"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_reads_back_as_written() {
        let text = "enqueue quorum retry,timeout delay 1s; pause 250ms; restart abrupt; \
                    enqueue classic -; restart graceful";
        let scenario: Scenario = text.parse().unwrap();
        assert_eq!(scenario.to_string(), text);
        assert_eq!(scenario.job_count(), 2);
        assert_eq!(scenario.exposed(), [true, false]);
        assert!("enqueue quorum explode".parse::<Scenario>().is_err());
        assert!("pause 2".parse::<Scenario>().is_err());
    }
}
