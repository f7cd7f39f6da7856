//! Turns the arguments and the fn, as written, into a [`JobSpec`] that is valid by
//! construction: every check the macro can make happens here, and every problem is reported.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::{FnArg, LitInt, LitStr, ReturnType, Safety, Signature, Type};

use crate::args::{HeadersArg, JobArgs};
use crate::ctxt::Ctxt;
use crate::duration::{self, BackoffSpec};
use crate::item::JobFn;
use crate::routing::{self, Kind, MAX_LEN};
use crate::schedule::{self, ScheduleSpec, When};

/// Room left under the 255-byte limit for the `.retry.N` and `.err` queues of a job.
const MAX_QUEUE_LEN: usize = MAX_LEN - ".retry.99".len();

/// Everything the generated code needs, checked.
pub(crate) struct JobSpec<'a> {
    pub(crate) func: &'a JobFn,
    pub(crate) message: &'a Type,
    /// The types of the arguments after the message: `JobContext`, `State<T>`.
    pub(crate) extractors: Vec<&'a Type>,
    pub(crate) output: &'a Type,
    /// The path to `jobs_core`.
    pub(crate) krate: TokenStream,
    pub(crate) name: String,
    pub(crate) exchange: String,
    pub(crate) kind: Kind,
    pub(crate) routing_key: String,
    pub(crate) binding: String,
    pub(crate) headers: Option<HeaderSpec>,
    pub(crate) queue: String,
    pub(crate) options: OptionsSpec,
}

/// A headers-exchange binding.
pub(crate) struct HeaderSpec {
    pub(crate) match_any: bool,
    pub(crate) values: Vec<(String, String)>,
}

/// The options the attribute sets; `None` leaves them to the worker.
#[derive(Default)]
pub(crate) struct OptionsSpec {
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<BackoffSpec>,
    /// Milliseconds.
    pub(crate) timeout: Option<u64>,
    pub(crate) concurrency: Option<u16>,
    pub(crate) quorum: Option<bool>,
    /// Priority levels: the queue is then classic.
    pub(crate) priorities: Option<u8>,
    /// Handlers running at once across every worker.
    pub(crate) max_running: Option<u16>,
    /// Starts per period across every worker: (starts, period in milliseconds).
    pub(crate) rate: Option<(u32, u64)>,
    /// `Some` for a periodic job.
    pub(crate) schedule: Option<ScheduleSpec>,
}

/// The parts of the signature the generated code uses.
struct SignatureSpec<'a> {
    message: &'a Type,
    extractors: Vec<&'a Type>,
    output: &'a Type,
}

/// Checks everything, reporting every problem to `cx`; `Some` only when all is well.
pub(crate) fn check<'a>(cx: &Ctxt, args: &'a JobArgs, func: &'a JobFn) -> Option<JobSpec<'a>> {
    let signature = check_signature(cx, &func.sig);
    let fn_name = func.sig.ident.unraw().to_string();

    // `None`: the kind is invalid (already reported), so checks that depend on it are skipped.
    let kind = match &args.kind {
        None => Some(Kind::Direct),
        Some(lit) => Kind::parse(&lit.value()).or_else(|| {
            cx.error(
                lit,
                format_args!(
                    "unknown exchange kind `{}`; expected `direct`, `topic`, `fanout` or `headers`",
                    lit.value()
                ),
            );
            None
        }),
    };

    let exchange =
        required(cx, args.exchange.as_ref(), "exchange").and_then(|lit| check_exchange(cx, lit));
    let routing_key = required(cx, args.routing_key.as_ref(), "routing_key")
        .and_then(|lit| check_routing_key(cx, lit, kind));
    let binding = check_binding(cx, args, kind, routing_key.as_deref());
    let headers = check_headers(cx, args, kind);
    let queue = match (&args.queue, &exchange) {
        (Some(lit), _) => check_queue(cx, lit.value(), Some(lit)),
        (None, Some(exchange)) => {
            check_queue(cx, format!("{exchange}.{fn_name}"), args.exchange.as_ref())
        }
        (None, None) => None,
    };
    let name = match &args.name {
        Some(lit) => check_name(cx, lit),
        None => Some(fn_name),
    };
    let options = check_options(cx, args);

    let signature = signature?;
    Some(JobSpec {
        func,
        message: signature.message,
        extractors: signature.extractors,
        output: signature.output,
        krate: args
            .krate
            .as_ref()
            .map_or_else(|| quote!(::jobs_core), ToTokens::to_token_stream),
        name: name?,
        exchange: exchange?,
        kind: kind?,
        routing_key: routing_key?,
        binding: binding?,
        headers: headers?,
        queue: queue?,
        options: options?,
    })
}

