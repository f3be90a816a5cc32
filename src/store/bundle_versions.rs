//! Published bundle versions: each version's membership, changelog and files, and the
//! retention that prunes old versions' files.
//!
//! A version's files are stored framed, not copied: `bundle_certs` holds each anchor's DER
//! once (by SHA-256), and a version keeps only the bytes of its `.p7b` around the anchors'
//! concatenated DER and the bytes of its `.p7m` around the `.p7b`. Reading a version puts the
//! files back together byte for byte; a version whose files do not frame that way (the
//! external bundles, whose bytes come from their source) keeps them whole. Copies were the
//! cost: 10,000 anchors approved 1,000 at a time is 55,000 anchor copies in ten versions,
//! twice each (.p7b and .p7m) and base64 in JSON; framed, each anchor is stored once.
//!
//! Pruning (`prune_bundle_versions`) drops an old version's files and keeps its record: the
//! changelog and the Atom feed list it still, and its files answer 410 Gone.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::bundles::{AnchorEvent, AnchorRecord, AnchorState};
use super::{abort, append_audit, decode, encode, next_revision, tx_error, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::Fingerprint;

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
    /// When retention pruned this version's files (they answer 410 Gone; the record stays for
    /// the changelog).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pruned_at: Option<OffsetDateTime>,
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

/// How a version is stored: the version with its files emptied where `frame` rebuilds them.
#[derive(Serialize, Deserialize)]
struct StoredVersion {
    #[serde(flatten)]
    version: BundleVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame: Option<Frame>,
}

/// The bytes of a version's files around what is stored elsewhere.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Frame {
    /// The .p7b is `head + DER of every anchor, in the version's order + tail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p7b: Option<Around>,
    /// The .p7m is `head + .p7b + tail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p7m: Option<Around>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Around {
    #[serde(with = "crate::model::base64_bytes")]
    head: Vec<u8>,
    #[serde(with = "crate::model::base64_bytes")]
    tail: Vec<u8>,
}

/// What pruning reads of a version (the rest of the record is skipped, not decoded).
#[derive(Deserialize)]
struct VersionDates {
    #[serde(with = "time::serde::rfc3339")]
    published_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pruned_at: Option<OffsetDateTime>,
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len()).find(|&i| haystack.get(i..i + needle.len()) == Some(needle))
}

/// `whole` split around its first `middle`.
fn around(whole: &[u8], middle: &[u8]) -> Option<Around> {
    let at = find(whole, middle)?;
    Some(Around {
        head: whole.get(..at)?.to_vec(),
        tail: whole.get(at + middle.len()..)?.to_vec(),
    })
}

/// The stored form of `version` whose anchors' DER are `certs` (in the version's order).
fn framed(version: &BundleVersion, certs: &[Vec<u8>]) -> StoredVersion {
    let mut stored = version.clone();
    let listed = certs.len() == version.anchors.len()
        && certs
            .iter()
            .zip(&version.anchors)
            .all(|(der, a)| Fingerprint::of(der) == a.fingerprint);
    let p7b = if listed {
        around(&version.p7b, &certs.concat())
    } else {
        None
    };
    let p7m = version
        .p7m
        .as_ref()
        .and_then(|p7m| around(p7m, &version.p7b));
    if p7b.is_some() {
        stored.p7b = Vec::new();
    }
    if p7m.is_some() {
        stored.p7m = None;
    }
    let frame = (p7b.is_some() || p7m.is_some()).then_some(Frame { p7b, p7m });
    StoredVersion {
        version: stored,
        frame,
    }
}

fn cert_key(fingerprint: &Fingerprint) -> Vec<u8> {
    fingerprint.0.as_bytes().to_vec()
}

impl Store {
    /// A stored version with its files put back together.
    fn unframed(&self, bytes: &[u8]) -> Result<BundleVersion> {
        let stored: StoredVersion = decode(bytes, "bundle version")?;
        let mut version = stored.version;
        let Some(frame) = stored.frame else {
            return Ok(version);
        };
        if let Some(p7b) = frame.p7b {
            let mut out = p7b.head;
            for a in &version.anchors {
                let der = self
                    .bundle_certs
                    .get(cert_key(&a.fingerprint))?
                    .ok_or_else(|| {
                        Error::Store(format!(
                        "version {} of bundle '{}' lists anchor {} whose certificate is not stored",
                        version.version, version.bundle, a.fingerprint
                    ))
                    })?;
                out.extend_from_slice(&der);
            }
            out.extend_from_slice(&p7b.tail);
            version.p7b = out;
        }
        if let Some(p7m) = frame.p7m {
            let mut out = p7m.head;
            out.extend_from_slice(&version.p7b);
            out.extend_from_slice(&p7m.tail);
            version.p7m = Some(out);
        }
        Ok(version)
    }

