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

use std::io::{IsTerminal, Write as _};
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn progress_is_a_line_every_thousand_steps_not_every_step() {
        let sink = Shared::default();
        let mut progress = Progress::to("replayed", 2500, Some(Box::new(sink.clone())));
        for done in 1..=2500 {
            progress.tick(done);
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        // Unless the machine is slow enough for a second to pass, only the step count
        // triggers lines.
        assert!(text.lines().count() <= 4, "{text}");
        assert!(text.contains("replayed 1000/2500\n"), "{text}");
        assert!(text.contains("replayed 2000/2500\n"), "{text}");
    }

    #[test]
    fn printable_escapes_control_characters_and_bidi_overrides() {
        assert_eq!(printable("plain text ✓"), "plain text ✓");
        assert_eq!(
            printable("a\u{1b}[31mred\r\n\u{7}\u{9b}\u{202e}x"),
            "a\\u{1b}[31mred\\u{d}\\u{a}\\u{7}\\u{9b}\\u{202e}x"
        );
    }
}
