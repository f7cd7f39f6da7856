//! The ledger: every job of a scenario has a unique id, and each side records what it saw of it.
//!
//! * the producer records an id as *attempted* before it enqueues, and *confirmed* when
//!   `enqueue` returned `Ok` (the broker confirmed and routed it);
//! * the handler records it as *handled* each time it runs to completion, in this process or, for
//!   worker child processes, as a line in a file read back with [`Ledger::load_handled`];
//! * the drain of the error queue records it as *failed*.
//!
//! The [`Report`] then says what the delivery promise is about: *lost* jobs (confirmed, yet
//! neither handled nor failed; must be none), *duplicates* (handlings beyond the first,
//! bounded by the deliveries in flight when the faults hit) and *unconfirmed but handled* (a
//! publish whose confirm was lost with the connection, yet reached the queue: allowed).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The record of one scenario's jobs. Cheap to clone: clones share the record.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    attempted: HashSet<u64>,
    confirmed: HashSet<u64>,
    handled: HashMap<u64, u32>,
    failed: HashMap<u64, u32>,
}

impl Ledger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panicking recorder leaves the sets as they were: still worth reporting.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The producer is about to enqueue `id`.
    pub fn attempted(&self, id: u64) {
        self.entries().attempted.insert(id);
    }

    /// `enqueue` returned `Ok` for `id`: the broker confirmed it and it was routed.
    pub fn confirmed(&self, id: u64) {
        self.entries().confirmed.insert(id);
    }

    /// A handler ran to completion for `id`; called once per handling, duplicates included.
    pub fn handled(&self, id: u64) {
        *self.entries().handled.entry(id).or_default() += 1;
    }

    /// The drain of the error queue found `id` there.
    pub fn failed(&self, id: u64) {
        *self.entries().failed.entry(id).or_default() += 1;
    }

    /// Records as handled every id of `path`, a file of one decimal id per line written by
    /// handlers in worker child processes, each line with one `write` to a file opened for
    /// appending. Only whole lines count: a last line without its newline was cut short by a
    /// killed writer, so that handling counts as not recorded. Give each writer process a file
    /// of its own: lines appended after a torn one would join it into a wrong id. Each call
    /// adds the file's handlings, so load each file once.
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn load_handled(&self, path: &Path) -> std::io::Result<usize> {
        let text = std::fs::read_to_string(path)?;
        let mut entries = self.entries();
        let mut loaded = 0;
        let whole_lines = text
            .split_inclusive('\n')
            .filter(|line| line.ends_with('\n'));
        for id in whole_lines.filter_map(|line| line.trim().parse::<u64>().ok()) {
            *entries.handled.entry(id).or_default() += 1;
            loaded += 1;
        }
        Ok(loaded)
    }

    /// How many distinct ids were handled or failed so far: what a scenario waits on.
    #[must_use]
    pub fn settled(&self) -> usize {
        let entries = self.entries();
        entries
            .handled
            .keys()
            .chain(entries.failed.keys())
            .collect::<HashSet<_>>()
            .len()
    }

    /// How many distinct ids were confirmed so far.
    #[must_use]
    pub fn confirmed_count(&self) -> usize {
        self.entries().confirmed.len()
    }

    /// The figures of the scenario as recorded so far.
    #[must_use]
    pub fn report(&self) -> Report {
        let entries = self.entries();
        let settled =
            |id: &u64| entries.handled.contains_key(id) || entries.failed.contains_key(id);
        let mut lost: Vec<u64> = entries
            .confirmed
            .iter()
            .filter(|id| !settled(id))
            .copied()
            .collect();
        lost.sort_unstable();
        let seen: HashSet<u64> = entries
            .handled
            .keys()
            .chain(entries.failed.keys())
            .copied()
            .collect();
        let mut unknown: Vec<u64> = seen
            .iter()
            .filter(|id| !entries.attempted.contains(id))
            .copied()
            .collect();
        unknown.sort_unstable();
        let extra = |counts: &HashMap<u64, u32>| -> u64 {
            counts
                .values()
                .map(|&n| u64::from(n.saturating_sub(1)))
                .sum()
        };
        // An id both handled and failed ran its outcome twice: also a duplicate.
        let both = entries
            .handled
            .keys()
            .filter(|id| entries.failed.contains_key(id))
            .count() as u64;
        Report {
            attempted: entries.attempted.len(),
            confirmed: entries.confirmed.len(),
            handled: entries.handled.len(),
            failed: entries.failed.len(),
            lost,
            duplicates: extra(&entries.handled) + extra(&entries.failed) + both,
            unconfirmed_handled: seen
                .iter()
                .filter(|id| entries.attempted.contains(id) && !entries.confirmed.contains(id))
                .count(),
            unknown,
        }
    }
}

