//! What the worker-process scenarios share: the fault worker binary, each scenario's own
//! topology on the shared broker, and reading an error queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::topology::Topology;
use jobs_core::transport::amqp::AmqpTransport;
use jobs_core::transport::{Declare, Transport};
use jobs_core::{Job, JobDefaults, JobSettings, Producer};

/// The fault worker binary, built by cargo for the tests of this package.
pub(crate) const WORKER: &str = env!("CARGO_BIN_EXE_jobs-fault-worker");

/// A fresh directory for one scenario's record files.
pub(crate) fn scratch(scenario: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobs-faults-{scenario}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A producer on the broker with `job`'s topology declared and every queue of it emptied: a
/// scenario starts from nothing, whatever an earlier run left behind.
pub(crate) async fn setup(url: &str, job: &'static Job, name: &str) -> (AmqpTransport, Producer) {
    let transport = AmqpTransport::builder(url)
        .connection_name(format!("jobs-faults-{name}-{}", std::process::id()))
        .connect()
        .await
        .expect("the test's connection");
    let settings = JobSettings::resolve(job, &JobDefaults::default());
    let topology = Topology::for_jobs([&settings]).expect("the job's topology");
    transport
        .declare(&topology, Declare::Create)
        .await
        .expect("the topology is declared");
    let queues = std::iter::once(settings.job().queue())
        .chain(settings.retry_queues().iter().map(String::as_str))
        .chain(std::iter::once(settings.error_queue()));
    for queue in queues {
        transport.purge(queue).await.expect("the queue is purged");
    }
    let producer = Producer::new(Arc::new(transport.clone()));
    (transport, producer)
}

/// Waits at most `timeout` until `queue` holds `count` ready messages.
pub(crate) async fn wait_count(
    transport: &AmqpTransport,
    queue: &str,
    count: u64,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = transport
            .message_count(queue)
            .await
            .expect("a message count");
        if now >= count {
            assert_eq!(now, count, "more messages in {queue} than expected");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} holds {now} messages, not {count}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
