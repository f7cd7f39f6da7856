//! Operator commands that act on the broker: `jobs`, `topology`, `errors`.
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

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::JobSettings;
use jobs_core::transport::Transport;
use tokio::time::Instant;

pub mod errors;
pub mod jobs;
pub mod topology;

/// What every operator command works with.
#[derive(Debug, Clone)]
pub struct OpsContext {
    /// The broker.
    pub transport: Arc<dyn Transport>,
    /// The jobs linked into this binary (or the `--jobs` subset), with their options resolved.
    pub jobs: Vec<JobSettings>,
}

/// A progress line goes out at least every this many messages…
pub const PROGRESS_EVERY: u64 = 1000;
/// …or when this long has passed since the last one.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Progress of a long operation on stderr: `replayed 1200/5000`, throttled, and only on a
/// terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    verb: &'static str,
    total: u64,
    enabled: bool,
    last_count: u64,
    last_at: Instant,
}

impl Progress {
    /// Progress of `total` steps, shown when stderr is a terminal.
    pub(crate) fn new(verb: &'static str, total: u64) -> Self {
        Self {
            verb,
            total,
            enabled: std::io::stderr().is_terminal(),
            last_count: 0,
            last_at: Instant::now(),
        }
    }

    /// Reports that `done` steps are done; prints when enough steps or time have passed.
    pub(crate) fn tick(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if done.saturating_sub(self.last_count) >= PROGRESS_EVERY
            || now.duration_since(self.last_at) >= PROGRESS_INTERVAL
        {
            self.last_count = done;
            self.last_at = now;
            // Progress is best effort: a closed stderr must not fail the operation.
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("{} {done}/{}\n", self.verb, self.total),
            );
        }
    }
}
