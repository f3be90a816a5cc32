//! Trust-bundle records: member anchors with their review state and history, and every
//! published version of every bundle (kept forever so older versions stay downloadable).

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::{abort, append_audit, decode, encode, next_revision, tx_error, u64_of, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::Fingerprint;

const ANCHOR_ID: &[u8] = b"anchor_id";

/// Review state of a submitted anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnchorState {
    Pending,
    Approved,
    Published,
    Rejected,
    Retired,
}

impl AnchorState {
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorState::Pending => "pending",
            AnchorState::Approved => "approved",
            AnchorState::Published => "published",
            AnchorState::Rejected => "rejected",
            AnchorState::Retired => "retired",
        }
    }

    /// States that hold a place in the bundle (for duplicate checks).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            AnchorState::Pending | AnchorState::Approved | AnchorState::Published
        )
    }
}

/// One step in an anchor's life.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnchorEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A member's anchor in one bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorRecord {
    pub record_version: u32,
    pub revision: u64,
    pub id: u64,
    pub bundle: String,
    pub state: AnchorState,
    pub fingerprint: Fingerprint,
    /// RFC 4514 text, as admission wrote it (records stored before names were RFC 4514 keep
    /// x509-parser's unescaped, first-RDN-first text).
    pub subject: String,
    #[serde(with = "crate::model::base64_bytes")]
    pub subject_raw: Vec<u8>,
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub key: String,
    pub organization: String,
    pub contact: String,
    #[serde(with = "crate::model::base64_bytes")]
    pub der: Vec<u8>,
    /// Sample end-entity certificates the member sent with the anchor (DER).
    #[serde(default)]
    pub samples: Vec<String>,
    #[serde(default)]
    pub promoted_from: Option<u64>,
    /// The anchors of the same bundle this one replaces: a key rollover the member declared,
    /// admitted although they have the same subject with another key.
    #[serde(default)]
    pub rollover_of: Vec<u64>,
    pub history: Vec<AnchorEvent>,
}

impl AnchorRecord {
    /// What a reviewer must see about a key rollover before approving it: which anchors it
    /// would replace. `None` for an ordinary anchor.
    pub fn rollover_warning(&self) -> Option<String> {
        if self.rollover_of.is_empty() {
            return None;
        }
        let ids: Vec<String> = self.rollover_of.iter().map(|id| format!("#{id}")).collect();
        let (anchors, them) = match ids.len() {
            1 => ("anchor", "it"),
            _ => ("anchors", "them"),
        };
        Some(format!(
            "Key rollover: replaces {anchors} {ids} of bundle '{bundle}' (the same subject with a different key). Check with the member that the CA really changed its key; retire {them} once the new key is in use.",
            ids = ids.join(", "),
            bundle = self.bundle,
        ))
    }
}

/// An anchor as listed in a published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionAnchor {
    pub id: u64,
    pub fingerprint: Fingerprint,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub organization: String,
}

/// One published version of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleVersion {
    pub record_version: u32,
    pub bundle: String,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// SHA-256 of the .p7b, hex.
    pub sha256: String,
    pub anchors: Vec<VersionAnchor>,
    pub added: Vec<VersionAnchor>,
    pub removed: Vec<VersionAnchor>,
    #[serde(with = "crate::model::base64_bytes")]
    pub p7b: Vec<u8>,
    #[serde(default, with = "optional_bytes")]
    pub p7m: Option<Vec<u8>>,
}

mod optional_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

