//! Paced publishing: job `seq` of a run at `rate` jobs/s is due `seq / rate` seconds in.

use std::time::Duration;

use tokio::time::Instant;

/// Holds a producer to a steady rate; a producer running late publishes at once, catching up.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    start: Instant,
    rate: u32,
}

impl Pacer {
    /// A pacer at `rate` jobs/s, starting now.
    #[must_use]
    pub fn new(rate: u32) -> Self {
        Self {
            start: Instant::now(),
            rate: rate.max(1),
        }
    }

    /// When job `seq` is due.
    #[must_use]
    pub fn due(&self, seq: u64) -> Instant {
        let nanos = u128::from(seq) * 1_000_000_000 / u128::from(self.rate);
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Waits until job `seq` is due.
    pub async fn until_due(&self, seq: u64) {
        tokio::time::sleep_until(self.due(seq)).await;
    }
}
