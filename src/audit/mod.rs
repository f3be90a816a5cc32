//! The audit trail's format: append-only entries, each chained to the previous one, so that
//! any changed, removed or reordered entry breaks the chain. `store` persists entries inside
//! the same transaction as the change they describe.
//!
//! An unkeyed SHA-256 chain whose head lives in the same store can be rewritten and recomputed
//! by anyone who can write the store file. So entries are keyed: from the audit key's
//! `keyed_from` on, each entry's hash is an HMAC-SHA-256 under a key kept outside the store
//! (`key`, sealed with the CA passphrase), and rewriting one needs the passphrase. Entries
//! written before a store was upgraded stay verifiable as legacy SHA-256 entries; the boundary
//! is inside the sealed key, so it cannot be moved. A keyed chain still ends at a head kept in
//! the store, so cutting entries off its end is only visible against a `checkpoint` kept
//! outside.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

pub mod checkpoint;
pub mod key;

pub use checkpoint::Checkpoint;
pub use key::AuditKey;

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
    /// `hmac-sha256:<key id>` on keyed entries; absent on legacy SHA-256 entries (so their
    /// bytes, and hashes, are what older releases wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    pub prev_hash: String,
    /// SHA-256 (legacy) or HMAC-SHA-256 (keyed) of the entry with this field empty.
    pub hash: String,
}

/// The last entry's sequence number and hash, kept beside the log to detect truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

