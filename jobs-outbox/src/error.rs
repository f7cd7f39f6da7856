//! What can go wrong writing to the outbox or the inbox.

/// An error of the outbox or the inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job with this unique key is already pending (written, and not handled yet); nothing
    /// was written.
    #[error("a job with unique key {key:?} is already pending (message id {message_id})")]
    Duplicate {
        /// The key.
        key: String,
        /// The pending job's message id.
        message_id: String,
    },
    /// The job could not be prepared (too large, or a priority it does not have); nothing was
    /// written.
    #[error(transparent)]
    Job(#[from] jobs_core::Error),
    /// A header value of a kind this version cannot store.
    #[error("header {name:?} has a value the outbox cannot store")]
    Header {
        /// The header.
        name: String,
    },
    /// A stored row that cannot be read back (written by another tool, or edited).
    #[error("outbox row {id} cannot be read: {reason}")]
    Row {
        /// The row's id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The inbox needs the delivery's message id, and it has none.
    #[error("the inbox needs a message id, and this delivery has none")]
    NoMessageId,
    /// A relay pass could not publish some rows because the broker was unreachable, slow or
    /// refused them; they stay in the outbox, due, for the next pass.
    #[error("{unpublished} outbox rows not published: {source}")]
    Unavailable {
        /// Rows left for the next pass.
        unpublished: usize,
        /// The first publish error.
        source: jobs_core::Error,
    },
    /// PostgreSQL refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The result of the outbox's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
