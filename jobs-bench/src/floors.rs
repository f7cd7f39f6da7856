//! The floors the figures must keep (`--check-floors`): one command shows a regression.
//!
//! The floors are the project's performance targets (docs/performance.md, "Floors"). They are
//! checked here, on a benchmark run, and never in the tests: a test that timed something would
//! fail on a busy machine and prove nothing on a quiet one.

use std::fmt;

use crate::report::Row;

/// What a figure must keep to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// framework / raw at least this: throughput.
    RatioAtLeast(f64),
    /// framework / raw at most this: CPU per job.
    RatioAtMost(f64),
    /// framework − raw at most this many of the row's unit: latency, where a ratio of two
    /// small figures says little.
    ExcessAtMost(f64),
    /// The framework's figure at least this: an absolute target.
    AtLeast(f64),
}

/// A rule for one measure on one queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floor {
    /// `classic`, `quorum` or `memory`.
    pub queue: &'static str,
    /// The row's measure.
    pub measure: &'static str,
    /// What it must keep to.
    pub rule: Rule,
}

/// The floors checked by `--check-floors`.
pub const FLOORS: &[Floor] = &[
    floor("classic", "end-to-end rate", Rule::RatioAtLeast(1.0)),
    floor("quorum", "end-to-end rate", Rule::RatioAtLeast(1.0)),
    floor("classic", "publish CPU", Rule::RatioAtMost(1.2)),
    floor("quorum", "publish CPU", Rule::RatioAtMost(1.2)),
    floor("classic", "end-to-end CPU", Rule::RatioAtMost(1.1)),
    floor("quorum", "end-to-end CPU", Rule::RatioAtMost(1.1)),
    floor(
        "classic",
        "p99 latency at 1000/s",
        Rule::ExcessAtMost(1_000.0),
    ),
    floor(
        "quorum",
        "p99 latency at 1000/s",
        Rule::ExcessAtMost(1_000.0),
    ),
    floor("memory", "end-to-end rate", Rule::AtLeast(1_000_000.0)),
    floor("memory", "end-to-end rate", Rule::RatioAtLeast(0.5)),
];

const fn floor(queue: &'static str, measure: &'static str, rule: Rule) -> Floor {
    Floor {
        queue,
        measure,
        rule,
    }
}

/// One floor's outcome on a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The floor.
    pub floor: Floor,
    /// The figure compared (a ratio, an excess or the framework's figure).
    pub value: f64,
    /// Whether it keeps to the floor.
    pub kept: bool,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Floor {
            queue,
            measure,
            rule,
        } = self.floor;
        let verdict = if self.kept { "ok" } else { "NOT KEPT" };
        // Three decimals: a ratio that misses its floor by a hair must not print as the floor.
        let (what, bound) = match rule {
            Rule::RatioAtLeast(bound) => ("ratio", format!(">= {bound}")),
            Rule::RatioAtMost(bound) => ("ratio", format!("<= {bound}")),
            Rule::ExcessAtMost(bound) => ("framework - raw", format!("<= {bound}")),
            Rule::AtLeast(bound) => ("framework", format!(">= {bound}")),
        };
        write!(
            f,
            "{verdict}: {queue} {measure}: {what} {:.3} (floor {bound})",
            self.value
        )
    }
}

/// Checks every floor whose row the run produced; a floor without its row or figures (a
/// measure, queue or client left out) is not checked.
#[must_use]
pub fn check(rows: &[Row]) -> Vec<Checked> {
    FLOORS
        .iter()
        .filter_map(|floor| {
            let row = rows
                .iter()
                .find(|row| row.queue == floor.queue && row.measure == floor.measure)?;
            let (value, kept) = match floor.rule {
                Rule::RatioAtLeast(bound) => {
                    let ratio = row.ratio?;
                    (ratio, ratio >= bound)
                }
                Rule::RatioAtMost(bound) => {
                    let ratio = row.ratio?;
                    (ratio, ratio <= bound)
                }
                Rule::ExcessAtMost(bound) => {
                    let excess = row.framework? - row.raw?;
                    (excess, excess <= bound)
                }
                Rule::AtLeast(bound) => {
                    let value = row.framework?;
                    (value, value >= bound)
                }
            };
            Some(Checked {
                floor: *floor,
                value,
                kept,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(queue: &str, measure: &str, raw: Option<f64>, framework: f64) -> Row {
        Row {
            queue: queue.to_owned(),
            measure: measure.to_owned(),
            unit: "",
            raw,
            framework: Some(framework),
            ratio: raw.map(|raw| framework / raw),
        }
    }

    #[test]
    fn each_rule_keeps_or_fails_and_missing_rows_are_not_checked() {
        let rows = [
            row("classic", "end-to-end rate", Some(100.0), 99.0),
            row("classic", "publish CPU", Some(10.0), 12.0),
            row("quorum", "p99 latency at 1000/s", Some(2_000.0), 3_500.0),
            row("memory", "end-to-end rate", None, 1_200_000.0),
        ];
        let checked = check(&rows);
        let kept = |queue: &str, measure: &str| -> Vec<bool> {
            checked
                .iter()
                .filter(|c| c.floor.queue == queue && c.floor.measure == measure)
                .map(|c| c.kept)
                .collect()
        };
        assert_eq!(kept("classic", "end-to-end rate"), [false]);
        assert_eq!(kept("classic", "publish CPU"), [true]);
        assert_eq!(kept("quorum", "p99 latency at 1000/s"), [false]);
        // Without a baseline, only the absolute floor.
        assert_eq!(kept("memory", "end-to-end rate"), [true]);
        assert_eq!(checked.len(), 4, "{checked:#?}");
        assert!(
            checked[0]
                .to_string()
                .starts_with("NOT KEPT: classic end-to-end rate")
        );
    }
}