impl AuditEntry {
    /// Chains a draft after `head` (None for an empty log): keyed with `key`, legacy SHA-256
    /// without one. Refuses to key an entry before the key's boundary.
    pub fn chain(
        head: Option<&AuditHead>,
        at: OffsetDateTime,
        draft: AuditDraft,
        key: Option<&AuditKey>,
    ) -> Result<AuditEntry> {
        let (seq, prev_hash) = match head {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        if let Some(k) = key.filter(|k| seq < k.keyed_from()) {
            return Err(Error::AuditIntegrity(format!(
                "the log ends at entry {} but the audit key chains from entry {}: entries were \
                 removed from the end",
                seq - 1,
                k.keyed_from()
            )));
        }
        let mut entry = AuditEntry {
            seq,
            at,
            actor: draft.actor,
            action: draft.action,
            target: draft.target,
            details: draft.details,
            chain: key.map(AuditKey::label),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = match key {
            Some(k) => k.mac(key::ENTRY_DOMAIN, &entry.unsealed_bytes()),
            None => entry.legacy_hash(),
        };
        Ok(entry)
    }

    fn unsealed_bytes(&self) -> Vec<u8> {
        let mut unsealed = self.clone();
        unsealed.hash = String::new();
        serde_json::to_vec(&unsealed).unwrap_or_default()
    }

    fn legacy_hash(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.unsealed_bytes());
        hex::encode(digest.as_ref())
    }

    pub fn head(&self) -> AuditHead {
        AuditHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    /// Checks this entry's own hash or MAC against `key` (None: a log never keyed).
    fn check_seal(&self, key: Option<&AuditKey>) -> Result<()> {
        match key {
            Some(k) if self.seq >= k.keyed_from() => self.check_mac(k),
            Some(k) if self.chain.is_some() => Err(Error::AuditIntegrity(format!(
                "entry {} claims to be keyed but the audit key chains from entry {}: the keyed \
                 boundary was moved",
                self.seq,
                k.keyed_from()
            ))),
            None if self.chain.is_some() => Err(Error::AuditKeyUnavailable(format!(
                "entry {} and later are keyed ({}) and cannot be verified without the audit key \
                 ({}): set {} or passphrase_file, and keep {} in the data directory",
                self.seq,
                self.chain.as_deref().unwrap_or_default(),
                key::KEY_FILE,
                crate::config::PASSPHRASE_ENV,
                key::KEY_FILE
            ))),
            _ if self.legacy_hash() != self.hash => {
                Err(self.changed("its hash does not match its content"))
            }
            _ => Ok(()),
        }
    }

    fn check_mac(&self, k: &AuditKey) -> Result<()> {
        let label = k.label();
        if self.chain.as_deref() == Some(label.as_str())
            && k.check(key::ENTRY_DOMAIN, &self.unsealed_bytes(), &self.hash)
        {
            return Ok(());
        }
        Err(self.changed(&format!(
            "the log is keyed from entry {} and this entry's MAC does not match its content",
            k.keyed_from()
        )))
    }

    fn changed(&self, how: &str) -> Error {
        Error::AuditIntegrity(format!(
            "entry {} was changed after it was written ({how}): rewritten at seq {}",
            self.seq, self.seq
        ))
    }
}

/// Summary of a successful verification.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub head_hash: String,
    /// The first keyed entry; `None` for a log that was never keyed.
    pub keyed_from: Option<u64>,
    pub key_id: Option<String>,
    /// The checkpoint verified against, if any.
    pub checkpoint: Option<Checkpoint>,
}

/// Walks the log in order and checks every link, hash or MAC, the sequence and the recorded
/// head; with a checkpoint (checked against `key` first), also that every entry it covers is
/// still there, unchanged.
pub fn verify(
    entries: impl Iterator<Item = Result<AuditEntry>>,
    head: Option<&AuditHead>,
    key: Option<&AuditKey>,
    checkpoint: Option<&Checkpoint>,
) -> Result<AuditReport> {
    if let Some(cp) = checkpoint {
        let key = key.ok_or_else(|| {
            Error::AuditKeyUnavailable(
                "a checkpoint can only be verified with the audit key".into(),
            )
        })?;
        cp.check(key)?;
    }
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 1u64;
    for entry in entries {
        let entry = entry?;
        if entry.seq != expected_seq {
            return Err(Error::AuditIntegrity(match checkpoint {
                Some(cp) if expected_seq <= cp.entries => format!(
                    "entry {expected_seq} is missing: deleted since the checkpoint of {} (which \
                     covers entries 1..{}; found entry {} in its place)",
                    cp.at_text(),
                    cp.entries,
                    entry.seq
                ),
                _ => format!(
                    "entry {expected_seq} is missing (found entry {} in its place)",
                    entry.seq
                ),
            }));
        }
        if entry.prev_hash != expected_prev {
            return Err(Error::AuditIntegrity(format!(
                "entry {} does not point to the hash of entry {} (an entry was changed or \
                 removed)",
                entry.seq,
                entry.seq - 1
            )));
        }
        entry.check_seal(key)?;
        if let Some(cp) = checkpoint.filter(|cp| cp.entries == entry.seq) {
            if cp.head_hash != entry.hash {
                return Err(Error::AuditIntegrity(format!(
                    "entry {} differs from the checkpoint of {}: rewritten at seq {} or before",
                    entry.seq,
                    cp.at_text(),
                    entry.seq
                )));
            }
        }
        expected_prev = entry.hash;
        expected_seq += 1;
    }
    let count = expected_seq - 1;
    if let Some(cp) = checkpoint.filter(|cp| count < cp.entries) {
        return Err(Error::AuditIntegrity(format!(
            "the log was truncated to {count} of the {} entries in the checkpoint of {}: \
             entries {}..{} were removed from the end",
            cp.entries,
            cp.at_text(),
            count + 1,
            cp.entries
        )));
    }
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
            keyed_from: key.map(AuditKey::keyed_from),
            key_id: key.map(|k| k.id().to_string()),
            checkpoint: checkpoint.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn test_key(keyed_from: u64) -> AuditKey {
        AuditKey::from_secret(&[7u8; 32], keyed_from)
    }

    /// `n` entries, keyed from `key`'s boundary on.
    fn log(n: u64, key: Option<&AuditKey>) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let head = out.last().map(AuditEntry::head);
            let k = key.filter(|k| i + 1 >= k.keyed_from());
            out.push(
                AuditEntry::chain(
                    head.as_ref(),
                    OffsetDateTime::UNIX_EPOCH,
                    AuditDraft::new("cli", "cert.issue", format!("s{i}"), json!({"i": i})),
                    k,
                )
                .unwrap(),
            );
        }
        out
    }

    fn check(
        entries: &[AuditEntry],
        key: Option<&AuditKey>,
        cp: Option<&Checkpoint>,
    ) -> Result<AuditReport> {
        let head = entries.last().map(AuditEntry::head);
        verify(entries.iter().cloned().map(Ok), head.as_ref(), key, cp)
    }

    /// Rewrites every entry as an unkeyed SHA-256 chain, as the old code (or an attacker
    /// without the key) would.
    fn rechain_unkeyed(entries: &mut [AuditEntry]) {
        let mut prev = GENESIS.to_string();
        for e in entries.iter_mut() {
            e.chain = None;
            e.prev_hash = prev.clone();
            e.hash = e.legacy_hash();
            prev = e.hash.clone();
        }
    }

    #[test]
    fn detects_tampering() {
        let key = test_key(3);
        for k in [None, Some(&key)] {
            let good = log(5, k);
            let head = good.last().map(AuditEntry::head);
            let ok = check(&good, k, None).unwrap();
            assert_eq!(ok.entries, 5);

            let mut changed = good.clone();
            changed[1].actor = "mallory".into();
            let mut removed = good.clone();
            removed.remove(2);
            let mut truncated = good.clone();
            truncated.pop();
            let mut rehashed = good.clone();
            rehashed[1].target = "other".into();
            rehashed[1].hash = rehashed[1].legacy_hash();
            let cases = [
                ("fail/changed", changed),
                ("fail/removed", removed),
                ("fail/truncated", truncated),
                ("fail/rehashed-middle", rehashed),
            ];
            for (name, entries) in cases {
                let err = verify(entries.into_iter().map(Ok), head.as_ref(), k, None).unwrap_err();
                assert_eq!(err.code(), "audit_integrity", "{name}");
            }
        }
    }

    #[test]
    fn an_unkeyed_rechain_of_a_keyed_log_fails() {
        let key = test_key(1);
        let mut entries = log(4, Some(&key));
        entries[2].details = json!({"i": "rewritten"});
        rechain_unkeyed(&mut entries);
        let err = check(&entries, Some(&key), None).unwrap_err();
        assert!(err.to_string().contains("entry 1 was changed"), "{err}");
        // Without the key the keyed entries are not silently accepted either... once the
        // markers are gone nothing in the store says so: that is what the key file and the
        // checkpoint are for.
        let kept = log(4, Some(&key));
        let err = check(&kept, None, None).unwrap_err();
        assert_eq!(err.code(), "audit_key_unavailable");
    }

    #[test]
    fn checkpoints_catch_truncation_deletion_rewrite_and_forgery() {
        let key = test_key(2);
        let entries = log(6, Some(&key));
        let cp = Checkpoint::sign(&key, 4, &entries[3].hash, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(check(&entries, Some(&key), Some(&cp)).unwrap().entries, 6);

        let truncated = entries[..3].to_vec();
        let mut deleted = entries.clone();
        deleted.remove(1);
        let mut rewritten = entries.clone();
        rewritten[3].details = json!("x");
        rechain_unkeyed(&mut rewritten);
        let mut forged = cp.clone();
        forged.entries = 2;
        forged.head_hash = entries[1].hash.clone();
        let other = AuditKey::from_secret(&[9u8; 32], 2);
        let foreign = Checkpoint::sign(&other, 4, &entries[3].hash, OffsetDateTime::UNIX_EPOCH);
        let cases: [(&str, &[AuditEntry], &Checkpoint, &str); 5] = [
            ("fail/truncated", &truncated, &cp, "truncated to 3 of the 4"),
            ("fail/deleted", &deleted, &cp, "entry 2 is missing: deleted"),
            ("fail/rewritten", &rewritten, &cp, "entry 2 was changed"),
            ("fail/forged", &entries, &forged, "MAC does not verify"),
            (
                "fail/foreign-key",
                &entries,
                &foreign,
                "made with audit key",
            ),
        ];
        for (name, log, cp, needle) in cases {
            let err = check(log, Some(&key), Some(cp)).unwrap_err();
            assert_eq!(err.code(), "audit_integrity", "{name}");
            assert!(err.to_string().contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn the_boundary_cannot_move() {
        // Entries 1..3 legacy, keyed from 4.
        let key = test_key(4);
        let entries = log(6, Some(&key));
        assert_eq!(
            check(&entries, Some(&key), None).unwrap().keyed_from,
            Some(4)
        );
        // A key claiming the whole log: legacy entries lack the MAC.
        let err = check(&entries, Some(&test_key(1)), None).unwrap_err();
        assert!(err.to_string().contains("entry 1 was changed"), "{err}");
        // A key claiming a later boundary: keyed entries before it are refused.
        let err = check(&entries, Some(&test_key(5)), None).unwrap_err();
        assert!(err.to_string().contains("boundary was moved"), "{err}");
    }
}
