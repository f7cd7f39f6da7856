//! What the TLS scenarios share: certificates made in the test (rcgen, on ring), and a private
//! node with a TLS listener on them.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "the test file uses its own part of the support"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobs_faults::node::free_port;
use jobs_faults::{NodeOptions, PrivateNode};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// The user the client certificate names (its common name); the EXTERNAL login is that user.
pub const CLIENT_USER: &str = "jobs-tls-client";

/// A certificate and its key, PEM, and where they were written.
#[derive(Debug)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A test PKI in a directory of its own, removed on drop: a CA, a second CA nobody trusts,
/// and what the first one signed.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    /// The CA that signs the others; its certificate is `ca.pem`.
    pub ca: Pair,
    /// A CA that signed nothing here: trusting it alone, a client trusts no broker.
    pub other_ca: Pair,
    /// The broker's certificate: 127.0.0.1 and localhost, valid now.
    pub server: Pair,
    /// A broker certificate that expired in 2021.
    pub expired_server: Pair,
    /// The client's certificate, common name [`CLIENT_USER`].
    pub client: Pair,
    /// A client certificate for the same user, signed by the unrelated CA.
    pub stranger_client: Pair,
}

impl Pki {
    /// Makes the certificates and writes them under a fresh directory named for `scenario`.
    pub fn new(scenario: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("jobs-faults-tls-{scenario}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the PKI directory");
        let (ca, ca_issuer) = make_ca(&dir, "ca", "jobs-faults test CA");
        let (other_ca, other_issuer) = make_ca(&dir, "other-ca", "jobs-faults unrelated CA");
        let server = make_leaf(&dir, "server", &ca_issuer, &Leaf::Server { expired: false });
        let expired_server =
            make_leaf(&dir, "expired", &ca_issuer, &Leaf::Server { expired: true });
        let client = make_leaf(&dir, "client", &ca_issuer, &Leaf::Client);
        let stranger_client = make_leaf(&dir, "stranger", &other_issuer, &Leaf::Client);
        Self {
            dir,
            ca,
            other_ca,
            server,
            expired_server,
            client,
            stranger_client,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String) -> Pair {
    let cert_file = dir.join(format!("{name}.pem"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, &cert_pem).expect("a certificate file");
    std::fs::write(&key_file, &key_pem).expect("a key file");
    Pair {
        cert_pem,
        key_pem,
        cert_file,
        key_file,
    }
}

fn make_ca(dir: &Path, name: &str, common_name: &str) -> (Pair, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    let cert = params.self_signed(&key).expect("a self-signed CA");
    let pair = write(dir, name, cert.pem(), key.serialize_pem());
    (pair, Issuer::new(params, key))
}

enum Leaf {
    Server { expired: bool },
    Client,
}

fn make_leaf(dir: &Path, name: &str, issuer: &Issuer<'static, KeyPair>, leaf: &Leaf) -> Pair {
    let (names, common_name, usage) = match leaf {
        Leaf::Server { .. } => (
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        Leaf::Client => (Vec::new(), CLIENT_USER, ExtendedKeyUsagePurpose::ClientAuth),
    };
    let mut params = CertificateParams::new(names).expect("leaf parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    if let Leaf::Server { expired: true } = leaf {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("a leaf key");
    let cert = params.signed_by(&key, issuer).expect("a signed leaf");
    write(dir, name, cert.pem(), key.serialize_pem())
}

/// A private node with a TLS listener presenting `server`, trusting the PKI's CA for client
/// certificates (`verify_peer`), requiring one when `require_client_cert`, and taking the
/// EXTERNAL login (`rabbitmq_auth_mechanism_ssl`, the user from the certificate's common name)
/// besides PLAIN. Returns the node and its TLS port.
pub async fn tls_node(pki: &Pki, server: &Pair, require_client_cert: bool) -> (PrivateNode, u16) {
    let tls_port = free_port().expect("a free port for TLS");
    let options = NodeOptions {
        extra_config: vec![
            format!("listeners.ssl.default = 127.0.0.1:{tls_port}"),
            format!("ssl_options.cacertfile = {}", pki.ca.cert_file.display()),
            format!("ssl_options.certfile = {}", server.cert_file.display()),
            format!("ssl_options.keyfile = {}", server.key_file.display()),
            "ssl_options.verify = verify_peer".to_owned(),
            format!("ssl_options.fail_if_no_peer_cert = {require_client_cert}"),
            "auth_mechanisms.1 = PLAIN".to_owned(),
            "auth_mechanisms.2 = AMQPLAIN".to_owned(),
            "auth_mechanisms.3 = EXTERNAL".to_owned(),
            "ssl_cert_login_from = common_name".to_owned(),
        ],
        plugins: vec!["rabbitmq_auth_mechanism_ssl".to_owned()],
        ..NodeOptions::default()
    };
    let node = PrivateNode::start_with(options)
        .await
        .expect("the TLS node starts");
    // The TLS listener starts with the node's other listeners; wait for it all the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the TLS listener on {tls_port} does not answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (node, tls_port)
}

/// Adds [`CLIENT_USER`] to `node` with every permission on the default virtual host, and no
/// password: it can log in only with its certificate.
pub async fn add_client_user(node: &PrivateNode) {
    node.ctl(&["add_user", CLIENT_USER, "unused-password"])
        .await
        .expect("add_user");
    node.ctl(&["clear_password", CLIENT_USER])
        .await
        .expect("clear_password");
    node.ctl(&["set_permissions", "-p", "/", CLIENT_USER, ".*", ".*", ".*"])
        .await
        .expect("set_permissions");
}
