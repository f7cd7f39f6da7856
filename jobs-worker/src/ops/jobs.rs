//! `jobs`: the jobs this binary serves, as a table, and the delayed jobs waiting in each level
//! of the delay cascade.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use jobs_core::schedule::Schedule;
use jobs_core::{Job, JobSettings, delay};

use super::OpsContext;

/// Lists the jobs: name, exchange and its kind, binding, queue, retries, timeout, schedule and
/// state (`running`, `paused`, or `-` without a broker); then the delayed jobs waiting in each
/// level of the delay cascade.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct JobsArgs {}

/// Writes the table of `ctx.jobs` to `out`.
///
/// # Errors
///
/// When writing to `out` fails.
pub(crate) async fn run(
    args: JobsArgs,
    ctx: &OpsContext,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let JobsArgs {} = args;
    if ctx.jobs.is_empty() {
        writeln!(out, "no jobs")?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "NAME", "EXCHANGE", "KIND", "BINDING", "QUEUE", "RETRIES", "TIMEOUT", "SCHEDULE", "STATE",
    ];
    let mut rows: Vec<[String; 9]> = Vec::with_capacity(ctx.jobs.len());
    for settings in &ctx.jobs {
        rows.push(row(settings, state(ctx, settings.job()).await?));
    }
    write_table(out, &header, &rows)?;
    writeln!(out)?;
    delayed(ctx, out).await?;
    Ok(ExitCode::SUCCESS)
}

/// The delayed jobs waiting in each level of the cascade (every job's: the levels are shared).
async fn delayed(ctx: &OpsContext, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let transport = &ctx.transport;
    if !ctx.connected {
        writeln!(
            out,
            "delayed jobs: not counted (no broker; they wait in the queues jobs.delay.0 to jobs.delay.{})",
            delay::LEVELS - 1
        )?;
        return Ok(());
    }
    let levels = crate::queues::delayed(transport.as_ref())
        .await
        .context("cannot count the delay cascade")?;
    let total: u64 = levels.iter().map(|level| level.waiting).sum();
    let rows: Vec<[String; 3]> = levels
        .into_iter()
        .map(|level| {
            [
                level.queue,
                humantime::format_duration(level.wait).to_string(),
                level.waiting.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "delayed jobs: none waiting")?;
        return Ok(());
    }
    writeln!(
        out,
        "delayed jobs: {total} waiting, by level (every job's):"
    )?;
    write_table(out, &["LEVEL", "TTL", "WAITING"], &rows)?;
    Ok(())
}

/// `paused` or `running`, read from the broker; `-` without one.
async fn state(ctx: &OpsContext, job: &Job) -> anyhow::Result<String> {
    if !ctx.connected {
        return Ok("-".to_owned());
    }
    let paused = jobs_core::control::is_paused(ctx.transport.as_ref(), job.name()).await?;
    Ok(if paused { "paused" } else { "running" }.to_owned())
}

fn row(settings: &JobSettings, state: String) -> [String; 9] {
    let job = settings.job();
    [
        job.name().to_owned(),
        if job.exchange().is_empty() {
            "(default)".to_owned()
        } else {
            job.exchange().to_owned()
        },
        job.kind().to_string(),
        binding(settings),
        job.queue().to_owned(),
        settings.retries().to_string(),
        humantime::format_duration(settings.timeout()).to_string(),
        schedule(settings.job()),
        state,
    ]
}

/// The job's schedule, or `-`.
pub(crate) fn schedule(job: &Job) -> String {
    match job.options().schedule.map(Schedule::parse) {
        None => "-".to_owned(),
        Some(Ok(schedule)) => schedule.to_string(),
        Some(Err(err)) => format!("invalid: {err}"),
    }
}

/// The binding key, or for a headers exchange the header match: `all: a=1, b=2`.
fn binding(settings: &JobSettings) -> String {
    let job = settings.job();
    match job.header_binding() {
        Some(headers) => {
            let values: Vec<String> = headers
                .values
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            format!("{}: {}", headers.matching.as_str(), values.join(", "))
        }
        None => job.binding().to_owned(),
    }
}

/// Writes `rows` under `header`, columns padded to their widest cell.
pub(crate) fn write_table<const N: usize>(
    out: &mut (dyn Write + Send),
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut (dyn Write + Send), cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < N {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pads_columns_to_the_widest_cell() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &["A", "BB"],
            &[["long".into(), "x".into()], ["s".into(), "y".into()]],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A     BB\nlong  x\ns     y\n"
        );
    }
}
