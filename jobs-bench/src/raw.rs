//! The reference: raw lapin with the framework's guarantees and the best pipelining lapin allows.
//!
//! Messages with the properties of the wire contract (content type, `type`, a UUID v7
//! `message_id`, `timestamp`; persistent) on a durable queue, publisher confirms with up to
//! [`IN_FLIGHT`] publishes awaiting theirs, and a consumer at prefetch [`PREFETCH`] that acks
//! each job after handling it without awaiting the ack in line: the ack futures run beside the
//! delivery stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use prost::Message as _;
use tokio::task::JoinHandle;

use crate::QueueKind;
use crate::message::BenchJob;
use crate::pace::Pacer;
use crate::sink::SINK;

/// Publishes awaiting their confirm at once, at most.
pub const IN_FLIGHT: usize = 1000;
/// The consumer's prefetch, the same as the framework worker's concurrency.
pub const PREFETCH: u16 = 100;
/// How many connections [`Raw::delete`] tries before giving up.
pub const DELETE_TRIES: u32 = 5;

const EXCHANGE: &str = "jobs_bench.raw";
/// How long the consumer's channel stays open after its last ack; see `consume_until`.
const ACK_LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// Raw lapin's queue of `kind`.
pub fn queue(kind: QueueKind) -> String {
    format!("jobs_bench.raw.{}", kind.name())
}

/// Two connections, as the framework has: one to publish, one to consume.
#[derive(Debug)]
pub struct Raw {
    publishing: Connection,
    consuming: Connection,
    queue: String,
    /// The `type` property: the name of the framework's job on the same kind of queue, so
    /// that both clients' messages carry the same bytes.
    job_name: &'static str,
    /// The tasks an unpaced publish runs in; see [`with_producers`](Self::with_producers).
    producers: usize,
}

impl Raw {
    /// Deletes `queues` if they exist, over a connection of its own: the framework's scratch
    /// queues, declared anew by each run, so that a topology changed since an earlier run
    /// cannot stop this one.
    ///
    /// A quorum queue's deletion can fail with the broker's `INTERNAL_ERROR` while its Raft
    /// members are busy (seen on a freshly started broker), and that error closes the
    /// connection; so a failed deletion is tried again on a new connection, up to
    /// [`DELETE_TRIES`] times, a second apart and more.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses a deletion every time.
    pub async fn delete(url: &str, queues: &[String]) -> anyhow::Result<()> {
        let mut remaining = queues;
        let mut tries = 1;
        loop {
            match Self::delete_once(url, remaining).await {
                Ok(()) => return Ok(()),
                Err((deleted, error)) if tries < DELETE_TRIES => {
                    eprintln!("jobs-bench: {error:#}; trying again on a new connection");
                    remaining = &remaining[deleted..];
                    tokio::time::sleep(std::time::Duration::from_secs(tries.into())).await;
                    tries += 1;
                }
                Err((_, error)) => return Err(error),
            }
        }
    }