fn required<'a>(cx: &Ctxt, lit: Option<&'a LitStr>, key: &str) -> Option<&'a LitStr> {
    if lit.is_none() {
        cx.error_at(
            Span::call_site(),
            format_args!("missing `{key} = \"...\"` argument"),
        );
    }
    lit
}

// ===== the fn =====

fn check_signature<'a>(cx: &Ctxt, sig: &'a Signature) -> Option<SignatureSpec<'a>> {
    if sig.asyncness.is_none() {
        cx.error_at(sig.fn_token.span, "`#[job]` functions must be `async`");
    }
    if let Safety::Unsafe(token) = &sig.safety {
        cx.error(token, "`#[job]` functions cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        cx.error(abi, "`#[job]` functions cannot have an `extern` ABI");
    }
    let generic = "`#[job]` functions cannot be generic: a job has one message type, fixed where it is declared";
    if sig.generics.lt_token.is_some() {
        cx.error(&sig.generics, generic);
    } else if let Some(clause) = &sig.generics.where_clause {
        cx.error(clause, generic);
    }
    let arguments = check_arguments(cx, sig);
    let output = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            let mut at = sig.ident.to_token_stream();
            sig.paren_token
                .surround(&mut at, |tokens| sig.inputs.to_tokens(tokens));
            cx.error(
                at,
                "`#[job]` functions return `Result<(), E>`: add `-> Result<(), JobError>` \
                 (or another error type that converts into `JobError`)",
            );
            None
        }
    };
    let (message, extractors) = arguments?;
    Some(SignatureSpec {
        message,
        extractors,
        output: output?,
    })
}

/// The message type, and the types of the arguments after it (`JobContext`, `State<T>`).
fn check_arguments<'a>(cx: &Ctxt, sig: &'a Signature) -> Option<(&'a Type, Vec<&'a Type>)> {
    let mut types = Vec::new();
    let mut valid = true;
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => {
                cx.error_at(
                    receiver.self_token.span,
                    "`#[job]` functions cannot take `self`: declare the job as a free `async fn`",
                );
                valid = false;
            }
            FnArg::Typed(typed) => types.push(&*typed.ty),
        }
    }
    if !valid {
        return None;
    }
    let Some((&message, extractors)) = types.split_first() else {
        let mut at = TokenStream::new();
        sig.paren_token.surround(&mut at, |_| {});
        cx.error(
            at,
            "`#[job]` functions take a protobuf message argument first, then any of `ctx: JobContext` \
             and `name: State<T>`",
        );
        return None;
    };
    let mut valid = if is_extractor(message) {
        cx.error(
            message,
            "the protobuf message argument comes first: `async fn job(message: Message, ctx: JobContext)`",
        );
        false
    } else {
        check_message(cx, message)
    };
    for &ty in extractors {
        if let Type::Reference(reference) = ty {
            let what = if is_extractor(&reference.elem) {
                "take it by value: `ctx: JobContext`, `db: State<Db>`"
            } else {
                "after the message, a job takes `JobContext` and `State<T>`, by value"
            };
            cx.error(ty, what);
            valid = false;
        }
    }
    valid.then(|| (message, extractors.to_vec()))
}

