//! Job-level scenarios: random enqueues and handler outcomes through the engine, on both
//! transports.
//!
//! A [`Scenario`] is a sequence of operations: enqueue a job (with or without a delay), pause,
//! restart the worker gracefully or abruptly. Each job's message carries its
//! [`Script`]: what its handler does at each attempt (`ok`, `slow`, `retry`, `later` for a
//! `retry_after`, `fatal`, `panic`, `timeout`), so both transports see the same behaviour
//! whatever their timing. The scenario runs through [`Engine`](jobs_core::engine::Engine) on
//! the in-memory broker under a paused clock ([`run_memory`]) and on RabbitMQ ([`AmqpRun`]);
//! what each run shows of each job, its attempts and its final places, is compared between the
//! two and with the [`model`] of the engine's documented rules.
//!
//! | file | concept |
//! | --- | --- |
//! | `script` | the handler's behaviour per attempt, carried by the message |
//! | `handlers` | the two `#[job]`s: quorum (2 retries) and classic (1 retry) work queues |
//! | `scenario` | operations, and the text form runs print and replay |
//! | `generate` | seeded random scenarios |
//! | `run`, `memory`, `amqp` | one runner, and each transport's harness |
//! | `observe` | what a run shows of each job, and its compared form |
//! | `model` | what the rules say each job does |
//! | `compare` | job-by-job comparison |
//! | `shrink`, `campaign` | shrinking failures, and runs of many seeds |
//!
//! # What is compared, and the normalisation rules
//!
//! Per job: the **sequence of attempts**, each its number and how it ended (succeeded; failed
//! with a kind and retried after a delay; failed with a kind into the error queue; or
//! unfinished), and its **final places**: one `handled` per successful handler, and one per
//! message in its error queue, with that message's failure kind and attempt headers. Before
//! comparing:
//!
//! 1. **Jobs are matched by their number** in the scenario, not by message id: each run gives
//!    its jobs ids of its own (`<run id>-<job number>`), and events or error-queue messages
//!    with other ids (a copy left over from an earlier scenario on RabbitMQ) are left out.
//! 2. **Times are not compared**, nor error texts: an attempt's kind and the engine's decided
//!    retry delay are. Real time on RabbitMQ and virtual time on the in-memory broker order
//!    independent jobs differently; each job's own attempts are sequential on both.
//! 3. **`PublishFailed` and `Requeued` events are left out**: the engine tries the outcome's
//!    publish again, and what it finally did shows as the attempt's outcome.
//! 4. **A job no abrupt restart came after is compared exactly**: the same attempts in the same
//!    order, each exactly once, and exactly one final place. A graceful restart lets every
//!    running handler finish and publish its outcome, and messages in retry queues and the
//!    delay cascade wait on the broker, so it changes nothing a job shows.
//! 5. **A job enqueued before an abrupt restart is compared at least once**: RabbitMQ
//!    guarantees at-least-once delivery, so the restart may cut an attempt off (its start has
//!    no outcome) and run it again, or run an attempt again whose outcome was published but
//!    whose ack was lost, and with it the rest of the job a second time. Such a job is compared
//!    as, per attempt number, the set of its distinct outcomes, an `unfinished` start left out
//!    when the attempt also ended (kept when it never did: a lost job still shows), and the set
//!    of its distinct final places. Each attempt's outcome is fixed by the script, so every
//!    copy agrees with every other; the rule removes the count of copies, not what they did.
//! 6. **Waiting**: the in-memory run, after every job reached a final place, waits until its
//!    broker is idle, so it sees every copy; the RabbitMQ run waits until every job reached a
//!    final place (at most a minute), then shuts the engine down gracefully and reads the
//!    error queues, so a late copy may be left out. Under rule 5 a late copy only repeats what
//!    an earlier one showed, so this cannot make a difference.
//!
//! The queue type's delivery limit (10 by default) is never reached: a scenario has at most
//! three restarts, and each returns a message at most once.

pub mod amqp;
pub mod campaign;
pub mod compare;
pub mod generate;
pub mod handlers;
pub mod memory;
pub mod model;
pub mod observe;
mod run;
pub mod scenario;
pub mod script;
pub mod shrink;

pub use amqp::AmqpRun;
pub use campaign::{Campaign, Report};
pub use compare::{Divergence, compare};
pub use generate::generate;
pub use handlers::JobKind;
pub use memory::run_memory;
pub use observe::{AttemptOutcome, Compared, JobObservation, Observation, Place};
pub use run::RunError;
pub use scenario::{JobSpec, Op, Restart, Scenario};
pub use script::{Script, Step};
pub use shrink::shrink;
