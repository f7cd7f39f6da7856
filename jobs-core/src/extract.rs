//! What a job fn takes after its message: [`JobContext`], and [`State<T>`] for a value the worker
//! shares with its handlers.
//!
//! Like an axum handler's extractors, the arguments say what the job needs, and the worker checks
//! it has every [`State`] a job asks for before it serves a single job: a missing database pool
//! stops the start with an error naming the job and the type, rather than failing every job.
//!
//! ```
//! use std::sync::Arc;
//! use jobs_core::{job, testing::TestApp, JobContext, JobError, State};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! pub struct Resize {
//!     #[prost(string, tag = "1")] pub path: String,
//! }
//!
//! struct Storage { bucket: String }
//!
//! #[job(exchange = "docs.extract", routing_key = "resize")]
//! async fn resize(job: Resize, storage: State<Arc<Storage>>, ctx: JobContext) -> Result<(), JobError> {
//!     println!("attempt {}: {} in {}", ctx.attempt(), job.path, storage.bucket);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> jobs_core::Result<()> {
//! let storage = Arc::new(Storage { bucket: "uploads".into() });
//! let app = TestApp::builder().job(&resize::JOB).state(storage).build()?;
//! resize::enqueue(&app, Resize { path: "a.png".into() }).await?;
//! app.run_until_idle().await;
//! assert_eq!(app.succeeded(&resize::JOB), 1);
//!
//! // Without the `Arc<Storage>` it asks for, the job is not served at all.
//! let missing = TestApp::builder().job(&resize::JOB).build().unwrap_err();
//! assert!(missing.to_string().contains("job `resize` takes `State<Arc<Storage>>`"), "{missing}");
//! # Ok(())
//! # }
//! ```

use std::any::{TypeId, type_name};
use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::context::JobContext;
use crate::job_error::JobError;

/// A value the worker shares with every handler, taken as a job fn argument: `db: State<Pool>`.
///
/// Give the worker its values with `state(value)` on the worker, engine or test app builder,
/// one per type; the worker refuses to start while a job asks for a type it was not given. A
/// handler gets a clone of the value, so share an `Arc` or a handle that is cheap to clone
/// (a connection pool is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State<T>(pub T);

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for State<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A type a job fn can take after its message. Implemented by [`JobContext`] and [`State<T>`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a `#[job]` function",
    label = "not `JobContext` or `State<T>`",
    note = "a job takes its message first, then any of `ctx: JobContext` and `name: State<T>` \
            (a value the worker is given with `.state(value)`)"
)]
pub trait FromJobContext: Sized + Send + 'static {
    /// The shared value this argument needs the worker to have, if any.
    const NEEDS: Option<StateType>;

    /// The argument's value for one handler run.
    ///
    /// # Errors
    ///
    /// A fatal [`JobError`] when the worker lacks what it needs (which a worker checks before it
    /// starts, so only a hand-built context can miss it).
    fn from_context(ctx: &JobContext) -> Result<Self, JobError>;
}

impl FromJobContext for JobContext {
    const NEEDS: Option<StateType> = None;

    fn from_context(ctx: &JobContext) -> Result<Self, JobError> {
        Ok(ctx.clone())
    }
}

impl<T: Clone + Send + Sync + 'static> FromJobContext for State<T> {
    const NEEDS: Option<StateType> = Some(StateType::of::<T>());

    fn from_context(ctx: &JobContext) -> Result<Self, JobError> {
        ctx.state::<T>().cloned().map(State)
    }
}

/// The type of a shared value a job needs: what a worker checks it has before it starts.
#[derive(Clone, Copy)]
pub struct StateType {
    id: fn() -> TypeId,
    name: fn() -> &'static str,
}

impl StateType {
    /// The type `T`.
    #[must_use]
    pub const fn of<T: 'static>() -> Self {
        Self {
            id: TypeId::of::<T>,
            name: type_name::<T>,
        }
    }

    /// Its id.
    #[must_use]
    pub fn id(&self) -> TypeId {
        (self.id)()
    }

    /// Its name, as `std::any::type_name` gives it.
    #[must_use]
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    /// Its name without module paths: `Arc<Db>` for `alloc::sync::Arc<app::db::Db>`.
    #[must_use]
    pub fn short_name(&self) -> String {
        short_type_name(self.name())
    }
}

/// `name` without its module paths: every `a::b::` before an identifier goes.
pub(crate) fn short_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear();
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            out.push_str(&word);
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&word);
    out
}

impl fmt::Debug for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for StateType {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for StateType {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_module_paths() {
        assert_eq!(short_type_name("alloc::sync::Arc<app::db::Db>"), "Arc<Db>");
        assert_eq!(
            short_type_name("(core::option::Option<u8>, [x::Y; 2])"),
            "(Option<u8>, [Y; 2])"
        );
        assert_eq!(StateType::of::<Vec<String>>().short_name(), "Vec<String>");
    }
}
