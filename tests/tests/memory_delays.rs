//! The delay scenarios on the in-memory broker, on virtual time: delays are exact.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::transport::memory::MemoryTransport;
use jobs_tests::delays::{self, DelaySuite};

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
    the_longest_level_takes_its_delay,
    retry_after_waits_its_delay,
    the_same_level_five_times_never_drops_the_job,
);
