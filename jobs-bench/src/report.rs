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

/// One line of the table: a measure on one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    queue: String,
    measure: String,
    unit: &'static str,
}

/// Every sample of every run, in the order the lines first appeared.
#[derive(Debug, Default)]
pub struct Samples {
    lines: Vec<Line>,
    raw: Vec<Vec<f64>>,
    framework: Vec<Vec<f64>>,
}

impl Samples {
    /// Adds one run's `value` of `measure` on `queue` for `side`.
    pub fn add(&mut self, queue: &str, measure: &str, unit: &'static str, side: Side, value: f64) {
        let line = Line {
            queue: queue.to_owned(),
            measure: measure.to_owned(),
            unit,
        };
        let index = if let Some(index) = self.lines.iter().position(|l| *l == line) {
            index
        } else {
            self.lines.push(line);
            self.raw.push(Vec::new());
            self.framework.push(Vec::new());
            self.lines.len() - 1
        };
        match side {
            Side::Raw => self.raw[index].push(value),
            Side::Framework => self.framework[index].push(value),
        }
    }

    /// The medians, one row per line.
    #[must_use]
    pub fn rows(&self) -> Vec<Row> {
        self.lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let raw = median(&self.raw[index]);
                let framework = median(&self.framework[index]);
                let ratio = match (raw, framework) {
                    (Some(raw), Some(framework)) if raw > 0.0 => Some(framework / raw),
                    _ => None,
                };
                Row {
                    queue: line.queue.clone(),
                    measure: line.measure.clone(),
                    unit: line.unit,
                    raw,
                    framework,
                    ratio,
                }
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

fn format_figure(value: f64, unit: &str) -> String {
    if unit == "jobs/s" {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
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
}
