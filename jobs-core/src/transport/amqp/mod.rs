//! The RabbitMQ transport, on lapin.
//!
//! [`AmqpTransport`] keeps two connections, as a worker needs: one for publishing, so that a
//! publish held up by a broker alarm does not stall acks, and one for consuming.
//!
//! * **Publish**: one confirm-mode channel shared by all publishes, many in flight at once. A
//!   returned `mandatory` message is [`Error::Unroutable`], a negative confirm
//!   [`Error::Nacked`], a missing exchange [`Error::NotFound`]. A channel error fails every
//!   publish in flight on that channel; those not at fault get [`Error::Connection`], and the
//!   next publish opens a new channel.
//! * **Consume**: a channel per consumer, with `basic.qos` = prefetch and manual acks. The
//!   delivery stream ends when the channel or connection is lost; it is never resumed, since a
//!   new channel numbers its deliveries from 1 again. Call
//!   [`consume`](Transport::consume) again for a new consumer.
//! * **Requests**: [`requester`](Transport::requester) opens a confirm-mode channel of its own
//!   on the publishing connection, consuming RabbitMQ's direct reply-to pseudo-queue
//!   `amq.rabbitmq.reply-to` without acks. Requests publish as above, with `reply_to` set to
//!   that pseudo-queue, which the broker rewrites to the channel's address. Replies stream
//!   until the channel or its connection closes; it is never reopened, since replies in flight
//!   would go to the old address.
//! * **Reconnecting**: lapin's auto-recovery is off. A call that finds its connection lost
//!   opens a new one, one attempt at a time; after a failed attempt, calls fail with
//!   [`Error::Connection`] for a backoff that doubles from 100 ms up to 5 s.
//! * **Declare**: durable exchanges and queues, with the queue arguments; idempotent. A queue
//!   that exists with other arguments is [`Error::QueueMismatch`], an exchange of another type
//!   [`Error::Topology`]. [`Declare::Passive`] uses RabbitMQ's passive declare, which checks
//!   only that exchanges and queues exist, not their types or arguments (the in-memory
//!   transport checks those too). [`Declare::Verify`] checks existence passively, then
//!   redeclares what exists as declared: that creates nothing and fails on drift. Neither
//!   checks bindings.
//! * **Message count, purge and delete**: a passive `queue.declare`'s message count (ready
//!   messages only), `queue.purge` and `queue.delete`, each on a short-lived channel of the
//!   publishing connection.
//! * **Subscriptions**: [`subscribe`](Transport::subscribe) declares a server-named queue
//!   exclusive to a channel of the consuming connection, binds it and consumes it without acks;
//!   the broker deletes it with the channel.
//! * **Holds**: [`hold`](Transport::hold) consumes a queue exclusively on a channel of the
//!   consuming connection; the broker's `ACCESS_REFUSED` means another consumer has it.
//! * **Broker version**: each connection reads the broker's version from its server properties
//!   ([`Transport::broker_version`]); declarations are adapted to it, and consumers give a
//!   failed delivery back with the settlement that counts toward the delivery limit on it
//!   (`basic.reject` on RabbitMQ 4.3 and later, `basic.nack` before). See [`crate::broker`].
//! * **Headers**: a field table is keyed, so headers arrive sorted by name; see
//!   [`HeaderValue`](crate::HeaderValue) for the value kinds.
//!
//! URLs appear in errors and `Debug` output with the password replaced by `**`.
//!
//! **TLS**: an `amqps://` URL trusts the system's roots and
//! [`tls_ca`](AmqpTransportBuilder::tls_ca); a client certificate
//! ([`tls_client_identity`](AmqpTransportBuilder::tls_client_identity)) makes it mutual TLS, and
//! `auth_mechanism=external` in the URL logs in with it. A failed handshake is [`Error::Tls`],
//! whose [`TlsFailure`](crate::TlsFailure) names the cause.
//!
//! ```no_run
//! use std::sync::Arc;
//! use jobs_core::engine::Engine;
//! use jobs_core::transport::amqp::AmqpTransport;
//!
//! # #[tokio::main]
//! # async fn main() -> jobs_core::Result<()> {
//! let transport = AmqpTransport::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .connection_name("uploads-worker") // what the management UI shows
//!     .connect()
//!     .await?;
//! // Serves every `#[job]` linked into the binary.
//! let engine = Engine::builder(Arc::new(transport.clone())).start().await?;
//! # engine.shutdown(std::time::Duration::from_secs(5)).await;
//! # transport.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Memory and hostile messages
//!
//! lapin reads a delivery's whole body before the engine sees it, so the size limit
//! ([`ProducerOptions::max_message_size`](crate::ProducerOptions::max_message_size)) sends an
//! oversized job to the error queue only after it was read. What bounds a worker's memory is the
//! broker: each consumer holds at most its prefetch of deliveries, each at most the broker's
//! `max_message_size`, which is 128 MiB by default on RabbitMQ 3.10 (16 MiB from 4.0). At the
//! default prefetch of 32, that is up to 4 GiB per job on 3.10. Set `max_message_size` in
//! `rabbitmq.conf` to a few times the largest job you send (16 MiB: 512 MiB per job at prefetch
//! 32), or lower the prefetch of jobs with large messages. `scripts/broker` and the fault
//! battery's nodes use 16 MiB.
//!
//! A header table is converted in one pass (tens of thousands of entries are as cheap as
//! their bytes), nesting is bounded (see `vendor/README.md` for the parser's own bound), and a
//! table too large for a frame is [`Error::HeadersTooLarge`] before anything is sent: the
//! broker would close the connection for it.

