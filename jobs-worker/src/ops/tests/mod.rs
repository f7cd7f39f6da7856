//! The operator commands, run in-process as the CLI nests them: on the in-memory broker, and
//! against RabbitMQ.

mod amqp;
mod memory;

use std::process::ExitCode;

use clap::Parser as _;

use crate::ops::{self, OpsContext};

/// The command line of the operator commands, as the CLI nests them.
#[derive(Debug, clap::Parser)]
enum Command {
    Jobs(ops::jobs::JobsArgs),
    Topology(ops::topology::TopologyArgs),
    Errors(ops::error_queue::ErrorsArgs),
    Schedules(ops::schedules::SchedulesArgs),
    Pause(ops::pause::PauseArgs),
    Resume(ops::pause::PauseArgs),
}

/// Runs `args` (a command line without the program name) and returns the exit code and what
/// the command wrote.
pub(crate) async fn run(ctx: &OpsContext, args: &str) -> (ExitCode, String) {
    let command = Command::try_parse_from(std::iter::once("ops").chain(args.split_whitespace()))
        .unwrap_or_else(|err| panic!("`{args}`: {err}"));
    let mut out = Vec::new();
    let code = match command {
        Command::Jobs(args) => ops::jobs::run(args, ctx, &mut out).await,
        Command::Topology(args) => ops::topology::run(args, ctx, &mut out).await,
        Command::Errors(args) => ops::error_queue::run(args, ctx, &mut out).await,
        Command::Schedules(args) => ops::schedules::run(args, ctx, &mut out).await,
        Command::Pause(args) => ops::pause::pause(args, ctx, &mut out).await,
        Command::Resume(args) => ops::pause::resume(args, ctx, &mut out).await,
    }
    .unwrap_or_else(|err| panic!("`{args}`: {err:#}"));
    (code, String::from_utf8(out).unwrap())
}

mod progress {
    use std::sync::{Arc, Mutex};

    use crate::ops::*;

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
