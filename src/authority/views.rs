//! What the use cases answer with, as the API, the web pages and the CLI show it: views of
//! the stored records without secrets (no password hash, no token hash, no sample bodies).
//! Front ends render these; none of them reads a store record's fields itself.

use serde::Serialize;

use crate::accounts::{Role, Scope, UserRecord};
use crate::organisations::OrganisationRecord;
use crate::store::{AnchorRecord, AnchorState, BundleVersion, TokenRecord};

/// The public view of an anchor record (no sample bodies, no raw subject).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnchorJson {
    pub id: u64,
    pub bundle: String,
    #[schema(value_type = AnchorState)]
    pub state: &'static str,
    /// SHA-256 of the anchor certificate, hex.
    pub fingerprint: String,
    /// The subject as an RFC 4514 string (last RDN first, special characters escaped).
    pub subject: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub not_after: String,
    pub key: String,
    pub organization: String,
    pub contact: String,
    /// How many sample certificates came with the anchor.
    pub samples: usize,
    /// The anchor (in a test bundle) this one was promoted from.
    pub promoted_from: Option<u64>,
    /// A declared key rollover: the anchors of the same bundle, with the same subject and
    /// another key, that this one would replace. Empty for an ordinary anchor.
    pub rollover_of: Vec<u64>,
    /// What a reviewer must weigh before approving, such as a key rollover naming the anchors
    /// it would replace.
    pub warnings: Vec<String>,
    pub history: Vec<crate::authority::AnchorEvent>,
}

impl From<&AnchorRecord> for AnchorJson {
    fn from(a: &AnchorRecord) -> Self {
        AnchorJson {
            id: a.id,
            bundle: a.bundle.clone(),
            state: a.state.as_str(),
            fingerprint: a.fingerprint.0.clone(),
            subject: a.subject.clone(),
            not_after: a
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            key: a.key.clone(),
            organization: a.organization.clone(),
            contact: a.contact.clone(),
            samples: a.samples.len(),
            promoted_from: a.promoted_from,
            rollover_of: a.rollover_of.clone(),
            warnings: a.rollover_warning().into_iter().collect(),
            history: a.history.clone(),
        }
    }
}

/// A bundle version a change published.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub bundle: String,
    pub version: u64,
    /// SHA-256 of the published bundle file, hex.
    pub sha256: String,
    /// How many anchors the version holds.
    pub anchors: usize,
}

impl From<&BundleVersion> for Published {
    fn from(v: &BundleVersion) -> Self {
        Published {
            bundle: v.bundle.clone(),
            version: v.version,
            sha256: v.sha256.clone(),
            anchors: v.anchors.len(),
        }
    }
}

/// A user as the API shows it: never the password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserJson {
    pub username: String,
    /// Display name.
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    /// When the account was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub disabled: bool,
}

impl From<&UserRecord> for UserJson {
    fn from(u: &UserRecord) -> Self {
        UserJson {
            username: u.username.clone(),
            name: u.display_name.clone(),
            role: u.role,
            scope: u.scope.clone(),
            created_at: crate::model::rfc3339(u.created_at),
            disabled: u.disabled_at.is_some(),
        }
    }
}

/// A token as the API shows it: never the secret or its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenJson {
    pub id: String,
    #[schema(value_type = Role)]
    pub role: String,
    pub label: String,
    pub scope: Scope,
    /// The user who created the token, when created by a signed-in user.
    pub owner: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    /// `live`, `expired` or `revoked` when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
}

impl TokenJson {
    pub fn with_state(t: &TokenRecord, now: time::OffsetDateTime) -> TokenJson {
        let state = t.state(now);
        TokenJson {
            state: Some(state),
            ..TokenJson::from(t)
        }
    }
}

impl From<&TokenRecord> for TokenJson {
    fn from(t: &TokenRecord) -> Self {
        TokenJson {
            id: t.id.clone(),
            role: t.role.clone(),
            label: t.label.clone(),
            scope: t.scope.clone(),
            owner: t.owner.clone(),
            created_at: crate::model::rfc3339(t.created_at),
            expires_at: t.expires_at.map(crate::model::rfc3339),
            revoked_at: t.revoked_at.map(crate::model::rfc3339),
            state: None,
        }
    }
}

/// An organisation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganisationJson {
    pub id: String,
    pub name: String,
    pub contacts: Vec<String>,
    /// `domain` (the whole domain) or `*@domain`, `prefix*@domain`, `local@domain`.
    pub domains: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub disabled: bool,
}

impl From<&OrganisationRecord> for OrganisationJson {
    fn from(o: &OrganisationRecord) -> Self {
        OrganisationJson {
            id: o.id.clone(),
            name: o.name.clone(),
            contacts: o.contacts.clone(),
            domains: o.domains.clone(),
            created_at: crate::model::rfc3339(o.created_at),
            disabled: o.disabled_at.is_some(),
        }
    }
}