    /// A stored version without its files (`p7b` empty, `p7m` none): what listings and the
    /// changelog need.
    fn changelog_entry(bytes: &[u8]) -> Result<BundleVersion> {
        let mut version = decode::<StoredVersion>(bytes, "bundle version")?.version;
        version.p7b = Vec::new();
        version.p7m = None;
        Ok(version)
    }

    /// Publishes a version: stores it (framed around `certs`, the DER of its anchors in the
    /// version's order; any other list stores the files whole) and marks the anchors it
    /// contains as published (and nothing else), with one audit entry, atomically.
    pub fn publish_bundle_version(
        &self,
        version: &BundleVersion,
        certs: &[Vec<u8>],
        draft: AuditDraft,
    ) -> Result<()> {
        let stored = framed(version, certs);
        let keep_certs = stored.frame.as_ref().is_some_and(|f| f.p7b.is_some());
        let bytes = encode(&stored)?;
        let key = version_key(&version.bundle, version.version);
        let ids: Vec<u64> = version.anchors.iter().map(|a| a.id).collect();
        (
            &self.bundle_versions,
            &self.bundle_certs,
            &self.anchors,
            &self.meta,
            &self.audit,
        )
            .transaction(|(versions, stored_certs, anchors, meta, audit)| {
                if versions.get(&key)?.is_some() {
                    return abort(Error::Conflict(format!(
                        "version {} of bundle '{}' exists already",
                        version.version, version.bundle
                    )));
                }
                versions.insert(key.clone(), bytes.clone())?;
                if keep_certs {
                    for (der, a) in certs.iter().zip(&version.anchors) {
                        let key = cert_key(&a.fingerprint);
                        if stored_certs.get(&key)?.is_none() {
                            stored_certs.insert(key, der.as_slice())?;
                        }
                    }
                }
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

    /// One version with its files (empty when it was pruned).
    pub fn bundle_version(&self, bundle: &str, version: u64) -> Result<Option<BundleVersion>> {
        self.bundle_versions
            .get(version_key(bundle, version))?
            .map(|b| self.unframed(&b))
            .transpose()
    }

    /// The current version with its files.
    pub fn latest_bundle_version(&self, bundle: &str) -> Result<Option<BundleVersion>> {
        match self
            .bundle_versions
            .scan_prefix(version_prefix(bundle))
            .next_back()
        {
            Some(item) => Ok(Some(self.unframed(&item?.1)?)),
            None => Ok(None),
        }
    }

    /// Every version of a bundle with its files, oldest first.
    pub fn bundle_versions(&self, bundle: &str) -> Result<Vec<BundleVersion>> {
        self.bundle_versions
            .scan_prefix(version_prefix(bundle))
            .values()
            .map(|v| self.unframed(&v?))
            .collect()
    }

    /// Every version of a bundle without its files, oldest first: the changelog.
    pub fn bundle_changelog(&self, bundle: &str) -> Result<Vec<BundleVersion>> {
        self.bundle_versions
            .scan_prefix(version_prefix(bundle))
            .values()
            .map(|v| Self::changelog_entry(&v?))
            .collect()
    }

    /// The bytes the versions of a bundle take in the store (records and the anchors' DER
    /// they frame, each once), for benchmarks and status.
    pub fn bundle_version_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for tree in [&self.bundle_versions, &self.bundle_certs] {
            for item in tree.iter() {
                let (k, v) = item?;
                total += (k.len() + v.len()) as u64;
            }
        }
        Ok(total)
    }

    /// Prunes the files of the versions of `bundle` that are outside the newest
    /// `keep_versions` AND published at or before `cutoff`, keeping their records (the changelog);
    /// never the current version. One audit entry names the versions pruned; returns them.
    pub fn prune_bundle_versions(
        &self,
        bundle: &str,
        keep_versions: u32,
        cutoff: OffsetDateTime,
        at: OffsetDateTime,
        actor: &str,
    ) -> Result<Vec<u64>> {
        let keys: Vec<sled::IVec> = self
            .bundle_versions
            .scan_prefix(version_prefix(bundle))
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        let keep = (keep_versions as usize).max(1);
        let Some(oldest_kept) = keys.len().checked_sub(keep) else {
            return Ok(Vec::new());
        };
        let mut pruned = Vec::new();
        for key in keys.iter().take(oldest_kept) {
            let Some(bytes) = self.bundle_versions.get(key)? else {
                continue;
            };
            let dates: VersionDates = decode(&bytes, "bundle version")?;
            if dates.pruned_at.is_some() || dates.published_at > cutoff {
                continue;
            }
            let mut version = Self::changelog_entry(&bytes)?;
            version.pruned_at = Some(at);
            let record = encode(&StoredVersion {
                version: version.clone(),
                frame: None,
            })?;
            pruned.push((key.clone(), record, version.version));
        }
        if pruned.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<u64> = pruned.iter().map(|p| p.2).collect();
        let draft = AuditDraft::new(
            actor,
            "bundle.prune",
            bundle,
            serde_json::json!({"versions": numbers, "keep_versions": keep_versions, "published_before": cutoff.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()}),
        );
        (&self.bundle_versions, &self.meta, &self.audit)
            .transaction(|(versions, meta, audit)| {
                for (key, record, _) in &pruned {
                    versions.insert(key, record.as_slice())?;
                }
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(numbers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(der: &[u8], id: u64) -> VersionAnchor {
        VersionAnchor {
            id,
            fingerprint: Fingerprint::of(der),
            subject: format!("CN=anchor {id}"),
            not_after: OffsetDateTime::UNIX_EPOCH,
            organization: "test".into(),
        }
    }

    fn version(number: u64, certs: &[Vec<u8>], at: OffsetDateTime) -> BundleVersion {
        let p7b = crate::bundle::build_p7b(certs);
        let mut p7m = b"signed-head".to_vec();
        p7m.extend_from_slice(&p7b);
        p7m.extend_from_slice(b"signature-tail");
        BundleVersion {
            record_version: 1,
            bundle: "b".into(),
            version: number,
            published_at: at,
            sha256: Fingerprint::of(&p7b).0,
            anchors: certs.iter().zip(1..).map(|(d, i)| anchor(d, i)).collect(),
            added: Vec::new(),
            removed: Vec::new(),
            p7b,
            p7m: Some(p7m),
            pruned_at: None,
        }
    }

    fn certs(n: u8) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = (1..=n).map(|i| vec![0x30, 0x03, i, i, i]).collect();
        out.sort();
        out
    }

    #[test]
    fn versions_are_stored_framed_and_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        let draft = || AuditDraft::new("test", "bundle.publish", "b", serde_json::json!({}));
        let (one, two) = (version(1, &certs(2), t), version(2, &certs(3), t));
        let stored = framed(&two, &certs(3));
        let frame = stored.frame.as_ref().unwrap();
        assert!(frame.p7b.is_some() && frame.p7m.is_some());
        assert!(stored.version.p7b.is_empty() && stored.version.p7m.is_none());
        // A list that is not the version's anchors stores the files whole.
        assert!(framed(&two, &certs(2)).frame.unwrap().p7b.is_none());

        store
            .publish_bundle_version(&one, &certs(2), draft())
            .unwrap();
        store
            .publish_bundle_version(&two, &certs(3), draft())
            .unwrap();
        for v in [&one, &two] {
            let back = store.bundle_version("b", v.version).unwrap().unwrap();
            assert_eq!(
                (back.p7b.clone(), back.p7m.clone()),
                (v.p7b.clone(), v.p7m.clone())
            );
        }
        // Each anchor's DER once, whatever the number of versions holding it.
        assert_eq!(store.bundle_certs.len(), 3);
        let changelog = store.bundle_changelog("b").unwrap();
        assert!(changelog
            .iter()
            .all(|v| v.p7b.is_empty() && v.p7m.is_none()));

        // Retention: keep 1, cutoff after both: version 1 pruned, the current never.
        let later = t + time::Duration::days(10);
        let pruned = store
            .prune_bundle_versions("b", 1, later, later, "test")
            .unwrap();
        assert_eq!(pruned, [1]);
        let gone = store.bundle_version("b", 1).unwrap().unwrap();
        assert_eq!(gone.pruned_at, Some(later));
        assert!(gone.p7b.is_empty() && gone.p7m.is_none());
        assert_eq!(gone.anchors, one.anchors);
        assert_eq!(store.bundle_version("b", 2).unwrap().unwrap().p7b, two.p7b);
        // Nothing more to prune; a cutoff before the publication keeps everything.
        assert!(store
            .prune_bundle_versions("b", 1, later, later, "test")
            .unwrap()
            .is_empty());
        let early = t - time::Duration::days(1);
        store
            .publish_bundle_version(&version(3, &certs(1), t), &certs(1), draft())
            .unwrap();
        assert!(store
            .prune_bundle_versions("b", 1, early, later, "test")
            .unwrap()
            .is_empty());
    }
}
