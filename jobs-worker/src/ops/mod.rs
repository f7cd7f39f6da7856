//! Operator commands that act on the broker: `jobs`, `topology`, `errors`, `schedules`,
//! `pause` and `resume`.
//!
//! Each command is a clap `Args`/`Subcommand` type and a `run` function taking an
//! [`OpsContext`]; `cli.rs` parses, builds the context and calls them. A command writes its
//! report to the `out` it is given (stdout in the CLI) and returns the exit code: 0 on success,
//! 1 when the command ran but found a problem (topology drift, a message that is not there, a
//! purge refused without `--yes`, replays that failed). Broker and connection errors are
//! returned as errors.
//!
//! Progress of long operations (`errors replay`) goes to stderr, one line every
//! [`PROGRESS_EVERY`] messages or every second, and only when stderr is a terminal: piped or
//! captured, a command prints its final summary to `out` and nothing else.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::Duration;

use jobs_core::JobSettings;
use jobs_core::transport::Transport;
use tokio::time::Instant;

pub(crate) mod error_queue;
pub(crate) mod jobs;
pub(crate) mod pause;
pub(crate) mod schedules;
pub(crate) mod topology;

#[cfg(test)]
mod tests;

/// What every operator command works with.
#[derive(Debug, Clone)]
pub(crate) struct OpsContext {
    /// The broker.
    pub(crate) transport: Arc<dyn Transport>,
    /// Whether `transport` is the broker, rather than an in-memory stand-in for a command
    /// that needs none (`jobs` without a broker, `topology print`).
    pub(crate) connected: bool,
    /// The jobs linked into this binary (or the `--jobs` subset), with their options resolved.
    pub(crate) jobs: Vec<JobSettings>,
}

/// A progress line goes out at least every this many messages…
pub(crate) const PROGRESS_EVERY: u64 = 1000;
/// …or when this long has passed since the last one.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Progress of a long operation on stderr: `replayed 1200/5000`, throttled, and only on a
/// terminal.
pub(crate) struct Progress {
    verb: &'static str,
    total: u64,
    /// Where progress lines go; `None` when they are not shown.
    sink: Option<Box<dyn std::io::Write + Send>>,
    last_count: u64,
    last_at: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("verb", &self.verb)
            .field("total", &self.total)
            .field("shown", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Progress of `total` steps, shown when stderr is a terminal.
    pub(crate) fn new(verb: &'static str, total: u64) -> Self {
        let stderr = std::io::stderr();
        let sink = stderr
            .is_terminal()
            .then(|| Box::new(stderr) as Box<dyn std::io::Write + Send>);
        Self::to(verb, total, sink)
    }

    /// Progress lines to `sink`, or none.
    fn to(verb: &'static str, total: u64, sink: Option<Box<dyn std::io::Write + Send>>) -> Self {
        Self {
            verb,
            total,
            sink,
            last_count: 0,
            last_at: Instant::now(),
        }
    }

    /// Reports that `done` steps are done; prints when enough steps or time have passed.
    pub(crate) fn tick(&mut self, done: u64) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        let now = Instant::now();
        if done.saturating_sub(self.last_count) >= PROGRESS_EVERY
            || now.duration_since(self.last_at) >= PROGRESS_INTERVAL
        {
            self.last_count = done;
            self.last_at = now;
            // Progress is best effort: a closed stderr must not fail the operation.
            let _ = writeln!(sink, "{} {done}/{}", self.verb, self.total);
        }
    }
}

/// `text` with its control characters (and the bidirectional overrides that reorder what a
/// terminal shows) escaped as `\u{..}`: for anything printed that came from a message, so
/// that no sender can write escape sequences to the operator's terminal.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
