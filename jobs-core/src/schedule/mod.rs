//! Periodic jobs: `#[job(schedule = "0 */5 * * * *")]` or `#[job(every = "5m")]`.
//!
//! Every worker that serves a scheduled job runs its scheduler, and the broker makes one of
//! them active at a time (a single-active-consumer queue): no leader election of its own, no
//! lock, no database. The active scheduler receives one *tick* per slot, through the delay
//! cascade (see [`crate::delay`]), turns it into the job's run for that slot (its message is
//! the message type's default, its id the job name and the slot time) and the tick of the
//! next slot, and records the slot in a last-value queue; a tick for a slot already recorded
//! is a duplicate, and goes. When the active scheduler's worker dies, the broker hands its
//! unacked tick to another within the connection's heartbeat. The details of a takeover are
//! in the `runner` module's docs; the queues in [`tick_queue`] and [`last_queue`].

mod runner;
mod spec;
mod ticks;

pub(crate) use runner::Scheduler;
pub use spec::{Missed, Schedule, ScheduleSpec};
pub(crate) use ticks::queues;
pub use ticks::{LastFired, RESERVED_PREFIX, last_fired, last_queue, run_id, tick_queue};
