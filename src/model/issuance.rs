//! What a registrar records about a subscriber and its identity proofing: plain values the
//! store keeps with each certificate (the rules are `policy::issuance`).

use serde::{Deserialize, Serialize};

/// Who the certificate is for, as the registrar recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscriber {
    /// Organisation or person name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

/// The identity-proofing record. Never health data: a method, a level and a reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Proofing {
    pub method: String,
    /// Profile key such as `loa3`; the profile default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_of_assurance: Option<String>,
    pub evidence_reference: String,
}
