//! Checkpoints anchor the audit log outside the store: the entry count and the head hash at
//! a time, MACed with the audit key. The operator keeps them somewhere the store's writers
//! cannot reach (another machine, a write-once bucket, a ticket); `audit verify --checkpoint`
//! then proves that nothing the checkpoint covers was rewritten, deleted or cut off, which a
//! keyed chain alone cannot show for its tail (the head it ends at lives in the store).
//!
//! A MAC rather than a signature: verifying the chain needs the audit key anyway, and one
//! secret sealed with the CA passphrase is one less key to ceremony. A third party cannot
//! check a checkpoint on its own; it only has to keep it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::key::{AuditKey, CHECKPOINT_DOMAIN};
use crate::error::{Error, Result};

/// The `format` of a checkpoint document.
pub const CHECKPOINT_FORMAT: &str = "anchorage-audit-checkpoint";
/// The version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A MACed statement: the log held `entries` entries ending in `head_hash` at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always `anchorage-audit-checkpoint`.
    pub format: String,
    pub version: u32,
    /// How many entries the log held (the sequence number of the last one).
    pub entries: u64,
    /// The last entry's hash (its MAC for keyed entries).
    pub head_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The audit key that MACed it.
    pub key_id: String,
    /// The first keyed entry, as the sealed key says.
    pub keyed_from: u64,
    /// Hex HMAC-SHA-256 of the other fields (this one empty), under the audit key.
    pub mac: String,
}

impl Checkpoint {
    /// A checkpoint of a log holding `entries` entries that ends in `head_hash`.
    pub fn sign(key: &AuditKey, entries: u64, head_hash: &str, at: OffsetDateTime) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            entries,
            head_hash: head_hash.to_string(),
            at,
            key_id: key.id().to_string(),
            keyed_from: key.keyed_from(),
            mac: String::new(),
        };
        checkpoint.mac = key.mac(CHECKPOINT_DOMAIN, &checkpoint.signed_bytes());
        checkpoint
    }

    /// Reads a checkpoint document; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Checkpoint> {
        let checkpoint: Checkpoint = serde_json::from_slice(bytes).map_err(|e| {
            Error::InvalidInput(format!("{origin} is not an audit checkpoint: {e}"))
        })?;
        if checkpoint.format != CHECKPOINT_FORMAT || checkpoint.version != CHECKPOINT_VERSION {
            return Err(Error::InvalidInput(format!(
                "{origin} is '{}' version {}; this build reads {CHECKPOINT_FORMAT} version \
                 {CHECKPOINT_VERSION}",
                checkpoint.format, checkpoint.version
            )));
        }
        Ok(checkpoint)
    }

    /// Refuses a checkpoint this key did not make, or one changed since.
    pub fn check(&self, key: &AuditKey) -> Result<()> {
        if self.key_id != key.id() {
            return Err(Error::AuditIntegrity(format!(
                "the checkpoint was made with audit key {}, this data directory's key is {}: \
                 the audit key was replaced, or the checkpoint belongs elsewhere",
                self.key_id,
                key.id()
            )));
        }
        if !key.check(CHECKPOINT_DOMAIN, &self.signed_bytes(), &self.mac) {
            return Err(Error::AuditIntegrity(
                "the checkpoint's MAC does not verify: it was forged or changed after it was made"
                    .into(),
            ));
        }
        if self.keyed_from != key.keyed_from() {
            return Err(Error::AuditIntegrity(format!(
                "the checkpoint says the chain is keyed from entry {}, the audit key says {}",
                self.keyed_from,
                key.keyed_from()
            )));
        }
        Ok(())
    }

    /// The time, RFC 3339, for messages.
    pub fn at_text(&self) -> String {
        self.at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| self.at.to_string())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.mac = String::new();
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}