pub(super) fn version_key(bundle: &str, version: u64) -> Vec<u8> {
    let mut key = bundle.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn version_prefix(bundle: &str) -> Vec<u8> {
    let mut key = bundle.as_bytes().to_vec();
    key.push(0);
    key
}

impl Store {
    /// Stores a new anchor (id assigned here), refusing a live duplicate in the same bundle.
    pub fn insert_anchor(
        &self,
        record: &AnchorRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<AnchorRecord> {
        let live_duplicate = self
            .anchors_of(&record.bundle)?
            .into_iter()
            .find(|a| a.state.is_live() && a.fingerprint == record.fingerprint);
        if let Some(dup) = live_duplicate {
            return Err(Error::Conflict(format!(
                "anchor {} is already in bundle '{}' as #{} ({})",
                record.fingerprint,
                record.bundle,
                dup.id,
                dup.state.as_str()
            )));
        }
        let stored = (&self.anchors, &self.meta, &self.audit)
            .transaction(|(anchors, meta, audit)| {
                let id = u64_of(meta.get(ANCHOR_ID)?) + 1;
                meta.insert(ANCHOR_ID, &id.to_be_bytes())?;
                let mut stored = record.clone();
                stored.id = id;
                stored.revision = next_revision(meta)?;
                let bytes = match encode(&stored) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                anchors.insert(&id.to_be_bytes(), bytes)?;
                let mut draft = draft.clone();
                draft.target = format!("anchor {id}");
                append_audit(&self.keying, meta, audit, at, draft)?;
                Ok(stored)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(stored)
    }

    pub fn anchor(&self, id: u64) -> Result<Option<AnchorRecord>> {
        self.anchors
            .get(id.to_be_bytes())?
            .map(|b| decode(&b, "anchor"))
            .transpose()
    }

    /// Every anchor, by id.
    pub fn anchors(&self) -> Result<Vec<AnchorRecord>> {
        self.anchors
            .iter()
            .values()
            .map(|v| decode(&v?, "anchor"))
            .collect()
    }

    pub fn anchors_of(&self, bundle: &str) -> Result<Vec<AnchorRecord>> {
        Ok(self
            .anchors()?
            .into_iter()
            .filter(|a| a.bundle == bundle)
            .collect())
    }

    /// Changes one anchor atomically with its audit entry; `change` may refuse.
    pub fn update_anchor(
        &self,
        id: u64,
        at: OffsetDateTime,
        draft: AuditDraft,
        change: impl Fn(&mut AnchorRecord) -> Result<()>,
    ) -> Result<AnchorRecord> {
        let key = id.to_be_bytes();
        let stored = (&self.anchors, &self.meta, &self.audit)
            .transaction(|(anchors, meta, audit)| {
                let Some(bytes) = anchors.get(key)? else {
                    return abort(Error::NotFound(format!("no anchor #{id}")));
                };
                let mut record: AnchorRecord = match decode(&bytes, "anchor") {
                    Ok(r) => r,
                    Err(e) => return abort(e),
                };
                if let Err(e) = change(&mut record) {
                    return abort(e);
                }
                record.revision = next_revision(meta)?;
                let bytes = match encode(&record) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                anchors.insert(&key, bytes)?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(record)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(stored)
    }

    /// Publishes a version: stores it and marks the anchors it contains as published (and
    /// nothing else), with one audit entry, atomically.
    pub fn publish_bundle_version(&self, version: &BundleVersion, draft: AuditDraft) -> Result<()> {
        let bytes = encode(version)?;
        let key = version_key(&version.bundle, version.version);
        let ids: Vec<u64> = version.anchors.iter().map(|a| a.id).collect();
        (
            &self.bundle_versions,
            &self.anchors,
            &self.meta,
            &self.audit,
        )
            .transaction(|(versions, anchors, meta, audit)| {
                if versions.get(&key)?.is_some() {
                    return abort(Error::Conflict(format!(
                        "version {} of bundle '{}' exists already",
                        version.version, version.bundle
                    )));
                }
                versions.insert(key.clone(), bytes.clone())?;
                let revision = next_revision(meta)?;
                for id in &ids {
                    let Some(b) = anchors.get(id.to_be_bytes())? else {
                        continue;
                    };
                    let mut record: AnchorRecord = match decode(&b, "anchor") {
                        Ok(r) => r,
                        Err(e) => return abort(e),
                    };
                    if record.state == AnchorState::Approved {
                        record.state = AnchorState::Published;
                        record.revision = revision;
                        record.history.push(AnchorEvent {
                            at: version.published_at,
                            actor: draft.actor.clone(),
                            action: "published".into(),
                            note: format!("in version {}", version.version),
                        });
                        match encode(&record) {
                            Ok(b) => anchors.insert(&id.to_be_bytes(), b)?,
                            Err(e) => return abort(e),
                        };
                    }
                }
                append_audit(
                    &self.keying,
                    meta,
                    audit,
                    version.published_at,
                    draft.clone(),
                )?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    pub fn bundle_version(&self, bundle: &str, version: u64) -> Result<Option<BundleVersion>> {
        self.bundle_versions
            .get(version_key(bundle, version))?
            .map(|b| decode(&b, "bundle version"))
            .transpose()
    }

    pub fn latest_bundle_version(&self, bundle: &str) -> Result<Option<BundleVersion>> {
        match self
            .bundle_versions
            .scan_prefix(version_prefix(bundle))
            .next_back()
        {
            Some(item) => Ok(Some(decode(&item?.1, "bundle version")?)),
            None => Ok(None),
        }
    }

    /// Every version of a bundle, oldest first.
    pub fn bundle_versions(&self, bundle: &str) -> Result<Vec<BundleVersion>> {
        self.bundle_versions
            .scan_prefix(version_prefix(bundle))
            .values()
            .map(|v| decode(&v?, "bundle version"))
            .collect()
    }
}

/// The bundle-signing certificate and its sealed key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignerRecord {
    pub record_version: u32,
    #[serde(with = "crate::model::base64_bytes")]
    pub cert_der: Vec<u8>,
    pub sealed_key: crate::model::ca::SealedKey,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

const SIGNER: &[u8] = b"bundle_signer";

impl Store {
    pub fn bundle_signer(&self) -> Result<Option<SignerRecord>> {
        self.meta
            .get(SIGNER)?
            .map(|b| decode(&b, "bundle signer"))
            .transpose()
    }

    /// Replaces the bundle signer (first creation or rotation), with its audit entry.
    pub fn put_bundle_signer(
        &self,
        signer: &SignerRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(signer)?;
        (&self.meta, &self.audit)
            .transaction(|(meta, audit)| {
                meta.insert(SIGNER, bytes.clone())?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }
}
