//! The annotated fn, kept as close to the user's tokens as possible.

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, TokenStreamExt as _};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Signature, Token, Visibility, braced, token};

/// An `async fn` under `#[job]`: its signature is parsed, its body is not.
pub(crate) struct JobFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) brace: token::Brace,
    /// Never parsed: errors inside the body stay rustc's, at their real spans.
    pub(crate) body: TokenStream,
}

impl Parse for JobFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        if !starts_a_fn(input) {
            return Err(not_a_fn(input));
        }
        let sig: Signature = input.parse()?;
        if input.peek(Token![;]) {
            return Err(input.error("`#[job]` functions need a body"));
        }
        let content;
        let brace = braced!(content in input);
        let body: TokenStream = content.parse()?;
        Ok(Self {
            attrs,
            vis,
            sig,
            brace,
            body,
        })
    }
}

impl ToTokens for JobFn {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.append_all(&self.attrs);
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.brace
            .surround(tokens, |tokens| tokens.extend(self.body.clone()));
    }
}

/// Whether the next tokens are `[const] [async] [unsafe] [extern ["abi"]] fn`.
fn starts_a_fn(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    for _ in 0..4 {
        if fork.peek(Token![fn]) {
            return true;
        }
        let skipped = fork
            .parse::<Option<Token![const]>>()
            .ok()
            .flatten()
            .is_some()
            || fork
                .parse::<Option<Token![async]>>()
                .ok()
                .flatten()
                .is_some()
            || fork
                .parse::<Option<Token![unsafe]>>()
                .ok()
                .flatten()
                .is_some()
            || fork.parse::<Option<syn::Abi>>().ok().flatten().is_some();
        if !skipped {
            return false;
        }
    }
    fork.peek(Token![fn])
}

/// The error for `#[job]` on a struct, an impl block, a const…, spanned on its keyword.
fn not_a_fn(input: ParseStream<'_>) -> syn::Error {
    let what = match input.cursor().token_tree() {
        Some((TokenTree::Ident(ident), _)) => match ident.to_string().as_str() {
            "struct" => Some("a `struct`"),
            "enum" => Some("an `enum`"),
            "union" => Some("a `union`"),
            "impl" => Some("an `impl` block"),
            "trait" => Some("a `trait`"),
            "mod" => Some("a module"),
            "static" => Some("a `static`"),
            "const" => Some("a `const`"),
            "type" => Some("a type alias"),
            "use" => Some("a `use` declaration"),
            "macro_rules" => Some("a macro"),
            _ => None,
        },
        _ => None,
    };
    let msg = match what {
        Some(what) => format!("`#[job]` applies to an `async fn`, not to {what}"),
        None => "`#[job]` applies to an `async fn`".to_owned(),
    };
    input.error(msg)
}
