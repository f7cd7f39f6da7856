//! The `#[job]` attribute macro. Use it through `jobs_core::job`, where it is documented.

/// Declares an async fn as a job handler; documented at `jobs_core::job`.
#[proc_macro_attribute]
pub fn job(_args: proc_macro::TokenStream, item: proc_macro::TokenStream) -> proc_macro::TokenStream {
    item
}
