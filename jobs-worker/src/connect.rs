//! Connecting at start. A broker that cannot be reached yet, as one started beside the worker
//! is while it boots, is tried again with a growing pause, for the configured `connect_retry`;
//! what retrying cannot mend (a refused TLS handshake, a configuration error) fails at once.

use std::time::Duration;

use jobs_core::transport::amqp::{AmqpTransport, AmqpTransportBuilder};
use tokio::time::Instant;

/// The pause after the first failed attempt; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Connects with `builder`, trying again while the failure is transient and `retry` has not
/// passed since the first attempt. `url` is the redacted URL, for the log lines.
///
/// # Errors
///
/// The last attempt's error: a transient one once `retry` has passed, any other at once.
pub(crate) async fn connect(
    builder: &AmqpTransportBuilder,
    url: &str,
    retry: Duration,
) -> Result<AmqpTransport, jobs_core::Error> {
    let give_up_at = Instant::now() + retry;
    let mut pause = FIRST_PAUSE;
    let mut attempt: u32 = 1;
    loop {
        let error = match builder.clone().connect().await {
            Ok(transport) => return Ok(transport),
            Err(error) => error,
        };
        let now = Instant::now();
        if !error.is_transient() || now >= give_up_at {
            return Err(error);
        }
        let wait = pause.min(give_up_at - now);
        tracing::warn!(
            url,
            attempt,
            %error,
            retry_in = ?wait,
            "the broker cannot be reached yet; trying again"
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
        attempt = attempt.saturating_add(1);
    }
}
