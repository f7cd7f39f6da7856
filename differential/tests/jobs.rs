//! Job-level differential testing: random scenarios through the engine on the in-memory broker
//! and on RabbitMQ, compared job by job (see `jobs_differential::jobs` for the rules).
//!
//! CI runs 50 scenarios with a seed from the clock; `JOBS_DIFF_JOB_CASES=1000` runs more,
//! `JOBS_DIFF_JOB_SEED` picks the first seed, and `JOBS_DIFF_JOB_SCENARIO` replays one scenario's
//! text. Every seed is written straight to stderr, past the test harness's capture, so CI's
//! log shows it whether the test passes or not.

use std::io::Write;
use std::sync::Once;

use jobs_differential::jobs::campaign::{self, Campaign, Problem};
use jobs_differential::jobs::script::PANIC_MESSAGE;
use jobs_differential::jobs::{AmqpRun, compare, generate, model, run_memory};

/// Keeps the scripted panics' messages out of the output; any other panic still prints.
fn quiet_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(PANIC_MESSAGE) {
                default(info);
            }
        }));
    });
}

#[test]
fn random_job_scenarios_agree_on_both_transports() {
    let Some(url) = jobs_core::testing::broker_url() else {
        return;
    };
    quiet_scripted_panics();
    let campaign = Campaign::from_env().expect("the JOBS_DIFF_JOB_* variables read");
    let amqp = AmqpRun::open(&url).expect("the run takes the broker's job queues");
    let mut out = std::io::stderr();
    let report = campaign::run(&amqp, &campaign, &mut out).expect("stderr takes the report");
    amqp.close()
        .expect("the run's queues and exchange are deleted");
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|failure| {
            let what = match &failure.problem {
                Problem::Diverged(divergences) => format!("{} jobs diverged", divergences.len()),
                Problem::Error(error) => format!("could not run: {error}"),
            };
            let seed = failure
                .seed
                .map_or_else(|| "given".to_owned(), |seed| format!("{seed:#x}"));
            format!("seed {seed}: {what}: {}", failure.scenario)
        })
        .collect();
    let _ = out.flush();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed (details and shrunk scenarios above):\n{}",
        failures.len(),
        report.cases,
        failures.join("\n")
    );
}

/// Without a broker: the in-memory runs of many scenarios against the model, on virtual time.
#[test]
fn the_in_memory_broker_agrees_with_the_model() {
    quiet_scripted_panics();
    let mut failures = Vec::new();
    for seed in 0..300 {
        let scenario = generate(seed);
        let memory = run_memory(&scenario).expect("the in-memory run completes");
        let model = model::expected(&scenario);
        let divergences = compare(&scenario, ("in-memory", &memory), ("model", &model));
        if !divergences.is_empty() {
            let details: Vec<String> = divergences.iter().map(ToString::to_string).collect();
            failures.push(format!("seed {seed}: {scenario}\n{}", details.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
