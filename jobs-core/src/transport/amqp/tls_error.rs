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
    }
}
