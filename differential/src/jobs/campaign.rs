//! A campaign: random scenarios, each run on the in-memory broker and on RabbitMQ and checked
//! against the model, with every seed printed, and each failure shrunk and printed with what
//! reruns it.
//!
//! Configured from the environment ([`Campaign::from_env`]):
//!
//! * `JOBS_DIFF_JOB_CASES`: how many scenarios (default 50, what CI runs);
//! * `JOBS_DIFF_JOB_SEED`: the first scenario's seed, decimal or `0x` hex (default: from the
//!   clock); scenario `i` has seed [`case_seed`]`(seed, i)`, so a printed seed with
//!   `JOBS_DIFF_JOB_CASES=1` reruns that scenario;
//! * `JOBS_DIFF_JOB_SCENARIO`: a scenario's text (as printed after shrinking) to run instead of
//!   random ones.
//!
//! A scenario that could not be run (the broker did not answer in time, a connection was
//! refused) is run once more, alone, before it counts as failed: a broker busy with other
//! tests is no divergence, while one that keeps failing still fails the campaign.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::amqp::AmqpRun;
use super::compare::{Divergence, compare};
use super::generate::{case_seed, generate};
use super::handlers::LANES;
use super::memory::run_memory;
use super::model::expected;
use super::observe::Observation;
use super::run::RunError;
use super::scenario::Scenario;
use super::shrink::{Shrunk, shrink};

/// The number of scenarios when `JOBS_DIFF_JOB_CASES` is not set: CI's.
pub const DEFAULT_CASES: u64 = 50;

/// Candidate runs a failure's shrinking may take (each a few seconds on RabbitMQ).
const SHRINK_BUDGET: usize = 40;

/// Failures after which a campaign stops: each costs a shrink.
const MAX_FAILURES: usize = 3;

/// What a campaign runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Campaign {
    /// `cases` random scenarios, the first from `seed`.
    Random {
        /// The first scenario's seed.
        seed: u64,
        /// How many scenarios.
        cases: u64,
    },
    /// One given scenario.
    Replay(Scenario),
}

impl Campaign {
    /// The campaign the environment asks for; see the [module docs](self).
    ///
    /// # Errors
    ///
    /// A variable that does not read, saying which and why.
    pub fn from_env() -> Result<Self, String> {
        if let Ok(text) = std::env::var("JOBS_DIFF_JOB_SCENARIO") {
            let scenario = text
                .parse()
                .map_err(|error| format!("JOBS_DIFF_JOB_SCENARIO: {error}"))?;
            return Ok(Self::Replay(scenario));
        }
        let cases = match std::env::var("JOBS_DIFF_JOB_CASES") {
            Ok(cases) => cases
                .trim()
                .parse()
                .map_err(|_| format!("JOBS_DIFF_JOB_CASES: `{cases}` is not a count"))?,
            Err(_) => DEFAULT_CASES,
        };
        let seed = match std::env::var("JOBS_DIFF_JOB_SEED") {
            Ok(seed) => parse_seed(&seed)
                .ok_or_else(|| format!("JOBS_DIFF_JOB_SEED: `{seed}` is not a number"))?,
            Err(_) => clock_seed(),
        };
        Ok(Self::Random { seed, cases })
    }
}

/// `123` or `0x7b`.
fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    // The low bits change fastest; fold the rest in.
    (nanos as u64) ^ ((nanos >> 64) as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// A scenario that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Its seed, for a random one.
    pub seed: Option<u64>,
    /// The scenario as generated (or given).
    pub scenario: Scenario,
    /// What went wrong with it.
    pub problem: Problem,
    /// The smallest scenario shrinking found that still diverges, and its divergences; `None`
    /// for a run that could not be carried out.
    pub shrunk: Option<(Shrunk, Vec<Divergence>)>,
}

/// Why a scenario failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Its observations differ.
    Diverged(Vec<Divergence>),
    /// It could not be run.
    Error(RunError),
}

/// What a campaign did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Scenarios run.
    pub cases: u64,
    /// Those that failed.
    pub failures: Vec<Failure>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Runs `scenario` on both transports and returns every divergence: in-memory against
/// RabbitMQ, and in-memory against the model.
///
/// # Errors
///
/// [`RunError`] when either run cannot be carried out.
pub fn check(amqp: &AmqpRun, scenario: &Scenario) -> Result<Vec<Divergence>, RunError> {
    let memory = run_memory(scenario)?;
    let rabbitmq = amqp.run(scenario)?;
    Ok(divergences(scenario, &memory, &rabbitmq))
}

/// [`check`] for up to [`LANES`] scenarios at once, side by side on RabbitMQ.
fn check_many(amqp: &AmqpRun, scenarios: &[Scenario]) -> Vec<Result<Vec<Divergence>, RunError>> {
    let memory: Vec<_> = scenarios.iter().map(run_memory).collect();
    let rabbitmq = amqp.run_many(scenarios);
    scenarios
        .iter()
        .zip(memory)
        .zip(rabbitmq)
        .map(|((scenario, memory), rabbitmq)| Ok(divergences(scenario, &memory?, &rabbitmq?)))
        .collect()
}

fn divergences(
    scenario: &Scenario,
    memory: &Observation,
    rabbitmq: &Observation,
) -> Vec<Divergence> {
    let model = expected(scenario);
    let mut divergences = compare(scenario, ("in-memory", memory), ("rabbitmq", rabbitmq));
    divergences.extend(compare(scenario, ("in-memory", memory), ("model", &model)));
    divergences
}

