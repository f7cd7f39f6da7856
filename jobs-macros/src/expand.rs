//! The entry point: the only place that decides what to emit, on success and on failure.

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::args::JobArgs;
use crate::ctxt::Ctxt;
use crate::item::JobFn;
use crate::{codegen, validate};

/// Expands `#[job(args)] item`.
pub(crate) fn job(args: TokenStream, item: TokenStream) -> TokenStream {
    let expanded = match syn::parse2::<JobFn>(item.clone()) {
        // Keep the user's fn even when the attribute is wrong, so the rest of their crate still
        // resolves it and the only errors are ours (as tokio and thiserror do).
        Ok(func) => match try_job(args, &func) {
            Ok(tokens) => tokens,
            Err(err) => with_error(func.to_token_stream(), err),
        },
        // Not a fn: give the tokens back unchanged, plus the error.
        Err(err) => with_error(item, err),
    };
    if debug_enabled() {
        eprintln!("// #[job] expansion\n{expanded}");
    }
    expanded
}

pub(crate) fn try_job(args: TokenStream, func: &JobFn) -> syn::Result<TokenStream> {
    let cx = Ctxt::default();
    let args = JobArgs::parse(&cx, args);
    let spec = validate::check(&cx, &args, func);
    cx.finish(spec).map(|spec| codegen::generate(&spec))
}

fn with_error(mut tokens: TokenStream, err: syn::Error) -> TokenStream {
    tokens.extend(err.into_compile_error());
    tokens
}

