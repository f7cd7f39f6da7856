//! The attribute's arguments, as written: `exchange = "…", routing_key = "…", retries = 5, …`.
//!
//! Only the syntax is checked here (a string where a string goes, no key twice); what the
//! values mean is `validate`'s job.

use std::cmp::Reverse;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser as _};
use syn::{Ident, Lit, LitInt, LitStr, Token};

use crate::ctxt::Ctxt;

/// Every key `#[job]` takes, in the order the docs list them.
pub(crate) const KEYS: [&str; 20] = [
    "exchange",
    "routing_key",
    "kind",
    "binding",
    "headers",
    "queue",
    "name",
    "retries",
    "backoff",
    "timeout",
    "concurrency",
    "queue_type",
    "priorities",
    "max_running",
    "rate",
    "schedule",
    "every",
    "timezone",
    "missed",
    "crate",
];

/// Keys of other schedulers and spellings that name one of ours: `(written, key)`.
const ALIASES: [(&str, &str); 9] = [
    ("cron", "schedule"),
    ("crontab", "schedule"),
    ("interval", "every"),
    ("period", "every"),
    ("tz", "timezone"),
    ("zone", "timezone"),
    ("misfire", "missed"),
    ("catch_up", "missed"),
    ("max_priority", "priorities"),
];

/// The arguments of one `#[job(...)]`.
#[derive(Default)]
pub(crate) struct JobArgs {
    pub(crate) exchange: Option<LitStr>,
    pub(crate) routing_key: Option<LitStr>,
    pub(crate) kind: Option<LitStr>,
    pub(crate) binding: Option<LitStr>,
    pub(crate) headers: Option<HeadersArg>,
    pub(crate) queue: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) retries: Option<LitInt>,
    pub(crate) backoff: Option<LitStr>,
    pub(crate) timeout: Option<LitStr>,
    pub(crate) concurrency: Option<LitInt>,
    pub(crate) queue_type: Option<LitStr>,
    pub(crate) priorities: Option<LitInt>,
    pub(crate) max_running: Option<LitInt>,
    pub(crate) rate: Option<LitStr>,
    pub(crate) schedule: Option<LitStr>,
    pub(crate) every: Option<LitStr>,
    pub(crate) timezone: Option<LitStr>,
    pub(crate) missed: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
}

/// `headers(match = "any", tenant = "acme", "content-kind" = "pdf")`.
pub(crate) struct HeadersArg {
    /// The `headers` key itself, for errors about the whole list.
    pub(crate) key: TokenStream,
    pub(crate) matching: Option<LitStr>,
    pub(crate) pairs: Vec<HeaderPair>,
}

/// One `name = "value"` of `headers(...)`.
pub(crate) struct HeaderPair {
    pub(crate) name: String,
    pub(crate) name_span: Span,
    pub(crate) value: LitStr,
}