#[cfg(test)]
mod audit;
mod connection;
mod consume;
mod convert;
mod declare;
mod error_map;
mod hold;
mod publish;
mod requester;
mod server;
mod subscribe;
#[cfg(test)]
mod tests;
mod tls;
mod tls_error;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use self::connection::Link;
use self::publish::Publisher;
use super::redact_url as redact;
use crate::error::{Error, Result};
use crate::topology::Topology;
use crate::transport::{
    BoxFuture, Consumer, Declare, Publish, QueueStats, ReplyStream, Requester, Transport,
};

/// Connection name the broker shows when none is given.
const DEFAULT_NAME: &str = "jobs";

/// A [`Transport`] on a RabbitMQ broker; see the [module docs](self).
///
/// Clones share the connections.
///
/// # Examples
///
/// ```no_run
/// use jobs_core::topology::Topology;
/// use jobs_core::transport::amqp::AmqpTransport;
/// use jobs_core::transport::{Declare, Transport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> jobs_core::Result<()> {
/// let transport = AmqpTransport::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .connection_name("billing-worker")
///     .connect()
///     .await?;
/// transport.declare(&Topology::default(), Declare::Passive).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    publisher: Arc<Publisher>,
    /// A channel without confirms on the publishing connection, for `publish_unconfirmed`.
    unconfirmed: Arc<Publisher>,
    consuming: Link,
    /// The deadline of every operation that waits for the broker's answer outside a publish
    /// (which the producer's confirm timeout bounds): the connect timeout.
    deadline: Duration,
}

impl Inner {
    /// `operation`, or [`Error::Connection`] when the broker has not answered within the
    /// deadline. A connection that died without lapin noticing yet takes requests it will never
    /// answer; without this, a consumer being attached on it would wait for ever.
    async fn bounded<T>(
        &self,
        what: &str,
        operation: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connection(
                format!(
                    "{what}: no answer from the broker within {:?}",
                    self.deadline
                )
                .into(),
            )),
        }
    }
}

/// Options for [`AmqpTransport`]; made by [`AmqpTransport::builder`].
#[derive(Clone)]
pub struct AmqpTransportBuilder {
    url: String,
    /// Whether to start with the first node rather than one at random.
    in_order: bool,
    name: String,
    tls: tls::TlsOptions,
    connect_timeout: Duration,
}

impl AmqpTransport {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`, or several
    /// nodes of a cluster separated by commas: see [`builder`](Self::builder)) with the default
    /// options.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the broker cannot be reached or refuses the login.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Options for a transport on the broker at `url`.
    ///
    /// `url` may name several nodes of one cluster, separated by commas
    /// (`amqp://…@node1:5672/%2f,amqp://…@node2:5672/%2f`, see
    /// [`split_urls`](crate::transport::split_urls)). The transport then starts with one of them
    /// chosen at random, so that replicas spread over the cluster, tries the next when one
    /// does not answer, and after losing its connection reconnects starting with the node
    /// after the lost one. Consumers and publishers recover as they do with one node.
    #[must_use]
    pub fn builder(url: impl Into<String>) -> AmqpTransportBuilder {
        AmqpTransportBuilder {
            url: url.into(),
            in_order: false,
            name: DEFAULT_NAME.to_owned(),
            tls: tls::TlsOptions::default(),
            connect_timeout: connection::CONNECT_TIMEOUT,
        }
    }

