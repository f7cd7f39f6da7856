//! The `#[job]` attribute macro of `jobs-core`.
//!
//! Use it through `jobs_core::job`, where it is documented; this crate is an implementation
//! detail that `jobs-core` re-exports.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod args;
mod codegen;
mod ctxt;
mod duration;
mod expand;
mod item;
mod routing;
mod schedule;
mod validate;

/// Declares an async fn as a job handler; documented at `jobs_core::job`.
#[proc_macro_attribute]
pub fn job(
    args: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand::job(args.into(), item.into()).into()
}