/// What a scenario's ledger shows; [`Report::check`] holds it to the delivery promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Distinct ids the producer tried to enqueue.
    pub attempted: usize,
    /// Distinct ids whose enqueue returned `Ok`.
    pub confirmed: usize,
    /// Distinct ids a handler completed.
    pub handled: usize,
    /// Distinct ids found in the error queue.
    pub failed: usize,
    /// Confirmed ids neither handled nor failed: the promise broken. Must be empty.
    pub lost: Vec<u64>,
    /// Handlings and error-queue entries beyond the first of each id.
    pub duplicates: u64,
    /// Ids handled or failed whose enqueue did not return `Ok`.
    pub unconfirmed_handled: usize,
    /// Ids handled or failed that were never attempted: a broken scenario. Must be empty.
    pub unknown: Vec<u64>,
}

impl Report {
    /// Asserts the delivery promise: nothing lost, no id out of nowhere, and at most
    /// `duplicate_bound` duplicates (the deliveries in flight when the faults hit; 0 without
    /// faults). Prints the scenario's row first, and appends it to the file named by
    /// `JOBS_FAULTS_REPORT` when that is set, so a full run leaves its table behind.
    ///
    /// # Panics
    ///
    /// When the promise does not hold, with the figures and the first lost ids.
    pub fn check(&self, scenario: &str, duplicate_bound: u64) {
        let row = self.row(scenario, duplicate_bound);
        eprintln!("{row}");
        if let Some(path) = std::env::var_os("JOBS_FAULTS_REPORT") {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut file| writeln!(file, "{row}"));
            if let Err(error) = appended {
                eprintln!(
                    "could not append to {}: {error}",
                    Path::new(&path).display()
                );
            }
        }
        self.assert_promise(scenario, duplicate_bound);
    }

    /// The assertions of [`check`](Self::check), without printing or recording the row: for
    /// the ledger's own tests, whose made-up scenarios must not reach a run's report.
    ///
    /// # Panics
    ///
    /// When the promise does not hold.
    pub fn assert_promise(&self, scenario: &str, duplicate_bound: u64) {
        assert!(
            self.lost.is_empty(),
            "{scenario}: {} confirmed jobs lost, first {:?}; {self}",
            self.lost.len(),
            &self.lost[..self.lost.len().min(20)]
        );
        assert!(
            self.unknown.is_empty(),
            "{scenario}: ids never attempted were handled: {:?}",
            &self.unknown[..self.unknown.len().min(20)]
        );
        assert!(
            self.duplicates <= duplicate_bound,
            "{scenario}: {} duplicates over the bound of {duplicate_bound}; {self}",
            self.duplicates
        );
    }

    /// The scenario's row of the README's Reliability table.
    #[must_use]
    pub fn row(&self, scenario: &str, duplicate_bound: u64) -> String {
        format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} (≤ {duplicate_bound}) | {} |",
            self.attempted,
            self.confirmed,
            self.handled,
            self.failed,
            self.lost.len(),
            self.duplicates,
            self.unconfirmed_handled,
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempted {}, confirmed {}, handled {}, failed {}, lost {}, duplicates {}, \
             unconfirmed but handled {}",
            self.attempted,
            self.confirmed,
            self.handled,
            self.failed,
            self.lost.len(),
            self.duplicates,
            self.unconfirmed_handled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_free_run_reports_nothing_lost_and_no_duplicates() {
        let ledger = Ledger::new();
        for id in 0..10 {
            ledger.attempted(id);
            ledger.confirmed(id);
        }
        for id in 0..9 {
            ledger.handled(id);
        }
        ledger.failed(9);
        let report = ledger.report();
        assert_eq!(report.lost, Vec::<u64>::new());
        assert_eq!(
            (report.handled, report.failed, report.duplicates),
            (9, 1, 0)
        );
        report.assert_promise("fault-free", 0);
    }

    #[test]
    fn a_confirmed_job_never_settled_is_lost() {
        let ledger = Ledger::new();
        for id in [1, 2] {
            ledger.attempted(id);
            ledger.confirmed(id);
        }
        ledger.handled(1);
        assert_eq!(ledger.report().lost, vec![2]);
        let checked = std::panic::catch_unwind(|| ledger.report().assert_promise("loses one", 0));
        assert!(checked.is_err(), "a lost job fails the check");
    }

    #[test]
    fn redeliveries_count_as_duplicates_and_unconfirmed_handlings_are_reported() {
        let ledger = Ledger::new();
        for id in 0..3 {
            ledger.attempted(id);
        }
        ledger.confirmed(0);
        ledger.confirmed(1);
        ledger.handled(0);
        ledger.handled(0);
        ledger.handled(1);
        ledger.failed(1);
        ledger.handled(2);
        let report = ledger.report();
        assert_eq!(
            report.duplicates, 2,
            "a second handling, and handled plus failed"
        );
        assert_eq!(report.unconfirmed_handled, 1);
        assert!(std::panic::catch_unwind(|| report.assert_promise("over bound", 1)).is_err());
        report.assert_promise("within bound", 2);
    }

    #[test]
    fn handled_ids_load_from_a_workers_file_skipping_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("jobs-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("handled");
        std::fs::write(&path, "1\n2\n2\n3").unwrap();
        let ledger = Ledger::new();
        assert_eq!(ledger.load_handled(&path).unwrap(), 3);
        assert_eq!(ledger.settled(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
