//! External refreshes as stored: how an attempt ended and what the signature check
//! established. Plain values (fetching and verifying live in `external` and `bundle`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How a refresh attempt ended. The names are a public interface (CLI, API, metrics).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    Ok,
    NotModified,
    DnsError,
    ConnectError,
    TlsError,
    Timeout,
    HttpStatus,
    TooLarge,
    InvalidFormat,
    UnsignedButPinned,
    BadSignature,
    UntrustedSigner,
    SignerExpired,
    Empty,
    AllRejected,
    /// Verified, but signed earlier (CMS `signingTime`) than the copy accepted last, or
    /// without a signing time when that copy had one: a replayed old bundle. Refused unless
    /// the operator accepts it with `refresh run NAME --accept-older`.
    Rollback,
}

/// What verification established, recorded with the copy and shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verification {
    /// Signed by a pinned signer (or one chaining to a pinned CA).
    pub verified: bool,
    pub signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_fingerprint: Option<String>,
    /// The CMS `signingTime` signed attribute of the signature that verified, when present:
    /// a later copy signed earlier than this is refused as a `rollback`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub signing_time: Option<OffsetDateTime>,
    pub note: String,
}
