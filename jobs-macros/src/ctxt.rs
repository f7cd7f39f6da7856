//! Collects every problem found in one `#[job]`, so they are reported together.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// Records an error spanned on `at`.
    pub(crate) fn error(&self, at: impl ToTokens, msg: impl Display) {
        self.push(syn::Error::new_spanned(at, msg));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at(&self, span: Span, msg: impl Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// Records an error built elsewhere.
    pub(crate) fn push(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// Combines the collected errors, or hands back `value` when there are none.
    pub(crate) fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        let mut errors = self.errors.into_inner().into_iter();
        match (errors.next(), value) {
            (Some(mut all), _) => {
                errors.for_each(|e| all.combine(e));
                Err(all)
            }
            (None, Some(value)) => Ok(value),
            (None, None) => Err(syn::Error::new(
                Span::call_site(),
                "jobs-macros bug: no value and no error; please report it",
            )),
        }
    }
}
