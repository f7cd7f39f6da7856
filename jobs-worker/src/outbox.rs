//! The outbox relay (the `jobs-outbox` crate) run by the worker with `--outbox-url`, beside
//! its jobs, or alone with the `outbox-relay` command.

use std::time::Duration;

use jobs_core::Producer;
use jobs_core::transport::redact_url;
use jobs_outbox::Relay;
use sqlx::postgres::PgPoolOptions;

/// The wait before the relay connects to PostgreSQL again after it could not.
const RECONNECT: Duration = Duration::from_secs(5);

/// Relays the outbox at `url` with `producer` until `shutdown` completes. A database that
/// cannot be reached or migrated is logged and tried again every few seconds: the worker's
/// jobs go on meanwhile, and the rows wait in the outbox.
pub(crate) async fn relay(
    url: String,
    prune_after: Duration,
    producer: Producer,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let shown = redact_url(&url);
    loop {
        let connecting = async {
            // One connection for the pass's transaction, one to listen.
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await?;
            jobs_outbox::migrate(&pool).await?;
            Ok::<_, jobs_outbox::Error>(pool)
        };
        let pool = tokio::select! {
            () = &mut shutdown => return,
            connected = connecting => match connected {
                Ok(pool) => pool,
                Err(error) => {
                    let error = jobs_core::transport::redact_text(&error.to_string());
                    tracing::warn!(url = %shown, %error, "outbox relay: cannot use the database; trying again");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(RECONNECT) => continue,
                    }
                }
            },
        };
        tracing::info!(url = %shown, "outbox relay: relaying");
        let relay = Relay::new(pool, producer.clone()).prune_after(prune_after);
        // `run` only returns when shut down: it logs and rides out database and broker errors.
        if let Err(error) = relay.run(&mut shutdown).await {
            tracing::warn!(%error, "outbox relay stopped");
        }
        return;
    }
}
