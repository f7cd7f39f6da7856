//! `jobs-bench`: the framework against raw lapin on the same broker, in one run.
//!
//! Both clients move the same ~100-byte protobuf jobs with the same guarantees (persistent
//! messages, durable queues, publisher confirms, a manual ack after handling) through the same
//! broker, one after the other, alternating which goes first from run to run. Each run measures
//! publish-only, consume-only (from the queue the publish filled) and end-to-end throughput with
//! the client's CPU per job, then send-to-handle latency when paced. The medians of the runs go
//! into a table with the framework/raw ratio on each row, and into JSON.
//!
//! The in-memory transport's rows (`memory`) are set against a bare baseline ([`bare`]) in the
//! raw column: the same encoded jobs down a tokio channel, a task per message decoding them.
//!
//! A second table puts figures on delays and retries, for the framework alone ([`delays`]):
//! plain against delayed enqueues, backoff retries through the job's own retry queue against
//! `retry_after` retries through the delay cascade, and how late jobs with many distinct delays
//! start.
//!
//! A third table measures request/reply calls ([`calls`]): the framework's `my_job::call`
//! against the same calls by hand with raw lapin over direct reply-to, from 1, 10 and 100
//! concurrent callers, with tonic gRPC unary calls on loopback for reference.
//!
//! A fourth table measures competing consumers ([`scale_out`]): 1, 2 and 4 worker processes
//! (`jobs-bench-worker`) draining one pre-filled quorum queue, on one broker and on a private
//! three-node cluster whose queue leader is on another node than the workers, with the
//! workers' and the broker's CPU per job.
//!
//! A fifth table measures the transactional outbox ([`outbox`]): plain enqueues against jobs
//! written in PostgreSQL transactions and published by the outbox relay, throughput and
//! hand-over-to-handler latency, on the same broker and queue.
//!
//! A sixth pair of tables measures cost as work grows ([`growth`]): one worker process serving
//! 1, 10 and 100 job types (startup, idle CPU and memory, throughput), and one draining
//! backlogs of 10,000 to 1,000,000 jobs (peak memory, drain rate).
//!
//! With `--check-floors`, the run ends by checking the figures against the project's
//! performance floors ([`floors`]) and fails when one is not kept.

pub mod bare;
pub mod calls;
pub mod delays;
pub mod floors;
pub mod framework;
pub mod growth;
pub mod measure;
pub mod message;
pub mod outbox;
pub mod pace;
pub mod plan;
pub mod raw;
pub mod report;
pub mod rounds;
pub mod scale_out;
pub mod sink;
pub mod tracker;

pub use plan::{ClientKind, Measure, Options, run};
pub use report::Report;

/// The kind of the benchmark's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    /// A classic queue.
    Classic,
    /// A quorum queue.
    Quorum,
}

impl QueueKind {
    /// The name RabbitMQ knows the kind by.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}
