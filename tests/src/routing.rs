//! Routing on all four exchange types, written once and run on every transport.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    clippy::unwrap_used,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::testing::Recorder;
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{Job, JobContext, JobError, job};

/// A message for the routing tests.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    /// Free text.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// Which handler saw which note.
#[derive(Default)]
pub struct Seen(Mutex<BTreeMap<&'static str, Vec<String>>>);

impl Seen {
    fn record(&self, handler: &'static str, note: Note) {
        self.0
            .lock()
            .unwrap()
            .entry(handler)
            .or_default()
            .push(note.text);
    }

    /// The notes `handler` saw, sorted.
    #[must_use]
    pub fn of(&self, handler: &str) -> Vec<String> {
        let mut notes = self
            .0
            .lock()
            .unwrap()
            .get(handler)
            .cloned()
            .unwrap_or_default();
        notes.sort();
        notes
    }
}

/// A note.
#[must_use]
pub fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
    }
}

/// Direct, key `resize`.
#[job(exchange = "routing.direct", routing_key = "resize")]
pub async fn resize(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("resize", note);
    Ok(())
}

/// Direct, key `thumbnail`.
#[job(exchange = "routing.direct", routing_key = "thumbnail")]
pub async fn thumbnail(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("thumbnail", note);
    Ok(())
}

/// Topic, bound to `orders.*.created`.
#[job(
    exchange = "routing.topic",
    kind = "topic",
    routing_key = "orders.eu.created",
    binding = "orders.*.created"
)]
pub async fn order_created(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("order_created", note);
    Ok(())
}

/// Topic, bound to `orders.#`.
#[job(
    exchange = "routing.topic",
    kind = "topic",
    routing_key = "orders",
    binding = "orders.#"
)]
pub async fn order_audit(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("order_audit", note);
    Ok(())
}

/// Fanout, with `fan_sms`.
#[job(exchange = "routing.fanout", kind = "fanout", routing_key = "")]
pub async fn fan_mail(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("fan_mail", note);
    Ok(())
}

/// Fanout, with `fan_mail`.
#[job(exchange = "routing.fanout", kind = "fanout", routing_key = "")]
pub async fn fan_sms(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("fan_sms", note);
    Ok(())
}

/// Headers, all of `format = pdf`, `region = eu`.
#[job(
    exchange = "routing.headers",
    kind = "headers",
    routing_key = "",
    headers(format = "pdf", region = "eu")
)]
pub async fn eu_pdf(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("eu_pdf", note);
    Ok(())
}

/// Headers, any of `format = png`, `format_hint = image`.
#[job(
    exchange = "routing.headers",
    kind = "headers",
    routing_key = "",
    headers(match = "any", format = "png", format_hint = "image")
)]
pub async fn images(note: Note, ctx: JobContext) -> Result<(), JobError> {
    ctx.state::<Arc<Seen>>()?.record("images", note);
    Ok(())
}

/// Every routing job.
pub const JOBS: [&Job; 8] = [
    &resize::JOB,
    &thumbnail::JOB,
    &order_created::JOB,
    &order_audit::JOB,
    &fan_mail::JOB,
    &fan_sms::JOB,
    &eu_pdf::JOB,
    &images::JOB,
];

/// An engine serving every routing job on one transport.
#[derive(Debug)]
pub struct Routing {
    /// The engine; enqueue through it.
    pub engine: Engine,
    /// What each handler saw.
    pub seen: Arc<Seen>,
    recorder: Arc<Recorder>,
    /// On the in-memory broker: waited on before asserting, so nothing more can arrive.
    memory: Option<MemoryTransport>,
    /// Handler runs before the current scenario.
    baseline: AtomicUsize,
    /// Handler runs every scenario so far expected, in all.
    expected: AtomicUsize,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Seen")
            .field(&self.0.lock().unwrap())
            .finish()
    }
}

impl Routing {
    /// Starts the engine on the in-memory broker.
    pub async fn on_memory() -> Self {
        let broker = MemoryTransport::new();
        let mut routing = Self::start(Arc::new(broker.clone())).await;
        routing.memory = Some(broker);
        routing
    }

    /// Starts the engine on `transport`.
    pub async fn start(transport: Arc<dyn Transport>) -> Self {
        let seen = Arc::new(Seen::default());
        let recorder = Arc::new(Recorder::new());
        let engine = Engine::builder(transport)
            .jobs(JOBS)
            .state(Arc::clone(&seen))
            .observer(Arc::clone(&recorder) as _)
            .start()
            .await
            .expect("the engine starts");
        Self {
            engine,
            seen,
            recorder,
            memory: None,
            baseline: AtomicUsize::new(0),
            expected: AtomicUsize::new(0),
        }
    }

    fn succeeded(&self) -> usize {
        let events = self.recorder.events();
        events
            .iter()
            .filter(|e| e.outcome == jobs_core::testing::Outcome::Succeeded)
            .count()
    }

    /// Forgets what earlier scenarios saw.
    fn begin(&self) {
        self.seen.0.lock().unwrap().clear();
        self.baseline.store(self.succeeded(), Ordering::Relaxed);
    }

