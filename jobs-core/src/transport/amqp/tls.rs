//! The TLS settings of a connection: CA certificates to trust and a client identity for mutual
//! TLS, as lapin's [`OwnedTLSConfig`] takes them.

use std::fmt;
use std::sync::Arc;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::tls_failure::TlsFailure;

/// What an `amqps://` connection trusts and presents; nothing set is the system's roots and no
/// client certificate.
#[derive(Clone, Default)]
pub(super) struct TlsOptions {
    /// PEM CA certificates to trust, besides the system's.
    pub(super) ca: Option<Arc<str>>,
    /// The client's certificate and key, for a broker that asks for one.
    pub(super) identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM. The key is a secret: `Debug`
/// never shows it, and errors about it never quote it.
#[derive(Clone)]
pub(super) struct ClientIdentity {
    cert_pem: Arc<str>,
    key_pem: Arc<str>,
}

impl ClientIdentity {
    pub(super) fn new(cert_pem: String, key_pem: String) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// Checks that the certificate holds at least one PEM certificate and the key a PEM private
    /// key, so that a bad file fails before any connection, naming which.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] with [`TlsFailure::ClientIdentity`].
    pub(super) fn check(&self) -> Result<()> {
        let unusable = |detail: &str| Error::Tls {
            reason: TlsFailure::ClientIdentity,
            detail: detail.to_owned(),
        };
        let certificates = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| unusable("the client certificate is not valid PEM"))?;
        if certificates.is_empty() {
            return Err(unusable(
                "the client certificate file holds no PEM certificate",
            ));
        }
        // The parser's error is not shown: it may quote a line of the key.
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| {
            unusable("the client key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
        })?;
        Ok(())
    }
}

impl TlsOptions {
    /// lapin's TLS configuration, or `None` when nothing is set (lapin's defaults then).
    pub(super) fn lapin_config(&self) -> Option<OwnedTLSConfig> {
        if self.ca.is_none() && self.identity.is_none() {
            return None;
        }
        Some(OwnedTLSConfig {
            identity: self.identity.as_ref().map(|identity| OwnedIdentity::PKCS8 {
                pem: identity.cert_pem.as_bytes().to_vec(),
                key: identity.key_pem.as_bytes().to_vec(),
            }),
            cert_chain: self.ca.as_deref().map(str::to_owned),
        })
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(**)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let options = TlsOptions {
            ca: None,
            identity: Some(ClientIdentity::new(
                "CERT".to_owned(),
                "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n".to_owned(),
            )),
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("SECRETKEY"), "{shown}");
        assert!(shown.contains("ClientIdentity(**)"), "{shown}");
    }

    #[test]
    fn a_file_without_a_key_or_certificate_is_refused_without_quoting_it() {
        let no_certificate = ClientIdentity::new("nothing".to_owned(), String::new());
        let err = no_certificate.check().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Tls {
                    reason: TlsFailure::ClientIdentity,
                    ..
                }
            ),
            "{err:?}"
        );
        let certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bad_key = ClientIdentity::new(certificate.to_owned(), "SECRET-NOT-PEM".to_owned());
        let err = bad_key.check().unwrap_err().to_string();
        assert!(err.contains("no PEM private key"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn nothing_set_leaves_lapin_its_defaults() {
        assert!(TlsOptions::default().lapin_config().is_none());
        let with_ca = TlsOptions {
            ca: Some("CA".into()),
            identity: None,
        };
        let config = with_ca.lapin_config().unwrap();
        assert_eq!(config.cert_chain.as_deref(), Some("CA"));
        assert!(config.identity.is_none());
    }
}
