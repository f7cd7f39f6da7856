//! The batch enqueue scenario, written once and run on every transport: `enqueue_all` of
//! thousands of jobs returns their ids in order and each is handled once, and a batch with a
//! job refused in the middle, by the producer or by the broker, says which one while the others
//! still run.
#![allow(
    clippy::missing_panics_doc,
    clippy::missing_errors_doc,
    reason = "test scenarios: each asserts outcomes and panics when one is wrong"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::engine::Engine;
use jobs_core::transport::Transport;
use jobs_core::{Error, JobContext, JobError, MessageId, ProducerOptions, State, job};
use tokio::sync::watch;

/// A job of the scenario.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// Its number in the batch.
    #[prost(uint32, tag = "1")]
    pub n: u32,
    /// Padding, to make a job too large.
    #[prost(string, tag = "2")]
    pub padding: String,
}

/// The message ids the handler saw, each time it saw one.
#[derive(Debug)]
pub struct Handled {
    ids: Mutex<Vec<String>>,
    count: watch::Sender<usize>,
}

impl Default for Handled {
    fn default() -> Self {
        Self {
            ids: Mutex::default(),
            count: watch::channel(0).0,
        }
    }
}

impl Handled {
    /// Waits until `n` jobs were handled, `within` at most, and returns their ids.
    async fn until(&self, n: usize, within: Duration) -> Vec<String> {
        let mut count = self.count.subscribe();
        tokio::time::timeout(within, count.wait_for(|seen| *seen >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} jobs were not handled within {within:?}"))
            .expect("the sender lives in `self`");
        self.ids.lock().expect("not poisoned").clone()
    }
}

/// Records each job's message id.
#[job(
    exchange = "tests.batches",
    routing_key = "line",
    queue = "tests.batches.line",
    retries = 0
)]
pub async fn line(
    _line: Line,
    ctx: JobContext,
    handled: State<Arc<Handled>>,
) -> Result<(), JobError> {
    let mut ids = handled
        .ids
        .lock()
        .map_err(|_| JobError::fatal("poisoned"))?;
    ids.push(ctx.message_id().unwrap_or_default().to_owned());
    handled.count.send_replace(ids.len());
    Ok(())
}

/// Jobs of the big batch: more than the 1,000 a batch keeps in flight.
pub const BATCH: u32 = 2_500;
/// The producer's size limit in the scenario: the refused job is padded over it.
const LIMIT: usize = 1_024;

/// A batch of [`BATCH`] jobs comes back as that many distinct ids in order, and exactly those
/// are handled, once each; in a batch of three whose middle job is over the size limit, the
/// error names that job as too large and the other two are enqueued and handled; and so it is
/// when the broker returns the middle job as unroutable while the others are in flight.
pub async fn a_batch_is_enqueued_whole_and_a_refused_job_is_named(transport: Arc<dyn Transport>) {
    let within = Duration::from_secs(60);
    let handled = Arc::new(Handled::default());
    let engine = Engine::builder(Arc::clone(&transport))
        .job(&line::JOB)
        .state(Arc::clone(&handled))
        .producer_options(ProducerOptions {
            max_message_size: LIMIT,
            ..ProducerOptions::default()
        })
        .start()
        .await
        .expect("the engine starts");
    transport.purge(line::QUEUE).await.expect("purged");

    let ids = line::enqueue_all(
        &engine,
        (0..BATCH).map(|n| Line {
            n,
            padding: String::new(),
        }),
    )
    .await
    .expect("the batch is enqueued");
    let batch = usize::try_from(BATCH).expect("small");
    assert_eq!(ids.len(), batch);
    let distinct: HashSet<&MessageId> = ids.iter().collect();
    assert_eq!(distinct.len(), batch, "every job has its own id");
    let mut seen = handled.until(batch, within).await;
    let mut expected: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "exactly the batch's jobs, once each");

    let padded = |n: u32, padding: usize| Line {
        n,
        padding: "x".repeat(padding),
    };
    let refused = jobs_core::enqueue_all(
        &engine,
        [padded(0, 0), padded(1, LIMIT), padded(2, 0)]
            .into_iter()
            .enumerate()
            .map(|(at, job)| line::with(job).message_id(format!("tests-batches-{at}"))),
    )
    .await
    .expect_err("the middle job is too large");
    only_the_middle_failed(&refused, [0, 2], |error| {
        matches!(error, Error::TooLarge { .. })
    });
    let seen = handled.until(batch + 2, within).await;
    let after: HashSet<&str> = seen[batch..].iter().map(String::as_str).collect();
    assert_eq!(
        after,
        HashSet::from(["tests-batches-0", "tests-batches-2"]),
        "the two others ran, and nothing else"
    );

    // The broker's refusal, in the middle of the pipelined publishes: a routing key nothing is
    // bound to comes back as unroutable (mandatory), and only that job fails.
    let returned = jobs_core::enqueue_all(
        &engine,
        (3..6).map(|at| {
            let job = line::with(padded(at, 0)).message_id(format!("tests-batches-{at}"));
            if at == 4 {
                job.routing_key("tests.batches.nowhere")
            } else {
                job
            }
        }),
    )
    .await
    .expect_err("the middle job is unroutable");
    only_the_middle_failed(&returned, [3, 5], Error::is_unroutable);
    let seen = handled.until(batch + 4, within).await;
    let after: HashSet<&str> = seen[batch + 2..].iter().map(String::as_str).collect();
    assert_eq!(
        after,
        HashSet::from(["tests-batches-3", "tests-batches-5"]),
        "the two routable ones ran, and nothing else"
    );
    engine.shutdown(Duration::from_secs(5)).await;
}

/// `refused`, a batch of three, enqueued its first and last jobs, numbered `enqueued`, and
/// failed its middle one with an error `middle` accepts.
fn only_the_middle_failed(
    refused: &jobs_core::EnqueueAllError,
    enqueued: [u32; 2],
    middle: impl Fn(&Error) -> bool,
) {
    let outcomes = refused.outcomes();
    assert_eq!(refused.failed(), 1, "{refused}");
    let id = |n: u32| format!("tests-batches-{n}");
    assert!(
        matches!(&outcomes[0], Ok(done) if done.as_str() == id(enqueued[0])),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Err(error) if middle(error)),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Ok(done) if done.as_str() == id(enqueued[1])),
        "{outcomes:?}"
    );
}