    /// Waits until the handlers have succeeded `runs` times in this scenario.
    async fn handled(&self, runs: usize) {
        self.expected.fetch_add(runs, Ordering::Relaxed);
        let target = self.baseline.load(Ordering::Relaxed) + runs;
        self.recorder
            .wait_until(Duration::from_secs(30), || {
                (self.succeeded() >= target).then_some(())
            })
            .await
            .unwrap_or_else(|()| panic!("{runs} handler runs expected; saw {:?}", self.seen));
        if let Some(broker) = &self.memory {
            broker.until_idle().await;
            assert_eq!(self.succeeded(), target, "no more runs than expected");
        }
    }
}

impl Routing {
    /// On a broker whose queues it can count: the check that no scenario ran more than it
    /// expected, which a scenario cannot make alone (a message routed where it should not be may
    /// still be on its way when the expected ones are done). Waits until every job's queue is
    /// empty, shuts the engine down (which lets every delivery it took finish), then checks that
    /// nothing went back to a queue and the handlers ran exactly as often as expected.
    pub async fn finish(self, transport: &dyn Transport) {
        let queues: Vec<&str> = JOBS.iter().map(|job| job.queue()).collect();
        let ready = || async {
            let mut ready = 0;
            for queue in &queues {
                ready += transport.message_count(queue).await.expect("a count");
            }
            ready
        };
        let emptied = tokio::time::timeout(Duration::from_secs(30), async {
            while ready().await > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(emptied.is_ok(), "the jobs' queues still hold messages");
        let expected = self.expected.load(Ordering::Relaxed);
        let recorder = Arc::clone(&self.recorder);
        self.engine.shutdown(Duration::from_secs(10)).await;
        assert_eq!(ready().await, 0, "a delivery went back unhandled");
        let succeeded = recorder
            .events()
            .iter()
            .filter(|e| e.outcome == jobs_core::testing::Outcome::Succeeded)
            .count();
        assert_eq!(succeeded, expected, "no more runs than expected");
    }
}

/// A direct exchange routes on the exact key.
pub async fn direct_routes_on_the_exact_key(routing: &Routing) {
    routing.begin();
    resize::enqueue(&routing.engine, note("a")).await.unwrap();
    thumbnail::enqueue(&routing.engine, note("b"))
        .await
        .unwrap();
    routing.handled(2).await;
    assert_eq!(routing.seen.of("resize"), ["a"]);
    assert_eq!(routing.seen.of("thumbnail"), ["b"]);
}

/// A topic exchange: `*` matches one word, `#` zero or more.
pub async fn topic_patterns_match_one_word_and_zero_or_more(routing: &Routing) {
    routing.begin();
    let engine = &routing.engine;
    // `orders.eu.created` matches `orders.*.created` and `orders.#`.
    order_created::enqueue(engine, note("created"))
        .await
        .unwrap();
    // `orders` matches `orders.#` (zero words) but not `orders.*.created`.
    order_audit::enqueue(engine, note("bare")).await.unwrap();
    // Two words where `*` wants one: only `orders.#`.
    order_created::with(note("deep"))
        .routing_key("orders.eu.west.created")
        .enqueue(engine)
        .await
        .unwrap();
    routing.handled(4).await;
    assert_eq!(routing.seen.of("order_created"), ["created"]);
    assert_eq!(routing.seen.of("order_audit"), ["bare", "created", "deep"]);
}

/// A fanout exchange delivers one message to every bound job.
pub async fn two_jobs_on_a_fanout_exchange_both_receive_one_message(routing: &Routing) {
    routing.begin();
    fan_mail::enqueue(&routing.engine, note("hello"))
        .await
        .unwrap();
    routing.handled(2).await;
    assert_eq!(routing.seen.of("fan_mail"), ["hello"]);
    assert_eq!(routing.seen.of("fan_sms"), ["hello"]);
}

/// A headers exchange matches all or any of a binding's headers.
pub async fn headers_bindings_match_all_or_any(routing: &Routing) {
    routing.begin();
    let engine = &routing.engine;
    // The producer of `eu_pdf` sets its binding headers: format=pdf, region=eu.
    eu_pdf::enqueue(engine, note("invoice")).await.unwrap();
    // `images` matches on any of its headers; its producer sets both.
    images::enqueue(engine, note("logo")).await.unwrap();
    // One of two headers is enough for `any`, not for `all`.
    eu_pdf::with(note("png-only"))
        .header("format", "png")
        .header("region", "us")
        .enqueue(engine)
        .await
        .unwrap();
    routing.handled(3).await;
    assert_eq!(routing.seen.of("eu_pdf"), ["invoice"]);
    assert_eq!(routing.seen.of("images"), ["logo", "png-only"]);
}

/// A message no headers binding matches is unroutable.
pub async fn a_headers_message_matching_no_binding_is_unroutable(routing: &Routing) {
    routing.begin();
    let err = eu_pdf::with(note("x"))
        .header("format", "doc")
        .header("region", "us")
        .enqueue(&routing.engine)
        .await
        .unwrap_err();
    assert!(err.is_unroutable(), "{err:?}");
}
