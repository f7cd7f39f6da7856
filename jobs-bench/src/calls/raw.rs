//! Request and reply by hand with raw lapin, over RabbitMQ's direct reply-to, with the
//! framework's guarantees for the request and the wire of `docs/calls.md`, as its pika client
//! and server send it.
//!
//! * The client: one channel in confirm mode that consumes `amq.rabbitmq.reply-to` with no-ack
//!   (before its first request, as the broker requires). A call publishes its request
//!   persistent and `mandatory` with `reply_to`, a correlation id (a counter), the job's
//!   `type`, a fresh `message_id`, a `timestamp` and the `x-jobs-deadline` header, and waits
//!   for its reply, which one reader task hands over by correlation id, and for the broker's
//!   confirm until the reply comes (a negative confirm or a returned request fails the call).
//! * The server: a channel on a connection of its own, consuming the durable queue at prefetch
//!   [`PREFETCH`] with manual acks. Each request is decoded and its reply encoded in line; the
//!   reply, with `x-jobs-reply = ok`, is published to the default exchange with the request's
//!   `reply_to` as routing key, then the request is acked on the same channel, so the broker
//!   has the reply before the ack. Neither is awaited in line: those futures run beside the
//!   delivery stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use prost::Message as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Calling;
use crate::QueueKind;
use crate::message::BenchJob;
use crate::raw::PREFETCH;

/// The raw requests' exchange.
const EXCHANGE: &str = "bench.calls.raw";
/// The pseudo-queue of direct reply-to.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
const CONTENT_TYPE: &str = "application/x-protobuf";
/// The requests' `type`: the name a worker knows the job by.
const JOB_NAME: &str = "bench_call_raw";
/// How long a caller waits, as the framework's default: its requests' deadline.
const CALL_TIMEOUT_MS: u64 = 30_000;
/// How long the server's channel stays open after its last ack; see `serve`.
const ACK_LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// The raw requests' durable queue of `kind`, bound to [`EXCHANGE`] by its own name.
pub(super) fn queue(kind: QueueKind) -> String {
    format!("bench.calls.raw.{}", kind.name())
}

/// A running raw server and its client, each on a connection of its own.
pub(super) struct RawCalls {
    server_connection: Connection,
    client_connection: Connection,
    server: JoinHandle<anyhow::Result<()>>,
    stop: oneshot::Sender<()>,
    reader: JoinHandle<()>,
    client: Arc<RawClient>,
}

/// The callers waiting, by correlation id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// A reply's body, and whether its `x-jobs-reply` header says `ok` (or is missing, which
/// counts as `ok`).
struct Reply {
    body: Vec<u8>,
    ok: bool,
}

/// The client half: requests out and replies in, on one channel.
pub(super) struct RawClient {
    channel: Channel,
    routing_key: ShortString,
    /// Persistent, protobuf, `reply_to` set: each request adds its correlation id.
    properties: BasicProperties,
    next_id: AtomicU64,
    pending: Pending,
}

