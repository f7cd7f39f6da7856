//! A job's options resolved against the worker's defaults.
//!
//! Precedence: worker defaults < the `#[job]` attribute < the per-call builder (where an option
//! applies per call).

use std::time::Duration;

use crate::backoff::Backoff;
use crate::job::{Job, QueueType};

/// The worker's defaults for options a `#[job]` attribute leaves unset.
#[derive(Clone, Debug, PartialEq)]
pub struct JobDefaults {
    /// Retries after the first attempt. Default 5.
    pub retries: u32,
    /// Delays between attempts. Default 1 s doubling, capped at 5 minutes.
    pub backoff: Backoff,
    /// Handler deadline. Default 5 minutes, under RabbitMQ's 30-minute consumer timeout.
    pub timeout: Duration,
    /// Deliveries handled at once per job (the prefetch). Default 32.
    pub concurrency: u16,
    /// Work queue type. Default quorum.
    pub queue_type: QueueType,
    /// `x-delivery-limit` of quorum work queues. Default 10.
    ///
    /// It backs up the worker's own attempt count against a job that kills its worker every
    /// time. RabbitMQ before 4.3 counts every return toward it, including requeues at
    /// shutdown, so keep it well above the number of attempts; 4.3 counts only failed
    /// deliveries (see [`crate::broker`]).
    pub delivery_limit: u32,
    /// The kill switch each job gets on each worker; `None` (the default) for none.
    pub kill_switch: Option<KillSwitch>,
}

/// A job's kill switch on one worker: when its attempts fail too often, the worker stops
/// taking the job's deliveries for a cool-down, then lets one attempt through as a probe, and
/// resumes when it succeeds or stops again when it fails. While it is open the job's jobs wait
/// in its queue (or go to other workers), so they do not spend their retries against a
/// dependency that is down.
///
/// An attempt fails when its handler returns an error, panics or times out; a message refused
/// before its handler ran (undecodable, unknown job) does not count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KillSwitch {
    /// The share of failed attempts that trips it, from 0 to 1. Default 0.5.
    pub failure_ratio: f64,
    /// The fewest attempts in the window it decides on. Default 20.
    pub min_attempts: u32,
    /// How far back attempts count. Default 1 minute.
    pub window: Duration,
    /// How long it stays open before a probe. Default 30 s.
    pub cool_down: Duration,
}

impl Default for KillSwitch {
    fn default() -> Self {
        Self {
            failure_ratio: 0.5,
            min_attempts: 20,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        }
    }
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self {
            retries: 5,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(300),
            concurrency: 32,
            queue_type: QueueType::Quorum,
            delivery_limit: 10,
            kill_switch: None,
        }
    }
}

/// A job with every option decided: what the topology and the engine run from.
#[derive(Clone, Debug)]
pub struct JobSettings {
    job: &'static Job,
    retries: u32,
    retry_delays: Vec<Duration>,
    retry_queues: Vec<String>,
    error_queue: String,
    timeout: Duration,
    concurrency: u16,
    queue_type: QueueType,
    priorities: Option<u8>,
    delivery_limit: u32,
    kill_switch: Option<KillSwitch>,
}

impl JobSettings {
    /// Resolves `job`'s options against `defaults`.
    #[must_use]
    pub fn resolve(job: &'static Job, defaults: &JobDefaults) -> Self {
        let options = job.options();
        let retries = options.retries.unwrap_or(defaults.retries);
        let backoff = options.backoff.as_ref().unwrap_or(&defaults.backoff);
        let retry_delays = backoff.levels(retries);
        let retry_queues = (1..=retry_delays.len())
            .map(|level| retry_queue_name(job.queue(), level))
            .collect();
        Self {
            job,
            retries,
            retry_delays,
            retry_queues,
            error_queue: error_queue_name(job.queue()),
            timeout: options.timeout.unwrap_or(defaults.timeout),
            concurrency: options.concurrency.unwrap_or(defaults.concurrency).max(1),
            // Priorities exist on classic queues only (RabbitMQ 3.10), whatever the defaults say.
            queue_type: if options.priorities.is_some() {
                QueueType::Classic
            } else {
                options.queue_type.unwrap_or(defaults.queue_type)
            },
            priorities: options.priorities,
            delivery_limit: defaults.delivery_limit,
            kill_switch: defaults.kill_switch,
        }
    }

    /// The job.
    #[must_use]
    pub fn job(&self) -> &'static Job {
        self.job
    }

    /// Retries after the first attempt.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The attempts a job gets in all: the first and its retries.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The delay of each retry queue, `Q.retry.1` first.
    #[must_use]
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// The retry queues, `Q.retry.1` first.
    #[must_use]
    pub fn retry_queues(&self) -> &[String] {
        &self.retry_queues
    }

    /// The error queue, `Q.err`.
    #[must_use]
    pub fn error_queue(&self) -> &str {
        &self.error_queue
    }

    /// The handler deadline.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Deliveries handled at once: the consumer's prefetch.
    #[must_use]
    pub fn concurrency(&self) -> u16 {
        self.concurrency
    }

    /// Overrides the concurrency, as a worker's configuration may.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The work queue's type.
    #[must_use]
    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// The work queue's priority levels, if it has any: messages of priority 0 up to this one,
    /// the higher delivered first.
    #[must_use]
    pub fn priorities(&self) -> Option<u8> {
        self.priorities
    }

    /// The most handlers of the job running at once across every worker, if it has a limit.
    #[must_use]
    pub fn max_running(&self) -> Option<u16> {
        self.job.options().max_running
    }

    /// The job's starts per period across every worker, if it has a rate.
    #[must_use]
    pub fn rate(&self) -> Option<crate::control::Rate> {
        self.job.options().rate
    }

    /// The job's kill switch on each worker, if it has one.
    #[must_use]
    pub fn kill_switch(&self) -> Option<KillSwitch> {
        self.kill_switch
    }

    /// `x-delivery-limit` of a quorum work queue.
    #[must_use]
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The retry queue for the retry after failed attempt `attempt`, and its delay: the
    /// backoff step of that attempt, or the last step. `None` when the job has no retry
    /// queues. (A handler's [`JobError::retry_after`](crate::JobError::retry_after) waits in
    /// the delay cascade instead, for exactly its delay.)
    #[must_use]
    pub fn retry_level(&self, attempt: u32) -> Option<(&str, Duration)> {
        let last = self.retry_delays.len().checked_sub(1)?;
        let level = (attempt.max(1) as usize - 1).min(last);
        Some((&self.retry_queues[level], self.retry_delays[level]))
    }
}

/// `Q.retry.N`.
#[must_use]
pub(crate) fn retry_queue_name(queue: &str, level: usize) -> String {
    format!("{queue}.retry.{level}")
}

/// `Q.err`.
#[must_use]
pub(crate) fn error_queue_name(queue: &str) -> String {
    format!("{queue}.err")
}
