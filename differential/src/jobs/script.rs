//! What a job's handler does at each attempt: the script its message carries.
//!
//! The scenario decides every outcome, and the message carries it, so both transports run the
//! same handler behaviour whatever their timing: attempt `n` does step `n` of the script, and
//! an attempt past the script's end succeeds.

use std::fmt;
use std::time::Duration;

use jobs_core::{FailureKind, JobError};

/// How long a `slow` attempt works before it succeeds: long enough for a restart to find it
/// running, short enough to keep RabbitMQ runs quick.
pub const SLOW: Duration = Duration::from_millis(150);

/// The delay a `later` attempt asks for ([`JobError::retry_after`]): one second, the delay
/// cascade's unit.
pub const LATER: Duration = Duration::from_secs(1);

/// How long a `timeout` attempt hangs: far past every job's deadline, so the deadline ends it.
const HANG: Duration = Duration::from_secs(3600);

/// The panic message of a `panic` attempt; the test binary keeps these out of its output.
pub const PANIC_MESSAGE: &str = "differential: scripted panic";

/// What the handler does at one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Succeeds at once.
    Ok,
    /// Succeeds after [`SLOW`].
    Slow,
    /// Fails with a retryable error ([`JobError::retry`]): the job's backoff.
    Retry,
    /// Fails with [`JobError::retry_after`] [`LATER`]: the delay cascade.
    Later,
    /// Fails with [`JobError::fatal`]: straight to the error queue.
    Fatal,
    /// Panics.
    Panic,
    /// Hangs until the job's deadline fails it as a timeout.
    Timeout,
}

impl Step {
    /// Every step, in the order of their names in scenario texts.
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::Slow,
        Self::Retry,
        Self::Later,
        Self::Fatal,
        Self::Panic,
        Self::Timeout,
    ];

    /// The step's name in scripts and scenario texts.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Slow => "slow",
            Self::Retry => "retry",
            Self::Later => "later",
            Self::Fatal => "fatal",
            Self::Panic => "panic",
            Self::Timeout => "timeout",
        }
    }

    /// The step named `name`, if there is one.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == name)
    }

    /// How the attempt fails, or `None` when it succeeds.
    #[must_use]
    pub fn failure(self) -> Option<FailureKind> {
        match self {
            Self::Ok | Self::Slow => None,
            Self::Retry | Self::Later => Some(FailureKind::Handler),
            Self::Fatal => Some(FailureKind::Fatal),
            Self::Panic => Some(FailureKind::Panic),
            Self::Timeout => Some(FailureKind::Timeout),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message of the scenario jobs: the steps by attempt, as their names separated by
/// commas (`"retry,timeout"`); an empty script succeeds at once.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Script {
    /// The steps' names, separated by commas.
    #[prost(string, tag = "1")]
    pub steps: String,
}

impl Script {
    /// The script of `steps`.
    #[must_use]
    pub fn new(steps: &[Step]) -> Self {
        let names: Vec<&str> = steps.iter().map(|step| step.as_str()).collect();
        Self {
            steps: names.join(","),
        }
    }

    /// The step of attempt `attempt` (from 1); past the end, [`Step::Ok`].
    ///
    /// # Errors
    ///
    /// The script's text names no step there: a message from somewhere else.
    pub fn step(&self, attempt: u32) -> Result<Step, String> {
        let index = attempt.saturating_sub(1) as usize;
        match self
            .steps
            .split(',')
            .filter(|name| !name.is_empty())
            .nth(index)
        {
            None => Ok(Step::Ok),
            Some(name) => Step::parse(name).ok_or_else(|| format!("unknown step `{name}`")),
        }
    }
}

/// Runs attempt `attempt` of `script`: what both scenario jobs' handlers do.
///
/// # Errors
///
/// The step's failure; a script that does not read is fatal, since no retry reads it better.
pub(crate) async fn perform(script: &Script, attempt: u32) -> Result<(), JobError> {
    let step = script.step(attempt).map_err(JobError::fatal)?;
    match step {
        Step::Ok => Ok(()),
        Step::Slow => {
            tokio::time::sleep(SLOW).await;
            Ok(())
        }
        Step::Retry => Err(JobError::retry(format!(
            "scripted failure at attempt {attempt}"
        ))),
        Step::Later => Err(JobError::retry_after(
            format!("scripted retry-after at attempt {attempt}"),
            LATER,
        )),
        Step::Fatal => Err(JobError::fatal(format!(
            "scripted fatal at attempt {attempt}"
        ))),
        Step::Panic => panic!("{PANIC_MESSAGE}"),
        Step::Timeout => {
            tokio::time::sleep(HANG).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_back_its_steps_and_succeeds_past_its_end() {
        let script = Script::new(&[Step::Retry, Step::Timeout]);
        assert_eq!(script.steps, "retry,timeout");
        assert_eq!(script.step(1), Ok(Step::Retry));
        assert_eq!(script.step(2), Ok(Step::Timeout));
        assert_eq!(script.step(3), Ok(Step::Ok));
        assert_eq!(Script::new(&[]).step(1), Ok(Step::Ok));
        let foreign = Script {
            steps: "retry,explode".into(),
        };
        assert!(foreign.step(2).is_err());
    }
}