    /// One connection's try at deleting `queues`: on failure, how many it deleted first.
    async fn delete_once(url: &str, queues: &[String]) -> Result<(), (usize, anyhow::Error)> {
        let properties = ConnectionProperties::default()
            .with_connection_name("jobs-bench delete".to_owned().into());
        // Bounded: a broker that takes the TCP connection and never answers must not hang the run.
        let connection = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            Connection::connect(url, properties),
        )
        .await
        .map_err(|_| (0, anyhow::anyhow!("no answer from the broker within 30 s")))?
        .map_err(|e| (0, e.into()))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| (0, e.into()))?;
        for (deleted, queue) in queues.iter().enumerate() {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting {queue}"))
                .map_err(|e| (deleted, e))?;
        }
        // The deletions are done: a failing close does not undo them.
        let _ = channel.close(200, "deleted".into()).await;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }

    /// Connects and declares the exchange and a durable queue of `kind`, empty.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses the declarations.
    pub async fn connect(url: &str, kind: QueueKind) -> anyhow::Result<Self> {
        let connect = |name: &str| {
            let properties =
                ConnectionProperties::default().with_connection_name(name.to_owned().into());
            Connection::connect(url, properties)
        };
        let publishing = connect("jobs-bench raw publish").await?;
        let consuming = connect("jobs-bench raw consume").await?;
        let queue = queue(kind);
        let channel = publishing.create_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                EXCHANGE.into(),
                lapin::ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(kind.name().into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), durable, arguments)
            .await
            .with_context(|| format!("declaring {queue}"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                EXCHANGE.into(),
                queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "declared".into()).await?;
        let raw = Self {
            publishing,
            consuming,
            queue,
            job_name: crate::framework::bench_job(kind).name(),
            producers: 1,
        };
        raw.purge().await?;
        Ok(raw)
    }

    /// Runs unpaced publishes from `producers` tasks sharing the [`IN_FLIGHT`] publishes in
    /// flight, as the framework's are run: 1 (the default) is one task pipelining them all,
    /// [`IN_FLIGHT`] a task per publish in flight, each awaiting its confirm in line.
    #[must_use]
    pub fn with_producers(mut self, producers: usize) -> Self {
        self.producers = producers.clamp(1, IN_FLIGHT);
        self
    }

    /// Publishes jobs `0..count` with confirms and returns once every one is confirmed: paced
    /// by `pacer` from one task; unpaced from [`producers`](Self::with_producers) tasks sharing
    /// [`IN_FLIGHT`] publishes in flight, the shape the framework's producers are measured in.
    ///
    /// # Errors
    ///
    /// On a negative confirm, a returned message or a lost channel.
    pub async fn publish(&self, count: u64, pacer: Option<Pacer>) -> anyhow::Result<()> {
        let channel = self.publishing.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let publisher = Arc::new(Publisher::new(channel, self.job_name, &self.queue));
        if pacer.is_some() || self.producers == 1 {
            publisher.pipelined(0..count, IN_FLIGHT, pacer).await?;
        } else {
            let next = Arc::new(AtomicU64::new(0));
            let window = (IN_FLIGHT / self.producers).max(1);
            let mut tasks = Vec::with_capacity(self.producers);
            for _ in 0..self.producers {
                let (publisher, next) = (Arc::clone(&publisher), Arc::clone(&next));
                tasks.push(tokio::spawn(async move {
                    publisher.shared(&next, count, window).await
                }));
            }
            for task in tasks {
                task.await??;
            }
        }
        let channel = Arc::into_inner(publisher).map(|publisher| publisher.channel);
        if let Some(channel) = channel {
            channel.close(200, "published".into()).await?;
        }
        Ok(())
    }

    /// Starts a consumer that handles `count` jobs, reporting each to the sink, then waits for
    /// its acks to be sent and closes its channel.
    ///
    /// # Errors
    ///
    /// When the consumer cannot start; the task's result carries later errors.
    pub async fn consume(&self, count: u64) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let channel = self.consuming.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "jobs-bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(tokio::spawn(consume_until(channel, consumer, count)))
    }

    /// Empties the queue.
    ///
    /// # Errors
    ///
    /// When the broker cannot purge it.
    pub async fn purge(&self) -> anyhow::Result<()> {
        let channel = self.publishing.create_channel().await?;
        channel
            .queue_purge(self.queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
        channel.close(200, "purged".into()).await?;
        Ok(())
    }

    /// The messages ready in the queue.
    ///
    /// # Errors
    ///
    /// When the broker cannot answer.
    pub async fn ready(&self) -> anyhow::Result<u64> {
        let channel = self.publishing.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.queue.as_str().into(), passive, FieldTable::default())
            .await?;
        channel.close(200, "counted".into()).await?;
        Ok(u64::from(queue.message_count()))
    }

    /// Closes both connections.
    pub async fn close(self) {
        for connection in [self.publishing, self.consuming] {
            // The benchmark is over: a failed close changes no figure.
            let _ = connection.close(200, "done".into()).await;
        }
    }
}

/// One confirm-mode channel and what every raw publish on it shares.
struct Publisher {
    channel: Channel,
    /// What the wire contract has every job carry, as a careful lapin user would write it:
    /// the properties every message shares built once and cloned per message.
    properties: BasicProperties,
    routing_key: ShortString,
}