    /// Closes both connections. Consumer and reply streams end; a later call reconnects.
    pub async fn close(&self) {
        self.inner.publisher.link().close().await;
        self.inner.consuming.close().await;
    }

    /// The nodes the publishing and the consuming connection are on (or will try first),
    /// passwords hidden: for logs and the dashboard.
    pub async fn nodes(&self) -> [String; 2] {
        [
            self.inner.publisher.link().node().await,
            self.inner.consuming.node().await,
        ]
    }

    /// The names the broker shows for the publishing and the consuming connection.
    #[must_use]
    pub fn connection_names(&self) -> [&str; 2] {
        [
            self.inner.publisher.link().name(),
            self.inner.consuming.name(),
        ]
    }
}

impl AmqpTransportBuilder {
    /// The connection name the broker shows (in `rabbitmqctl list_connections` and the
    /// management UI): `NAME.publish` and `NAME.consume`. Defaults to `jobs`.
    #[must_use]
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// CA certificates (PEM) to trust for an `amqps://` URL, in addition to the system's: for
    /// a broker whose certificate a private CA signed.
    #[must_use]
    pub fn tls_ca(mut self, pem: impl Into<String>) -> Self {
        self.tls.ca = Some(pem.into().into());
        self
    }

    /// A client certificate (PEM, the chain from the client's own certificate up) and its
    /// private key (PEM: PKCS#8, PKCS#1 or SEC1), presented to a broker that asks for one:
    /// mutual TLS. To log in with the certificate rather than a password, add
    /// `auth_mechanism=external` to the URL (`amqps://host:5671/%2f?auth_mechanism=external`,
    /// no user or password): RabbitMQ's `rabbitmq_auth_mechanism_ssl` plugin then takes the user
    /// name from the certificate. The key is never shown, in `Debug` output or errors.
    #[must_use]
    pub fn tls_client_identity(
        mut self,
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.tls.identity = Some(tls::ClientIdentity::new(cert_pem.into(), key_pem.into()));
        self
    }

    /// Starts with the first of several nodes, then the next, rather than with one chosen at
    /// random: for a preferred node (the one on the same host, say), or a test that needs to
    /// know where the client is.
    #[must_use]
    pub fn in_order(mut self) -> Self {
        self.in_order = true;
        self
    }

    /// How long opening a connection may take, handshake included, before the attempt fails
    /// with [`Error::Connection`]; 15 seconds by default. It bounds every reconnect too, so a
    /// broker that accepts TCP and never answers cannot stall the transport.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Opens both connections.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the broker cannot be reached or refuses the login;
    /// [`Error::Tls`] when the TLS handshake fails, naming why (an unknown CA, an expired
    /// certificate, a client certificate missing or refused); [`Error::Config`] when the URL asks
    /// for `auth_mechanism=external` without a client certificate.
    pub async fn connect(self) -> Result<AmqpTransport> {
        if let Some(identity) = &self.tls.identity {
            identity.check()?;
        } else if wants_external(&self.url) {
            return Err(Error::Config(format!(
                "{} logs in with auth_mechanism=external, which needs a client certificate \
                 (tls_client_identity; the worker's tls_cert and tls_key)",
                redact(&self.url)
            )));
        }
        let urls: Vec<String> = super::split_urls(&self.url)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(Error::Connection("no broker URL given".into()));
        }
        // Both connections start on the same node.
        let first = if self.in_order {
            0
        } else {
            super::first_node(urls.len())
        };
        let publishing = Link::new(
            urls.clone(),
            first,
            format!("{}.publish", self.name),
            self.tls.clone(),
            self.connect_timeout,
        );
        let consuming = Link::new(
            urls,
            first,
            format!("{}.consume", self.name),
            self.tls,
            self.connect_timeout,
        );
        publishing.connection().await?;
        consuming.connection().await?;
        let publishing = Arc::new(publishing);
        Ok(AmqpTransport {
            inner: Arc::new(Inner {
                publisher: Arc::new(Publisher::new(Arc::clone(&publishing), true)),
                unconfirmed: Arc::new(Publisher::new(publishing, false)),
                consuming,
                deadline: self.connect_timeout,
            }),
        })
    }
}

