//! Trust-bundle use cases: submit, approve, reject, retire and promote member anchors, and
//! rebuild a bundle into a new published version when (and only when) its membership changed.

use serde_json::json;
use time::OffsetDateTime;

use super::Authority;
use crate::audit::AuditDraft;
use crate::bundle;
use crate::error::{Error, Result};
use crate::inventory::DeclaredBundle;
use crate::model::Fingerprint;
use crate::policy::admission::{self, ExistingAnchor};
use crate::policy::Denial;
use crate::store::{
    AnchorEvent, AnchorRecord, AnchorState, BundleVersion, VersionAnchor, RECORD_VERSION,
};

mod batch;
mod seeds;
mod signer;

pub use batch::{BatchDecision, MAX_BATCH};
pub use signer::BundleSigner;

/// What a member sends with an anchor.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub bundle: String,
    /// The uploaded file: PEM, DER, or a .p7b/.p7m (DER, BER or PEM) holding several anchors.
    pub file: Vec<u8>,
    /// Sample end-entity certificates (any of the same forms).
    pub samples: Vec<Vec<u8>>,
    pub organization: String,
    pub contact: String,
    /// The member declares a key rollover: an anchor with the subject of a live anchor of the
    /// bundle but another key is admitted (and marked as replacing it) instead of refused.
    pub rollover: bool,
}

/// One line of a bundle listing.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BundleSummary {
    pub name: String,
    pub title: String,
    pub test: bool,
    pub signed: bool,
    pub promote_to: Option<String>,
    pub version: Option<u64>,
    pub sha256: Option<String>,
    pub anchors: Option<usize>,
}

/// A review decision: the anchor as it is now, and the bundle version the decision
/// published (none when the bundle's content did not change, or for a rejection).
#[derive(Debug, Clone)]
pub struct Decision {
    pub anchor: AnchorRecord,
    pub published: Option<BundleVersion>,
}

/// A bundle build: the version it published, if any, and the current one.
#[derive(Debug, Clone)]
pub struct Built {
    pub published: Option<BundleVersion>,
    pub current: Option<BundleVersion>,
}

