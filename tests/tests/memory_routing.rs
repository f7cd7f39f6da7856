//! Each exchange type routes jobs to the right queues, on the in-memory broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jobs_core::testing::TestApp;
use jobs_core::{JobContext, JobError, job};

/// A message for the routing tests.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    /// Free text.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// Which handler saw which note.
#[derive(Default)]
struct Seen(Mutex<BTreeMap<&'static str, Vec<String>>>);

impl Seen {
    fn record(&self, handler: &'static str, note: Note) {
        self.0
            .lock()
            .unwrap()
            .entry(handler)
            .or_default()
            .push(note.text);
    }

    fn of(&self, handler: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(handler)
            .cloned()
            .unwrap_or_default()
    }
}

fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
    }
}

#[job(exchange = "routing.direct", routing_key = "resize")]
async fn resize(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("resize", note);
    Ok(())
}

#[job(exchange = "routing.direct", routing_key = "thumbnail")]
async fn thumbnail(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("thumbnail", note);
    Ok(())
}

#[job(
    exchange = "routing.topic",
    kind = "topic",
    routing_key = "orders.eu.created",
    binding = "orders.*.created"
)]
async fn order_created(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("order_created", note);
    Ok(())
}

#[job(
    exchange = "routing.topic",
    kind = "topic",
    routing_key = "orders",
    binding = "orders.#"
)]
async fn order_audit(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("order_audit", note);
    Ok(())
}

#[job(exchange = "routing.fanout", kind = "fanout", routing_key = "")]
async fn fan_mail(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("fan_mail", note);
    Ok(())
}

#[job(exchange = "routing.fanout", kind = "fanout", routing_key = "")]
async fn fan_sms(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("fan_sms", note);
    Ok(())
}

#[job(
    exchange = "routing.headers",
    kind = "headers",
    routing_key = "",
    headers(format = "pdf", region = "eu")
)]
async fn eu_pdf(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("eu_pdf", note);
    Ok(())
}

#[job(
    exchange = "routing.headers",
    kind = "headers",
    routing_key = "",
    headers(match = "any", format = "png", format_hint = "image")
)]
async fn images(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("images", note);
    Ok(())
}

fn app() -> (TestApp, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = TestApp::builder()
        .job(&resize::JOB)
        .job(&thumbnail::JOB)
        .job(&order_created::JOB)
        .job(&order_audit::JOB)
        .job(&fan_mail::JOB)
        .job(&fan_sms::JOB)
        .job(&eu_pdf::JOB)
        .job(&images::JOB)
        .state(Arc::clone(&seen))
        .build()
        .unwrap();
    (app, seen)
}

#[tokio::test(start_paused = true)]
async fn direct_routes_on_the_exact_key() {
    let (app, seen) = app();
    resize::enqueue(&app, note("a")).await.unwrap();
    thumbnail::enqueue(&app, note("b")).await.unwrap();
    app.run_until_idle().await;
    assert_eq!(seen.of("resize"), ["a"]);
    assert_eq!(seen.of("thumbnail"), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn topic_patterns_match_one_word_and_zero_or_more() {
    let (app, seen) = app();
    // `orders.eu.created` matches `orders.*.created` and `orders.#`.
    order_created::enqueue(&app, note("created")).await.unwrap();
    // `orders` matches `orders.#` (zero words) but not `orders.*.created`.
    order_audit::enqueue(&app, note("bare")).await.unwrap();
    // Two words where `*` wants one: only `orders.#`.
    order_created::with(note("deep"))
        .routing_key("orders.eu.west.created")
        .enqueue(&app)
        .await
        .unwrap();
    app.run_until_idle().await;
    assert_eq!(seen.of("order_created"), ["created"]);
    let mut audit = seen.of("order_audit");
    audit.sort();
    assert_eq!(audit, ["bare", "created", "deep"]);
}

#[tokio::test(start_paused = true)]
async fn two_jobs_on_a_fanout_exchange_both_receive_one_message() {
    let (app, seen) = app();
    fan_mail::enqueue(&app, note("hello")).await.unwrap();
    app.run_until_idle().await;
    assert_eq!(seen.of("fan_mail"), ["hello"]);
    assert_eq!(seen.of("fan_sms"), ["hello"]);
}

#[tokio::test(start_paused = true)]
async fn headers_bindings_match_all_or_any() {
    let (app, seen) = app();
    // The producer of `eu_pdf` sets its binding headers: format=pdf, region=eu.
    eu_pdf::enqueue(&app, note("invoice")).await.unwrap();
    // `images` matches on any of its headers; its producer sets both.
    images::enqueue(&app, note("logo")).await.unwrap();
    // One of two headers is enough for `any`, not for `all`.
    eu_pdf::with(note("png-only"))
        .header("format", "png")
        .header("region", "us")
        .enqueue(&app)
        .await
        .unwrap();
    app.run_until_idle().await;
    assert_eq!(seen.of("eu_pdf"), ["invoice"]);
    assert_eq!(seen.of("images"), ["logo", "png-only"]);
}

#[tokio::test(start_paused = true)]
async fn a_headers_message_matching_no_binding_is_unroutable() {
    let (app, seen) = app();
    let err = eu_pdf::with(note("x"))
        .header("format", "doc")
        .header("region", "us")
        .enqueue(&app)
        .await
        .unwrap_err();
    assert!(err.is_unroutable(), "{err:?}");
    app.run_until_idle().await;
    assert!(seen.of("eu_pdf").is_empty());
}
