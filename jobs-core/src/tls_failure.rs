//! Why a TLS handshake with the broker failed, as [`Error::Tls`](crate::Error::Tls) names it.

use std::fmt;

/// The cause of a failed TLS handshake with the broker.
///
/// The broker's certificate is checked by the client (against `tls_ca` and the system's roots);
/// the client's certificate, when the broker asks for one, is checked by the broker, which tells
/// the client only through a TLS alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The broker's certificate chains to no CA the client trusts: give the broker's CA with
    /// `tls_ca`.
    UnknownCa,
    /// The broker's certificate (or one of its chain) is past its validity.
    Expired,
    /// The broker's certificate (or one of its chain) is not valid yet: check the clocks.
    NotYetValid,
    /// The broker's certificate is not for the host name (or address) of the URL.
    WrongHost,
    /// The broker's certificate is unusable for another reason, which the detail names.
    BadServerCertificate,
    /// The broker requires a client certificate and none was given.
    ClientCertificateRequired,
    /// The broker refused the client's certificate: signed by a CA it does not trust, expired,
    /// or otherwise bad, as the detail names.
    ClientCertificateRefused,
    /// The client's certificate or key could not be used (not PEM, or no key in it).
    ClientIdentity,
    /// Another handshake failure, which the detail names.
    Handshake,
}

impl TlsFailure {
    /// The cause in a few words, as [`Error::Tls`](crate::Error::Tls) shows it.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::UnknownCa => {
                "certificate signed by an unknown CA: the broker's certificate chains to no CA \
                 in tls_ca or the system's roots"
            }
            Self::Expired => "certificate expired: the broker's certificate is past its validity",
            Self::NotYetValid => {
                "certificate not yet valid: the broker's certificate starts later (check the clocks)"
            }
            Self::WrongHost => {
                "certificate for another host: the broker's certificate does not name the URL's \
                 host"
            }
            Self::BadServerCertificate => "the broker's certificate is invalid",
            Self::ClientCertificateRequired => {
                "client certificate required: the broker asks for one and none was given \
                 (tls_cert and tls_key)"
            }
            Self::ClientCertificateRefused => "the broker refused the client certificate",
            Self::ClientIdentity => "the client certificate or key (tls_cert, tls_key) is unusable",
            Self::Handshake => "the TLS handshake failed",
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