/// Runs `campaign` on `amqp`, writing each scenario's seed, text and result to `out` as it
/// goes, and each failure's shrunk scenario with the commands that rerun it.
///
/// # Errors
///
/// Only when writing to `out` fails.
pub fn run(amqp: &AmqpRun, campaign: &Campaign, out: &mut dyn Write) -> std::io::Result<Report> {
    let started = Instant::now();
    let cases: Vec<(Option<u64>, Scenario)> = match campaign {
        Campaign::Random { seed, cases } => {
            writeln!(
                out,
                "job-level differential: {cases} scenarios from seed {seed:#018x}"
            )?;
            (0..*cases)
                .map(|index| {
                    let seed = case_seed(*seed, index);
                    (Some(seed), generate(seed))
                })
                .collect()
        }
        Campaign::Replay(scenario) => {
            writeln!(out, "job-level differential: replaying one scenario")?;
            vec![(None, scenario.clone())]
        }
    };
    let total = cases.len();
    let mut failures = Vec::new();
    let mut run = 0;
    'cases: for (batch_index, batch) in cases.chunks(LANES).enumerate() {
        let batch_started = Instant::now();
        let scenarios: Vec<Scenario> = batch.iter().map(|(_, scenario)| scenario.clone()).collect();
        let results = check_many(amqp, &scenarios);
        for (offset, ((seed, scenario), result)) in batch.iter().zip(results).enumerate() {
            run += 1;
            let number = batch_index * LANES + offset + 1;
            let seed_text = seed.map_or_else(|| "given".to_owned(), |seed| format!("{seed:#018x}"));
            writeln!(out, "case {number}/{total} seed {seed_text}: {scenario}")?;
            // A broker that did not answer is no divergence: such a run gets one more chance.
            let result = match result {
                Err(error) => {
                    writeln!(out, "  could not run ({error}); running it again")?;
                    check(amqp, scenario)
                }
                ok => ok,
            };
            let problem = match result {
                Ok(divergences) if divergences.is_empty() => {
                    writeln!(
                        out,
                        "  agree (batch of {}: {:.1?})",
                        batch.len(),
                        batch_started.elapsed()
                    )?;
                    continue;
                }
                Ok(divergences) => Problem::Diverged(divergences),
                Err(error) => Problem::Error(error),
            };
            let failure = report_failure(amqp, *seed, scenario.clone(), problem, out)?;
            failures.push(failure);
            if failures.len() == MAX_FAILURES {
                writeln!(out, "stopping after {MAX_FAILURES} failures")?;
                break 'cases;
            }
        }
    }
    let report = Report {
        cases: run,
        failures,
        elapsed: started.elapsed(),
    };
    writeln!(
        out,
        "job-level differential: {} scenarios, {} failed, in {:.1?}",
        report.cases,
        report.failures.len(),
        report.elapsed
    )?;
    Ok(report)
}

/// Writes the failure, shrinks a divergence and writes the result with the commands that
/// rerun the original and the shrunk scenario.
fn report_failure(
    amqp: &AmqpRun,
    seed: Option<u64>,
    scenario: Scenario,
    problem: Problem,
    out: &mut dyn Write,
) -> std::io::Result<Failure> {
    let divergences = match &problem {
        Problem::Error(error) => {
            writeln!(out, "  could not run: {error}")?;
            return Ok(Failure {
                seed,
                scenario,
                problem,
                shrunk: None,
            });
        }
        Problem::Diverged(divergences) => divergences,
    };
    writeln!(out, "  DIVERGED:")?;
    for divergence in divergences {
        writeln!(out, "  {divergence}")?;
    }
    writeln!(out, "  shrinking (at most {SHRINK_BUDGET} runs)…")?;
    let shrunk = shrink(&scenario, SHRINK_BUDGET, |candidate| {
        check(amqp, candidate).is_ok_and(|divergences| !divergences.is_empty())
    });
    // Run once more for the divergences to show: the last candidate run may not be it.
    let shrunk_divergences = check(amqp, &shrunk.scenario).unwrap_or_default();
    writeln!(
        out,
        "  shrunk in {} runs to: {}",
        shrunk.runs, shrunk.scenario
    )?;
    if shrunk_divergences.is_empty() {
        writeln!(
            out,
            "  …which agreed when run once more: the divergence did not reproduce every time"
        )?;
    }
    for divergence in &shrunk_divergences {
        writeln!(out, "  {divergence}")?;
    }
    if let Some(seed) = seed {
        writeln!(
            out,
            "  rerun: JOBS_DIFF_JOB_SEED={seed:#x} JOBS_DIFF_JOB_CASES=1 cargo test -p jobs-differential --test jobs"
        )?;
    }
    writeln!(
        out,
        "  replay the shrunk one: JOBS_DIFF_JOB_SCENARIO='{}' cargo test -p jobs-differential --test jobs",
        shrunk.scenario
    )?;
    Ok(Failure {
        seed,
        scenario,
        problem,
        shrunk: Some((shrunk, shrunk_divergences)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_read_in_decimal_and_hex() {
        assert_eq!(parse_seed("123"), Some(123));
        assert_eq!(parse_seed("0x7b"), Some(123));
        assert_eq!(parse_seed("seven"), None);
    }
}