/// `JOBS_MACROS_DEBUG=1` prints every expansion to stderr (or use `cargo expand`).
fn debug_enabled() -> bool {
    std::env::var_os("JOBS_MACROS_DEBUG").is_some_and(|value| !value.is_empty() && value != "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    const OK_ARGS: &str = r#"exchange = "e", routing_key = "k""#;

    fn errors(args: TokenStream, func: TokenStream) -> Vec<String> {
        let func: JobFn = syn::parse2(func).unwrap();
        match try_job(args, &func) {
            Ok(_) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The errors for `args` on a well-formed job fn.
    fn arg_errors(args: TokenStream) -> Vec<String> {
        errors(
            args,
            quote!(
                async fn ping(p: Ping) -> Result<(), JobError> {}
            ),
        )
    }

    /// The errors for a fn under arguments that are fine.
    fn fn_errors(func: TokenStream) -> Vec<String> {
        errors(OK_ARGS.parse().unwrap(), func)
    }

    fn expand(args: TokenStream) -> String {
        let func: JobFn = syn::parse_quote!(
            async fn ping(p: Ping) -> Result<(), JobError> {}
        );
        try_job(args, &func).unwrap().to_string()
    }

    #[test]
    fn reports_every_problem_at_once() {
        assert_eq!(
            errors(
                quote!(routing_key = "a..b", retries = "5", color = "red"),
                quote! { fn ping(a: Ping, b: Pong) {} }
            ),
            [
                "expected a whole number: `retries = 5`",
                "unknown `job` argument `color`; expected `exchange`, `routing_key`, `kind`, `binding`, `headers`, \
                 `queue`, `name`, `retries`, `backoff`, `timeout`, `concurrency`, `queue_type`, `priorities`, `max_running`, `rate`, `schedule`, \
                 `every`, `timezone`, `missed` or `crate`",
                "`#[job]` functions must be `async`",
                "`#[job]` functions return `Result<(), E>`: add `-> Result<(), JobError>` (or another error type \
                 that converts into `JobError`)",
                "missing `exchange = \"...\"` argument",
                "routing key `a..b` has an empty segment",
            ]
        );
    }

    #[test]
    fn keeps_the_fn_when_the_attribute_is_wrong() {
        let out = job(
            quote!(routing_key = "k"),
            quote!(
                async fn ping(p: Ping) -> Result<(), E> {
                    body()
                }
            ),
        );
        let out = out.to_string();
        assert!(
            out.starts_with("async fn ping (p : Ping) -> Result < () , E > { body () }"),
            "{out}"
        );
        assert!(out.contains("compile_error"), "{out}");
        assert!(!out.contains("mod ping"), "{out}");
    }

    #[test]
    fn gives_back_items_that_are_not_fns() {
        let out = job(
            quote!(exchange = "e"),
            quote!(
                struct Ping;
            ),
        )
        .to_string();
        assert!(out.starts_with("struct Ping ;"), "{out}");
        assert!(
            out.contains("`#[job]` applies to an `async fn`, not to a `struct`"),
            "{out}"
        );
    }

    #[test]
    fn checks_the_arguments_of_the_fn() {
        assert_eq!(
            fn_errors(quote!(
                async fn f() -> R {}
            )),
            [
                "`#[job]` functions take a protobuf message argument first, then any of `ctx: JobContext` \
                 and `name: State<T>`"
            ]
        );
        let first = "the protobuf message argument comes first: `async fn job(message: Message, ctx: JobContext)`";
        assert_eq!(
            fn_errors(quote!(
                async fn f(ctx: JobContext, m: M) -> R {}
            )),
            [first]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(ctx: jobs_core::JobContext) -> R {}
            )),
            [first]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(db: State<Db>, m: M) -> R {}
            )),
            [first]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(m: M, ctx: &JobContext, db: &State<Db>) -> R {}
            )),
            [
                "take it by value: `ctx: JobContext`, `db: State<Db>`",
                "take it by value: `ctx: JobContext`, `db: State<Db>`"
            ]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(&self, m: M) -> R {}
            )),
            ["`#[job]` functions cannot take `self`: declare the job as a free `async fn`"]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(m: &M) -> R {}
            )),
            ["the message argument is taken by value, not by reference"]
        );
        // Any number of extractors, in any order; their types are checked by the compiler.
        for ok in [
            quote!(
                async fn f(m: M) -> R {}
            ),
            quote!(
                async fn f(m: M, ctx: JobContext) -> R {}
            ),
            quote!(
                async fn f((a, b): M, _: jobs_core::JobContext) -> R {}
            ),
            quote!(
                async fn f(m: M, db: State<Arc<Db>>, ctx: JobContext, http: State<Client>) -> R {}
            ),
        ] {
            assert!(fn_errors(ok.clone()).is_empty(), "{ok}");
        }
    }

    #[test]
    fn checks_the_rest_of_the_signature() {
        let generic = "`#[job]` functions cannot be generic: a job has one message type, fixed where it is declared";
        assert_eq!(
            fn_errors(quote!(
                async fn f<M>(m: M) -> R {}
            )),
            [generic]
        );
        assert_eq!(
            fn_errors(quote!(
                async fn f(m: M) -> R
                where
                    M: Clone,
                {
                }
            )),
            [generic]
        );
        assert_eq!(
            fn_errors(quote!(
                async unsafe fn f(m: M) -> R {}
            )),
            ["`#[job]` functions cannot be `unsafe`"]
        );
        assert_eq!(
            fn_errors(quote!(
                fn f(m: M) -> R {}
            )),
            ["`#[job]` functions must be `async`"]
        );
    }

    #[test]
    fn requires_exchange_and_routing_key() {
        assert_eq!(
            arg_errors(quote!()),
            [
                "missing `exchange = \"...\"` argument",
                "missing `routing_key = \"...\"` argument"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "", routing_key = "k")),
            ["empty `exchange`: queues cannot be bound to the default exchange; name an exchange"]
        );
    }

    #[test]
    fn checks_routing_keys_against_the_exchange_kind() {
        assert!(arg_errors(quote!(exchange = "e", routing_key = "", kind = "fanout")).is_empty());
        assert!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "",
                kind = "headers",
                headers(a = "b")
            ))
            .is_empty()
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "")),
            [
                "empty routing key: a `direct` exchange routes on it; only `fanout` and `headers` exchanges may \
                 use `routing_key = \"\"`"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "a.b", binding = "a.*")),
            [
                "binding `a.*`: a `direct` exchange matches keys exactly; `*` and `#` only work on a `topic` exchange"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "a.b", binding = "a.c")),
            [
                "binding `a.c` does not match routing key `a.b`: this job's own messages would not reach its queue"
            ]
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "a.b",
                kind = "topic",
                binding = "x.*"
            )),
            [
                "binding `x.*` does not match routing key `a.b`: this job's own messages would not reach its queue"
            ]
        );
        assert!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "a.b",
                kind = "topic",
                binding = "a.#"
            ))
            .is_empty()
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "k",
                kind = "fanout",
                binding = "k"
            )),
            [
                "`binding` has no effect on a `fanout` exchange: it routes every message to every bound queue"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "", kind = "fan")),
            ["unknown exchange kind `fan`; expected `direct`, `topic`, `fanout` or `headers`"]
        );
    }

    #[test]
    fn checks_header_bindings() {
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "k", headers(a = "b"))),
            [
                "`headers(...)` only applies to a `headers` exchange, and this one is `direct`: set \
                 `kind = \"headers\"` or remove `headers(...)`"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "", kind = "headers")),
            ["a `headers` exchange routes on header values: add `headers(name = \"value\", ...)`"]
        );
        assert_eq!(
            arg_errors(
                quote!(exchange = "e", routing_key = "", kind = "headers", headers(match = "some", x-a = "1"))
            ),
            [
                "expected `match = \"all\"` or `match = \"any\"`",
                "header `x-a` cannot be matched: a headers exchange ignores headers whose names start with `x-`",
            ]
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "",
                kind = "headers",
                headers()
            )),
            ["`headers(...)` needs at least one `name = \"value\"` pair"]
        );
    }

    #[test]
    fn checks_options() {
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "k",
                timeout = "30",
                backoff = "1s,,2s"
            )),
            [
                "invalid duration `30`: `30` needs a unit: `ms`, `s`, `m` or `h`",
                "invalid backoff `1s,,2s`: empty duration: expected a number and a unit, e.g. `30s`, `1500ms`, \
                 `5m`, `1h` or `1m30s`",
            ]
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "k",
                timeout = "0s",
                concurrency = 0
            )),
            [
                "`concurrency = 0`: a worker would never take a delivery; expected 1 to 65535",
                "`timeout` must be longer than zero",
            ]
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "k",
                concurrency = 65536,
                retries = 4294967296
            )),
            [
                "`retries = 4294967296` is out of range",
                "`concurrency = 65536`: expected 1 to 65535"
            ]
        );
        assert_eq!(
            arg_errors(quote!(
                exchange = "e",
                routing_key = "k",
                queue_type = "stream"
            )),
            ["unknown queue type `stream`; expected `quorum` or `classic`"]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "k", queue = "amq.q")),
            ["queue `amq.q`: names starting with `amq.` are reserved by RabbitMQ"]
        );
    }

    #[test]
    fn checks_schedules() {
        let errors = |schedule: TokenStream| {
            arg_errors(quote!(exchange = "e", routing_key = "k", #schedule))
        };
        assert!(errors(quote!(schedule = "0 */5 * * * *")).is_empty());
        assert!(
            errors(quote!(
                schedule = "0 0 9 * * Mon-Fri",
                timezone = "Europe/Paris",
                missed = "skip"
            ))
            .is_empty()
        );
        assert!(errors(quote!(every = "1h30m", missed = "fire-once")).is_empty());
        assert_eq!(
            errors(quote!(schedule = "*/5 * * * *")),
            [
                "invalid cron expression `*/5 * * * *`: 5 fields, not 6 or 7; the first field is seconds: \
                 `sec min hour day-of-month month day-of-week [year]`, so did you mean `0 */5 * * * *`?"
            ]
        );
        assert_eq!(
            errors(quote!(schedule = "0 0 9 * * *", timezone = "Europe/Pariss")),
            [
                "unknown time zone `Europe/Pariss` (did you mean `Europe/Paris`?); expected an IANA time zone \
                 name such as `UTC`, `Europe/Paris` or `America/New_York`"
            ]
        );
        assert_eq!(
            errors(quote!(every = "1500ms")),
            [
                "`every = \"1500ms\"`: a period is a whole number of seconds, e.g. `1s`, `90s` or `1m30s`"
            ]
        );
        assert_eq!(
            errors(quote!(every = "0s")),
            ["`every = \"0s\"`: a period must be longer than zero, at least `1s`"]
        );
        assert_eq!(
            errors(quote!(schedule = "0 * * * * *", every = "1m")),
            [
                "`schedule` and `every` are exclusive: a job runs on a cron expression or on a fixed period; \
                 remove one"
            ]
        );
        assert_eq!(
            errors(quote!(every = "1m", timezone = "Europe/Paris")),
            [
                "`timezone` only applies to `schedule`: the slots of `every` fall on multiples of its period \
                 since the Unix epoch, the same in every time zone"
            ]
        );
        assert_eq!(
            errors(quote!(timezone = "Europe/Paris")),
            [
                "`timezone` only applies to `schedule`: add `schedule = \"0 0 9 * * *\"`, or remove `timezone`"
            ]
        );
        assert_eq!(
            errors(quote!(missed = "skip")),
            [
                "`missed` only applies to a periodic job: add `schedule = \"0 */5 * * * *\"` or \
                 `every = \"5m\"`, or remove `missed`"
            ]
        );
        assert_eq!(
            errors(quote!(every = "5m", missed = "later")),
            [
                "unknown `missed` value `later`; expected `fire-once` (run the latest missed slot once) or `skip`"
            ]
        );
        // Every problem at once.
        assert_eq!(
            errors(quote!(
                schedule = "bad",
                every = "5",
                timezone = "Nowhere",
                missed = "never"
            ))
            .len(),
            5
        );
    }

    #[test]
    fn generates_schedules() {
        let out = expand(quote!(exchange = "e", routing_key = "k"));
        assert!(
            out.contains("schedule : :: core :: option :: Option :: None"),
            "{out}"
        );
        let out = expand(quote!(
            exchange = "e",
            routing_key = "k",
            schedule = "0 */5 * * * *"
        ));
        assert!(
            out.contains(
                "schedule : :: core :: option :: Option :: Some (:: jobs_core :: __private :: ScheduleSpec { \
                 cron : :: core :: option :: Option :: Some (\"0 */5 * * * *\") , \
                 every : :: core :: option :: Option :: None , timezone : \"UTC\" , \
                 missed : :: jobs_core :: __private :: Missed :: FireOnce , })"
            ),
            "{out}"
        );
        let out = expand(quote!(
            exchange = "e",
            routing_key = "k",
            every = "1h30m",
            missed = "skip",
            crate = "my::jc"
        ));
        assert!(
            out.contains(
                "schedule : :: core :: option :: Option :: Some (my :: jc :: __private :: ScheduleSpec { \
                 cron : :: core :: option :: Option :: None , \
                 every : :: core :: option :: Option :: Some (my :: jc :: __private :: core :: time :: \
                 Duration :: from_secs (5400)) , timezone : \"UTC\" , \
                 missed : my :: jc :: __private :: Missed :: Skip , })"
            ),
            "{out}"
        );
        let out = expand(quote!(
            exchange = "e",
            routing_key = "k",
            schedule = "0 0 9 * * Mon-Fri",
            timezone = "Europe/Paris"
        ));
        assert!(out.contains("timezone : \"Europe/Paris\""), "{out}");
    }

    #[test]
    fn generates_the_module_with_defaults_left_to_the_worker() {
        let out = expand(quote!(exchange = "uploads", routing_key = "oss"));
        assert!(out.contains("mod ping"), "{out}");
        assert!(out.contains("name : \"ping\""), "{out}");
        assert!(out.contains("queue : \"uploads.ping\""), "{out}");
        assert!(
            out.contains("const ERROR_QUEUE : & str = \"uploads.ping.err\""),
            "{out}"
        );
        assert!(
            out.contains("retries : :: core :: option :: Option :: None"),
            "{out}"
        );
        assert!(
            out.contains("handler : __jobs_handle :: < Ping >"),
            "the one use of the message type where it must be a protobuf message: {out}"
        );
        assert!(out.contains("needs : & []"), "{out}");
        assert!(out.contains("message_type : \"Ping\""), "{out}");
        let absolute = out
            .match_indices("jobs_core")
            .all(|(at, _)| out[..at].ends_with(":: "));
        assert!(absolute, "a bare `jobs_core` path: {out}");
    }

    #[test]
    fn generates_every_option() {
        let out = expand(quote! {
            exchange = "e", routing_key = "k", retries = 2, backoff = "exp(1500ms, x3, 1m)",
            timeout = "1m30s", concurrency = 8, queue_type = "quorum", queue = "q", name = "n",
            crate = "my::jc",
        });
        assert!(
            out.contains("retries : :: core :: option :: Option :: Some (2)"),
            "{out}"
        );
        assert!(
            out.contains("my :: jc :: __private :: Backoff :: Exponential"),
            "{out}"
        );
        assert!(out.contains("Duration :: from_millis (1500)"), "{out}");
        assert!(out.contains("factor : 3"), "{out}");
        assert!(out.contains("Duration :: from_secs (90)"), "{out}");
        assert!(
            out.contains("concurrency : :: core :: option :: Option :: Some (8)"),
            "{out}"
        );
        assert!(out.contains("QueueType :: Quorum"), "{out}");
        assert!(out.contains("queue : \"q\""), "{out}");
        assert!(out.contains("name : \"n\""), "{out}");
        assert!(!out.contains(":: jobs_core"), "{out}");
    }

    #[test]
    fn a_rate_is_starts_per_period() {
        let out = expand(quote!(exchange = "e", routing_key = "k", rate = "100/m"));
        assert!(out.contains("Rate { starts : 100 , per :"), "{out}");
        assert!(out.contains("Duration :: from_secs (60)"), "{out}");
        let out = expand(quote!(exchange = "e", routing_key = "k", rate = "5/1500ms"));
        assert!(out.contains("Duration :: from_millis (1500)"), "{out}");
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "k", rate = "fast")),
            [
                "`rate = \"fast\"`: expected starts per period, as `\"50/s\"`, `\"100/m\"` or `\"5/10s\"`"
            ]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "k", rate = "0/s")),
            ["`rate = \"0/s\"`: a rate lets at least one job start per period"]
        );
        assert_eq!(
            arg_errors(quote!(exchange = "e", routing_key = "k", rate = "20000/s")),
            [
                "`rate = \"20000/s\"`: at most 10000 starts a second (each is a message on the broker)"
            ]
        );
    }

    #[test]
    fn max_running_is_an_option() {
        let out = expand(quote!(exchange = "e", routing_key = "k", max_running = 4));
        assert!(
            out.contains("max_running : :: core :: option :: Option :: Some (4)"),
            "{out}"
        );
    }

    #[test]
    fn priorities_make_the_queue_classic() {
        let out = expand(quote!(exchange = "e", routing_key = "k", priorities = 10));
        assert!(
            out.contains("priorities : :: core :: option :: Option :: Some (10)"),
            "{out}"
        );
        assert!(out.contains("QueueType :: Classic"), "{out}");
    }

    #[test]
    fn items_reach_as_far_as_the_fn() {
        let vis = |func: TokenStream| {
            let func: JobFn = syn::parse2(func).unwrap();
            let out = try_job(OK_ARGS.parse().unwrap(), &func)
                .unwrap()
                .to_string();
            let start = out.find("static JOB").unwrap();
            let before = &out[..start];
            before[before.rfind(']').unwrap() + 1..].trim().to_owned()
        };
        assert_eq!(
            vis(quote!(
                pub async fn f(m: M) -> R {}
            )),
            "pub"
        );
        assert_eq!(
            vis(quote!(
                async fn f(m: M) -> R {}
            )),
            "pub (super)"
        );
        assert_eq!(
            vis(quote!(
                pub(crate) async fn f(m: M) -> R {}
            )),
            "pub (crate)"
        );
        assert_eq!(
            vis(quote!(
                pub(super) async fn f(m: M) -> R {}
            )),
            "pub (in super :: super)"
        );
        assert_eq!(
            vis(quote!(
                pub(in crate::a) async fn f(m: M) -> R {}
            )),
            "pub (in crate :: a)"
        );
    }
}
