//! The results of every run, their medians, and the table and JSON they are printed as.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::median;

/// Which client a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The raw lapin reference.
    Raw,
    /// The framework.
    Framework,
}

/// Which column of the second table a figure belongs to: whether the jobs waited in the
/// broker's shared delay cascade or went straight to their queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A plain enqueue, or a backoff retry through the job's own retry queue.
    Direct,
    /// A delayed enqueue, or a `retry_after` retry, through the delay cascade.
    Cascade,
}

/// One line of a table: a measure on one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    queue: String,
    measure: String,
    unit: &'static str,
}

/// The samples of one table with two columns, in the order the lines first appeared.
#[derive(Debug, Default)]
struct Columns {
    lines: Vec<Line>,
    left: Vec<Vec<f64>>,
    right: Vec<Vec<f64>>,
}

impl Columns {
    fn add(&mut self, queue: &str, measure: &str, unit: &'static str, left: bool, value: f64) {
        let line = Line {
            queue: queue.to_owned(),
            measure: measure.to_owned(),
            unit,
        };
        let index = if let Some(index) = self.lines.iter().position(|l| *l == line) {
            index
        } else {
            self.lines.push(line);
            self.left.push(Vec::new());
            self.right.push(Vec::new());
            self.lines.len() - 1
        };
        if left {
            self.left[index].push(value);
        } else {
            self.right[index].push(value);
        }
    }

    /// Each line with the median of each column and right / left.
    fn medians(&self) -> impl Iterator<Item = (&Line, Option<f64>, Option<f64>, Option<f64>)> {
        self.lines.iter().enumerate().map(|(index, line)| {
            let left = median(&self.left[index]);
            let right = median(&self.right[index]);
            let ratio = match (left, right) {
                (Some(left), Some(right)) if left > 0.0 => Some(right / left),
                _ => None,
            };
            (line, left, right, ratio)
        })
    }
}

/// Every sample of every run: the framework against raw lapin, and the direct path against
/// the delay cascade.
#[derive(Debug, Default)]
pub struct Samples {
    clients: Columns,
    paths: Columns,
}

impl Samples {
    /// Adds one run's `value` of `measure` on `queue` for `side`.
    pub fn add(&mut self, queue: &str, measure: &str, unit: &'static str, side: Side, value: f64) {
        self.clients
            .add(queue, measure, unit, side == Side::Raw, value);
    }

    /// Adds one run's `value` of `measure` on `queue` for `path`, to the second table.
    pub fn add_path(
        &mut self,
        queue: &str,
        measure: &str,
        unit: &'static str,
        path: Path,
        value: f64,
    ) {
        self.paths
            .add(queue, measure, unit, path == Path::Direct, value);
    }

    /// The medians, one row per line.
    #[must_use]
    pub fn rows(&self) -> Vec<Row> {
        self.clients
            .medians()
            .map(|(line, raw, framework, ratio)| Row {
                queue: line.queue.clone(),
                measure: line.measure.clone(),
                unit: line.unit,
                raw,
                framework,
                ratio,
            })
            .collect()
    }

    /// The medians of the second table, one row per line.
    #[must_use]
    pub fn cascade_rows(&self) -> Vec<CascadeRow> {
        self.paths
            .medians()
            .map(|(line, direct, cascade, ratio)| CascadeRow {
                queue: line.queue.clone(),
                measure: line.measure.clone(),
                unit: line.unit,
                direct,
                cascade,
                ratio,
            })
            .collect()
    }
}

/// The median figures of one measure on one queue.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `classic`, `quorum` or `memory`.
    pub queue: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// Raw lapin's median, when it ran this measure.
    pub raw: Option<f64>,
    /// The framework's median.
    pub framework: Option<f64>,
    /// framework / raw.
    pub ratio: Option<f64>,
}

/// The median figures of one measure of delays and retries on one queue: the framework's jobs
/// straight to their queue (or through their own retry queue) against through the cascade.
#[derive(Clone, Debug, Serialize)]
pub struct CascadeRow {
    /// The type of the job's work queue.
    pub queue: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: &'static str,
    /// The median without the cascade: plain enqueues, backoff retries.
    pub direct: Option<f64>,
    /// The median through the cascade: delayed enqueues, `retry_after` retries.
    pub cascade: Option<f64>,
    /// cascade / direct.
    pub ratio: Option<f64>,
}

/// Both tables' rows.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The framework against raw lapin.
    pub rows: Vec<Row>,
    /// Delays and retries: direct against through the cascade.
    pub cascade: Vec<CascadeRow>,
}

/// The table, in Markdown so that it pastes into the README as it is.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| queue | measure | raw lapin | framework | framework/raw |\n|---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} |",
            row.queue,
            row.measure,
            figure(row.raw),
            figure(row.framework),
        );
    }
    out
}

/// The second table, of delays and retries, in Markdown.
#[must_use]
pub fn cascade_table(rows: &[CascadeRow]) -> String {
    let mut out = String::from(
        "| queue | measure | direct | cascade | cascade/direct |\n|---|---|---:|---:|---:|\n",
    );
    for row in rows {
        let figure = |value: Option<f64>| {
            value.map_or_else(|| "—".to_owned(), |v| format_figure(v, row.unit))
        };
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} |",
            row.queue,
            row.measure,
            figure(row.direct),
            figure(row.cascade),
        );
    }
    out
}

fn format_figure(value: f64, unit: &str) -> String {
    match unit {
        "jobs/s" | "jobs" => format!("{value:.0} {unit}"),
        "s" => format!("{value:.2} {unit}"),
        _ => format!("{value:.1} {unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hold_the_medians_and_their_ratio() {
        let mut samples = Samples::default();
        for (raw, framework) in [(100.0, 90.0), (120.0, 130.0), (110.0, 99.0)] {
            samples.add("classic", "end to end", "jobs/s", Side::Raw, raw);
            samples.add(
                "classic",
                "end to end",
                "jobs/s",
                Side::Framework,
                framework,
            );
        }
        samples.add("memory", "end to end", "jobs/s", Side::Framework, 5.0);
        let rows = samples.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].raw, rows[0].framework), (Some(110.0), Some(99.0)));
        assert!((rows[0].ratio.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!((rows[1].raw, rows[1].ratio), (None, None));
        let table = table(&rows);
        assert!(
            table.contains("| classic | end to end | 110 jobs/s | 99 jobs/s | 0.90 |"),
            "{table}"
        );
        assert!(
            table.contains("| memory | end to end | — | 5 jobs/s | — |"),
            "{table}"
        );
    }

    #[test]
    fn the_second_table_holds_direct_against_cascade() {
        let mut samples = Samples::default();
        for (direct, cascade) in [(1.0, 3.0), (2.0, 2.0), (1.5, 2.5)] {
            samples.add_path("quorum", "retry wall", "s", Path::Direct, direct);
            samples.add_path("quorum", "retry wall", "s", Path::Cascade, cascade);
        }
        samples.add_path("quorum", "late", "jobs", Path::Cascade, 4.0);
        assert!(samples.rows().is_empty());
        let rows = samples.cascade_rows();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].direct, rows[0].cascade), (Some(1.5), Some(2.5)));
        let table = cascade_table(&rows);
        assert!(
            table.contains("| quorum | retry wall | 1.50 s | 2.50 s | 1.67 |"),
            "{table}"
        );
        assert!(
            table.contains("| quorum | late | — | 4 jobs | — |"),
            "{table}"
        );
    }
}
