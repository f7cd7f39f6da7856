//! The two jobs every scenario enqueues: the same scripted handler on a quorum and on a
//! classic work queue, with short backoffs and deadlines so RabbitMQ runs stay quick; and a
//! copy of both per lane, so that a RabbitMQ run can run scenarios side by side.
//!
//! Their queue names are fixed by `#[job]`; a RabbitMQ run makes them its own by holding a
//! lock queue while it uses them (see [`crate::jobs::amqp`]).

use std::fmt;

use jobs_core::{Job, JobContext, JobDefaults, JobError, JobSettings, job};

use super::script::{self, Script};

/// The exchange every scenario job is bound to.
pub const EXCHANGE: &str = "jobs.differential.jobs";

/// How many scenarios a RabbitMQ run can run at once: each on a lane of its own, a copy of
/// both jobs on queues of their own. Runs mostly wait on the broker's timers, so two lanes
/// halve a campaign's time.
pub const LANES: usize = 2;

/// The scripted job on a quorum queue, lane 0: 2 retries, 100 ms then 300 ms apart, a 300 ms
/// deadline.
///
/// # Errors
///
/// The script's failure at this attempt (see [`Step`](super::script::Step)).
#[job(
    exchange = "jobs.differential.jobs",
    routing_key = "lane0.quorum",
    queue = "jobs.differential.jobs.lane0.quorum",
    retries = 2,
    backoff = "100ms, 300ms",
    timeout = "300ms",
    concurrency = 4
)]
pub async fn lane0_quorum(script: Script, ctx: JobContext) -> Result<(), JobError> {
    script::perform(&script, ctx.attempt()).await
}

/// The scripted job on a classic queue, lane 0: 1 retry after 200 ms, a 300 ms deadline, and
/// two handlers at once, so jobs also wait in the queue.
///
/// # Errors
///
/// The script's failure at this attempt (see [`Step`](super::script::Step)).
#[job(
    exchange = "jobs.differential.jobs",
    routing_key = "lane0.classic",
    queue = "jobs.differential.jobs.lane0.classic",
    queue_type = "classic",
    retries = 1,
    backoff = "200ms",
    timeout = "300ms",
    concurrency = 2
)]
pub async fn lane0_classic(script: Script, ctx: JobContext) -> Result<(), JobError> {
    script::perform(&script, ctx.attempt()).await
}

/// [`lane0_quorum()`] on lane 1.
///
/// # Errors
///
/// The script's failure at this attempt (see [`Step`](super::script::Step)).
#[job(
    exchange = "jobs.differential.jobs",
    routing_key = "lane1.quorum",
    queue = "jobs.differential.jobs.lane1.quorum",
    retries = 2,
    backoff = "100ms, 300ms",
    timeout = "300ms",
    concurrency = 4
)]
pub async fn lane1_quorum(script: Script, ctx: JobContext) -> Result<(), JobError> {
    script::perform(&script, ctx.attempt()).await
}

/// [`lane0_classic()`] on lane 1.
///
/// # Errors
///
/// The script's failure at this attempt (see [`Step`](super::script::Step)).
#[job(
    exchange = "jobs.differential.jobs",
    routing_key = "lane1.classic",
    queue = "jobs.differential.jobs.lane1.classic",
    queue_type = "classic",
    retries = 1,
    backoff = "200ms",
    timeout = "300ms",
    concurrency = 2
)]
pub async fn lane1_classic(script: Script, ctx: JobContext) -> Result<(), JobError> {
    script::perform(&script, ctx.attempt()).await
}

/// Every job of lane `lane` (below [`LANES`]; lane 0 for a larger one), as an engine serves
/// them.
#[must_use]
pub fn lane_jobs(lane: usize) -> [&'static Job; 2] {
    JobKind::ALL.map(|kind| kind.job(lane))
}

/// Which of the two jobs a scenario enqueues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// [`lane0_quorum()`] and its copies.
    Quorum,
    /// [`lane0_classic()`] and its copies.
    Classic,
}

impl JobKind {
    /// Both jobs.
    pub const ALL: [Self; 2] = [Self::Quorum, Self::Classic];

    /// The job's definition on lane `lane` (lane 0 for one past the last).
    #[must_use]
    pub fn job(self, lane: usize) -> &'static Job {
        match (self, lane) {
            (Self::Quorum, 1) => &lane1_quorum::JOB,
            (Self::Classic, 1) => &lane1_classic::JOB,
            (Self::Quorum, _) => &lane0_quorum::JOB,
            (Self::Classic, _) => &lane0_classic::JOB,
        }
    }

    /// The job's options on lane `lane`, resolved as the runs' engines resolve them (the
    /// default [`JobDefaults`]); every lane's are the same but for the queue names.
    #[must_use]
    pub fn settings(self, lane: usize) -> JobSettings {
        JobSettings::resolve(self.job(lane), &JobDefaults::default())
    }

    /// Every queue of the job on lane `lane`: work queue, retry queues and error queue.
    #[must_use]
    pub fn queues(self, lane: usize) -> Vec<String> {
        let settings = self.settings(lane);
        let mut queues = vec![self.job(lane).queue().to_owned()];
        queues.extend(settings.retry_queues().iter().cloned());
        queues.push(settings.error_queue().to_owned());
        queues
    }

    /// Every queue of every job on every lane.
    #[must_use]
    pub fn all_queues() -> Vec<String> {
        (0..LANES)
            .flat_map(|lane| {
                Self::ALL
                    .into_iter()
                    .flat_map(move |kind| kind.queues(lane))
            })
            .collect()
    }

    /// The name in scenario texts.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }

    /// The kind named `name`, if there is one.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
