//! A loopback TCP front for a cluster, as a load balancer in front of RabbitMQ would be: each new
//! client connection goes to the first node, in order, that accepts it. When the node a client is
//! on dies, its connections end; the client reconnects to the same address and lands on a node
//! that survives. The transport takes one URL, so this is how it follows a cluster.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long one node may take to accept before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The front; see the [module docs](self). Dropping it stops accepting and ends every
/// connection it carries.
pub struct Failover {
    address: SocketAddr,
    accept: JoinHandle<()>,
}

impl Failover {
    /// Listens on a free loopback port, forwarding to the first of `ports` (on 127.0.0.1) that
    /// accepts.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start(ports: Vec<u16>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let ports: Arc<[u16]> = ports.into();
        let accept = tokio::spawn(async move {
            // A set, so that aborting the accept loop ends every pair it carries.
            let mut carried = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while carried.try_join_next().is_some() {}
                carried.spawn(forward(client, Arc::clone(&ports)));
            }
        });
        Ok(Self { address, accept })
    }

    /// The AMQP URL of the front, as guest on the default virtual host.
    #[must_use]
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.address)
    }
}

/// Connects `client` to the first node that accepts and copies both ways until either side ends.
async fn forward(mut client: TcpStream, ports: Arc<[u16]>) {
    for port in ports.iter() {
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", *port))).await;
        if let Ok(Ok(mut node)) = connected {
            // Either side ending (a node killed, a client closing) ends the pair.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
            return;
        }
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl fmt::Debug for Failover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
