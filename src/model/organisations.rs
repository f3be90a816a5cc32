//! Organisations and holder bindings as stored: plain values (the rules about them live in
//! `organisations`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An organisation served by this CA (a practice, a hospital, a vendor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationRecord {
    pub record_version: u32,
    /// Stable identifier: 2-64 lower-case letters, digits and '-'.
    pub id: String,
    /// Display name, written into the O attribute of its certificates.
    pub name: String,
    /// How to reach the organisation's PKI contact (e-mail addresses, phone numbers, names).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// Where it may hold identifiers: `domain` (the whole domain: the domain itself and every
    /// address in it, exclusively) or `local@domain` / `prefix*@domain` / `*@domain` (addresses
    /// in a domain it shares with others).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub disabled_at: Option<OffsetDateTime>,
}

/// The organisation a holder (an address or a domain) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HolderBinding {
    pub record_version: u32,
    /// The Direct address or health domain.
    pub holder: String,
    /// The owning organisation's id.
    pub organisation: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub bound_at: OffsetDateTime,
    /// Who bound it: the first issuer, a transfer, or the migration.
    pub bound_by: String,
    /// Set by the migration when the holder's certificates named different organisations: the
    /// names found. Until an admin resolves it (`holder transfer`), only admins may use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting_names: Vec<String>,
}

/// An id made from a display name (for the migration of stores that only had names).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(56).collect();
    out = out.trim_end_matches('-').to_string();
    if out.len() < 2 {
        out = format!("org-{out}");
    }
    out
}
