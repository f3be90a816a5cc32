//! The audit trail's format: append-only entries, each carrying the SHA-256 of the previous
//! one, so that any changed, removed or reordered entry breaks the chain. `store` persists
//! entries inside the same transaction as the change they describe.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// The hash the first entry points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a use case asks to record.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

impl AuditDraft {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details,
        }
    }
}

/// One stored entry. Field order is the hash input order: never reorder these fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The last entry's sequence number and hash, kept beside the log to detect truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

impl AuditEntry {
    /// Chains a draft after `head` (None for an empty log).
    pub fn chain(head: Option<&AuditHead>, at: OffsetDateTime, draft: AuditDraft) -> AuditEntry {
        let (seq, prev_hash) = match head {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let mut entry = AuditEntry {
            seq,
            at,
            actor: draft.actor,
            action: draft.action,
            target: draft.target,
            details: draft.details,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    fn compute_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.hash = String::new();
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref())
    }

    pub fn head(&self) -> AuditHead {
        AuditHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// Summary of a successful verification.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub head_hash: String,
}

/// Walks the log in order and checks every link, the sequence, and the recorded head.
pub fn verify(
    entries: impl Iterator<Item = Result<AuditEntry>>,
    head: Option<&AuditHead>,
) -> Result<AuditReport> {
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 1u64;
    for entry in entries {
        let entry = entry?;
        if entry.seq != expected_seq {
            return Err(Error::AuditIntegrity(format!(
                "entry {expected_seq} is missing (found entry {} in its place)",
                entry.seq
            )));
        }
        if entry.prev_hash != expected_prev {
            return Err(Error::AuditIntegrity(format!(
                "entry {} does not point to the hash of entry {} (an entry was changed or removed)",
                entry.seq,
                entry.seq - 1
            )));
        }
        if entry.compute_hash() != entry.hash {
            return Err(Error::AuditIntegrity(format!(
                "entry {} was changed after it was written (its hash does not match its content)",
                entry.seq
            )));
        }
        expected_prev = entry.hash;
        expected_seq += 1;
    }
    let count = expected_seq - 1;
    match head {
        Some(h) if h.seq != count || h.hash != expected_prev => Err(Error::AuditIntegrity(format!(
            "the log ends at entry {count} but the recorded head is entry {}: entries were removed from the end",
            h.seq
        ))),
        None if count > 0 => Err(Error::AuditIntegrity(
            "the log has entries but no recorded head".into(),
        )),
        _ => Ok(AuditReport {
            entries: count,
            head_hash: expected_prev,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let head = out.last().map(AuditEntry::head);
            out.push(AuditEntry::chain(
                head.as_ref(),
                OffsetDateTime::UNIX_EPOCH,
                AuditDraft::new("cli", "cert.issue", format!("s{i}"), json!({"i": i})),
            ));
        }
        out
    }

    #[test]
    fn detects_tampering() {
        let good = log(4);
        let head = good.last().map(AuditEntry::head);
        let ok = verify(good.clone().into_iter().map(Ok), head.as_ref()).unwrap();
        assert_eq!(ok.entries, 4);

        let mut changed = good.clone();
        changed[1].actor = "mallory".into();
        let mut removed = good.clone();
        removed.remove(2);
        let mut truncated = good.clone();
        truncated.pop();
        let mut rehashed = good.clone();
        rehashed[1].target = "other".into();
        rehashed[1].hash = rehashed[1].compute_hash();
        let cases = [
            ("fail/changed", changed),
            ("fail/removed", removed),
            ("fail/truncated", truncated),
            ("fail/rehashed-middle", rehashed),
        ];
        for (name, entries) in cases {
            let err = verify(entries.into_iter().map(Ok), head.as_ref()).unwrap_err();
            assert_eq!(err.code(), "audit_integrity", "{name}");
        }
    }
}
