//! External trust bundles: other communities' bundles (DirectTrust, Blue Button+, state HIEs)
//! that anchorage fetches on a schedule, verifies against pinned signers, passes through the
//! admission policy and republishes. This module holds the pieces that do not touch the store:
//! the source declaration, fetching, the schedule, and the precise status every refresh attempt
//! ends with. Reading and verifying the fetched bytes is the bundle wing's job
//! ([`crate::bundle::read_bundle`], [`crate::bundle::verify`]), the same reader member uploads
//! go through; the conversions below give its errors their refresh statuses.
//! `authority::external` orders the steps.

pub mod fetch;
pub mod source;

use crate::bundle::verify::{VerifyError, VerifyFailure};
use crate::bundle::ReadError;
pub use crate::model::external::RefreshStatus;

impl RefreshStatus {
    pub const ALL: [RefreshStatus; 16] = [
        RefreshStatus::Ok,
        RefreshStatus::NotModified,
        RefreshStatus::DnsError,
        RefreshStatus::ConnectError,
        RefreshStatus::TlsError,
        RefreshStatus::Timeout,
        RefreshStatus::HttpStatus,
        RefreshStatus::TooLarge,
        RefreshStatus::InvalidFormat,
        RefreshStatus::UnsignedButPinned,
        RefreshStatus::BadSignature,
        RefreshStatus::UntrustedSigner,
        RefreshStatus::SignerExpired,
        RefreshStatus::Empty,
        RefreshStatus::AllRejected,
        RefreshStatus::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Ok => "ok",
            RefreshStatus::NotModified => "not_modified",
            RefreshStatus::DnsError => "dns_error",
            RefreshStatus::ConnectError => "connect_error",
            RefreshStatus::TlsError => "tls_error",
            RefreshStatus::Timeout => "timeout",
            RefreshStatus::HttpStatus => "http_status",
            RefreshStatus::TooLarge => "too_large",
            RefreshStatus::InvalidFormat => "invalid_format",
            RefreshStatus::UnsignedButPinned => "unsigned_but_pinned",
            RefreshStatus::BadSignature => "bad_signature",
            RefreshStatus::UntrustedSigner => "untrusted_signer",
            RefreshStatus::SignerExpired => "signer_expired",
            RefreshStatus::Empty => "empty",
            RefreshStatus::AllRejected => "all_rejected",
            RefreshStatus::Rollback => "rollback",
        }
    }

    /// Whether the attempt succeeded (the source is current).
    pub fn is_success(self) -> bool {
        matches!(self, RefreshStatus::Ok | RefreshStatus::NotModified)
    }

    /// Failures worth retrying within the same run: the network, not the content.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            RefreshStatus::DnsError | RefreshStatus::ConnectError | RefreshStatus::Timeout
        )
    }
}

impl std::fmt::Display for RefreshStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: the status it maps to, a sentence for operators, and the HTTP code for
/// `http_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: RefreshStatus,
    pub reason: String,
    pub http_code: Option<u16>,
}

impl Failure {
    pub fn new(status: RefreshStatus, reason: String) -> Failure {
        Failure {
            status,
            reason,
            http_code: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.http_code {
            Some(code) => write!(f, "{} {code}: {}", self.status, self.reason),
            None => write!(f, "{}: {}", self.status, self.reason),
        }
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        let status = match e {
            ReadError::Invalid(_) => RefreshStatus::InvalidFormat,
            ReadError::TooManyAnchors { .. } => RefreshStatus::TooLarge,
        };
        Failure::new(status, e.to_string())
    }
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Self {
        let status = match e.kind {
            VerifyFailure::BadSignature => RefreshStatus::BadSignature,
            VerifyFailure::SignerExpired => RefreshStatus::SignerExpired,
            VerifyFailure::UntrustedSigner => RefreshStatus::UntrustedSigner,
            VerifyFailure::Invalid => RefreshStatus::InvalidFormat,
            VerifyFailure::UnsignedButPinned => RefreshStatus::UnsignedButPinned,
        };
        Failure::new(status, e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_public_ones() {
        let names: Vec<String> = RefreshStatus::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "ok",
                "not_modified",
                "dns_error",
                "connect_error",
                "tls_error",
                "timeout",
                "http_status",
                "too_large",
                "invalid_format",
                "unsigned_but_pinned",
                "bad_signature",
                "untrusted_signer",
                "signer_expired",
                "empty",
                "all_rejected",
                "rollback"
            ]
        );
        for s in RefreshStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let success: Vec<RefreshStatus> = RefreshStatus::ALL
            .into_iter()
            .filter(|s| s.is_success())
            .collect();
        assert_eq!(success, [RefreshStatus::Ok, RefreshStatus::NotModified]);
    }
}
