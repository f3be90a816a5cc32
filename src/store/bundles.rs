//! Trust-bundle records: member anchors with their review state and history, and every
//! published version of every bundle (see `bundle_versions` for how versions are stored and
//! pruned).
//!
//! Admission compares a new anchor only with the anchors of its bundle that share its
//! fingerprint or its subject, so the `anchor_index` tree answers exactly that
//! (`f bundle NUL fingerprint NUL id` and `s bundle NUL SHA-256(subject) NUL id`, written in the
//! anchor's own transaction): a submission costs the same with 10 anchors as with 10,000
//! (before the index, each one decoded every stored anchor: 28.9 s per 750 at 6,000 pending).

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::{abort, append_audit, decode, encode, next_revision, tx_error, u64_of, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::Fingerprint;

const ANCHOR_ID: &[u8] = b"anchor_id";
/// Set in `meta` once `anchor_index` covers every anchor (built at open for older stores).
const ANCHOR_INDEX_BUILT: &[u8] = b"anchor_index_built";

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

/// `kind bundle NUL value NUL`: the index entries of one fingerprint or subject in a bundle.
fn index_prefix(kind: u8, bundle: &str, value: &[u8]) -> Vec<u8> {
    let mut key = vec![kind];
    key.extend_from_slice(bundle.as_bytes());
    key.push(0);
    key.extend_from_slice(value);
    key.push(0);
    key
}

fn index_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn id_of_index_key(key: &[u8]) -> Option<u64> {
    let tail = key
        .len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))?;
    <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
}

/// The subject as an index value: its SHA-256 (subjects are long and may hold NUL bytes).
fn subject_digest(subject_raw: &[u8]) -> String {
    Fingerprint::of(subject_raw).0
}

impl Store {
    /// Stores a new anchor (id assigned here), refusing a live duplicate in the same bundle.
    pub fn insert_anchor(
        &self,
        record: &AnchorRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<AnchorRecord> {
        let by_fingerprint = index_prefix(b'f', &record.bundle, record.fingerprint.0.as_bytes());
        let by_subject = index_prefix(
            b's',
            &record.bundle,
            subject_digest(&record.subject_raw).as_bytes(),
        );
        // Read before the transaction (a sled transaction cannot scan, and a plain read of a
        // tree it holds would wait for it); the candidates are re-read inside it.
        let candidates: Vec<u64> = self
            .anchor_index
            .scan_prefix(&by_fingerprint)
            .keys()
            .map(|k| k.map(|k| id_of_index_key(&k)))
            .collect::<std::result::Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let stored = (&self.anchors, &self.anchor_index, &self.meta, &self.audit)
            .transaction(|(anchors, index, meta, audit)| {
                for id in &candidates {
                    let Some(bytes) = anchors.get(id.to_be_bytes())? else {
                        continue;
                    };
                    let dup: AnchorRecord = match decode(&bytes, "anchor") {
                        Ok(r) => r,
                        Err(e) => return abort(e),
                    };
                    if dup.state.is_live() && dup.fingerprint == record.fingerprint {
                        return abort(Error::Conflict(format!(
                            "anchor {} is already in bundle '{}' as #{} ({})",
                            record.fingerprint,
                            record.bundle,
                            dup.id,
                            dup.state.as_str()
                        )));
                    }
                }
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
                index.insert(index_key(&by_fingerprint, id), &[])?;
                index.insert(index_key(&by_subject, id), &[])?;
                let mut draft = draft.clone();
                draft.target = format!("anchor {id}");
                append_audit(&self.keying, meta, audit, at, draft)?;
                Ok(stored)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(stored)
    }

    /// The anchors of `bundle` with this fingerprint or this subject (DER), in any state: all
    /// that admission needs to compare a new anchor with, read through `anchor_index`.
    pub fn anchors_like(
        &self,
        bundle: &str,
        fingerprint: &Fingerprint,
        subject_raw: &[u8],
    ) -> Result<Vec<AnchorRecord>> {
        let prefixes = [
            index_prefix(b'f', bundle, fingerprint.0.as_bytes()),
            index_prefix(b's', bundle, subject_digest(subject_raw).as_bytes()),
        ];
        let mut ids = std::collections::BTreeSet::new();
        for prefix in &prefixes {
            for key in self.anchor_index.scan_prefix(prefix).keys() {
                ids.extend(id_of_index_key(&key?));
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(record) = self.anchor(id)? {
                if record.bundle == bundle
                    && (record.fingerprint == *fingerprint || record.subject_raw == subject_raw)
                {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    /// Builds `anchor_index` for a store written before it existed (once, at open).
    pub(super) fn backfill_anchor_index(&self) -> Result<()> {
        if self.meta.get(ANCHOR_INDEX_BUILT)?.is_some() {
            return Ok(());
        }
        for record in self.anchors()? {
            let prefix = index_prefix(b'f', &record.bundle, record.fingerprint.0.as_bytes());
            self.anchor_index
                .insert(index_key(&prefix, record.id), &[])?;
            let digest = subject_digest(&record.subject_raw);
            let prefix = index_prefix(b's', &record.bundle, digest.as_bytes());
            self.anchor_index
                .insert(index_key(&prefix, record.id), &[])?;
        }
        self.meta.insert(ANCHOR_INDEX_BUILT, &[1])?;
        self.flush()
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

    /// Changes several anchors in one transaction, each with its own audit entry: all of them
    /// or none (the first refusal aborts the batch, naming its anchor).
    pub fn update_anchors(
        &self,
        batch: &[(u64, AuditDraft)],
        at: OffsetDateTime,
        change: impl Fn(&mut AnchorRecord) -> Result<()>,
    ) -> Result<Vec<AnchorRecord>> {
        let stored = (&self.anchors, &self.meta, &self.audit)
            .transaction(|(anchors, meta, audit)| {
                let mut out = Vec::with_capacity(batch.len());
                for (id, draft) in batch {
                    let key = id.to_be_bytes();
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
                    out.push(record);
                }
                Ok(out)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(stored)
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
