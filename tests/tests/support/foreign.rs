//! Running programs in other languages from a test: whether their tools are installed (skip, or
//! fail under `JOBS_REQUIRE_BROKER`), Python code generated from a `.proto` outside the
//! repository, and child processes whose failure fails the test with everything they printed.
//!
//! Shared by the cross-language tests (`amqp_cross_language.rs`, `amqp_cross_language_calls.rs`)
//! through `#[path]`, as `worker_jobs.rs` is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// What is missing of the Python the cross-language programs need, if anything.
pub(crate) fn python_missing() -> Option<&'static str> {
    let ready = succeeds(
        Command::new("python3").args(["-c", "import pika, google.protobuf, grpc_tools.protoc"]),
    );
    (!ready).then_some("python3 with pika, protobuf and grpcio-tools (pip)")
}

/// Whether nothing in `missing` is missing. When something is, `test` skips, naming it, or
/// fails under `JOBS_REQUIRE_BROKER` (so CI cannot pass by skipping).
pub(crate) fn tools_ready(test: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    assert!(
        std::env::var_os("JOBS_REQUIRE_BROKER").is_none(),
        "JOBS_REQUIRE_BROKER is set and {test} needs {missing}; scripts/foreign-deps installs them"
    );
    eprintln!("skipped: {test} needs {missing}; scripts/foreign-deps installs them");
    false
}

/// Generates the Python code of `proto` (a file in `proto_dir`) into `out`, with the protoc
/// that grpcio-tools bundles.
pub(crate) fn generate_python(proto_dir: &Path, proto: &str, out: &Path) {
    std::fs::create_dir_all(out).expect("the generated code's directory");
    run(
        "python3 -m grpc_tools.protoc",
        Command::new("python3")
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(proto_dir)
            .arg(arg("--python_out=", out))
            .arg(proto),
    );
}

/// `python3 script`, importing the code generated into `generated` and reaching the broker at
/// `url` through `JOBS_AMQP_URL` (not an argument, where its password would show in the process
/// list).
pub(crate) fn python(script: &Path, generated: &Path, url: &str) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(script)
        .env("JOBS_AMQP_URL", url)
        .env("PYTHONPATH", generated)
        // No `__pycache__` left in the repository's tests/foreign/python.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// The programs of `tests/foreign/<lang>`.
pub(crate) fn foreign_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("foreign")
}

/// `--flag=` followed by a path, as protoc takes its output directories.
pub(crate) fn arg(flag: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(path);
    arg
}

/// Whether `command` runs and exits successfully.
pub(crate) fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

/// Runs `command` and returns its standard output, telling the runtime that this thread blocks
/// so that the engine's tasks move to another one meanwhile.
pub(crate) fn run(what: &str, command: &mut Command) -> String {
    tokio::task::block_in_place(|| output(what, command))
}

/// Runs `command` and returns its standard output; a failure fails the test with everything it
/// printed.
pub(crate) fn output(what: &str, command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A directory of its own under the system's temporary directory, removed when dropped: the
/// generated code and the built programs never land in the repository.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("jobs-crosslang-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temp dir");
        Self(path)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