fn check_message(cx: &Ctxt, ty: &Type) -> bool {
    match ty {
        Type::Reference(_) => {
            cx.error(
                ty,
                "the message argument is taken by value, not by reference",
            );
            false
        }
        Type::ImplTrait(_) => {
            cx.error(
                ty,
                "the message argument needs a concrete prost message type, not `impl Trait`",
            );
            false
        }
        _ => true,
    }
}

/// Whether `ty` names `JobContext` or `State<..>`, by its last path segment (they may be
/// imported or qualified): what can follow the message, never be it.
fn is_extractor(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().is_some_and(|segment| {
                (segment.ident == "JobContext" && segment.arguments.is_none())
                    || segment.ident == "State"
            })
        }
        Type::Paren(paren) => is_extractor(&paren.elem),
        Type::Group(group) => is_extractor(&group.elem),
        _ => false,
    }
}

// ===== routing =====

fn check_exchange(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let exchange = lit.value();
    if exchange.is_empty() {
        cx.error(
            lit,
            "empty `exchange`: queues cannot be bound to the default exchange; name an exchange",
        );
        None
    } else if exchange.len() > MAX_LEN {
        cx.error(
            lit,
            format_args!("exchange name is longer than {MAX_LEN} bytes"),
        );
        None
    } else {
        Some(exchange)
    }
}

fn check_routing_key(cx: &Ctxt, lit: &LitStr, kind: Option<Kind>) -> Option<String> {
    let key = lit.value();
    if key.is_empty() {
        return match kind {
            Some(kind) if kind.routes_on_key() => {
                cx.error(
                    lit,
                    format_args!(
                        "empty routing key: a `{}` exchange routes on it; only `fanout` and `headers` \
                         exchanges may use `routing_key = \"\"`",
                        kind.as_str()
                    ),
                );
                None
            }
            _ => Some(key),
        };
    }
    match routing::routing_key_problem(&key) {
        Some(problem) => {
            cx.error(lit, problem);
            None
        }
        None => Some(key),
    }
}

/// The binding key: the attribute's, checked against the routing key, or the routing key.
fn check_binding(
    cx: &Ctxt,
    args: &JobArgs,
    kind: Option<Kind>,
    routing_key: Option<&str>,
) -> Option<String> {
    let Some(lit) = &args.binding else {
        return routing_key.map(str::to_owned);
    };
    let binding = lit.value();
    let kind = kind?;
    if !kind.routes_on_key() {
        let instead = if kind == Kind::Headers {
            "it matches `headers(...)`"
        } else {
            "it routes every message to every bound queue"
        };
        cx.error(
            lit,
            format_args!(
                "`binding` has no effect on a `{}` exchange: {instead}",
                kind.as_str()
            ),
        );
        return None;
    }
    if let Some(problem) = routing::binding_problem(&binding, kind) {
        cx.error(lit, problem);
        return None;
    }
    let routing_key = routing_key?;
    let reaches = match kind {
        Kind::Topic => routing::topic_matches(&binding, routing_key),
        _ => binding == routing_key,
    };
    if !reaches {
        cx.error(
            lit,
            format_args!(
                "binding `{binding}` does not match routing key `{routing_key}`: this job's own messages would \
                 not reach its queue"
            ),
        );
        return None;
    }
    Some(binding)
}

