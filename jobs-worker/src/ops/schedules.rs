//! `schedules`: each periodic job's schedule, the last slot it fired, the worker that fired
//! it (the active scheduler then), and the next slot.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use jobs_core::schedule::{self, Schedule};

use super::OpsContext;
use super::jobs::write_table;

/// Lists the periodic jobs of this binary with their last and next slots.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SchedulesArgs {}

/// Writes the table of scheduled jobs to `out`.
///
/// # Errors
///
/// Broker errors, and when writing to `out` fails.
pub(crate) async fn run(
    args: SchedulesArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let SchedulesArgs {} = args;
    let now = ctx.transport.now();
    let mut rows = Vec::new();
    for settings in &ctx.jobs {
        let job = settings.job();
        let Some(spec) = job.options().schedule else {
            continue;
        };
        let schedule = Schedule::parse(spec).with_context(|| format!("job `{}`", job.name()))?;
        let last = match schedule::last_fired(ctx.transport.as_ref(), job).await {
            Ok(last) => last,
            // No worker declared it yet: nothing fired.
            Err(jobs_core::Error::NotFound { .. }) => None,
            Err(err) => {
                return Err(anyhow::Error::from(err)
                    .context(format!("cannot read `{}`", schedule::last_queue(job))));
            }
        };
        let (last_slot, by) = last.map_or_else(
            || ("never".to_owned(), "-".to_owned()),
            |last| (time(last.slot), last.by),
        );
        rows.push([
            job.name().to_owned(),
            schedule.to_string(),
            schedule.missed().as_str().to_owned(),
            last_slot,
            by,
            schedule
                .next_after(now)
                .map_or_else(|| "none".to_owned(), time),
        ]);
    }
    if rows.is_empty() {
        writeln!(out, "no scheduled jobs")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_table(
        out,
        &["NAME", "SCHEDULE", "MISSED", "LAST FIRED", "BY", "NEXT"],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A slot as RFC 3339 UTC, to the second.
fn time(slot: SystemTime) -> String {
    humantime::format_rfc3339_seconds(slot).to_string()
}