impl JobArgs {
    /// Parses the arguments, recording every problem in `cx` and carrying on past it.
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut args = Self::default();
        let parser = syn::meta::parser(|meta| {
            if let Err(err) = args.parse_one(cx, &meta) {
                cx.push(err);
                skip_to_comma(meta.input)?;
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(tokens) {
            cx.push(err);
        }
        args
    }

    fn parse_one(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        let Some(key) = path.get_ident().map(|ident| ident.unraw().to_string()) else {
            return Err(unknown_key(path));
        };
        match key.as_str() {
            "exchange" => set_once(cx, &mut self.exchange, path, string(meta, "\"uploads\"")?),
            "routing_key" => set_once(cx, &mut self.routing_key, path, string(meta, "\"oss\"")?),
            "kind" => set_once(cx, &mut self.kind, path, string(meta, "\"topic\"")?),
            "binding" => set_once(cx, &mut self.binding, path, string(meta, "\"uploads.*\"")?),
            "headers" => set_once(cx, &mut self.headers, path, headers(cx, meta)?),
            "queue" => set_once(cx, &mut self.queue, path, string(meta, "\"uploads.oss\"")?),
            "name" => set_once(cx, &mut self.name, path, string(meta, "\"transfer\"")?),
            "retries" => set_once(cx, &mut self.retries, path, int(meta, "5")?),
            "backoff" => set_once(
                cx,
                &mut self.backoff,
                path,
                string(meta, "\"1s, 5s, 30s\"")?,
            ),
            "timeout" => set_once(cx, &mut self.timeout, path, string(meta, "\"30s\"")?),
            "concurrency" => set_once(cx, &mut self.concurrency, path, int(meta, "32")?),
            "queue_type" => set_once(cx, &mut self.queue_type, path, string(meta, "\"quorum\"")?),
            "priorities" => set_once(cx, &mut self.priorities, path, int(meta, "10")?),
            "max_running" => set_once(cx, &mut self.max_running, path, int(meta, "4")?),
            "rate" => set_once(cx, &mut self.rate, path, string(meta, "\"50/s\"")?),
            "schedule" => set_once(
                cx,
                &mut self.schedule,
                path,
                string(meta, "\"0 */5 * * * *\"")?,
            ),
            "every" => set_once(cx, &mut self.every, path, string(meta, "\"5m\"")?),
            "timezone" => set_once(
                cx,
                &mut self.timezone,
                path,
                string(meta, "\"Europe/Paris\"")?,
            ),
            "missed" => set_once(cx, &mut self.missed, path, string(meta, "\"skip\"")?),
            "crate" => {
                let lit = string(meta, "\"my_app::jobs_core\"")?;
                let krate = lit.parse_with(syn::Path::parse_mod_style).map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "expected a path to `jobs_core`, e.g. `crate = \"my_app::jobs_core\"`",
                    )
                })?;
                set_once(cx, &mut self.krate, path, krate);
            }
            _ => return Err(unknown_key(path)),
        }
        Ok(())
    }
}

/// One place decides what "duplicate" means, for every key; `key` is the key as written.
fn set_once<T>(cx: &Ctxt, slot: &mut Option<T>, key: impl ToTokens, value: T) {
    if slot.is_some() {
        let name = key.to_token_stream().to_string();
        cx.error(key, format_args!("duplicate `{name}` argument"));
    } else {
        *slot = Some(value);
    }
}

/// `key = "..."`.
fn string(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let expected = || {
        format!(
            "expected a string: `{} = {example}`",
            meta.path.to_token_stream()
        )
    };
    let input = value(meta, &expected)?;
    match input.parse::<Lit>() {
        Ok(Lit::Str(lit)) => Ok(lit),
        Ok(other) => Err(syn::Error::new(other.span(), expected())),
        Err(err) => Err(syn::Error::new(err.span(), expected())),
    }
}

/// `key = 5`.
fn int(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitInt> {
    let expected = || {
        format!(
            "expected a whole number: `{} = {example}`",
            meta.path.to_token_stream()
        )
    };
    let input = value(meta, &expected)?;
    match input.parse::<Lit>() {
        Ok(Lit::Int(lit)) => Ok(lit),
        Ok(other) => Err(syn::Error::new(other.span(), expected())),
        Err(err) => Err(syn::Error::new(err.span(), expected())),
    }
}

/// The stream after `=`, or an error on the key when there is no `=`.
fn value<'a>(
    meta: &ParseNestedMeta<'a>,
    expected: &dyn Fn() -> String,
) -> syn::Result<ParseStream<'a>> {
    if meta.input.peek(Token![=]) {
        meta.value()
    } else {
        Err(syn::Error::new_spanned(&meta.path, expected()))
    }
}

