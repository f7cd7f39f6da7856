//! Operator commands that act on the broker: `jobs`, `topology`, `errors`.
//!
//! Each command is a clap `Args`/`Subcommand` type and a `run` function taking an
//! [`OpsContext`]; `cli.rs` parses, builds the context and calls them.

use std::sync::Arc;

use jobs_core::JobSettings;
use jobs_core::transport::Transport;

/// What every operator command works with.
#[derive(Debug, Clone)]
pub struct OpsContext {
    /// The broker.
    pub transport: Arc<dyn Transport>,
    /// The jobs linked into this binary (or the `--jobs` subset), with their options resolved.
    pub jobs: Vec<JobSettings>,
}