impl Authority {
    /// The live anchors of `bundle` (except `except`) that admission must compare `ders`
    /// with: those sharing a fingerprint or a subject with one of them, read through the
    /// store's index, so the cost does not grow with the bundle.
    fn existing_like(
        &self,
        bundle: &str,
        ders: &[&[u8]],
        except: Option<u64>,
    ) -> Result<Vec<ExistingAnchor>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for der in ders {
            let Some(probe) = ExistingAnchor::of_certificate(None, der) else {
                continue;
            };
            let like =
                self.store()?
                    .anchors_like(bundle, &probe.fingerprint, &probe.subject_raw)?;
            for a in like {
                if !a.state.is_live() || Some(a.id) == except || !seen.insert(a.id) {
                    continue;
                }
                out.push(
                    ExistingAnchor::of_certificate(Some(a.id), &a.der).unwrap_or_else(|| {
                        ExistingAnchor {
                            id: Some(a.id),
                            fingerprint: a.fingerprint,
                            subject_raw: a.subject_raw,
                            key_id: hex::decode(&a.key_id).ok(),
                            spki: None,
                        }
                    }),
                );
            }
        }
        Ok(out)
    }

    /// Classifies the upload, runs the admission policy on every anchor in it and stores them
    /// as pending. All or nothing: one refused anchor refuses the file. "Live" anchors of the
    /// bundle (pending, approved or published) count for the duplicate and same-subject rules.
    pub fn submit_anchor(&self, submission: &Submission, actor: &str) -> Result<Vec<AnchorRecord>> {
        let rules = self.rules();
        let declared = rules.declared(&submission.bundle)?;
        if declared.declaration.source.is_some() {
            return Err(Error::InvalidInput(format!(
                "'{}' is an external bundle: its anchors come from its source, not from submissions",
                submission.bundle
            )));
        }
        let policy = rules.admission_policy(&submission.bundle)?;
        let anchors = admission::read_anchor_upload(&submission.file, policy.max_upload_bytes)
            .map_err(Error::Denied)?;
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for file in &submission.samples {
            let certs: Vec<Vec<u8>> = admission::read_anchor_upload(file, policy.max_upload_bytes)
                .map_err(Error::Denied)?;
            samples.extend(certs);
        }
        if submission.organization.trim().is_empty() || submission.contact.trim().is_empty() {
            return Err(Error::InvalidInput(
                "an anchor submission needs the member organisation and a contact".into(),
            ));
        }
        let now = self.now();
        let uploaded: Vec<&[u8]> = anchors.iter().map(Vec::as_slice).collect();
        let mut existing = self.existing_like(&submission.bundle, &uploaded, None)?;
        let mut reasons = Vec::new();
        let mut admitted = Vec::new();
        for (i, der) in anchors.iter().enumerate() {
            match admission::admit(der, &samples, &existing, policy, now, submission.rollover) {
                Ok(facts) => {
                    existing.push(
                        ExistingAnchor::of_certificate(None, der)
                            .unwrap_or_else(|| ExistingAnchor::from(&facts)),
                    );
                    admitted.push((der, facts));
                }
                Err(denial) => reasons.extend(denial.reasons.into_iter().map(|mut r| {
                    if anchors.len() > 1 {
                        r.message = format!("anchor {} of {}: {}", i + 1, anchors.len(), r.message);
                    }
                    r
                })),
            }
        }
        if !reasons.is_empty() {
            return Err(Error::Denied(Denial { reasons }));
        }
        let sample_text: Vec<String> = samples
            .iter()
            .map(|s| crate::x509::to_pem("CERTIFICATE", s))
            .collect();
        let mut stored = Vec::new();
        for (der, facts) in admitted {
            let record = AnchorRecord {
                record_version: RECORD_VERSION,
                revision: 0,
                id: 0,
                bundle: submission.bundle.clone(),
                state: AnchorState::Pending,
                fingerprint: facts.fingerprint.clone(),
                subject: facts.subject.clone(),
                subject_raw: facts.subject_raw.clone(),
                key_id: hex::encode(&facts.key_id),
                not_after: facts.not_after,
                key: facts.key.clone(),
                organization: submission.organization.trim().to_string(),
                contact: submission.contact.trim().to_string(),
                der: der.clone(),
                samples: sample_text.clone(),
                promoted_from: None,
                rollover_of: facts.rollover_of.clone(),
                history: vec![event(now, actor, "submitted", "")],
            };
            stored.push(self.store()?.insert_anchor(
                &record,
                now,
                AuditDraft::new(
                    actor,
                    "anchor.submit",
                    "",
                    json!({"bundle": record.bundle, "fingerprint": record.fingerprint, "subject": record.subject, "organization": record.organization, "rollover": submission.rollover, "rollover_of": record.rollover_of}),
                ),
            )?);
        }
        Ok(stored)
    }

    /// Approves a pending anchor after re-running admission against the bundle as it is now,
    /// and publishes the bundle with it. A declared rollover and the anchors it replaces may
    /// both be approved (either first); any other anchor with their subject and another key
    /// still refuses the approval.
    pub fn approve_anchor(&self, id: u64, actor: &str, note: &str) -> Result<Decision> {
        self.ensure_unlocked()?;
        let record = self.approve_pending(id, actor, note)?;
        self.publish_decision(&record.bundle, id, actor)
    }

    /// Rejects a pending or approved (not yet published) anchor with the reviewer's reason;
    /// nothing is published.
    pub fn reject_anchor(&self, id: u64, reason: &str, actor: &str) -> Result<Decision> {
        if reason.trim().is_empty() {
            return Err(Error::InvalidInput("a rejection needs a reason".into()));
        }
        let anchor = self.transition(id, actor, "anchor.reject", "rejected", reason, |r| {
            expect_state(r, &[AnchorState::Pending, AnchorState::Approved])?;
            r.state = AnchorState::Rejected;
            Ok(())
        })?;
        Ok(Decision {
            anchor,
            published: None,
        })
    }

    /// Removes an anchor from its bundle (published or approved) and publishes the bundle
    /// without it.
    pub fn retire_anchor(&self, id: u64, actor: &str, note: &str) -> Result<Decision> {
        self.ensure_unlocked()?;
        let record = self.transition(id, actor, "anchor.retire", "retired", note, |r| {
            expect_state(r, &[AnchorState::Published, AnchorState::Approved])?;
            r.state = AnchorState::Retired;
            Ok(())
        })?;
        self.publish_decision(&record.bundle, id, actor)
    }

    /// Copies an approved or published anchor of a test bundle into the production bundle
    /// it promotes to, as approved there (promotion is the production review), and publishes
    /// the production bundle. The decision holds the new anchor.
    pub fn promote_anchor(&self, id: u64, to: &str, actor: &str) -> Result<Decision> {
        self.ensure_unlocked()?;
        let record = self.promote_copy(id, to, actor)?;
        self.publish_decision(&record.bundle, record.id, actor)
    }

    /// Rebuilds a bundle now (publishing a version only when its content changed) and
    /// returns what is current.
    pub fn build_bundle(&self, name: &str, actor: &str) -> Result<Built> {
        self.rules().declared(name)?;
        self.ensure_unlocked()?;
        let published = self.rebuild_bundle(name, actor)?;
        let current = self.store()?.latest_bundle_version(name)?;
        Ok(Built { published, current })
    }

    /// After a decision: the bundle rebuilt, and the anchor as it is now.
    fn publish_decision(&self, bundle: &str, id: u64, actor: &str) -> Result<Decision> {
        let published = self.rebuild_bundle(bundle, actor)?;
        Ok(Decision {
            anchor: self.anchor(id)?,
            published,
        })
    }

    fn approve_pending(&self, id: u64, actor: &str, note: &str) -> Result<AnchorRecord> {
        let record = self.anchor(id)?;
        self.check_approvable(&record)?;
        self.transition(id, actor, "anchor.approve", "approved", note, |r| {
            expect_state(r, &[AnchorState::Pending])?;
            r.state = AnchorState::Approved;
            Ok(())
        })
    }

    /// Whether a pending anchor may be approved now: admission re-run against the bundle as
    /// it is.
    fn check_approvable(&self, record: &AnchorRecord) -> Result<()> {
        let id = record.id;
        if record.state != AnchorState::Pending {
            return Err(Error::Conflict(format!(
                "anchor #{id} is {}, only pending anchors can be approved",
                record.state.as_str()
            )));
        }
        let rules = self.rules();
        let policy = rules.admission_policy(&record.bundle)?;
        let samples = samples_of(record);
        // A declared rollover and the anchors it replaces do not refuse each other (they share
        // the subject, so the index finds them).
        let paired: Vec<u64> = self
            .store()?
            .anchors_like(&record.bundle, &record.fingerprint, &record.subject_raw)?
            .iter()
            .filter(|a| a.rollover_of.contains(&id))
            .map(|a| a.id)
            .chain(record.rollover_of.iter().copied())
            .collect();
        let existing: Vec<ExistingAnchor> = self
            .existing_like(&record.bundle, &[record.der.as_slice()], Some(id))?
            .into_iter()
            .filter(|e| e.id.is_none_or(|i| !paired.contains(&i)))
            .collect();
        admission::admit(&record.der, &samples, &existing, policy, self.now(), false)
            .map_err(Error::Denied)?;
        Ok(())
    }

    fn promote_copy(&self, id: u64, to: &str, actor: &str) -> Result<AnchorRecord> {
        let source = self.anchor(id)?;
        let rules = self.rules();
        let from = rules.declared(&source.bundle)?;
        if from.declaration.promote_to.as_deref() != Some(to) {
            return Err(Error::InvalidInput(format!(
                "bundle '{}' does not promote to '{to}'{}",
                source.bundle,
                from.declaration
                    .promote_to
                    .as_ref()
                    .map(|t| format!(" (it promotes to '{t}')"))
                    .unwrap_or_default()
            )));
        }
        if !matches!(source.state, AnchorState::Approved | AnchorState::Published) {
            return Err(Error::Conflict(format!(
                "anchor #{id} is {}; only approved or published anchors can be promoted",
                source.state.as_str()
            )));
        }
        let policy = rules.admission_policy(to)?;
        let existing = self.existing_like(to, &[source.der.as_slice()], None)?;
        // A rollover in the test bundle is one in the target too, of the target's anchors.
        let facts = admission::admit(
            &source.der,
            &samples_of(&source),
            &existing,
            policy,
            self.now(),
            !source.rollover_of.is_empty(),
        )
        .map_err(Error::Denied)?;
        let now = self.now();
        let record = AnchorRecord {
            id: 0,
            revision: 0,
            bundle: to.to_string(),
            state: AnchorState::Approved,
            promoted_from: Some(id),
            rollover_of: facts.rollover_of,
            history: vec![event(
                now,
                actor,
                "promoted",
                &format!("from #{id} in {}", source.bundle),
            )],
            ..source.clone()
        };
        self.store()?.insert_anchor(
            &record,
            now,
            AuditDraft::new(actor, "anchor.promote", "", json!({"from": id, "from_bundle": source.bundle, "to_bundle": to, "fingerprint": source.fingerprint, "rollover_of": record.rollover_of})),
        )
    }

    /// Every anchor of every bundle, in id order.
    pub fn anchors(&self) -> Result<Vec<AnchorRecord>> {
        self.store()?.anchors()
    }

    /// Every published version of a bundle, oldest first.
    pub fn bundle_versions(&self, name: &str) -> Result<Vec<BundleVersion>> {
        self.store()?.bundle_versions(name)
    }

    /// Every version of a bundle without its files, oldest first (the changelog).
    pub fn bundle_changelog(&self, name: &str) -> Result<Vec<BundleVersion>> {
        self.store()?.bundle_changelog(name)
    }

    /// Applies `[bundles]` retention to a bundle after a publish: the files of versions
    /// outside the newest `keep_versions` and older than `keep_days` are pruned (audited as
    /// `bundle.prune`); their changelog entries stay.
    pub(in crate::authority) fn prune_versions(&self, name: &str, actor: &str) -> Result<Vec<u64>> {
        let retention = &self.config.bundles;
        let now = self.now();
        let cutoff = now - time::Duration::days(i64::from(retention.keep_days));
        self.store()?
            .prune_bundle_versions(name, retention.keep_versions, cutoff, now, actor)
    }

    /// One published version of a bundle.
    pub fn bundle_version(&self, name: &str, version: u64) -> Result<Option<BundleVersion>> {
        self.store()?.bundle_version(name, version)
    }

    pub fn anchor(&self, id: u64) -> Result<AnchorRecord> {
        self.store()?
            .anchor(id)?
            .ok_or_else(|| Error::NotFound(format!("no anchor #{id}")))
    }

    fn transition(
        &self,
        id: u64,
        actor: &str,
        action: &str,
        event_name: &str,
        note: &str,
        change: impl Fn(&mut AnchorRecord) -> Result<()>,
    ) -> Result<AnchorRecord> {
        let now = self.now();
        let before = self.anchor(id)?;
        let mut details =
            json!({"bundle": before.bundle, "fingerprint": before.fingerprint, "note": note});
        if !before.rollover_of.is_empty() {
            if let Some(map) = details.as_object_mut() {
                map.insert("rollover_of".into(), json!(before.rollover_of));
            }
        }
        self.store()?.update_anchor(
            id,
            now,
            AuditDraft::new(actor, action, format!("anchor {id}"), details),
            |r| {
                change(r)?;
                r.history.push(event(now, actor, event_name, note));
                Ok(())
            },
        )
    }

    /// Builds the bundle from its approved and published anchors. Publishes a new version only
    /// when the .p7b differs from the latest one; returns it, or `None` when unchanged.
    pub fn rebuild_bundle(&self, name: &str, actor: &str) -> Result<Option<BundleVersion>> {
        let rules = self.rules();
        let declared = rules.declared(name)?;
        if declared.declaration.source.is_some() {
            // An external bundle's versions are made by its refresh, from its source.
            return Ok(None);
        }
        let mut members: Vec<AnchorRecord> = self
            .store()?
            .anchors_of(name)?
            .into_iter()
            .filter(|a| matches!(a.state, AnchorState::Approved | AnchorState::Published))
            .collect();
        members.sort_by(|a, b| a.der.cmp(&b.der));
        members.dedup_by(|a, b| a.fingerprint == b.fingerprint);
        let mut combined: Vec<(Vec<u8>, VersionAnchor)> = members
            .iter()
            .map(|a| (a.der.clone(), version_anchor(a)))
            .collect();
        for (der, anchor) in self.included_anchors(&declared.declaration.include)? {
            if !combined
                .iter()
                .any(|(_, a)| a.fingerprint == anchor.fingerprint)
            {
                combined.push((der, anchor));
            }
        }
        combined.sort_by(|a, b| a.0.cmp(&b.0));
        let ders: Vec<Vec<u8>> = combined.iter().map(|(d, _)| d.clone()).collect();
        let now = self.now();
        let p7b = if declared.declaration.metadata.embed_in_p7b {
            let listed: Vec<(&[u8], OffsetDateTime)> = combined
                .iter()
                .map(|(d, a)| (d.as_slice(), a.not_after))
                .collect();
            let xml = self.metadata_xml(declared, &listed, now)?;
            bundle::build_p7b_with_metadata(&ders, xml.as_bytes())
        } else {
            bundle::build_p7b(&ders)
        };
        let sha256 = Fingerprint::of(&p7b).0;
        let latest = self.store()?.latest_bundle_version(name)?;
        if latest.as_ref().is_some_and(|l| l.sha256 == sha256) {
            return Ok(None);
        }
        let anchors: Vec<VersionAnchor> = combined.into_iter().map(|(_, a)| a).collect();
        let previous = latest
            .as_ref()
            .map(|l| l.anchors.clone())
            .unwrap_or_default();
        let (added, removed) = membership_changes(&previous, &anchors);
        let p7m = if declared.declaration.signed {
            Some(self.sign_bundle(&p7b, now)?)
        } else {
            None
        };
        let version = BundleVersion {
            record_version: RECORD_VERSION,
            bundle: name.to_string(),
            version: latest.map_or(1, |l| l.version + 1),
            published_at: now,
            sha256,
            anchors,
            added,
            removed,
            p7b,
            p7m,
            pruned_at: None,
        };
        self.store()?.publish_bundle_version(
            &version,
            &ders,
            AuditDraft::new(
                actor,
                "bundle.publish",
                name,
                json!({"version": version.version, "sha256": version.sha256, "anchors": version.anchors.len(), "added": version.added.len(), "removed": version.removed.len()}),
            ),
        )?;
        self.prune_versions(name, actor)?;
        self.published();
        Ok(Some(version))
    }

    fn metadata_xml(
        &self,
        declared: &DeclaredBundle,
        members: &[(&[u8], OffsetDateTime)],
        now: OffsetDateTime,
    ) -> Result<String> {
        let meta = &declared.declaration.metadata;
        let point = if meta.distribution_point.is_empty() {
            format!(
                "{}/bundles/{}.p7b",
                self.config.bundle_base_url(),
                declared.declaration.name
            )
        } else {
            meta.distribution_point.clone()
        };
        let valid_to = members.iter().map(|m| m.1).min().unwrap_or(now).max(now);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = members
            .iter()
            .filter_map(|m| bundle::issuer_and_serial(m.0).ok())
            .collect();
        let anchors: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(i, s)| (i.as_slice(), s.as_slice()))
            .collect();
        bundle::metadata_xml(&meta.profile, &point, now, valid_to, &anchors).map_err(|e| {
            Error::Config(format!(
                "bundle '{}' metadata: {e}",
                declared.declaration.name
            ))
        })
    }

    /// Every declared bundle with its current version, for listings (CLI and API).
    pub fn bundle_summaries(&self) -> Result<Vec<BundleSummary>> {
        let published = self.published_bundles()?;
        Ok(self
            .inventory()
            .bundles
            .values()
            .map(|b| {
                let d = &b.declaration;
                let v = published.iter().find(|v| v.bundle == d.name);
                BundleSummary {
                    name: d.name.clone(),
                    title: d.title.clone(),
                    test: d.test,
                    signed: d.signed,
                    promote_to: d.promote_to.clone(),
                    version: v.map(|v| v.version),
                    sha256: v.map(|v| v.sha256.clone()),
                    anchors: v.map(|v| v.anchors.len()),
                }
            })
            .collect())
    }

    /// Every bundle's latest version (for serving and listings).
    pub fn published_bundles(&self) -> Result<Vec<BundleVersion>> {
        let mut out = Vec::new();
        for name in self.inventory().bundles.keys() {
            if let Some(v) = self.store()?.latest_bundle_version(name)? {
                out.push(v);
            }
        }
        Ok(out)
    }
}