/// `headers(match = "any", name = "value", "dashed-name" = "value")`.
fn headers(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<HeadersArg> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(syn::Error::new_spanned(
            &meta.path,
            "expected `headers(name = \"value\", ...)`, optionally with `match = \"any\"`",
        ));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let mut arg = HeadersArg {
        key: meta.path.to_token_stream(),
        matching: None,
        pairs: Vec::new(),
    };
    while !content.is_empty() {
        if content.peek(Token![match]) {
            let token: Token![match] = content.parse()?;
            content.parse::<Token![=]>()?;
            let lit = header_string(&content, "expected `match = \"all\"` or `match = \"any\"`")?;
            set_once(cx, &mut arg.matching, token, lit);
        } else {
            let (name, name_span) = header_name(&content)?;
            content.parse::<Token![=]>()?;
            let value = header_string(&content, "header values are strings: `tenant = \"acme\"`")?;
            if arg.pairs.iter().any(|pair| pair.name == name) {
                cx.error_at(name_span, format_args!("duplicate header `{name}`"));
            } else {
                arg.pairs.push(HeaderPair {
                    name,
                    name_span,
                    value,
                });
            }
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(arg)
}

/// A header name: `tenant`, `content-kind` (dashed words) or `"any text"`.
fn header_name(input: ParseStream<'_>) -> syn::Result<(String, Span)> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Ok((lit.value(), lit.span()));
    }
    let first = input.call(Ident::parse_any).map_err(|err| {
        syn::Error::new(err.span(), "expected a header name: `tenant = \"acme\"`")
    })?;
    let mut name = first.unraw().to_string();
    let mut last = first.span();
    while input.peek(Token![-]) {
        input.parse::<Token![-]>()?;
        let word = input.call(Ident::parse_any)?;
        name.push('-');
        name.push_str(&word.unraw().to_string());
        last = word.span();
    }
    Ok((
        name,
        first.span().join(last).unwrap_or_else(|| first.span()),
    ))
}

fn header_string(input: ParseStream<'_>, expected: &str) -> syn::Result<LitStr> {
    match input.parse::<Lit>() {
        Ok(Lit::Str(lit)) => Ok(lit),
        Ok(other) => Err(syn::Error::new(other.span(), expected)),
        Err(err) => Err(syn::Error::new(err.span(), expected)),
    }
}

/// Skips the rest of a bad argument, so the next ones are still checked.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

fn unknown_key(path: &syn::Path) -> syn::Error {
    let written = path.to_token_stream().to_string().replace(' ', "");
    let hint =
        suggestion(&written).map_or_else(String::new, |key| format!(" (did you mean `{key}`?)"));
    let (last, rest) = KEYS.split_last().unwrap_or((&"crate", &[]));
    let list: Vec<String> = rest.iter().map(|key| format!("`{key}`")).collect();
    syn::Error::new_spanned(
        path,
        format!(
            "unknown `job` argument `{written}`{hint}; expected {} or `{last}`",
            list.join(", ")
        ),
    )
}

/// The key the user most likely meant.
fn suggestion(written: &str) -> Option<&'static str> {
    let written = written.to_ascii_lowercase().replace('-', "_");
    if let Some((_, key)) = ALIASES.iter().find(|(alias, _)| *alias == written) {
        return Some(key);
    }
    let limit = if written.len() >= 5 { 3 } else { 1 };
    KEYS.iter()
        .filter_map(|key| {
            let distance = edit_distance(&written, key);
            let related = written.len() >= 4
                && key.len() >= 4
                && (written.contains(key) || key.contains(&written));
            // Between keys as far, the one that starts as written (`retry`: `retries`, not
            // `every`).
            let shared = written
                .chars()
                .zip(key.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (distance <= limit || related).then_some((distance, Reverse(shared), *key))
        })
        .min()
        .map(|(_, _, key)| key)
}

/// Levenshtein distance.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let insert = current.get(j).map_or(usize::MAX, |d| d + 1);
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(insert).min(delete));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> (JobArgs, Vec<String>) {
        let cx = Ctxt::default();
        let args = JobArgs::parse(&cx, tokens);
        let errors = match cx.finish(Some(())) {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        };
        (args, errors)
    }

    #[test]
    fn parses_every_key() {
        let (args, errors) = parse(quote! {
            exchange = "e", routing_key = "k", kind = "topic", binding = "k.#",
            headers(match = "any", tenant = "a", content-kind = "pdf", "x y" = "z"),
            queue = "q", name = "n", retries = 3, backoff = "1s", timeout = "5s",
            concurrency = 4, queue_type = "classic", schedule = "0 * * * * *", every = "5m",
            timezone = "Europe/Paris", missed = "skip", crate = "::my::jc",
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.exchange.unwrap().value(), "e");
        assert_eq!(args.retries.unwrap().base10_digits(), "3");
        assert_eq!(args.schedule.unwrap().value(), "0 * * * * *");
        assert_eq!(args.every.unwrap().value(), "5m");
        assert_eq!(args.timezone.unwrap().value(), "Europe/Paris");
        assert_eq!(args.missed.unwrap().value(), "skip");
        let headers = args.headers.unwrap();
        assert_eq!(headers.matching.unwrap().value(), "any");
        let names: Vec<&str> = headers.pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["tenant", "content-kind", "x y"]);
        assert_eq!(
            args.krate.unwrap().to_token_stream().to_string(),
            ":: my :: jc"
        );
    }

    #[test]
    fn reports_duplicates_and_unknown_keys_and_keeps_going() {
        let (args, errors) = parse(quote! {
            exchange = "a", exchange = "b", retry = 3, routing_key = 5, timeout = "1s", tiemout = "2s",
        });
        assert_eq!(
            errors,
            [
                "duplicate `exchange` argument".to_owned(),
                format!(
                    "unknown `job` argument `retry` (did you mean `retries`?); expected {}",
                    "`exchange`, `routing_key`, `kind`, `binding`, `headers`, `queue`, `name`, `retries`, \
                     `backoff`, `timeout`, `concurrency`, `queue_type`, `priorities`, `max_running`, `rate`, `schedule`, `every`, `timezone`, \
                     `missed` or `crate`"
                ),
                "expected a string: `routing_key = \"oss\"`".to_owned(),
                "unknown `job` argument `tiemout` (did you mean `timeout`?); expected `exchange`, \
                 `routing_key`, `kind`, `binding`, `headers`, `queue`, `name`, `retries`, `backoff`, \
                 `timeout`, `concurrency`, `queue_type`, `priorities`, `max_running`, `rate`, `schedule`, `every`, `timezone`, `missed` or \
                 `crate`"
                    .to_owned(),
            ]
        );
        assert_eq!(args.exchange.unwrap().value(), "a");
        assert_eq!(args.timeout.unwrap().value(), "1s");
    }

    #[test]
    fn reports_repeated_schedule_keys() {
        let (args, errors) = parse(quote! {
            schedule = "0 * * * * *", every = "1m", timezone = "UTC", missed = "skip",
            schedule = "1 * * * * *", every = "2m", timezone = "Europe/Paris", missed = "fire-once",
        });
        assert_eq!(
            errors,
            [
                "duplicate `schedule` argument",
                "duplicate `every` argument",
                "duplicate `timezone` argument",
                "duplicate `missed` argument",
            ]
        );
        assert_eq!(args.schedule.unwrap().value(), "0 * * * * *");
        assert_eq!(args.missed.unwrap().value(), "skip");
    }

    #[test]
    fn reports_values_of_the_wrong_kind() {
        let (_, errors) = parse(quote!(
            retries = "5",
            exchange,
            concurrency = 1.5,
            crate = "not a path",
            schedule = 5,
            every = 300,
            timezone,
            missed = true
        ));
        assert_eq!(
            errors,
            [
                "expected a whole number: `retries = 5`",
                "expected a string: `exchange = \"uploads\"`",
                "expected a whole number: `concurrency = 32`",
                "expected a path to `jobs_core`, e.g. `crate = \"my_app::jobs_core\"`",
                "expected a string: `schedule = \"0 */5 * * * *\"`",
                "expected a string: `every = \"5m\"`",
                "expected a string: `timezone = \"Europe/Paris\"`",
                "expected a string: `missed = \"skip\"`",
            ]
        );
    }

    #[test]
    fn reports_bad_headers() {
        let (_, errors) =
            parse(quote!(headers(a = "1", a = "2", match = "all", match = "any", b = 3)));
        assert_eq!(
            errors,
            [
                "duplicate header `a`",
                "duplicate `match` argument",
                "header values are strings: `tenant = \"acme\"`",
            ]
        );
        let (_, errors) = parse(quote!(headers = "a"));
        assert_eq!(
            errors,
            ["expected `headers(name = \"value\", ...)`, optionally with `match = \"any\"`"]
        );
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(suggestion("exhange"), Some("exchange"));
        assert_eq!(suggestion("routing-key"), Some("routing_key"));
        assert_eq!(suggestion("max_retries"), Some("retries"));
        assert_eq!(suggestion("prefetch"), None);
        assert_eq!(suggestion("retry"), Some("retries"));
        assert_eq!(suggestion("schedul"), Some("schedule"));
        assert_eq!(suggestion("cron"), Some("schedule"));
        assert_eq!(suggestion("interval"), Some("every"));
        assert_eq!(suggestion("time_zone"), Some("timezone"));
        assert_eq!(suggestion("tz"), Some("timezone"));
        assert_eq!(suggestion("misfire"), Some("missed"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
