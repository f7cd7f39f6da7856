//! What the broker tests share: unique names, a publish straight to a queue, and clean-up on a
//! connection of the test's own.

use jobs_core::Envelope;
use jobs_core::transport::Publish;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

/// A name no other test run uses: `PREFIX.TEST.<uuid v7>`.
pub(crate) fn unique(prefix: &str, test: &str) -> String {
    format!("{prefix}.{test}.{}", uuid::Uuid::now_v7())
}

/// `envelope` published to `queue` through the default exchange, mandatory.
pub(crate) fn to_queue(queue: &str, envelope: Envelope) -> Publish {
    Publish {
        exchange: "".into(),
        routing_key: queue.to_owned().into(),
        mandatory: true,
        envelope,
    }
}

/// Deletes what a test created, on a connection of its own.
pub(crate) async fn cleanup(url: &str, queues: &[&str], exchanges: &[&str]) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in queues {
        channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    for exchange in exchanges {
        channel
            .exchange_delete((*exchange).into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
    let _ = connection.close(200, "cleanup".into()).await;
}
