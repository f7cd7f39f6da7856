//! Shutdown signals: the first SIGTERM or SIGINT starts a graceful shutdown, a second one ends
//! the process at once.

/// The exit code after a second signal: 128 + SIGINT, as shells report an interrupt.
pub(crate) const FORCED_EXIT: i32 = 130;

impl Signals {
    /// Waits for the first SIGTERM or SIGINT, then arms the second: from then on, another
    /// signal exits the process at once with [`FORCED_EXIT`].
    pub(crate) async fn first(mut self) -> &'static str {
        let name = self.next().await;
        tokio::spawn(async move {
            let name = self.next().await;
            tracing::warn!(signal = name, "second signal: exiting now");
            std::process::exit(FORCED_EXIT);
        });
        name
    }
}

/// The process's SIGTERM and SIGINT handlers.
#[cfg(unix)]
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers now, so that a signal sent from here on is seen, even one that
    /// arrives before anything waits for it: the default action (death by the signal) no
    /// longer applies once this returns.
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed.
    pub(crate) fn install() -> std::io::Result<Self> {
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

/// The process's Ctrl-C handler.
#[cfg(not(unix))]
pub(crate) struct Signals;

#[cfg(not(unix))]
impl Signals {
    /// Nothing to install ahead: Ctrl-C is caught once [`first`](Self::first) waits for it.
    ///
    /// # Errors
    ///
    /// Never; the signature is unix's.
    #[allow(clippy::unnecessary_wraps, reason = "the same signature as on unix")]
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
