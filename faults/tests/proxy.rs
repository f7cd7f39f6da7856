//! The fault proxy's modes against a local echo server, each with bounded waits.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use jobs_faults::proxy::{FaultProxy, Mode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// The longest wait for anything the proxy should do.
const WITHIN: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// An echo server on a free port: writes back every byte it reads.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the echo server binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn proxy() -> FaultProxy {
    let echo = echo_server().await;
    FaultProxy::start(echo.to_string())
        .await
        .expect("the proxy starts")
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    timeout(WITHIN, TcpStream::connect(proxy.addr()))
        .await
        .expect("the proxy accepts in time")
        .expect("the proxy accepts")
}

/// Waits until the proxy has accepted `n` connections: a client's connect completes in the
/// kernel's backlog, before the proxy's accept loop counts it.
async fn accepted(proxy: &FaultProxy, n: usize) {
    let deadline = Instant::now() + WITHIN;
    while proxy.accepted() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} accepted",
            proxy.accepted()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(proxy.accepted(), n);
}

/// Sends `bytes` and reads as many back.
async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).await.expect("written");
    let mut back = vec![0; bytes.len()];
    timeout(WITHIN, stream.read_exact(&mut back))
        .await
        .expect("the echo comes back in time")
        .expect("the echo comes back");
    back
}

/// Reads until the connection ends: the bytes read, and how it ended.
async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let ended = timeout(WITHIN, async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) => return Some(err.kind()),
            }
        }
    })
    .await
    .expect("the connection ends in time");
    (got, ended)
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let proxy = proxy().await;
    let mut stream = connect(&proxy).await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut stream, &payload).await, payload);
    accepted(&proxy, 1).await;
}

#[tokio::test]
async fn latency_delays_each_chunk_and_keeps_the_order() {
    let proxy = proxy().await;
    let mut stream = connect(&proxy).await;
    let delay = Duration::from_millis(50);
    proxy.set_mode(Mode::Latency(delay));
    let started = Instant::now();
    assert_eq!(round_trip(&mut stream, b"first").await, b"first");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= delay * 2,
        "delayed each way: {elapsed:?} for a {delay:?} latency"
    );
    // Many small writes in a row come back whole and in order, and the delays overlap
    // rather than add up.
    let started = Instant::now();
    let mut sent = Vec::new();
    for i in 0..50u8 {
        stream.write_all(&[i; 10]).await.expect("written");
        sent.extend_from_slice(&[i; 10]);
    }
    let mut back = vec![0; sent.len()];
    timeout(WITHIN, stream.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(back, sent);
    assert!(
        started.elapsed() < delay * 20,
        "pipelined: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn freeze_is_a_black_hole_until_the_proxy_passes_again() {
    let proxy = proxy().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"before").await, b"before");
    proxy.set_mode(Mode::Freeze);
    stream.write_all(b"during").await.expect("written");
    let mut buf = [0; 6];
    assert!(
        timeout(QUIET, stream.read(&mut buf)).await.is_err(),
        "nothing comes back, and the connection stays open"
    );
    // A new connection is accepted but gets nothing either.
    let mut late = connect(&proxy).await;
    late.write_all(b"late").await.expect("written");
    assert!(timeout(QUIET, late.read(&mut buf)).await.is_err());
    accepted(&proxy, 2).await;

    proxy.set_mode(Mode::Pass);
    timeout(WITHIN, stream.read_exact(&mut buf))
        .await
        .expect("the held bytes arrive")
        .expect("read");
    assert_eq!(&buf, b"during");
    let mut four = [0; 4];
    timeout(WITHIN, late.read_exact(&mut four))
        .await
        .expect("the late connection reaches the target")
        .expect("read");
    assert_eq!(&four, b"late");
}

#[tokio::test]
async fn reset_aborts_current_and_new_connections() {
    let proxy = proxy().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
    proxy.set_mode(Mode::Reset);
    let (_, ended) = read_to_end(&mut stream).await;
    assert_eq!(ended, Some(ErrorKind::ConnectionReset));

    let mut late = connect(&proxy).await;
    let (got, ended) = read_to_end(&mut late).await;
    assert!(got.is_empty());
    assert_eq!(ended, Some(ErrorKind::ConnectionReset));

    proxy.set_mode(Mode::Pass);
    let mut again = connect(&proxy).await;
    assert_eq!(round_trip(&mut again, b"back").await, b"back");
}

#[tokio::test]
async fn cut_after_closes_each_connection_once_its_bytes_are_forwarded() {
    let proxy = proxy().await;
    proxy.set_mode(Mode::CutAfter(150));
    // 100 bytes out and their echo back: the budget of 150 ends halfway through the echo.
    for _ in 0..2 {
        let mut stream = connect(&proxy).await;
        stream.write_all(&[7; 100]).await.expect("written");
        let (got, ended) = read_to_end(&mut stream).await;
        assert_eq!(got, [7; 50], "the echo is cut after 150 bytes in all");
        assert_eq!(ended, None, "closed, not reset");
    }
    // A connection open when the cut is set gets the budget from then on.
    proxy.set_mode(Mode::Pass);
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, &[1; 500]).await, [1; 500]);
    proxy.set_mode(Mode::CutAfter(10));
    stream.write_all(&[2; 100]).await.expect("written");
    let (got, _) = read_to_end(&mut stream).await;
    assert!(got.is_empty(), "the 10 bytes went out; nothing came back");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = proxy().await;
    let mut stream = connect(&proxy).await;
    assert_eq!(round_trip(&mut stream, b"x").await, b"x");
    drop(proxy);
    let (got, _) = read_to_end(&mut stream).await;
    assert!(got.is_empty());
}
