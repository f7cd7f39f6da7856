//! `topology print|declare|verify`: the exchanges, queues and bindings the jobs need.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use jobs_core::Error;
use jobs_core::topology::Topology;
use jobs_core::transport::Declare;

use super::OpsContext;

/// Prints, declares or verifies the jobs' topology.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TopologyArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: TopologyAction,
}

/// The `topology` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum TopologyAction {
    /// Prints the declaration plan: exchanges, queues with their arguments, bindings.
    Print,
    /// Declares the topology: creates what is missing, fails on what differs.
    Declare,
    /// Checks the topology on the broker without creating anything; exits 1 on drift, naming
    /// every exchange or queue that is missing or differs. Bindings cannot be checked.
    Verify,
}

/// Runs a `topology` action.
///
/// # Errors
///
/// When the jobs disagree about the topology, when declaring fails, on broker and connection
/// errors (drift found by `verify` is a report and exit code 1, not an error), and when
/// writing to `out` fails.
pub(crate) async fn run(
    args: TopologyArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let topology = Topology::for_jobs(&ctx.jobs).context("the jobs disagree about the topology")?;
    match args.action {
        TopologyAction::Print => {
            print(&topology, out)?;
            Ok(ExitCode::SUCCESS)
        }
        TopologyAction::Declare => {
            ctx.transport
                .declare(&topology, Declare::Create)
                .await
                .context("declaring the topology failed")?;
            writeln!(
                out,
                "declared {} exchanges, {} queues, {} bindings",
                topology.exchanges.len(),
                topology.queues.len(),
                topology.bindings.len() + topology.exchange_bindings.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        TopologyAction::Verify => verify(&topology, ctx, out).await,
    }
}

/// Writes the declaration plan.
fn print(topology: &Topology, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    writeln!(out, "exchanges:")?;
    for exchange in &topology.exchanges {
        writeln!(
            out,
            "  {} ({})",
            display_exchange(&exchange.name),
            exchange.kind
        )?;
    }
    writeln!(out, "queues:")?;
    for queue in &topology.queues {
        let arguments: Vec<String> = queue
            .arguments
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        writeln!(out, "  {} [{}]", queue.name, arguments.join(", "))?;
    }
    writeln!(out, "bindings:")?;
    for binding in &topology.bindings {
        write!(
            out,
            "  {} -> {} (key {:?})",
            display_exchange(&binding.exchange),
            binding.queue,
            binding.routing_key
        )?;
        if binding.arguments.is_empty() {
            writeln!(out)?;
        } else {
            let arguments: Vec<String> = binding
                .arguments
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            writeln!(out, " [{}]", arguments.join(", "))?;
        }
    }
    for binding in &topology.exchange_bindings {
        writeln!(
            out,
            "  {} -> exchange {} (key {:?})",
            display_exchange(&binding.source),
            display_exchange(&binding.destination),
            binding.routing_key
        )?;
    }
    Ok(())
}

fn display_exchange(name: &str) -> &str {
    if name.is_empty() { "(default)" } else { name }
}

/// Verifies each exchange and queue on its own, so that one drift does not hide the next.
async fn verify(
    topology: &Topology,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let mut problems = 0usize;
    let exchanges = topology.exchanges.iter().map(|exchange| Topology {
        exchanges: vec![exchange.clone()],
        ..Topology::default()
    });
    let queues = topology.queues.iter().map(|queue| Topology {
        queues: vec![queue.clone()],
        ..Topology::default()
    });
    for part in exchanges.chain(queues) {
        match ctx.transport.declare(&part, Declare::Verify).await {
            Ok(()) => {}
            Err(err) => {
                let Some(problem) = drift(&err) else {
                    return Err(anyhow::Error::new(err).context("verifying the topology failed"));
                };
                problems += 1;
                writeln!(out, "{problem}")?;
            }
        }
    }
    if problems == 0 {
        writeln!(
            out,
            "topology ok: {} exchanges and {} queues match (bindings are not checked)",
            topology.exchanges.len(),
            topology.queues.len()
        )?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "topology drift: {problems} problem(s)")?;
        Ok(ExitCode::FAILURE)
    }
}

/// A drift report for the errors that are drift; `None` for the others.
fn drift(err: &Error) -> Option<String> {
    match err {
        Error::NotFound { what, name } => Some(format!("missing: {what} `{name}`")),
        Error::QueueMismatch {
            queue,
            argument,
            existing,
            declared,
        } => {
            // RabbitMQ reports an empty string as nothing at all.
            let shown = |value: &str| {
                if value.is_empty() {
                    "\"\"".to_owned()
                } else {
                    value.to_owned()
                }
            };
            Some(format!(
                "differs: queue `{queue}` has {argument} = {} on the broker, expected {}",
                shown(existing),
                shown(declared)
            ))
        }
        Error::Topology(message) => Some(format!("differs: {message}")),
        _ => None,
    }
}