/// The header binding: required on a headers exchange, refused elsewhere.
fn check_headers(cx: &Ctxt, args: &JobArgs, kind: Option<Kind>) -> Option<Option<HeaderSpec>> {
    let kind = kind?;
    match (&args.headers, kind) {
        (None, Kind::Headers) => {
            let at = args
                .kind
                .as_ref()
                .map_or_else(Span::call_site, LitStr::span);
            cx.error_at(
                at,
                "a `headers` exchange routes on header values: add `headers(name = \"value\", ...)`",
            );
            None
        }
        (None, _) => Some(None),
        (Some(headers), Kind::Headers) => header_spec(cx, headers).map(Some),
        (Some(headers), other) => {
            cx.error(
                &headers.key,
                format_args!(
                    "`headers(...)` only applies to a `headers` exchange, and this one is `{}`: \
                     set `kind = \"headers\"` or remove `headers(...)`",
                    other.as_str()
                ),
            );
            None
        }
    }
}

fn header_spec(cx: &Ctxt, headers: &HeadersArg) -> Option<HeaderSpec> {
    let mut valid = true;
    let match_any = match &headers.matching {
        None => false,
        Some(lit) => match lit.value().as_str() {
            "all" => false,
            "any" => true,
            _ => {
                cx.error(lit, "expected `match = \"all\"` or `match = \"any\"`");
                valid = false;
                false
            }
        },
    };
    if headers.pairs.is_empty() {
        cx.error(
            &headers.key,
            "`headers(...)` needs at least one `name = \"value\"` pair",
        );
        valid = false;
    }
    for pair in &headers.pairs {
        let problem = if pair.name.is_empty() {
            Some("empty header name".to_owned())
        } else if pair.name.len() > MAX_LEN {
            Some(format!("header name is longer than {MAX_LEN} bytes"))
        } else if pair.name.to_ascii_lowercase().starts_with("x-") {
            Some(format!(
                "header `{}` cannot be matched: a headers exchange ignores headers whose names start with `x-`",
                pair.name
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            cx.error_at(pair.name_span, problem);
            valid = false;
        }
    }
    valid.then(|| HeaderSpec {
        match_any,
        values: headers
            .pairs
            .iter()
            .map(|pair| (pair.name.clone(), pair.value.value()))
            .collect(),
    })
}

/// A queue name, from `queue` or derived from the exchange (then errors point at `at`).
fn check_queue(cx: &Ctxt, queue: String, at: Option<&LitStr>) -> Option<String> {
    let problem = if queue.is_empty() {
        Some("empty `queue` name".to_owned())
    } else if queue.starts_with("amq.") {
        Some(format!(
            "queue `{queue}`: names starting with `amq.` are reserved by RabbitMQ"
        ))
    } else if queue.len() > MAX_QUEUE_LEN {
        Some(format!(
            "queue `{queue}` is longer than {MAX_QUEUE_LEN} bytes, which leaves no room for its `.retry.N` and \
             `.err` queues under the 255-byte limit{}",
            if at.is_some_and(|lit| lit.value() != queue) {
                "; set `queue = \"...\"`"
            } else {
                ""
            }
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => {
            cx.error_at(at.map_or_else(Span::call_site, LitStr::span), problem);
            None
        }
        None => Some(queue),
    }
}

fn check_name(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let name = lit.value();
    if name.is_empty() {
        cx.error(lit, "empty job `name`");
        None
    } else if name.len() > MAX_LEN {
        cx.error(lit, format_args!("job name is longer than {MAX_LEN} bytes"));
        None
    } else {
        Some(name)
    }
}

// ===== options =====

fn check_options(cx: &Ctxt, args: &JobArgs) -> Option<OptionsSpec> {
    let retries = optional(args.retries.as_ref(), |lit| int::<u32>(cx, lit, "retries"));
    let concurrency = optional(args.concurrency.as_ref(), |lit| {
        let value = int::<u64>(cx, lit, "concurrency")?;
        match u16::try_from(value) {
            Ok(value) if value > 0 => Some(value),
            _ => {
                let why = if value == 0 {
                    "a worker would never take a delivery; "
                } else {
                    ""
                };
                cx.error(
                    lit,
                    format_args!("`concurrency = {value}`: {why}expected 1 to 65535"),
                );
                None
            }
        }
    });
    let timeout = optional(args.timeout.as_ref(), |lit| {
        match duration::parse(&lit.value()) {
            Ok(0) => {
                cx.error(lit, "`timeout` must be longer than zero");
                None
            }
            Ok(ms) => Some(ms),
            Err(why) => {
                cx.error(lit, why);
                None
            }
        }
    });
    let backoff = optional(args.backoff.as_ref(), |lit| {
        duration::parse_backoff(&lit.value())
            .map_err(|why| cx.error(lit, why))
            .ok()
    });
    let quorum = optional(args.queue_type.as_ref(), |lit| match lit.value().as_str() {
        "quorum" => Some(true),
        "classic" => Some(false),
        other => {
            cx.error(
                lit,
                format_args!("unknown queue type `{other}`; expected `quorum` or `classic`"),
            );
            None
        }
    });
    let priorities = check_priorities(cx, args, quorum);
    let max_running = optional(args.max_running.as_ref(), |lit| {
        let value = int::<u64>(cx, lit, "max_running")?;
        match u16::try_from(value) {
            Ok(value @ 1..=MAX_RUNNING) => Some(value),
            _ => {
                cx.error(
                    lit,
                    format_args!(
                        "`max_running = {value}`: expected 1 to {MAX_RUNNING} (each is a slot queue on the broker)"
                    ),
                );
                None
            }
        }
    });
    let rate = optional(args.rate.as_ref(), |lit| {
        parse_rate(&lit.value())
            .map_err(|why| cx.error(lit, why))
            .ok()
    });
    let schedule = check_schedule(cx, args);
    Some(OptionsSpec {
        retries: retries?,
        backoff: backoff?,
        timeout: timeout?,
        concurrency: concurrency?,
        // Priorities need a classic queue: one left to the worker's default is classic.
        quorum: match priorities? {
            Some(_) => Some(false),
            None => quorum?,
        },
        priorities: priorities?,
        max_running: max_running?,
        rate: rate?,
        schedule: schedule?,
    })
}

/// The most starts a second `rate` may allow: each is a message on the broker.
const MAX_RATE_PER_SECOND: u64 = 10_000;

/// `"50/s"`, `"100/m"`, `"5/10s"`: starts per period.
fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let usage = || {
        format!(
            "`rate = \"{text}\"`: expected starts per period, as `\"50/s\"`, `\"100/m\"` or `\"5/10s\"`"
        )
    };
    let (starts, per) = text.split_once('/').ok_or_else(usage)?;
    let starts: u32 = starts.trim().parse().map_err(|_| usage())?;
    let per = per.trim();
    // A bare unit is one of it.
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
        per.to_owned()
    } else {
        format!("1{per}")
    };
    let ms = duration::parse(&per).map_err(|_| usage())?;
    if starts == 0 || ms == 0 {
        return Err(format!(
            "`rate = \"{text}\"`: a rate lets at least one job start per period"
        ));
    }
    if u64::from(starts) * 1000 > MAX_RATE_PER_SECOND * ms {
        return Err(format!(
            "`rate = \"{text}\"`: at most {MAX_RATE_PER_SECOND} starts a second (each is a message on the broker)"
        ));
    }
    Ok((starts, ms))
}

/// The highest `max_running`: one slot queue each.
const MAX_RUNNING: u16 = 256;

/// `priorities = N`, 1 to 255, on a queue that is not quorum: RabbitMQ 3.10 has priorities
/// on classic queues only.
fn check_priorities(cx: &Ctxt, args: &JobArgs, quorum: Option<Option<bool>>) -> Option<Option<u8>> {
    let Some(lit) = &args.priorities else {
        return Some(None);
    };
    let value = int::<u64>(cx, lit, "priorities")?;
    let Some(levels) = u8::try_from(value).ok().filter(|levels| *levels > 0) else {
        cx.error(
            lit,
            format_args!("`priorities = {value}`: expected 1 to 255 (RabbitMQ advises at most 10)"),
        );
        return None;
    };
    if quorum == Some(Some(true))
        && let Some(queue_type) = &args.queue_type
    {
        cx.error(
            queue_type,
            "a quorum queue has no priorities on RabbitMQ 3.10: `priorities` needs \
             `queue_type = \"classic\"`, the type a job with `priorities` gets by default",
        );
        return None;
    }
    Some(Some(levels))
}

/// `schedule` or `every`, with `timezone` and `missed`: `Some(None)` for a job that only runs
/// on messages.
fn check_schedule(cx: &Ctxt, args: &JobArgs) -> Option<Option<ScheduleSpec>> {
    let mut valid = true;
    if let Some(lit) = &args.schedule
        && let Err(why) = schedule::parse_cron(&lit.value())
    {
        cx.error(lit, why);
        valid = false;
    }
    let every = args.every.as_ref().and_then(|lit| {
        schedule::parse_period(&lit.value())
            .map_err(|why| {
                cx.error(lit, why);
                valid = false;
            })
            .ok()
    });
    if let (Some(_), Some(lit)) = (&args.schedule, &args.every) {
        cx.error(
            lit,
            "`schedule` and `every` are exclusive: a job runs on a cron expression or on a fixed period; \
             remove one",
        );
        valid = false;
    }
    match (&args.timezone, &args.schedule, &args.every) {
        (None, _, _) => {}
        (Some(lit), Some(_), _) => {
            if let Err(why) = schedule::parse_timezone(&lit.value()) {
                cx.error(lit, why);
                valid = false;
            }
        }
        (Some(lit), None, every) => {
            let why = if every.is_some() {
                "`timezone` only applies to `schedule`: the slots of `every` fall on multiples of its period \
                 since the Unix epoch, the same in every time zone"
            } else {
                "`timezone` only applies to `schedule`: add `schedule = \"0 0 9 * * *\"`, or remove `timezone`"
            };
            cx.error(lit, why);
            valid = false;
        }
    }
    let skip_missed = match &args.missed {
        None => false,
        Some(lit) if args.schedule.is_none() && args.every.is_none() => {
            cx.error(
                lit,
                "`missed` only applies to a periodic job: add `schedule = \"0 */5 * * * *\"` or \
                 `every = \"5m\"`, or remove `missed`",
            );
            valid = false;
            false
        }
        Some(lit) => schedule::parse_missed(&lit.value()).unwrap_or_else(|why| {
            cx.error(lit, why);
            valid = false;
            false
        }),
    };
    if !valid {
        return None;
    }
    let when = match (&args.schedule, every) {
        (Some(lit), _) => When::Cron(lit.value()),
        (None, Some(seconds)) => When::Every(seconds),
        (None, None) => return Some(None),
    };
    Some(Some(ScheduleSpec {
        when,
        timezone: args
            .timezone
            .as_ref()
            .map_or_else(|| "UTC".to_owned(), LitStr::value),
        skip_missed,
    }))
}

/// `Some(None)` when the key is absent, `Some(Some(_))` when valid, `None` when invalid.
fn optional<L, T>(lit: Option<&L>, check: impl FnOnce(&L) -> Option<T>) -> Option<Option<T>> {
    match lit {
        None => Some(None),
        Some(lit) => check(lit).map(Some),
    }
}

fn int<N>(cx: &Ctxt, lit: &LitInt, key: &str) -> Option<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    if !matches!(lit.suffix(), "" | "u8" | "u16" | "u32" | "u64" | "usize") {
        cx.error(
            lit,
            format_args!("`{key}` is a whole number without a type suffix"),
        );
        return None;
    }
    match lit.base10_parse::<N>() {
        Ok(value) => Some(value),
        Err(_) => {
            cx.error(
                lit,
                format_args!("`{key} = {}` is out of range", lit.base10_digits()),
            );
            None
        }
    }
}
