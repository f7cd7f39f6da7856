//! TLS end to end, on private RabbitMQ nodes with a TLS listener whose certificates the test
//! makes: the worker process handles jobs over `amqps://` with a private CA, and with a client
//! certificate and the `EXTERNAL` login (mutual TLS, no password anywhere); a wrong CA, an
//! expired broker certificate, a missing client certificate and one the broker does not trust
//! each fail with `Error::Tls` naming the cause.

#[path = "../src/fault_jobs.rs"]
#[allow(dead_code, reason = "each test binary uses some of the fault jobs")]
mod fault_jobs;
mod tls_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fault_jobs::{HANDLED_FILE, Tracked};
use futures_util::StreamExt as _;
use jobs_core::transport::amqp::{AmqpTransport, AmqpTransportBuilder};
use jobs_core::{Error, Producer, TlsFailure};
use jobs_faults::{PrivateNode, WorkerProcess, skip_without_rabbitmq};
use tls_support::{CLIENT_USER, Pki, add_client_user, tls_node};

/// The fault worker binary, built by cargo for the tests of this package.
const WORKER: &str = env!("CARGO_BIN_EXE_jobs-fault-worker");
/// Jobs each end-to-end case enqueues.
const JOBS: u64 = 200;
/// How long a worker may take to attach, and then to handle every job.
const BOUND: Duration = Duration::from_secs(60);

/// Held while a node boots: booting two at once on a 2-core machine only slows both.
static BOOTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn node(pki: &Pki, expired: bool, require_client_cert: bool) -> (PrivateNode, u16) {
    let _booting = BOOTING.lock().await;
    let server = if expired {
        &pki.expired_server
    } else {
        &pki.server
    };
    tls_node(pki, server, require_client_cert).await
}

/// The connection error of `builder`, which must fail.
async fn refused(builder: AmqpTransportBuilder) -> Error {
    match builder
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await
    {
        Ok(transport) => panic!("connected: {transport:?}"),
        Err(err) => err,
    }
}

/// Asserts `err` is `Error::Tls` for `expected`, its text naming `words` and no secret.
fn assert_tls(err: &Error, expected: TlsFailure, words: &str, pki: &Pki) {
    let text = err.to_string();
    eprintln!("{expected:?}: {text}");
    assert!(
        matches!(err, Error::Tls { reason, .. } if *reason == expected),
        "expected {expected:?}: {err:?}"
    );
    assert!(text.contains(words), "{text}");
    assert_no_secret(&text, pki);
}

/// Asserts that `text` shows no password and no line of a private key.
fn assert_no_secret(text: &str, pki: &Pki) {
    assert!(!text.contains(":guest@"), "a password shows: {text}");
    for key in [
        &pki.client.key_pem,
        &pki.stranger_client.key_pem,
        &pki.server.key_pem,
    ] {
        for line in key.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!text.contains(line), "a key line shows: {text}");
        }
    }
}

