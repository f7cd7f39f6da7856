//! Runs operator commands in-process, as the CLI nests them, capturing what they write.

use std::process::ExitCode;

use clap::Parser as _;
use jobs_worker::ops::{self, OpsContext};

/// The command line of the operator commands, as the CLI nests them.
#[derive(Debug, clap::Parser)]
enum Command {
    Jobs(ops::jobs::JobsArgs),
    Topology(ops::topology::TopologyArgs),
    Errors(ops::errors::ErrorsArgs),
}

/// Runs `args` (a command line without the program name) and returns the exit code and what
/// the command wrote.
pub(crate) async fn run(ctx: &OpsContext, args: &str) -> (ExitCode, String) {
    let command = Command::try_parse_from(std::iter::once("ops").chain(args.split_whitespace()))
        .unwrap_or_else(|err| panic!("`{args}`: {err}"));
    let mut out = Vec::new();
    let code = match command {
        Command::Jobs(args) => ops::jobs::run(args, ctx, &mut out).await,
        Command::Topology(args) => ops::topology::run(args, ctx, &mut out).await,
        Command::Errors(args) => ops::errors::run(args, ctx, &mut out).await,
    }
    .unwrap_or_else(|err| panic!("`{args}`: {err:#}"));
    (code, String::from_utf8(out).unwrap())
}
