//! A failed TLS handshake inside lapin's error, as [`Error::Tls`] naming the cause.
//!
//! lapin reports a handshake failure as an I/O error whose inner error is rustls's: the
//! client's verdict on the broker's certificate (`InvalidCertificate`), or the broker's verdict
//! on the client's, which reaches the client only as a TLS alert (`AlertReceived`).

use lapin::ErrorKind;
use rustls::{AlertDescription, CertificateError};

use crate::error::Error;
use crate::tls_failure::TlsFailure;

/// [`Error::Tls`] when `err` holds a rustls error, else `None`.
pub(super) fn tls_failure(err: &lapin::Error) -> Option<Error> {
    let ErrorKind::IOError(io) = err.kind() else {
        return None;
    };
    let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(Error::Tls {
        reason: reason(tls),
        detail: tls.to_string(),
    })
}

/// [`Error::Tls`] for a connection over TLS that the broker reset or closed while it opened:
/// with TLS 1.3 the client finishes its handshake before the broker checks the client's
/// certificate, and a broker that wants one, or refuses the one given, may drop the connection
/// before its alert is read. Without a client certificate that names the missing one; with
/// one, its refusal. `None` for any other error.
pub(super) fn dropped_in_handshake(err: &lapin::Error, has_identity: bool) -> Option<Error> {
    let ErrorKind::IOError(io) = err.kind() else {
        return None;
    };
    let dropped = matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
    );
    let (reason, refusal) = if has_identity {
        (
            TlsFailure::ClientCertificateRefused,
            "refuses a client certificate it does not trust",
        )
    } else {
        (
            TlsFailure::ClientCertificateRequired,
            "requires a client certificate and gets none",
        )
    };
    dropped.then(|| Error::Tls {
        reason,
        detail: format!(
            "the broker dropped the TLS connection as it opened ({io}); with TLS 1.3 that is \
             what a broker does when it {refusal}"
        ),
    })
}

fn reason(err: &rustls::Error) -> TlsFailure {
    match err {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsFailure::NotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::WrongHost
            }
            _ => TlsFailure::BadServerCertificate,
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => TlsFailure::ClientCertificateRequired,
            AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => TlsFailure::ClientCertificateRefused,
            _ => TlsFailure::Handshake,
        },
        _ => TlsFailure::Handshake,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn lapin_error(tls: rustls::Error) -> lapin::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        ErrorKind::IOError(Arc::new(io)).into()
    }

    fn reason_of(tls: rustls::Error) -> (TlsFailure, String) {
        match tls_failure(&lapin_error(tls)) {
            Some(err @ Error::Tls { reason, .. }) => (reason, err.to_string()),
            other => panic!("not a TLS error: {other:?}"),
        }
    }

    #[test]
    fn the_servers_certificate_failures_are_named() {
        let (reason, text) = reason_of(CertificateError::UnknownIssuer.into());
        assert_eq!(reason, TlsFailure::UnknownCa);
        assert!(
            text.contains("certificate signed by an unknown CA"),
            "{text}"
        );
        let (reason, text) = reason_of(CertificateError::Expired.into());
        assert_eq!(reason, TlsFailure::Expired);
        assert!(text.contains("certificate expired"), "{text}");
        let (reason, _) = reason_of(CertificateError::NotValidForName.into());
        assert_eq!(reason, TlsFailure::WrongHost);
    }

    #[test]
    fn the_brokers_alerts_about_the_client_certificate_are_named() {
        let (reason, text) = reason_of(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(reason, TlsFailure::ClientCertificateRequired);
        assert!(text.contains("client certificate required"), "{text}");
        let (reason, text) = reason_of(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired,
        ));
        assert_eq!(reason, TlsFailure::ClientCertificateRefused);
        assert!(text.contains("CertificateExpired"), "{text}");
    }

    #[test]
    fn other_io_errors_are_not_tls_errors() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err: lapin::Error = ErrorKind::IOError(Arc::new(io)).into();
        assert!(tls_failure(&err).is_none());
        assert!(
            dropped_in_handshake(&err, false).is_none(),
            "refused is not dropped"
        );
    }

    #[test]
    fn a_connection_dropped_as_it_opens_names_the_missing_client_certificate() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let err: lapin::Error = ErrorKind::IOError(Arc::new(io)).into();
        let Some(Error::Tls { reason, detail }) = dropped_in_handshake(&err, false) else {
            panic!("not a TLS error");
        };
        assert_eq!(reason, TlsFailure::ClientCertificateRequired);
        assert!(detail.contains("TLS 1.3"), "{detail}");
        let Some(Error::Tls { reason, .. }) = dropped_in_handshake(&err, true) else {
            panic!("not a TLS error");
        };
        assert_eq!(reason, TlsFailure::ClientCertificateRefused);
    }
}
