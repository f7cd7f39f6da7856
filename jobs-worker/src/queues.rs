//! The broker's counts of each job's queues (its work queue, its retry queues and its error
//! queue) and of the delay cascade's levels. Read by the dashboard and by `/metrics` (the gauges autoscalers read), with a passive
//! declare per queue, so they count for the whole fleet, not this worker.

use std::time::Duration;

use futures_util::future::join_all;
use jobs_core::transport::Transport;
use jobs_core::{JobSettings, delay};
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

/// A level of the delay cascade that holds delayed jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DelayLevel {
    /// The level's queue, `jobs.delay.N`.
    pub(crate) queue: String,
    /// How long a message waits in it.
    pub(crate) wait: Duration,
    /// Messages waiting in it.
    pub(crate) waiting: u64,
}

/// The levels of the delay cascade that hold delayed jobs (every job's: the levels are
/// shared), counted at once. A level nobody declared yet holds none.
///
/// # Errors
///
/// The first count the broker refused other than a missing queue, and connection errors.
pub(crate) async fn delayed(transport: &dyn Transport) -> jobs_core::Result<Vec<DelayLevel>> {
    let names: Vec<String> = (0..delay::LEVELS).map(delay::level_name).collect();
    let counts = join_all(names.iter().map(|name| transport.message_count(name))).await;
    let mut levels = Vec::new();
    for ((queue, count), level) in names.into_iter().zip(counts).zip(0..) {
        let waiting = match count {
            Ok(waiting) => waiting,
            Err(jobs_core::Error::NotFound { .. }) => 0,
            Err(err) => return Err(err),
        };
        if waiting > 0 {
            levels.push(DelayLevel {
                queue,
                wait: Duration::from_secs(1 << level),
                waiting,
            });
        }
    }
    Ok(levels)
}
