//! `cargo run --release -p jobs-bench -- --help`: see the crate's documentation.

use std::process::ExitCode;

use clap::Parser as _;
use jobs_bench::Options;
use jobs_bench::growth::report::{backlog_table, types_table};
use jobs_bench::report::{calls_table, cascade_table, outbox_table, scale_table, table};
use jobs_bench::{Report, floors, rounds};

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    match jobs_bench::run(&options).await {
        Ok(report) => {
            #[allow(clippy::print_stdout, reason = "the tables are the program's output")]
            {
                if !report.rows.is_empty() {
                    println!("{}", table(&report.rows));
                }
                if !report.rounds.is_empty() {
                    println!("{}", rounds::table(&report.rounds));
                }
                if !report.cascade.is_empty() {
                    println!("{}", cascade_table(&report.cascade));
                }
                if !report.calls.is_empty() {
                    println!("{}", calls_table(&report.calls));
                }
                if !report.scale.is_empty() {
                    println!("{}", scale_table(&report.scale));
                }
                if !report.outbox.is_empty() {
                    println!("{}", outbox_table(&report.outbox));
                }
                if !report.growth_types.is_empty() {
                    println!("{}", types_table(&report.growth_types));
                }
                if !report.growth_backlogs.is_empty() {
                    println!("{}", backlog_table(&report.growth_backlogs));
                }
            }
            if options.check_floors {
                return check_floors(&report);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jobs-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints each floor's outcome; fails when one was not kept.
fn check_floors(report: &Report) -> ExitCode {
    let checked = floors::check(&report.rows);
    #[allow(
        clippy::print_stdout,
        reason = "the floors' outcomes are the program's output"
    )]
    for outcome in &checked {
        println!("{outcome}");
    }
    let below = checked.iter().filter(|outcome| !outcome.kept).count();
    if below == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("jobs-bench: {below} of {} floors not kept", checked.len());
        ExitCode::FAILURE
    }
}