impl RawCalls {
    /// Declares the exchange and an empty durable queue of `kind`, starts the server on it and
    /// opens the client's channel.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses a declaration.
    pub(super) async fn start(url: &str, kind: QueueKind) -> anyhow::Result<Self> {
        let connect = |name: &str| {
            let properties =
                ConnectionProperties::default().with_connection_name(name.to_owned().into());
            Connection::connect(url, properties)
        };
        let server_connection = connect("jobs-bench calls raw server").await?;
        let client_connection = connect("jobs-bench calls raw client").await?;
        let queue = queue(kind);
        declare(&server_connection, &queue, kind).await?;

        let channel = server_connection.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "jobs-bench calls".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(serve(channel, consumer, stopped));

        let channel = client_connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let replies = channel
            .basic_consume(
                REPLY_TO.into(),
                ShortString::default(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        let pending = Pending::default();
        let reader = tokio::spawn(read_replies(replies, Arc::clone(&pending)));
        let client = Arc::new(RawClient {
            channel,
            routing_key: queue.as_str().into(),
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(CONTENT_TYPE.into())
                .with_type(JOB_NAME.into())
                .with_reply_to(REPLY_TO.into()),
            next_id: AtomicU64::new(0),
            pending,
        });
        Ok(Self {
            server_connection,
            client_connection,
            server,
            stop,
            reader,
            client,
        })
    }

    /// The client, to share between callers.
    pub(super) fn client(&self) -> Arc<RawClient> {
        Arc::clone(&self.client)
    }

    /// Stops the server once its last acks are out, and closes both connections.
    ///
    /// # Errors
    ///
    /// The server's error, if it failed.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let served = self.server.await?;
        self.reader.abort();
        for connection in [self.client_connection, self.server_connection] {
            // The measurement is over: a failed close changes no figure.
            let _ = connection.close(200, "done".into()).await;
        }
        served
    }
}

impl Calling for RawClient {
    async fn call(&self, seq: u64) -> anyhow::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, reply) = oneshot::channel();
        lock(&self.pending).insert(id, sender);
        let body = BenchJob::new(seq).encode_to_vec();
        let mut message_id = uuid::Uuid::encode_buffer();
        let message_id = uuid::Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut message_id);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let deadline_ms = now.as_millis().saturating_add(u128::from(CALL_TIMEOUT_MS));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-jobs-deadline".into(),
            AMQPValue::LongLongInt(i64::try_from(deadline_ms).unwrap_or(i64::MAX)),
        );
        let properties = self
            .properties
            .clone()
            .with_correlation_id(id.to_string().into())
            .with_message_id(ShortString::from(&*message_id))
            .with_timestamp(now.as_secs())
            .with_headers(headers);
        let mandatory = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                self.routing_key.clone(),
                mandatory,
                &body,
                properties,
            )
            .await?;
        // As the framework does: the reply proves the request arrived, so it ends the wait for
        // the confirm too (on a classic queue the confirm mostly comes after the reply).
        let mut reply = reply;
        let early = tokio::select! {
            biased;
            replied = &mut reply => Some(replied),
            confirmation = confirm => {
                let confirmation = confirmation?;
                ensure!(
                    matches!(confirmation, Confirmation::Ack(None)),
                    "the broker did not take request {seq}: {confirmation:?}"
                );
                None
            }
        };
        let reply = match early {
            Some(replied) => replied,
            None => reply.await,
        }
        .context("the reply channel closed")?;
        ensure!(reply.ok, "call {seq} failed");
        let reply = BenchJob::decode(reply.body.as_slice())?;
        ensure!(
            reply.seq == seq,
            "call {seq} got the reply to {}",
            reply.seq
        );
        Ok(())
    }
}

/// Hands each reply to its caller until the channel closes; then the callers still waiting
/// learn that it did.
async fn read_replies(mut replies: Consumer, pending: Pending) {
    while let Some(Ok(reply)) = replies.next().await {
        let id = reply
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| id.as_str().parse::<u64>().ok());
        let caller = id.and_then(|id| lock(&pending).remove(&id));
        if let Some(caller) = caller {
            let ok = reply.properties.headers().as_ref().is_none_or(|headers| {
                headers.inner().get("x-jobs-reply").is_none_or(|value| {
                    matches!(value, AMQPValue::LongString(text) if text.as_bytes() == b"ok")
                })
            });
            let _ = caller.send(Reply {
                body: reply.data,
                ok,
            });
        }
    }
    lock(&pending).clear();
}

/// Answers every request until `stopped`, then lets the last acks out and closes the channel.
async fn serve(
    channel: Channel,
    mut consumer: Consumer,
    mut stopped: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let mut replies = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(sent) = replies.next(), if !replies.is_empty() => sent?,
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { bail!("the raw server's consumer ended") };
                let delivery = delivery?;
                let request = BenchJob::decode(delivery.data.as_slice())?;
                let body = request.encode_to_vec();
                let properties = &delivery.properties;
                let (Some(reply_to), Some(correlation_id)) =
                    (properties.reply_to().clone(), properties.correlation_id().clone())
                else {
                    bail!("a request without reply_to or correlation_id");
                };
                let mut headers = FieldTable::default();
                headers.insert("x-jobs-reply".into(), AMQPValue::LongString("ok".into()));
                let properties = BasicProperties::default()
                    .with_content_type(CONTENT_TYPE.into())
                    .with_correlation_id(correlation_id)
                    .with_headers(headers);
                let (channel, tag) = (&channel, delivery.delivery_tag);
                replies.push(async move {
                    channel
                        .basic_publish(
                            ShortString::default(),
                            reply_to,
                            BasicPublishOptions::default(),
                            &body,
                            properties,
                        )
                        .await?;
                    channel.basic_ack(tag, BasicAckOptions::default()).await
                });
            }
        }
    }
    while let Some(sent) = replies.next().await {
        sent?;
    }
    drop(replies);
    // As the raw consumer of the main measures: cancel, and give a quorum queue a moment to
    // apply the last acks before the channel closes. Not timed.
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    tokio::time::sleep(ACK_LINGER).await;
    channel.close(200, "served".into()).await?;
    Ok(())
}

/// Declares the durable exchange and the durable queue of `kind`, bound, and empties it.
async fn declare(connection: &Connection, queue: &str, kind: QueueKind) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
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
        .queue_declare(queue.into(), durable, arguments)
        .await
        .with_context(|| format!("declaring {queue}"))?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await?;
    channel.close(200, "declared".into()).await?;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
