//! CAs as stored: the role, the certificate and the sealed key (sealing and signing live in
//! `keyseal` and `ca`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The two CAs anchorage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaRole {
    Root,
    Issuing,
}

impl CaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CaRole::Root => "root",
            CaRole::Issuing => "issuing",
        }
    }

    pub fn parse(s: &str) -> Option<CaRole> {
        match s {
            "root" => Some(CaRole::Root),
            "issuing" => Some(CaRole::Issuing),
            _ => None,
        }
    }
}

/// A CA as stored: its certificate and its sealed key (absent for an offline root).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaRecord {
    pub record_version: u32,
    pub role: CaRole,
    #[serde(with = "crate::model::base64_bytes")]
    pub cert_der: Vec<u8>,
    pub sealed_key: Option<SealedKey>,
    pub created_at: OffsetDateTime,
    /// `generated` or `imported`.
    pub origin: String,
}

/// An encrypted private key as stored.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    pub format: String,
    pub m_kib: u32,
    pub t: u32,
    pub salt: String,
    pub nonce: String,
    pub ciphertext: String,
}
