//! The audit log in the store: entries appended inside the transaction of the change they
//! record, chained with the audit key once the log is keyed (`AuditKeying`); a writer that
//! holds no key for a keyed log aborts the whole transaction rather than append an unkeyed
//! entry.

use sled::transaction::TransactionalTree;
use sled::Transactional;
use time::OffsetDateTime;

use super::{abort, decode, encode, tx_error, Store, TxResult};
use crate::audit::{AuditDraft, AuditEntry, AuditHead, AuditKey};
use crate::error::{Error, Result};

const AUDIT_HEAD: &[u8] = b"audit_head";
/// The id of the key the log is keyed with, once it is: writers without the key then refuse
/// to append (the authoritative boundary is in the sealed key file, outside the store).
pub(super) const AUDIT_KEY_ID: &[u8] = b"audit_key_id";

/// Whether and how new audit entries are keyed.
pub enum AuditKeying {
    /// The log was never keyed (a store not yet opened with the passphrase since the
    /// upgrade): entries are legacy SHA-256 entries.
    Unkeyed,
    /// The log is keyed but the key is not loaded: why, and whether the key file itself was
    /// found altered (an integrity failure rather than a missing key).
    Locked {
        why: String,
        integrity: bool,
    },
    Keyed(std::sync::Arc<AuditKey>),
}

pub(super) type SharedKeying = std::sync::Arc<std::sync::RwLock<AuditKeying>>;

/// The key new entries are chained with; `None` for a log never keyed. A keyed log whose key
/// is not loaded refuses the write rather than append an unkeyed entry.
fn chain_key(keying: &SharedKeying) -> Result<Option<std::sync::Arc<AuditKey>>> {
    match &*keying
        .read()
        .map_err(|_| Error::Store("lock poisoned".into()))?
    {
        AuditKeying::Unkeyed => Ok(None),
        AuditKeying::Keyed(key) => Ok(Some(key.clone())),
        AuditKeying::Locked {
            why,
            integrity: true,
        } => Err(Error::AuditIntegrity(why.clone())),
        AuditKeying::Locked { why, .. } => Err(Error::AuditKeyUnavailable(why.clone())),
    }
}

/// Appends an audit entry inside a transaction.
pub(super) fn append_audit(
    keying: &SharedKeying,
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    at: OffsetDateTime,
    draft: AuditDraft,
) -> TxResult<AuditEntry> {
    let key = match chain_key(keying) {
        Ok(k) => k,
        Err(e) => return abort(e),
    };
    let head: Option<AuditHead> = match meta.get(AUDIT_HEAD)? {
        Some(b) => match decode(&b, "audit head") {
            Ok(h) => Some(h),
            Err(e) => return abort(e),
        },
        None => None,
    };
    let entry = match AuditEntry::chain(head.as_ref(), at, draft, key.as_deref()) {
        Ok(e) => e,
        Err(e) => return abort(e),
    };
    let (bytes, head_bytes) = match (encode(&entry), encode(&entry.head())) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return abort(e),
    };
    audit.insert(&entry.seq.to_be_bytes(), bytes)?;
    meta.insert(AUDIT_HEAD, head_bytes)?;
    Ok(entry)
}

impl Store {
    /// Appends an audit entry on its own (for events that change nothing else).
    pub fn audit(&self, at: OffsetDateTime, draft: AuditDraft) -> Result<AuditEntry> {
        let entry = (&self.meta, &self.audit)
            .transaction(|(meta, audit)| append_audit(&self.keying, meta, audit, at, draft.clone()))
            .map_err(tx_error)?;
        self.flush()?;
        Ok(entry)
    }

    pub fn audit_entries(&self) -> impl Iterator<Item = Result<AuditEntry>> + '_ {
        self.audit
            .iter()
            .values()
            .map(|v| v.map_err(Error::from).and_then(|b| decode(&b, "audit")))
    }

    /// Newest first (the viewer pages backwards).
    pub fn audit_entries_rev(&self) -> impl Iterator<Item = Result<AuditEntry>> + '_ {
        self.audit.iter().rev().map(|kv| {
            kv.map_err(Error::from)
                .and_then(|(_, b)| decode(&b, "audit"))
        })
    }

    /// The loaded audit key, `Unkeyed` or why it is not loaded.
    pub fn audit_key(&self) -> Result<Option<std::sync::Arc<AuditKey>>> {
        chain_key(&self.keying)
    }

    /// Whether the log is keyed but its key is not loaded.
    pub fn audit_key_locked(&self) -> Result<bool> {
        Ok(matches!(
            &*self
                .keying
                .read()
                .map_err(|_| Error::Store("lock poisoned".into()))?,
            AuditKeying::Locked { .. }
        ))
    }

    /// From now on entries are chained with `key`; the store remembers the log is keyed.
    pub fn install_audit_key(&self, key: AuditKey) -> Result<()> {
        self.meta.insert(AUDIT_KEY_ID, key.id().as_bytes())?;
        self.flush()?;
        *self
            .keying
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))? =
            AuditKeying::Keyed(std::sync::Arc::new(key));
        Ok(())
    }

    /// Records why the key of a keyed log could not be loaded: writers and `verify` fail
    /// with the same error.
    pub fn audit_key_unavailable(&self, cause: &Error) -> Result<()> {
        let (why, integrity) = match cause {
            Error::AuditIntegrity(m) => (m.clone(), true),
            Error::AuditKeyUnavailable(m) => (m.clone(), false),
            other => (other.to_string(), false),
        };
        let mut keying = self
            .keying
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        if !matches!(*keying, AuditKeying::Keyed(_)) {
            *keying = AuditKeying::Locked { why, integrity };
        }
        Ok(())
    }

    pub fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.meta
            .get(AUDIT_HEAD)?
            .map(|b| decode(&b, "audit head"))
            .transpose()
    }
}
