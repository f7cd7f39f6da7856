//! One case: a scenario run on both brokers and the runs compared, with the retries that a
//! run made inconclusive by the real clock deserves.

use super::compare::{differences, transcript};
use super::observe::Observation;
use super::runner::{RunError, Timing, run_memory, run_rabbitmq};
use super::scenario::{Names, Scenario};

/// How often a case is run again when RabbitMQ's run was inconclusive (a step came too late
/// after its tick for the expiries around it to be certain).
pub const ATTEMPTS: usize = 5;

/// What one case found.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The in-memory run.
    pub memory: Observation,
    /// The last RabbitMQ run.
    pub rabbitmq: Observation,
    /// Every difference between them, in words; empty when they agree.
    pub differences: Vec<String>,
    /// How many RabbitMQ runs it took.
    pub attempts: usize,
}

impl Verdict {
    /// Whether both brokers behaved alike.
    #[must_use]
    pub fn agrees(&self) -> bool {
        self.differences.is_empty() && self.rabbitmq.overrun.is_none()
    }

    /// Whether every RabbitMQ run was inconclusive: the machine was too slow to keep to the
    /// ticks, which says nothing about either broker.
    #[must_use]
    pub fn inconclusive(&self) -> bool {
        self.rabbitmq.overrun.is_some()
    }

    /// The differences and both runs in full, for a failure message.
    #[must_use]
    pub fn report(&self) -> String {
        let mut out = String::new();
        if let Some(overrun) = &self.rabbitmq.overrun {
            out.push_str(&format!(
                "inconclusive after {} runs: {overrun}\n",
                self.attempts
            ));
        }
        for difference in &self.differences {
            out.push_str(&format!("- {difference}\n"));
        }
        out.push_str("in memory:\n");
        out.push_str(&transcript(&self.memory));
        out.push_str("on RabbitMQ:\n");
        out.push_str(&transcript(&self.rabbitmq));
        out
    }
}

/// Runs `scenario` in memory and on the RabbitMQ at `url`, and compares; a RabbitMQ run made
/// inconclusive by the clock is repeated, up to [`ATTEMPTS`] runs.
///
/// # Errors
///
/// [`RunError`] when a run cannot be carried out.
pub async fn check(url: &str, scenario: &Scenario, timing: &Timing) -> Result<Verdict, RunError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Names unique to each attempt: a queue still being deleted never meets the next run.
        let names = Names::unique();
        let memory = run_memory(scenario, &names, timing)?;
        let rabbitmq = run_rabbitmq(url, scenario, &names, timing, &memory).await?;
        let found = differences(&memory, &rabbitmq);
        if rabbitmq.overrun.is_none() || attempts >= ATTEMPTS {
            return Ok(Verdict {
                memory,
                rabbitmq,
                differences: found,
                attempts,
            });
        }
    }
}
