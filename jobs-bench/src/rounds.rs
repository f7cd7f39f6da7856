//! Tail latency in interleaved rounds, raw lapin and the framework paired.
//!
//! One paced run's p99 says more about the machine in those seconds than about the client:
//! on a shared 2-core machine a p99 taken minutes apart moves by several times. So latency is
//! taken in many short rounds, raw lapin and the framework one right after the other (which
//! goes first alternates), and each round pairs their p99s. The table gives the spread of each
//! client's p99 across rounds and, what can be judged, the spread of the paired difference:
//! a framework that adds to the tail shows a difference above zero in most rounds, whatever
//! the machine did.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::median;

/// One round at one rate on one queue: both clients' p99, taken one right after the other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    /// `classic` or `quorum`.
    pub queue: String,
    /// The paced rate, in jobs/s.
    pub rate: u32,
    /// Raw lapin's p99, in µs.
    pub raw_p99_us: f64,
    /// The framework's p99, in µs.
    pub framework_p99_us: f64,
}

/// The first quartile, the median and the third quartile of a set of figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Quartiles {
    /// A quarter of the figures are at or below it.
    pub q1: f64,
    /// The median.
    pub median: f64,
    /// Three quarters of the figures are at or below it.
    pub q3: f64,
}

impl Quartiles {
    /// The quartiles of `values` (nearest rank), `None` for none.
    #[must_use]
    pub fn of(values: &[f64]) -> Option<Self> {
        let median = median(values)?;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |quarters: usize| sorted[(quarters * (sorted.len() - 1) + 2) / 4];
        Some(Self {
            q1: at(1),
            median,
            q3: at(3),
        })
    }
}

/// The rounds of one rate on one queue, summed up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundsRow {
    /// `classic` or `quorum`.
    pub queue: String,
    /// The paced rate, in jobs/s.
    pub rate: u32,
    /// How many rounds.
    pub rounds: usize,
    /// Raw lapin's p99 across the rounds, in µs.
    pub raw_p99_us: Quartiles,
    /// The framework's p99 across the rounds, in µs.
    pub framework_p99_us: Quartiles,
    /// framework − raw, round by round, in µs.
    pub difference_us: Quartiles,
    /// Rounds where the framework's p99 was at most raw lapin's.
    pub framework_at_or_below: usize,
}

/// One row per queue and rate, in the order they first ran.
#[must_use]
pub fn rows(rounds: &[Round]) -> Vec<RoundsRow> {
    let mut keys: Vec<(&str, u32)> = Vec::new();
    for round in rounds {
        let key = (round.queue.as_str(), round.rate);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .filter_map(|(queue, rate)| {
            let these: Vec<&Round> = rounds
                .iter()
                .filter(|r| r.queue == queue && r.rate == rate)
                .collect();
            let of = |figure: fn(&Round) -> f64| {
                Quartiles::of(&these.iter().map(|r| figure(r)).collect::<Vec<_>>())
            };
            Some(RoundsRow {
                queue: queue.to_owned(),
                rate,
                rounds: these.len(),
                raw_p99_us: of(|r| r.raw_p99_us)?,
                framework_p99_us: of(|r| r.framework_p99_us)?,
                difference_us: of(|r| r.framework_p99_us - r.raw_p99_us)?,
                framework_at_or_below: these
                    .iter()
                    .filter(|r| r.framework_p99_us <= r.raw_p99_us)
                    .count(),
            })
        })
        .collect()
}

/// The rounds table, in Markdown; each cell is `median (q1 to q3)`.
#[must_use]
pub fn table(rows: &[RoundsRow]) -> String {
    let mut out = String::from(
        "| queue | rate | rounds | raw lapin p99 | framework p99 | framework − raw | \
         framework at or below |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let cell = |q: Quartiles| format!("{:.0} µs ({:.0} to {:.0})", q.median, q.q1, q.q3);
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {}/s | {} | {} | {} | {} | {} of {} |",
            row.queue,
            row.rate,
            row.rounds,
            cell(row.raw_p99_us),
            cell(row.framework_p99_us),
            cell(row.difference_us),
            row.framework_at_or_below,
            row.rounds
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(queue: &str, raw: f64, framework: f64) -> Round {
        Round {
            queue: queue.to_owned(),
            rate: 1_000,
            raw_p99_us: raw,
            framework_p99_us: framework,
        }
    }

    #[test]
    fn quartiles_pick_nearest_ranks() {
        let q = Quartiles::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((q.q1, q.median, q.q3), (2.0, 3.0, 4.0));
        assert_eq!(Quartiles::of(&[]), None);
    }

    #[test]
    fn rounds_pair_the_clients_round_by_round() {
        // The machine's noise moves both clients' p99 together; the paired difference stays.
        let rounds = [
            round("quorum", 1_000.0, 1_100.0),
            round("quorum", 9_000.0, 9_100.0),
            round("quorum", 3_000.0, 2_900.0),
            round("classic", 500.0, 400.0),
        ];
        let rows = rows(&rounds);
        assert_eq!(rows.len(), 2);
        let quorum = &rows[0];
        assert_eq!(quorum.rounds, 3);
        assert_eq!(quorum.difference_us.median, 100.0);
        assert_eq!(quorum.framework_at_or_below, 1);
        assert!(table(&rows).contains("| quorum | 1000/s | 3 |"));
    }
}