impl Publisher {
    fn new(channel: Channel, job_name: &str, queue: &str) -> Self {
        Self {
            channel,
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/x-protobuf".into())
                .with_type(job_name.into()),
            routing_key: ShortString::from(queue),
        }
    }

    /// Publishes job `seq` and waits for its confirm: per message, a UUID v7 encoded on the
    /// stack and the time in seconds. A publish is in flight from the moment it is handed to
    /// lapin: `basic_publish` resolves once lapin has written the frames, the confirm after.
    async fn publish(&self, seq: u64) -> anyhow::Result<()> {
        let body = BenchJob::new(seq).encode_to_vec();
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id);
        let properties = self
            .properties
            .clone()
            .with_message_id(ShortString::from(&*id))
            .with_timestamp(unix_now());
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                self.routing_key.clone(),
                options,
                &body,
                properties,
            )
            .await?
            .await;
        check(confirm)
    }

    /// Publishes `jobs` from this one task, up to `window` awaiting their confirm, each
    /// started no sooner than `pacer` has it due.
    async fn pipelined(
        &self,
        jobs: std::ops::Range<u64>,
        window: usize,
        pacer: Option<Pacer>,
    ) -> anyhow::Result<()> {
        let mut in_flight = FuturesUnordered::new();
        for seq in jobs {
            if let Some(pacer) = &pacer {
                // The publishes in flight are futures: they only progress while polled, so
                // drive them while waiting for the next one's turn.
                let due = tokio::time::sleep_until(pacer.due(seq));
                tokio::pin!(due);
                loop {
                    tokio::select! {
                        biased;
                        () = &mut due => break,
                        Some(confirmed) = in_flight.next(), if !in_flight.is_empty() => {
                            confirmed?;
                        }
                    }
                }
            }
            if in_flight.len() >= window
                && let Some(confirmed) = in_flight.next().await
            {
                confirmed?;
            }
            in_flight.push(self.publish(seq));
        }
        while let Some(confirmed) = in_flight.next().await {
            confirmed?;
        }
        Ok(())
    }

    /// One of several tasks taking the next job number from `next` until `count`, with up to
    /// `window` publishes of its own in flight; a window of one awaits each in line, as a
    /// request handler would.
    async fn shared(&self, next: &AtomicU64, count: u64, window: usize) -> anyhow::Result<()> {
        let take = || Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&seq| seq < count);
        if window == 1 {
            while let Some(seq) = take() {
                self.publish(seq).await?;
            }
            return Ok(());
        }
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < window {
                let Some(seq) = take() else { break };
                in_flight.push(self.publish(seq));
            }
            match in_flight.next().await {
                Some(confirmed) => confirmed?,
                None => return Ok(()),
            }
        }
    }
}

async fn consume_until(
    channel: Channel,
    mut consumer: lapin::Consumer,
    count: u64,
) -> anyhow::Result<()> {
    let mut acks = FuturesUnordered::new();
    let mut handled = 0;
    while handled < count {
        tokio::select! {
            Some(sent) = acks.next(), if !acks.is_empty() => sent?,
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { bail!("the consumer ended early") };
                let delivery = delivery?;
                let job = BenchJob::decode(&*delivery.data)?;
                SINK.record(&job);
                handled += 1;
                acks.push(channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()));
            }
        }
    }
    while let Some(sent) = acks.next().await {
        sent?;
    }
    drop(acks);
    // A quorum queue's broker-side client holds back settlements while many are pending, and
    // drops what it holds when the channel closes, redelivering finished jobs. Cancel, then
    // give it a moment to apply the acks, as the engine does at shutdown. Not timed.
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    tokio::time::sleep(ACK_LINGER).await;
    channel.close(200, "consumed".into()).await?;
    Ok(())
}

/// Seconds since the Unix epoch: the `timestamp` property.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check(confirm: lapin::Result<Confirmation>) -> anyhow::Result<()> {
    let confirmation = confirm?;
    ensure!(
        matches!(confirmation, Confirmation::Ack(None)),
        "the broker did not confirm a publish: {confirmation:?}"
    );
    Ok(())
}