/// Starts the fault worker on `url` serving `tracked_term` with the TLS flags `tls`, waits until
/// it is ready, enqueues [`JOBS`] jobs through `producer`, and waits until the worker handled
/// each; then stops it with SIGTERM and checks its output shows no secret.
async fn jobs_end_to_end(url: &str, tls: &[&str], producer: &Producer, pki: &Pki, scenario: &str) {
    let handled = std::env::temp_dir().join(format!(
        "jobs-faults-tls-{scenario}-{}.handled",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&handled);
    let mut args = vec!["--jobs", fault_jobs::tracked_term::JOB.name()];
    args.extend_from_slice(tls);
    let mut worker = WorkerProcess::start(
        Path::new(WORKER),
        url,
        &args,
        &[(HANDLED_FILE, handled.as_path())],
    )
    .expect("the fault worker starts");
    worker
        .wait_ready(BOUND)
        .unwrap_or_else(|error| panic!("{error}\n{}", worker.output()));
    futures_util::stream::iter(0..JOBS)
        .map(|id| async move {
            fault_jobs::tracked_term::enqueue(producer, Tracked::new(id, 0))
                .await
                .expect("a confirmed enqueue over TLS");
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let ids = || {
        let text = std::fs::read_to_string(&handled).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.trim().parse::<u64>().ok())
            .collect::<std::collections::BTreeSet<u64>>()
    };
    worker
        .wait_for("every job handled", BOUND, |_| ids().len() == JOBS as usize)
        .unwrap_or_else(|error| panic!("{error}: {} handled\n{}", ids().len(), worker.output()));
    assert_eq!(ids(), (0..JOBS).collect(), "each job handled");
    worker.signal("TERM").expect("kill -TERM");
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{error}"));
    let output = worker.output();
    assert!(status.success(), "exit {status}:\n{output}");
    assert!(!output.contains("panicked"), "{output}");
    assert_no_secret(&output, pki);
    let _ = std::fs::remove_file(&handled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_handles_jobs_and_a_wrong_ca_fails_typed() {
    if skip_without_rabbitmq() {
        return;
    }
    let pki = Pki::new("ca");
    let (_node, port) = node(&pki, false, false).await;
    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");

    let err = refused(AmqpTransport::builder(&url).tls_ca(pki.other_ca.cert_pem.clone())).await;
    assert_tls(
        &err,
        TlsFailure::UnknownCa,
        "certificate signed by an unknown CA",
        &pki,
    );
    // The system's roots alone do not know the private CA either.
    let err = refused(AmqpTransport::builder(&url)).await;
    assert_tls(
        &err,
        TlsFailure::UnknownCa,
        "certificate signed by an unknown CA",
        &pki,
    );

    let transport = AmqpTransport::builder(&url)
        .connection_name("jobs-faults-tls-producer")
        .tls_ca(pki.ca.cert_pem.clone())
        .connect()
        .await
        .expect("a TLS connection trusting the private CA");
    let producer = Producer::new(Arc::new(transport.clone()));
    let ca = pki.ca.cert_file.to_string_lossy().into_owned();
    jobs_end_to_end(&url, &["--tls-ca", &ca], &producer, &pki, "ca").await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_external_handles_jobs_and_a_missing_client_certificate_fails_typed() {
    if skip_without_rabbitmq() {
        return;
    }
    let pki = Pki::new("mtls");
    let (node, port) = node(&pki, false, true).await;
    add_client_user(&node).await;
    let password_url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
    let external_url = format!("amqps://127.0.0.1:{port}/%2f?auth_mechanism=external");

    let err = refused(AmqpTransport::builder(&password_url).tls_ca(pki.ca.cert_pem.clone())).await;
    assert_tls(
        &err,
        TlsFailure::ClientCertificateRequired,
        "client certificate required",
        &pki,
    );
    let stranger = AmqpTransport::builder(&external_url)
        .tls_ca(pki.ca.cert_pem.clone())
        .tls_client_identity(
            pki.stranger_client.cert_pem.clone(),
            pki.stranger_client.key_pem.clone(),
        );
    let err = refused(stranger).await;
    assert_tls(
        &err,
        TlsFailure::ClientCertificateRefused,
        "the broker refused the client certificate",
        &pki,
    );
    let err = refused(AmqpTransport::builder(&external_url).tls_ca(pki.ca.cert_pem.clone())).await;
    assert!(
        matches!(&err, Error::Config(text) if text.contains("needs a client certificate")),
        "{err:?}"
    );

    let transport = AmqpTransport::builder(&external_url)
        .connection_name("jobs-faults-mtls-producer")
        .tls_ca(pki.ca.cert_pem.clone())
        .tls_client_identity(pki.client.cert_pem.clone(), pki.client.key_pem.clone())
        .connect()
        .await
        .expect("a mutual TLS connection logged in with EXTERNAL");
    assert_no_secret(&format!("{transport:?}"), &pki);
    // The producer's two connections are the node's only ones: each logged in as the
    // certificate's common name, through EXTERNAL, over TLS.
    let connections = node
        .ctl(&[
            "list_connections",
            "--quiet",
            "--no-table-headers",
            "user",
            "auth_mechanism",
            "ssl",
        ])
        .await
        .expect("list_connections");
    let lines: Vec<Vec<&str>> = connections
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![vec![CLIENT_USER, "EXTERNAL", "true"]; 2],
        "{connections}"
    );
    let producer = Producer::new(Arc::new(transport.clone()));
    let ca = pki.ca.cert_file.to_string_lossy().into_owned();
    let cert = pki.client.cert_file.to_string_lossy().into_owned();
    let key = pki.client.key_file.to_string_lossy().into_owned();
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    jobs_end_to_end(&external_url, &tls, &producer, &pki, "mtls").await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_broker_certificate_fails_typed() {
    if skip_without_rabbitmq() {
        return;
    }
    let pki = Pki::new("expired");
    let (_node, port) = node(&pki, true, false).await;
    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
    let err = refused(AmqpTransport::builder(&url).tls_ca(pki.ca.cert_pem.clone())).await;
    assert_tls(&err, TlsFailure::Expired, "certificate expired", &pki);
}
