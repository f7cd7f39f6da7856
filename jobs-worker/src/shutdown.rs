//! Shutdown signals: the first SIGTERM or SIGINT starts a graceful shutdown, a second one ends
//! the process at once.

/// The exit code after a second signal: 128 + SIGINT, as shells report an interrupt.
pub(crate) const FORCED_EXIT: i32 = 130;

/// Waits for the first SIGTERM or SIGINT, then arms the second: from then on, another signal
/// exits the process at once with [`FORCED_EXIT`].
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub(crate) async fn first_signal() -> std::io::Result<&'static str> {
    let mut signals = Signals::new()?;
    let name = signals.next().await;
    tokio::spawn(async move {
        let name = signals.next().await;
        tracing::warn!(signal = name, "second signal: exiting now");
        std::process::exit(FORCED_EXIT);
    });
    Ok(name)
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    #[allow(clippy::unnecessary_wraps, reason = "the same signature as on unix")]
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
