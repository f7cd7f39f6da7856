//! The delay scenarios on the in-memory broker, on virtual time: delays are exact.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::testing::Outcome;
use jobs_core::transport::memory::MemoryTransport;
use jobs_tests::delays::{self, DelaySuite, Later, later};

async fn suite() -> DelaySuite {
    DelaySuite::start(Arc::new(MemoryTransport::new()), Duration::ZERO).await
}

macro_rules! on_memory {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test(start_paused = true)]
        async fn $scenario() {
            delays::$scenario(&suite().await).await;
        }
    )*};
}

on_memory!(
    delayed_jobs_start_when_due,
    many_delays_each_start_on_time,
    the_longest_level_takes_its_delay,
    retry_after_waits_its_delay,
    the_same_level_five_times_never_drops_the_job,
);

/// Thirty days pass on the paused clock in moments, and the job starts on its second.
#[tokio::test(start_paused = true)]
async fn a_thirty_day_delay_passes_in_virtual_time() {
    let suite = suite().await;
    let month = Duration::from_secs(30 * 24 * 3600);
    let at = suite.recorder.elapsed();
    let id = later::with(Later::default())
        .delay(month)
        .enqueue(&suite.engine)
        .await
        .unwrap();
    let events = suite
        .recorder
        .finished(&id.to_string(), month + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(events[0].outcome, Outcome::Started);
    assert_eq!(events[0].at - at, month);
}
