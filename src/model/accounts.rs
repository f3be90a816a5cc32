//! Accounts as stored: roles, scopes, users and browser sessions. Plain values, so the store
//! can keep them without knowing how they are checked (`accounts` decides).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The four roles of the service.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Registrar,
    Member,
    DnsOperator,
}

/// What a registrar may issue for and which bundles a member may submit to, as stored on a
/// user or a token. `effective` turns it into the limits that decide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// Health domains (a certificate for `x@d` or for `d` needs `d` here); `*` = every managed
    /// domain. A registrar limited to organisations may leave it empty (= their domains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Organisation ids. A registrar: when not empty, only holders bound to these; a member:
    /// also sees its organisations' anchor submissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<String>,
    /// Bundles a member may submit to and see; `*` = every bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<String>,
}

/// A person who signs in to the web interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub record_version: u32,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Scope,
    /// argon2id PHC string; never leaves the store.
    pub password_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub disabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub password_changed_at: Option<OffsetDateTime>,
}

/// A signed-in browser. The cookie holds a random secret; only its SHA-256 is the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub record_version: u32,
    pub username: String,
    /// Echoed in every form and compared on every POST.
    pub csrf: String,
    pub client: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}