impl AmqpTransport {
    /// [`Transport::publish`], as a future the caller holds in place rather than a boxed one.
    pub(crate) fn publish_in_place(
        &self,
        publish: Publish,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        publish::publish(Arc::clone(&self.inner.publisher), publish)
    }
}

impl Transport for AmqpTransport {
    fn declare<'a>(&'a self, topology: &'a Topology, mode: Declare) -> BoxFuture<'a, Result<()>> {
        // A round trip per exchange, queue and binding: a topology of a hundred jobs takes well
        // under a second on a broker that answers.
        let declare = declare::declare(self.inner.publisher.link(), topology, mode);
        Box::pin(self.inner.bounded("declaring the topology", declare))
    }

    fn nodes(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut nodes = AmqpTransport::nodes(self).await.to_vec();
            nodes.dedup();
            nodes
        })
    }

    /// The version the publishing connection's broker gave when it last connected (or the
    /// consuming connection's, before the publishing one ever connected).
    fn broker_version(&self) -> Option<crate::broker::BrokerVersion> {
        self.inner
            .publisher
            .link()
            .broker_version()
            .or_else(|| self.inner.consuming.broker_version())
    }

    fn publish(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.publish_in_place(publish))
    }

    fn as_amqp(&self) -> Option<&AmqpTransport> {
        Some(self)
    }

    fn publish_unconfirmed(&self, publish: Publish) -> BoxFuture<'static, Result<()>> {
        Box::pin(publish::publish(
            Arc::clone(&self.inner.unconfirmed),
            publish,
        ))
    }

    fn consume<'a>(&'a self, queue: &'a str, prefetch: u16) -> BoxFuture<'a, Result<Consumer>> {
        let consume = consume::consume(&self.inner.consuming, queue, prefetch);
        Box::pin(self.inner.bounded("consuming", consume))
    }

    fn message_count<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        let count = declare::message_count(self.inner.publisher.link(), queue);
        Box::pin(self.inner.bounded("counting messages", count))
    }

    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats>> {
        let stats = declare::queue_stats(self.inner.publisher.link(), queue);
        Box::pin(self.inner.bounded("reading a queue's counts", stats))
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64>> {
        let purge = declare::purge(self.inner.publisher.link(), queue);
        Box::pin(self.inner.bounded("purging", purge))
    }

    fn requester(&self) -> BoxFuture<'_, Result<Requester>> {
        let requester = requester::requester(self.inner.publisher.link());
        Box::pin(self.inner.bounded("opening a requester", requester))
    }

    fn subscribe<'a>(
        &'a self,
        exchange: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<ReplyStream>> {
        // On the consuming connection: a subscriber hears as long as its consumers run.
        let subscribe = subscribe::subscribe(&self.inner.consuming, exchange, keys);
        Box::pin(self.inner.bounded("subscribing", subscribe))
    }

    fn delete_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<()>> {
        let delete = declare::delete(self.inner.publisher.link(), queue);
        Box::pin(self.inner.bounded("deleting a queue", delete))
    }

    fn hold<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<Option<ReplyStream>>> {
        // On the consuming connection: a hold ends with the consumers it limits.
        let hold = hold::hold(&self.inner.consuming, queue);
        Box::pin(self.inner.bounded("holding a queue", hold))
    }
}

impl fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("publishing", self.inner.publisher.link())
            .field("consuming", &self.inner.consuming)
            .finish()
    }
}

impl fmt::Debug for AmqpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTransportBuilder")
            .field("url", &redact(&self.url))
            .field("name", &self.name)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Whether `url` selects the `EXTERNAL` login (`auth_mechanism=external`), as lapin reads it.
fn wants_external(url: &str) -> bool {
    url.parse::<lapin::uri::AMQPUri>()
        .is_ok_and(|uri| uri.query.auth_mechanism == Some(lapin::uri::SASLMechanism::External))
}
