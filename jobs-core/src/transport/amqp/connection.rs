//! One broker connection, opened again on demand after it is lost.
//!
//! lapin's auto-recovery is off on purpose: it would replay a consumer on a new channel under
//! the same stream, with delivery tags starting again at 1, and the engine's settle pipeline
//! would never ack those. Instead a lost connection ends every consumer stream on it, and the
//! next call that needs the connection opens a new one; the engine's supervisor re-attaches its
//! consumers through [`Transport::consume`](crate::transport::Transport::consume).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::error_map::{self, Subject};
use super::tls::TlsOptions;
use crate::error::{Error, Result};
use crate::transport::redact_url as redact;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long opening a connection (TCP, TLS and the AMQP handshake) may take by default. A peer
/// that accepts TCP and then never answers would otherwise hold the reconnect lock, and every
/// consumer waiting on it, for as long as the socket lives.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a channel may take to open on a connection that is up: a broker answers in
/// milliseconds, alarms or not.
const CHANNEL_OPEN_DEADLINE: Duration = Duration::from_secs(5);

/// A named connection that reconnects lazily, one attempt at a time, backing off after failures.
///
/// It knows every node of the cluster it may connect to (one URL or several). An attempt tries
/// them in turn from the current one, and the connection stays on the first that answers;
/// when that connection is lost, the next attempt starts with the node after it.
pub(super) struct Link {
    urls: Vec<String>,
    name: String,
    /// What `amqps://` trusts and presents.
    tls: TlsOptions,
    connect_timeout: Duration,
    state: Mutex<State>,
    /// The version the broker gave on the last connection opened.
    version: super::server::ServerVersion,
}

#[derive(Default)]
struct State {
    connection: Option<Arc<Connection>>,
    /// The node connected to, or to try first: an index in `urls`.
    node: usize,
    /// After a failed attempt: when the next may start, and the wait after that one fails.
    retry: Option<(Instant, Duration)>,
}

impl Link {
    /// A link to the nodes `urls` (at least one), trying `first` first.
    pub(super) fn new(
        urls: Vec<String>,
        first: usize,
        name: String,
        tls: TlsOptions,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            urls,
            name,
            tls,
            connect_timeout,
            state: Mutex::new(State {
                node: first,
                ..State::default()
            }),
            version: super::server::ServerVersion::default(),
        }
    }

    /// The open connection, or a new one when it was lost.
    ///
    /// Callers queue on the lock while one of them connects, so a lost connection causes one
    /// reconnect, not one per caller. Within the backoff after a failed attempt, calls fail at
    /// once instead of hammering the broker.
    pub(super) async fn connection(&self) -> Result<Arc<Connection>> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            if connection.status().connected() {
                return Ok(Arc::clone(connection));
            }
            // Lost: its node may be gone, so the next attempt starts with the next node.
            state.connection = None;
            state.node = (state.node + 1) % self.urls.len().max(1);
        }
        if let Some((at, _)) = state.retry
            && Instant::now() < at
        {
            return Err(Error::Connection(
                format!(
                    "reconnecting to {} is backed off after a failed attempt",
                    redact(&self.urls.join(","))
                )
                .into(),
            ));
        }
        let mut failure = None;
        for step in 0..self.urls.len() {
            let node = (state.node + step) % self.urls.len();
            let url = &self.urls[node];
            match self.open(url).await {
                Ok(connection) => {
                    self.version
                        .record(&self.name, &connection.configuration().server_properties());
                    let connection = Arc::new(connection);
                    if self.urls.len() > 1 {
                        tracing::info!(node = %redact(url), connection = %self.name, "connected to the broker");
                    }
                    state.connection = Some(Arc::clone(&connection));
                    state.node = node;
                    state.retry = None;
                    return Ok(connection);
                }
                Err(err) => {
                    tracing::warn!(node = %redact(url), connection = %self.name, error = %err, "could not connect to the broker");
                    let dropped_in_handshake = if url.starts_with("amqps://") {
                        super::tls_error::dropped_in_handshake(&err, self.tls.identity.is_some())
                    } else {
                        None
                    };
                    failure = Some(
                        dropped_in_handshake
                            .unwrap_or_else(|| error_map::map(&err, Subject::Other)),
                    );
                }
            }
        }
        let wait = state.retry.map_or(FIRST_BACKOFF, |(_, wait)| wait);
        state.retry = Some((Instant::now() + wait, (wait * 2).min(MAX_BACKOFF)));
        tracing::warn!(connection = %self.name, retry_in = ?wait, "no broker node answered; backing off");
        Err(failure.unwrap_or_else(|| Error::Connection("no broker URL to connect to".into())))
    }

    /// Opens a connection to the node at `url`, within the connect timeout.
    async fn open(&self, url: &str) -> std::result::Result<Connection, lapin::Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.name.as_bytes()));
        let connecting = async {
            match self.tls.lapin_config() {
                None => Connection::connect(url, properties).await,
                Some(tls) => match lapin::runtime::default_runtime() {
                    Ok(runtime) => {
                        Connection::connect_with_config(url, properties, tls, runtime).await
                    }
                    Err(err) => Err(err),
                },
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(connected) => connected,
            Err(_) => Err(lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.connect_timeout),
                ),
            )))),
        }
    }

    /// The node this link is connected to (or will try first), its password hidden.
    pub(super) async fn node(&self) -> String {
        let node = self.state.lock().await.node;
        self.urls
            .get(node)
            .map_or_else(String::new, |url| redact(url))
    }

    /// A new channel on the connection.
    pub(super) async fn channel(&self) -> Result<Channel> {
        self.channel_and_frame_max()
            .await
            .map(|(channel, _)| channel)
    }

    /// A new channel, and the largest frame its connection takes (0: no limit).
    ///
    /// A connection whose socket just died can still report itself connected for a moment, and
    /// a channel asked of it then is never answered: after [`CHANNEL_OPEN_DEADLINE`] the
    /// connection is forgotten, so that the next call opens a new one.
    pub(super) async fn channel_and_frame_max(&self) -> Result<(Channel, usize)> {
        let connection = self.connection().await?;
        let frame_max = usize::try_from(connection.configuration().frame_max()).unwrap_or(0);
        match tokio::time::timeout(CHANNEL_OPEN_DEADLINE, connection.create_channel()).await {
            Ok(opened) => opened
                .map(|channel| (channel, frame_max))
                .map_err(|err| error_map::map(&err, Subject::Other)),
            Err(_) => {
                self.forget(&connection).await;
                Err(Error::Connection(
                    format!(
                        "opening a channel: no answer within {CHANNEL_OPEN_DEADLINE:?}; reconnecting"
                    )
                    .into(),
                ))
            }
        }
    }

    /// Drops `connection` as the one to use, if it still is; the next call opens a new one.
    async fn forget(&self, connection: &Arc<Connection>) {
        let mut state = self.state.lock().await;
        if state
            .connection
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, connection))
        {
            state.connection = None;
            state.node = (state.node + 1) % self.urls.len().max(1);
        }
    }

    /// Closes the connection, if it is open; the next call reconnects.
    pub(super) async fn close(&self) {
        let connection = self.state.lock().await.connection.take();
        if let Some(connection) = connection
            && let Err(err) = connection
                .close(200, "closed by the application".into())
                .await
        {
            tracing::debug!(connection = %self.name, error = %err, "closing the broker connection failed");
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The broker's version, as the last connection opened found it; `None` when unknown.
    pub(super) fn broker_version(&self) -> Option<crate::broker::BrokerVersion> {
        self.version.get()
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("urls", &redact(&self.urls.join(",")))
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
