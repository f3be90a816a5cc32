//! Batch review: approving or rejecting many anchors in one action. Every anchor of the batch
//! is checked first (it exists, it is in a state the decision allows, an approval passes
//! admission again) and the batch is applied in one store transaction with one audit entry per
//! anchor, so a batch with one bad id changes nothing and the error names that id. An approval
//! batch then publishes ONE new version per affected bundle: approving 10,000 anchors one by
//! one published 10,000 versions (402 versions held 399 MB), in batches of 1,000 it publishes
//! ten.

use std::collections::BTreeSet;

use serde_json::json;

use super::{event, expect_state, Authority};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::store::{AnchorRecord, AnchorState, BundleVersion};

/// The most anchors one batch may decide (one store transaction holds them all).
pub const MAX_BATCH: usize = 10_000;

/// The outcome of a batch: every anchor as it is now (in the order asked), and the versions
/// the batch published (none for a rejection).
#[derive(Debug, Clone)]
pub struct BatchDecision {
    pub anchors: Vec<AnchorRecord>,
    pub published: Vec<BundleVersion>,
}

impl Authority {
    /// Approves pending anchors and publishes each affected bundle once. All or nothing.
    pub fn approve_anchors(&self, ids: &[u64], actor: &str, note: &str) -> Result<BatchDecision> {
        self.ensure_unlocked()?;
        let records = self.batch_records(ids)?;
        let failures = records
            .iter()
            .filter_map(|r| self.check_approvable(r).err().map(|e| (r.id, e)))
            .collect();
        refuse_batch(failures, "approved")?;
        self.apply_batch(&records, actor, "anchor.approve", "approved", note, |r| {
            expect_state(r, &[AnchorState::Pending])?;
            r.state = AnchorState::Approved;
            Ok(())
        })?;
        let bundles: BTreeSet<&str> = records.iter().map(|r| r.bundle.as_str()).collect();
        let mut published = Vec::new();
        for bundle in bundles {
            published.extend(self.rebuild_bundle(bundle, actor)?);
        }
        let anchors = ids
            .iter()
            .map(|id| self.anchor(*id))
            .collect::<Result<_>>()?;
        Ok(BatchDecision { anchors, published })
    }

    /// Rejects pending or approved (not yet published) anchors with one reason; nothing is
    /// published. All or nothing.
    pub fn reject_anchors(&self, ids: &[u64], reason: &str, actor: &str) -> Result<BatchDecision> {
        if reason.trim().is_empty() {
            return Err(Error::InvalidInput("a rejection needs a reason".into()));
        }
        let records = self.batch_records(ids)?;
        let allowed = [AnchorState::Pending, AnchorState::Approved];
        let failures = records
            .iter()
            .filter_map(|r| expect_state(r, &allowed).err().map(|e| (r.id, e)))
            .collect();
        refuse_batch(failures, "rejected")?;
        let anchors =
            self.apply_batch(&records, actor, "anchor.reject", "rejected", reason, |r| {
                expect_state(r, &allowed)?;
                r.state = AnchorState::Rejected;
                Ok(())
            })?;
        Ok(BatchDecision {
            anchors,
            published: Vec::new(),
        })
    }

    /// The anchors of a batch, in the order given: at least one, at most [`MAX_BATCH`], each
    /// listed once and stored.
    fn batch_records(&self, ids: &[u64]) -> Result<Vec<AnchorRecord>> {
        if ids.is_empty() {
            return Err(Error::InvalidInput("the batch lists no anchor ids".into()));
        }
        if ids.len() > MAX_BATCH {
            return Err(Error::InvalidInput(format!(
                "the batch lists {} anchors; at most {MAX_BATCH} are decided at once",
                ids.len()
            )));
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(Error::InvalidInput(format!(
                "anchor #{twice} is listed twice in the batch"
            )));
        }
        let mut records = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.store()?.anchor(*id)? {
                Some(r) => records.push(r),
                None => missing.push((*id, Error::NotFound(format!("no anchor #{id}")))),
            }
        }
        refuse_batch(missing, "decided")?;
        Ok(records)
    }

    /// One transaction for the whole batch, one audit entry (and history event) per anchor.
    fn apply_batch(
        &self,
        records: &[AnchorRecord],
        actor: &str,
        action: &str,
        event_name: &str,
        note: &str,
        change: impl Fn(&mut AnchorRecord) -> Result<()>,
    ) -> Result<Vec<AnchorRecord>> {
        let now = self.now();
        let size = records.len();
        let drafts: Vec<(u64, AuditDraft)> = records
            .iter()
            .map(|r| {
                let mut details = json!({"bundle": r.bundle, "fingerprint": r.fingerprint, "note": note, "batch": size});
                if !r.rollover_of.is_empty() {
                    if let Some(map) = details.as_object_mut() {
                        map.insert("rollover_of".into(), json!(r.rollover_of));
                    }
                }
                let draft = AuditDraft::new(actor, action, format!("anchor {}", r.id), details);
                (r.id, draft)
            })
            .collect();
        self.store()?.update_anchors(&drafts, now, |r| {
            change(r)?;
            r.history.push(event(now, actor, event_name, note));
            Ok(())
        })
    }
}

/// The error of a refused batch: the first refused anchor's error (its kind kept), its
/// message naming the anchor, and the ids of any other refused anchors.
fn refuse_batch(failures: Vec<(u64, Error)>, verb: &str) -> Result<()> {
    let mut failures = failures.into_iter();
    let Some((id, first)) = failures.next() else {
        return Ok(());
    };
    let others: Vec<String> = failures.map(|(id, _)| format!("#{id}")).collect();
    let tail = match others.len() {
        0 => format!(" (nothing in the batch was {verb})"),
        n if n > 20 => format!(
            " (nothing in the batch was {verb}; {n} more refused: {}, ...)",
            others
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!(
            " (nothing in the batch was {verb}; also refused: {})",
            others.join(", ")
        ),
    };
    let tag = format!("#{id}");
    let name = |m: String| {
        if m.contains(&tag) {
            format!("{m}{tail}")
        } else {
            format!("anchor {tag}: {m}{tail}")
        }
    };
    Err(match first {
        Error::Denied(mut denial) => {
            for r in &mut denial.reasons {
                r.message = name(std::mem::take(&mut r.message));
            }
            Error::Denied(denial)
        }
        Error::NotFound(m) => Error::NotFound(name(m)),
        Error::Conflict(m) => Error::Conflict(name(m)),
        Error::InvalidInput(m) => Error::InvalidInput(name(m)),
        other => other,
    })
}
