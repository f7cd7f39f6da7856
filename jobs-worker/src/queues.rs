//! The broker's counts of each job's queues: its work queue, its retry queues and its error
//! queue. Read by the dashboard and by `/metrics` (the gauges autoscalers read), with a passive
//! declare per queue, so they count for the whole fleet, not this worker.

use futures_util::future::join_all;
use jobs_core::JobSettings;
use jobs_core::transport::Transport;
use serde::Serialize;

/// What a queue is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// The job's work queue.
    Work,
    /// A retry level.
    Retry,
    /// The error queue.
    Error,
}

impl Role {
    /// The name `/metrics` labels it with.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Retry => "retry",
            Self::Error => "error",
        }
    }
}

/// One queue and what the broker says of it; `None` when it could not be asked (no such queue
/// yet, or no connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct QueueCounts {
    /// What it is for.
    pub(crate) role: Role,
    /// Its name.
    pub(crate) name: String,
    /// Messages ready.
    pub(crate) ready: Option<u64>,
    /// Consumers attached.
    pub(crate) consumers: Option<u32>,
}

/// The queues of the job of `settings`: work, retry levels, error.
pub(crate) fn of(settings: &JobSettings) -> Vec<(Role, String)> {
    let mut queues = vec![(Role::Work, settings.job().queue().to_owned())];
    queues.extend(
        settings
            .retry_queues()
            .iter()
            .map(|name| (Role::Retry, name.clone())),
    );
    queues.push((Role::Error, settings.error_queue().to_owned()));
    queues
}

/// The counts of every queue of the job of `settings`, asked at once.
pub(crate) async fn read(transport: &dyn Transport, settings: &JobSettings) -> Vec<QueueCounts> {
    let queues = of(settings);
    let stats = join_all(queues.iter().map(|(_, name)| transport.queue_stats(name))).await;
    queues
        .into_iter()
        .zip(stats)
        .map(|((role, name), stats)| {
            let stats = stats.ok();
            QueueCounts {
                role,
                name,
                ready: stats.map(|s| s.ready),
                consumers: stats.and_then(|s| s.consumers),
            }
        })
        .collect()
}
