//! A worker given an OTLP endpoint exports its spans there, and sends the last ones when it
//! shuts down, in plain text or over TLS (feature `otel`).

#[path = "../../jobs-core/tests/support/otlp.rs"]
#[allow(dead_code, reason = "the receiver's helpers this test does not need")]
mod otlp;

use std::sync::Arc;
use std::time::Duration;

use jobs_core::testing::Recorder;
use jobs_core::transport::Transport;
use jobs_core::transport::memory::MemoryTransport;
use jobs_core::{JobError, Producer, job};
use jobs_worker::{Error, Worker, WorkerConfig};
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp::{Receiver, text};

/// Generous: a bound on a wait that should end soon, not a timing assumption.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {}

#[job(exchange = "worker.otel", routing_key = "ping")]
async fn ping(_ping: Ping) -> Result<(), JobError> {
    Ok(())
}

/// Held by a test while its worker runs: a worker's tracer is the process's, so two at once
/// would send each other's spans to the wrong collector.
static ONE_TRACER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a worker with `config` on the in-memory broker, has it handle one `ping` with message
/// id `id`, and shuts it down (which sends the spans left), waiting at most [`WAIT`] for each.
async fn ping_and_stop(config: WorkerConfig, id: &'static str) {
    let _alone = ONE_TRACER.lock().await;
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let recorder = Arc::new(Recorder::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::builder()
        .config(config.with_metrics_addr("127.0.0.1:0".parse().unwrap()))
        .jobs([&ping::JOB])
        .transport(Arc::clone(&transport))
        .observer(recorder.clone())
        .shutdown_signal(async {
            let _ = stopped.await;
        });
    let running = tokio::spawn(worker.run());

    // The worker's tracer is set before its engine takes deliveries; this enqueue, before or
    // after that, is served once the engine runs.
    ping::with(Ping {})
        .message_id(id)
        .enqueue(&Producer::new(Arc::clone(&transport)))
        .await
        .unwrap();
    recorder.finished(id, WAIT).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the worker shuts down")
        .unwrap()
        .unwrap();
}

/// Runs a worker with `config` on the in-memory broker, has it handle one `ping` with message
/// id `id` and shut down (no flush: its shutdown sends what is left), and waits for
/// `receiver` to get the attempt's consumer span, which it returns.
async fn run_one_ping(config: WorkerConfig, receiver: &Receiver, id: &'static str) -> Span {
    ping_and_stop(config, id).await;
    // The producer's `publish` span carries the same message id when the enqueue ran after
    // the worker set its tracer; the consumer's span is the one these tests are about.
    let process = format!("process {}", ping::QUEUE);
    let is_consumer =
        |span: &Span| span.name == process && text(span, "messaging.message.id") == Some(id);
    let spans = receiver
        .wait_for(WAIT, |spans| spans.iter().any(is_consumer))
        .await;
    spans.into_iter().find(|span| is_consumer(span)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_an_otlp_endpoint_exports_its_spans_and_flushes_them_at_shutdown() {
    let receiver = Receiver::start();
    let config = WorkerConfig::default().with_otlp_endpoint(receiver.endpoint());
    let consumer = run_one_ping(config, &receiver, "worker-otel-1").await;
    assert_eq!(text(&consumer, "jobs.outcome"), Some("succeeded"));
}

/// A CA, and what it signed: a collector's certificate for 127.0.0.1 and a client's, as PEM,
/// the CA's and the client's also written to files under a directory of their own.
struct Pki {
    dir: std::path::PathBuf,
    ca: String,
    server: (String, String),
    ca_file: std::path::PathBuf,
    client_files: (std::path::PathBuf, std::path::PathBuf),
}

impl Pki {
    fn new(name: &str) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let dir = std::env::temp_dir().join(format!("jobs-worker-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "jobs-worker test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let leaf = |names: Vec<String>, usage| {
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(
            vec!["127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        let ca_file = dir.join("ca.pem");
        let client_files = (dir.join("client.pem"), dir.join("client.key"));
        std::fs::write(&ca_file, &ca).unwrap();
        std::fs::write(&client_files.0, &client.0).unwrap();
        std::fs::write(&client_files.1, &client.1).unwrap();
        Self {
            dir,
            ca,
            server,
            ca_file,
            client_files,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_exports_to_an_https_collector_trusting_its_ca_with_a_client_certificate() {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

    let pki = Pki::new("otlp-tls");
    // The collector asks for a client certificate signed by the same CA.
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let receiver = Receiver::start_with(Server::builder().tls_config(tls).unwrap(), "https");
    let config = WorkerConfig::default()
        .with_otlp_endpoint(receiver.endpoint())
        .with_otlp_ca(&pki.ca_file)
        .with_otlp_client_certificate(&pki.client_files.0, &pki.client_files.1);
    let consumer = run_one_ping(config, &receiver, "worker-otel-tls-1").await;
    assert_eq!(text(&consumer, "jobs.outcome"), Some("succeeded"));
}

/// A collector whose certificate the worker cannot verify (its CA neither given nor among the
/// system's roots): the worker sends it nothing, not even at its shutdown's flush, and runs
/// its jobs and shuts down as it would without telemetry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sends_nothing_to_a_collector_it_cannot_verify_and_runs_its_jobs_regardless() {
    use tonic::transport::{Identity, Server, ServerTlsConfig};

    let pki = Pki::new("otlp-untrusted");
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1));
    let receiver = Receiver::start_with(Server::builder().tls_config(tls).unwrap(), "https");
    let config = WorkerConfig::default().with_otlp_endpoint(receiver.endpoint());
    ping_and_stop(config, "worker-otel-untrusted-1").await;
    // The shutdown flushed, or failed to: a span would be there by now.
    assert_eq!(receiver.received(), 0);
}

#[tokio::test]
async fn otlp_tls_files_a_worker_would_ignore_or_cannot_use_stop_it_with_the_setting_named() {
    let pki = Pki::new("otlp-tls-refused");
    let run = |config: WorkerConfig| {
        Worker::builder()
            .config(config.with_metrics_addr("127.0.0.1:0".parse().unwrap()))
            .jobs([&ping::JOB])
            .transport(Arc::new(MemoryTransport::new()))
            .shutdown_signal(std::future::pending())
            .run()
    };

    let plain = run(WorkerConfig::default()
        .with_otlp_endpoint("http://127.0.0.1:4317")
        .with_otlp_ca(&pki.ca_file))
    .await
    .unwrap_err();
    assert!(
        matches!(
            plain,
            Error::OtlpPlainText {
                setting: "otlp_ca",
                ..
            }
        ),
        "{plain:?}"
    );

    let mut half = WorkerConfig::default().with_otlp_endpoint("https://127.0.0.1:4317");
    half.otlp_cert = Some(pki.client_files.0.clone());
    let half = run(half).await.unwrap_err();
    assert!(
        matches!(
            half,
            Error::TlsIdentity {
                missing: "otlp_key"
            }
        ),
        "{half:?}"
    );

    let missing = run(WorkerConfig::default()
        .with_otlp_endpoint("https://127.0.0.1:4317")
        .with_otlp_ca(pki.dir.join("nowhere.pem")))
    .await
    .unwrap_err();
    assert!(
        matches!(missing, Error::TlsFile { key: "otlp_ca", .. }),
        "{missing:?}"
    );
    // The file's path, never its contents.
    assert!(missing.to_string().contains("nowhere.pem"), "{missing}");

    // A key where the CA should be: tonic would read no certificate from it and go on.
    let not_a_certificate = run(WorkerConfig::default()
        .with_otlp_endpoint("https://127.0.0.1:4317")
        .with_otlp_ca(&pki.client_files.1))
    .await
    .unwrap_err();
    assert!(
        matches!(
            not_a_certificate,
            Error::OtlpPem {
                key: "otlp_ca",
                expected: "certificate",
                ..
            }
        ),
        "{not_a_certificate:?}"
    );
    assert!(!not_a_certificate.to_string().contains("PRIVATE KEY"));
}
