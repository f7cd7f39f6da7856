//! A transactional outbox and inbox on PostgreSQL for `jobs`: enqueue a job in the same
//! transaction as the data it is about, and handle each job's effect once.
//!
//! * **Outbox.** [`OutboxEnqueue::enqueue_in`] writes the job, exactly as it would be
//!   published, into the `jobs_outbox` table inside the application's transaction. A
//!   [`Relay`] (in the worker with `--outbox-url`, or on its own) publishes it with confirms
//!   once the transaction commits, and deletes it only after the confirm. A rolled-back
//!   transaction never sends its jobs; a committed one always does, however the process dies.
//! * **Inbox.** [`InboxExt::inbox`] gives a handler a transaction that records "message X
//!   handled by job J" with the handler's own work, or `None` when X was handled before: a
//!   redelivery after a lost ack does nothing.
//! * **Unique jobs.** [`OutboxEnqueue::unique_key`] refuses a second pending job with the same
//!   key ([`Error::Duplicate`]).
//! * **Tests.** [`MemoryOutbox`] has the same rules without a database.
//!
//! [`migrate`] creates the tables ([`SCHEMA`] is the SQL); [`oldest_waiting`] and the relay's
//! counters are for monitoring. The guide is `docs/outbox.md`.

mod backlog;
mod enqueue;
mod error;
mod inbox;
mod memory;
mod relay;
mod row;
mod schema;

pub use backlog::oldest_waiting;
pub use enqueue::{OutboxEnqueue, OutboxTx, Unique};
pub use error::{Error, Result};
pub use inbox::{InboxExt, InboxStore, InboxTx, prune};
pub use memory::{MemoryInboxTx, MemoryOutbox, MemoryTx};
pub use relay::Relay;
pub use row::Row;
pub use schema::{SCHEMA, migrate, set_notify};

pub mod testing;
