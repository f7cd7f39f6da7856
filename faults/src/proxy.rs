//! A TCP fault proxy: sits between clients and a broker and, at run time, lets bytes through,
//! delays them, stops them, resets the connections or cuts them after a number of bytes.
//!
//! The mode applies at once to every connection, current and new, so a scenario can turn a
//! healthy network into a black hole mid-run and back:
//!
//! | [`Mode`] | current connections | new connections |
//! | --- | --- | --- |
//! | `Pass` | bytes flow | connected to the target |
//! | `Latency(d)` | each chunk is delivered `d` after it was read, in order | same |
//! | `Freeze` | stay open; no byte goes either way (a network black hole) | accepted, then nothing: the target is not even dialled until the mode changes |
//! | `Reset` | aborted with a TCP RST (`SO_LINGER` 0, then closed) | accepted, then reset |
//! | `CutAfter(n)` | closed once `n` more bytes went through, both directions counted, mid-frame if that is where the count ends | closed after their first `n` bytes |

mod connection;
mod url;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use url::{target_of, url_through};

/// What the proxy does to the bytes of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// Forward each chunk this long after it was read, keeping the order.
    Latency(Duration),
    /// Forward nothing either way and keep the connections open: a network black hole.
    Freeze,
    /// Abort every connection with a TCP RST, and new ones as they come.
    Reset,
    /// Close each connection after this many more bytes forwarded, both directions counted.
    CutAfter(u64),
}

/// A running proxy on `127.0.0.1`; dropping it closes its listener and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    openings: Openings,
    accept: JoinHandle<()>,
}

/// The first bytes each client sent, connection by connection.
type Openings = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// How many of a client's first bytes are kept: enough for the AMQP handshake's client
/// properties, where the connection name is.
pub(crate) const OPENING: usize = 4096;

impl FaultProxy {
    /// Listens on a free port of `127.0.0.1` and forwards each connection to `target`
    /// (`host:port`), starting in [`Mode::Pass`].
    ///
    /// # Errors
    ///
    /// When the listener cannot be bound.
    pub async fn start(target: impl Into<String>) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, watch) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let openings = Openings::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::from(target.into()),
            watch,
            Arc::clone(&accepted),
            Arc::clone(&openings),
        ));
        Ok(Self {
            addr,
            mode,
            accepted,
            openings,
            accept,
        })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection, current and new, to `mode`.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// How many client connections the proxy accepted so far.
    #[must_use]
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// How many client connections sent `needle` within their first 4 KiB: with an AMQP
    /// connection name, say, the connections of one kind that got as far as the handshake.
    ///
    /// # Panics
    ///
    /// Never in practice: only when a connection task panicked holding its record.
    #[must_use]
    pub fn opened_with(&self, needle: &[u8]) -> usize {
        let openings = self.openings.lock().expect("the openings");
        openings
            .iter()
            .filter(|opening| {
                let bytes = opening.lock().expect("an opening");
                bytes.windows(needle.len()).any(|window| window == needle)
            })
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The connections end when they see the mode's sender gone.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: Arc<str>,
    mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicUsize>,
    openings: Openings,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                accepted.fetch_add(1, Ordering::AcqRel);
                let opening = Arc::new(Mutex::new(Vec::new()));
                openings
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Arc::clone(&opening));
                tokio::spawn(connection::serve(
                    client,
                    Arc::clone(&target),
                    mode.clone(),
                    opening,
                ));
            }
            // A client that gave up before its accept, or no descriptor left: the next
            // accept may succeed; wait a moment rather than spin on a persistent failure.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
