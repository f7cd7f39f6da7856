//! `jobs`: the jobs this binary serves, as a table.

use std::io::Write;
use std::process::ExitCode;

use jobs_core::JobSettings;

use super::OpsContext;

/// Lists the jobs: name, exchange and its kind, binding, queue, retries and timeout.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct JobsArgs {}

/// Writes the table of `ctx.jobs` to `out`.
///
/// # Errors
///
/// When writing to `out` fails.
#[allow(
    clippy::unused_async,
    reason = "every operator command is async, for the CLI"
)]
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
        "NAME", "EXCHANGE", "KIND", "BINDING", "QUEUE", "RETRIES", "TIMEOUT",
    ];
    let rows: Vec<[String; 7]> = ctx.jobs.iter().map(row).collect();
    write_table(out, &header, &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn row(settings: &JobSettings) -> [String; 7] {
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
    ]
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
