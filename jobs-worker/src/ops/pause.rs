//! `pause <job>` and `resume <job>`: stop a job on every worker that serves it, and start it
//! again (see `jobs_core::control`).

use std::io::Write;
use std::process::ExitCode;

use jobs_core::control;

use super::OpsContext;

/// Names the job to pause or resume.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PauseArgs {
    /// The job's name, as `jobs` lists it.
    pub(crate) job: String,
}

/// Pauses the job on every worker: each stops taking its deliveries (its running jobs finish),
/// and a worker that starts later starts with it paused, until `resume`.
///
/// # Errors
///
/// Broker errors, and writing to `out`.
pub(crate) async fn pause(
    args: PauseArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let Some(job) = known(&args, ctx, out)? else {
        return Ok(ExitCode::FAILURE);
    };
    control::pause(ctx.transport.as_ref(), job).await?;
    writeln!(
        out,
        "paused `{job}`: its workers stop taking its jobs, and its messages wait in its queue until `resume {job}`"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Resumes the job on every worker.
///
/// # Errors
///
/// Broker errors, and writing to `out`.
pub(crate) async fn resume(
    args: PauseArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let Some(job) = known(&args, ctx, out)? else {
        return Ok(ExitCode::FAILURE);
    };
    control::resume(ctx.transport.as_ref(), job).await?;
    writeln!(out, "resumed `{job}`")?;
    Ok(ExitCode::SUCCESS)
}

/// The job named in `args`, when this binary has it; otherwise says so.
fn known(
    args: &PauseArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> std::io::Result<Option<&'static str>> {
    let found = ctx
        .jobs
        .iter()
        .map(|settings| settings.job().name())
        .find(|name| *name == args.job);
    if found.is_none() {
        let names: Vec<&str> = ctx.jobs.iter().map(|s| s.job().name()).collect();
        writeln!(
            out,
            "no job named `{}`; this binary's jobs: {}",
            args.job,
            names.join(", ")
        )?;
    }
    Ok(found)
}
