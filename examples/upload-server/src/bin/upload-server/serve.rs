//! `upload-server serve`: the HTTP server alone, enqueuing into RabbitMQ for a worker in
//! another process (`upload-worker`).

use std::env;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use jobs_core::Producer;
use jobs_core::transport::redact_url;
use tokio::net::TcpListener;
use upload_server::http::{AppState, DEFAULT_MAX_UPLOAD, router};

use crate::signal;

/// The broker when `JOBS_AMQP_URL` is not set: the worker's default too.
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// Serves until Ctrl-C or SIGTERM.
pub(crate) async fn run() -> anyhow::Result<()> {
    let addr_text = var("UPLOAD_ADDR")?.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let addr: SocketAddr = addr_text.parse().with_context(|| {
        format!("UPLOAD_ADDR is not an address such as {DEFAULT_ADDR}: `{addr_text}`")
    })?;
    let max_upload = match var("UPLOAD_MAX_BYTES")? {
        Some(text) => text
            .parse()
            .with_context(|| format!("UPLOAD_MAX_BYTES is not a number of bytes: `{text}`"))?,
        None => DEFAULT_MAX_UPLOAD,
    };
    let upload_dir = env::var_os("UPLOAD_DIR").map_or_else(
        || env::temp_dir().join("upload-server").join("uploads"),
        PathBuf::from,
    );
    tokio::fs::create_dir_all(&upload_dir)
        .await
        .with_context(|| format!("could not create {}", upload_dir.display()))?;
    // The job finds each file by the path in its message, from the worker's directory.
    let upload_dir = tokio::fs::canonicalize(&upload_dir)
        .await
        .with_context(|| format!("could not resolve {}", upload_dir.display()))?;

    let url = var("JOBS_AMQP_URL")?.unwrap_or_else(|| DEFAULT_URL.to_owned());
    let shown = redact_url(&url);
    let producer = Producer::connect(&url)
        .await
        .with_context(|| format!("could not connect to RabbitMQ at {shown}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    let addr = listener.local_addr().context("no local address")?;
    println!("upload server on http://{addr}: POST /files, GET /healthz");
    println!("  enqueuing into RabbitMQ at {shown}");
    println!(
        "  uploads in {}, at most {max_upload} bytes each",
        upload_dir.display()
    );
    let app = AppState::new(producer, upload_dir).with_max_upload(max_upload);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(signal::shutdown())
        .await
        .context("the server failed")?;
    println!("stopped");
    Ok(())
}

/// An environment variable: `None` when unset, an error when it is not UTF-8.
fn var(name: &str) -> anyhow::Result<Option<String>> {
    match env::var_os(name).map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(_)) => bail!("{name} is not UTF-8"),
    }
}
