//! What every scenario needs: its size, and waits that are bounded.

use std::time::Duration;

use futures_util::StreamExt as _;
use jobs_core::transport::{Delivery, Settlement, Transport};
use tokio::time::Instant;

/// Whether the long variants run: `JOBS_FAULTS_FULL=1`.
#[must_use]
pub fn full() -> bool {
    std::env::var_os("JOBS_FAULTS_FULL").is_some_and(|v| v == "1")
}

/// `full` in a full run, `default` otherwise: how many jobs a scenario moves.
#[must_use]
pub fn sized<T>(default: T, full: T) -> T {
    if self::full() { full } else { default }
}

/// Polls `condition` every 20 ms until it holds, and returns how long that took.
///
/// # Panics
///
/// Naming `what`, when `within` passes first.
pub async fn until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// As [`until`], for a condition that awaits: a database query, a queue's count.
///
/// # Panics
///
/// Naming `what`, when `within` passes first.
pub async fn until_async<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Consumes and acks the `count` messages of `queue`: an error queue's dead letters, say.
///
/// # Panics
///
/// When they do not all come within `timeout`, or the broker refuses the consumer or an ack.
pub async fn drain(
    transport: &impl Transport,
    queue: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Delivery> {
    let mut consumer = transport
        .consume(queue, 256)
        .await
        .expect("a consumer on the queue");
    let mut taken = Vec::with_capacity(count);
    let deadline = Instant::now() + timeout;
    while taken.len() < count {
        let delivery = tokio::time::timeout_at(deadline, consumer.deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages of {queue} came", taken.len()))
            .expect("the consumer's stream goes on");
        consumer
            .settler
            .settle(Settlement::Ack {
                tag: delivery.tag,
                multiple: false,
            })
            .await
            .expect("an ack");
        taken.push(delivery);
    }
    taken
}