fn event(at: OffsetDateTime, actor: &str, action: &str, note: &str) -> AnchorEvent {
    AnchorEvent {
        at,
        actor: actor.to_string(),
        action: action.to_string(),
        note: note.to_string(),
    }
}

fn expect_state(r: &AnchorRecord, allowed: &[AnchorState]) -> Result<()> {
    if allowed.contains(&r.state) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        Err(Error::Conflict(format!(
            "anchor #{} is {}; this needs it to be {}",
            r.id,
            r.state.as_str(),
            names.join(" or ")
        )))
    }
}

fn samples_of(record: &AnchorRecord) -> Vec<Vec<u8>> {
    record
        .samples
        .iter()
        .filter_map(|pem_text| ::pem::parse(pem_text).ok().map(|p| p.into_contents()))
        .collect()
}

pub(super) fn version_anchor(a: &AnchorRecord) -> VersionAnchor {
    VersionAnchor {
        id: a.id,
        fingerprint: a.fingerprint.clone(),
        subject: a.subject.clone(),
        not_after: a.not_after,
        organization: a.organization.clone(),
    }
}

/// The anchors a new version adds to and removes from the previous one (by fingerprint).
pub(super) fn membership_changes(
    previous: &[VersionAnchor],
    current: &[VersionAnchor],
) -> (Vec<VersionAnchor>, Vec<VersionAnchor>) {
    let missing_from = |list: &[VersionAnchor], a: &VersionAnchor| {
        !list.iter().any(|p| p.fingerprint == a.fingerprint)
    };
    let added = current
        .iter()
        .filter(|a| missing_from(previous, a))
        .cloned()
        .collect();
    let removed = previous
        .iter()
        .filter(|p| missing_from(current, p))
        .cloned()
        .collect();
    (added, removed)
}
