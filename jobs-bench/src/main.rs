//! `cargo run --release -p jobs-bench -- --help`: see the crate's documentation.

use std::process::ExitCode;

use clap::Parser as _;
use jobs_bench::Options;
use jobs_bench::report::table;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    match jobs_bench::run(&options).await {
        Ok(rows) => {
            #[allow(clippy::print_stdout, reason = "the table is the program's output")]
            {
                println!("{}", table(&rows));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("jobs-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
