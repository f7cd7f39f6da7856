//! `cargo run --release -p jobs-bench -- --help`: see the crate's documentation.

use std::process::ExitCode;

use clap::Parser as _;
use jobs_bench::Options;
use jobs_bench::report::{calls_table, cascade_table, outbox_table, scale_table, table};

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
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jobs-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
