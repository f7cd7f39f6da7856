//! One proxied connection: two directions, each a reader and a writer joined by a queue of
//! timestamped chunks, under the proxy's mode.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Mode;

/// No cut pending: the byte budget of a connection outside [`Mode::CutAfter`].
const UNLIMITED: u64 = u64::MAX;
/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: bounds the proxy's memory under latency.
const QUEUED: usize = 64;

/// How a direction or the whole connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sender closed, or a socket failed: close normally.
    Closed,
    /// The byte budget ran out: close both sides at once.
    Cut,
    /// [`Mode::Reset`]: abort both sides with an RST.
    Reset,
}

/// Serves one accepted client until it, the target or the mode ends the connection.
pub(super) async fn serve(
    client: TcpStream,
    target: Arc<str>,
    mut mode: watch::Receiver<Mode>,
    opening: Arc<Mutex<Vec<u8>>>,
) {
    // A new connection during a black hole gets nothing, not even a dialled target (which
    // would time the handshake out before the network comes back).
    loop {
        match *mode.borrow_and_update() {
            Mode::Freeze => {}
            Mode::Reset => return reset(&client),
            Mode::Pass | Mode::Latency(_) | Mode::CutAfter(_) => break,
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
    // A target that refuses is passed on as a closed connection.
    let Ok(upstream) = TcpStream::connect(&*target).await else {
        return;
    };
    // Small AMQP frames must not wait for Nagle: the proxy adds only the latency it is told to.
    let nodelay = client
        .set_nodelay(true)
        .and_then(|()| upstream.set_nodelay(true));
    if nodelay.is_err() {
        return;
    }
    pump(client, upstream, mode, &opening).await;
}

/// `SO_LINGER` 0: closing the socket then sends an RST instead of a FIN.
fn reset(stream: &TcpStream) {
    // A socket that cannot take the option is closed normally: still a dead connection.
    let _ = stream.set_zero_linger();
}

async fn pump(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut mode: watch::Receiver<Mode>,
    opening: &Mutex<Vec<u8>>,
) {
    let budget = AtomicU64::new(budget_for(*mode.borrow_and_update()));
    let end = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let mut up = pin!(direction(
            client_read,
            upstream_write,
            mode.clone(),
            &budget,
            Some(opening)
        ));
        let mut down = pin!(direction(
            upstream_read,
            client_write,
            mode.clone(),
            &budget,
            None
        ));
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                end = &mut up, if !up_done => {
                    if end != End::Closed {
                        break end;
                    }
                    up_done = true;
                }
                end = &mut down, if !down_done => {
                    if end != End::Closed {
                        break end;
                    }
                    down_done = true;
                }
                end = follow(&mut mode, &budget) => break end,
            }
            if up_done && down_done {
                break End::Closed;
            }
        }
    };
    if end == End::Reset {
        reset(&client);
        reset(&upstream);
    }
}

/// Follows the mode's changes: a new cut budget, a reset, or the proxy gone.
async fn follow(mode: &mut watch::Receiver<Mode>, budget: &AtomicU64) -> End {
    loop {
        if mode.changed().await.is_err() {
            return End::Closed;
        }
        let current = *mode.borrow_and_update();
        if current == Mode::Reset {
            return End::Reset;
        }
        budget.store(budget_for(current), Ordering::Release);
    }
}

fn budget_for(mode: Mode) -> u64 {
    match mode {
        Mode::CutAfter(n) => n,
        Mode::Pass | Mode::Latency(_) | Mode::Freeze | Mode::Reset => UNLIMITED,
    }
}

/// Takes up to `n` bytes from the budget: how many may go through, and whether the budget is
/// spent with them.
fn take(budget: &AtomicU64, n: usize) -> (usize, bool) {
    let wanted = n as u64;
    let update = |left: u64| (left != UNLIMITED).then(|| left.saturating_sub(wanted));
    match budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, update) {
        Err(_) => (n, false),
        Ok(left) => (left.min(wanted) as usize, left <= wanted),
    }
}

/// What the reader hands the writer.
enum Item {
    /// Bytes to write at `at`.
    Data { at: Instant, bytes: Vec<u8> },
    /// Nothing follows; end the direction this way once the bytes before are written.
    End(End),
}

/// Copies one direction under the mode until the sender closes or the budget runs out.
async fn direction<R, W>(
    mut reader: R,
    mut writer: W,
    mode: watch::Receiver<Mode>,
    budget: &AtomicU64,
    opening: Option<&Mutex<Vec<u8>>>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut queued) = mpsc::channel(QUEUED);
    let mut read_mode = mode.clone();
    let mut write_mode = mode;
    let read = async move {
        loop {
            if !flowing(&mut read_mode).await {
                return;
            }
            let mut bytes = vec![0; CHUNK];
            let n = match reader.read(&mut bytes).await {
                Ok(0) | Err(_) => {
                    let _ = queue.send(Item::End(End::Closed)).await;
                    return;
                }
                Ok(n) => n,
            };
            let delay = match *read_mode.borrow() {
                Mode::Latency(delay) => delay,
                _ => Duration::ZERO,
            };
            let (allowed, spent) = take(budget, n);
            bytes.truncate(allowed);
            if let Some(opening) = opening {
                let mut kept = opening
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let room = super::OPENING.saturating_sub(kept.len());
                kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
            }
            let at = Instant::now() + delay;
            if allowed > 0 && queue.send(Item::Data { at, bytes }).await.is_err() {
                return;
            }
            if spent {
                let _ = queue.send(Item::End(End::Cut)).await;
                return;
            }
        }
    };
    let write = async move {
        while let Some(item) = queued.recv().await {
            match item {
                Item::Data { at, bytes } => {
                    tokio::time::sleep_until(at).await;
                    if !flowing(&mut write_mode).await || writer.write_all(&bytes).await.is_err() {
                        return End::Closed;
                    }
                }
                Item::End(End::Closed) => {
                    // Pass the sender's FIN on (the other direction may still have bytes),
                    // but not through a black hole: there the peer must find out by itself.
                    if flowing(&mut write_mode).await {
                        let _ = writer.shutdown().await;
                    }
                    return End::Closed;
                }
                Item::End(end) => return end,
            }
        }
        End::Closed
    };
    let ((), end) = tokio::join!(read, write);
    end
}

/// Waits while the mode lets nothing through; `false` once the proxy is gone.
async fn flowing(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            // A reset is the connection's to carry out, not a reason to let a byte through.
            Mode::Freeze | Mode::Reset => {}
            Mode::Pass | Mode::Latency(_) | Mode::CutAfter(_) => return true,
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}
