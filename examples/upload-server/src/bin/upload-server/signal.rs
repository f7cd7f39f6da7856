//! The signals that stop the server.

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM, as an orchestrator sends it.
pub(crate) async fn shutdown() {
    let interrupt = async {
        // Without a handler there is nothing to wait for: then only SIGTERM stops it.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
