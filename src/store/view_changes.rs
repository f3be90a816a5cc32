//! The holders whose directory (LDIF) entry may have changed since the directory view was
//! last synced, so an LDIF change file costs what changed, not a walk of every certificate
//! (issue 14: a million-certificate store). Issuance and revocation log each change in
//! `zone_changes`, which zone publication clears once the zone shows it; while a directory
//! view exists (an LDIF export was made), the clearing first copies each cleared change's
//! holder here (`ldap/pending/<domain> NUL <holder>` -> revision, a set: one key per holder
//! however often it changed). The view sync reads `zone_changes` still pending, then this
//! set, then forgets what it read (unless a newer change re-noted it meanwhile). Expiry and
//! start of validity come from the time index, from the view's own watermark (`ldap/mark`).

use super::Store;
use crate::error::{Error, Result};

/// The view's watermark (opaque to the store); its presence makes cleared zone changes
/// noted for the view.
const LDAP_MARK: &[u8] = b"ldap/mark";
const LDAP_PENDING: &[u8] = b"ldap/pending/";

/// One noted holder: (domain, holder), and the stored key and value to forget it by.
pub struct PendingHolder {
    pub domain: String,
    pub holder: String,
    key: sled::IVec,
    value: sled::IVec,
}

impl Store {
    /// The directory view's watermark, when a view exists.
    pub fn ldap_mark(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.discovery.get(LDAP_MARK)?.map(|v| v.to_vec()))
    }

    /// Records the view's watermark durably.
    pub fn put_ldap_mark(&self, mark: &[u8]) -> Result<()> {
        self.discovery.insert(LDAP_MARK, mark)?;
        self.flush()
    }

    /// Notes `(revision, holder)` changes of `domain` that zone publication is about to clear,
    /// when a directory view exists. Called before the clearing, so a crash in between notes
    /// twice (harmless), never loses one.
    pub(super) fn note_view_changes<'a>(
        &self,
        domain: &str,
        changes: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<()> {
        if self.discovery.get(LDAP_MARK)?.is_none() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (revision, holder) in changes {
            let mut key = LDAP_PENDING.to_vec();
            key.extend_from_slice(domain.as_bytes());
            key.push(0);
            key.extend_from_slice(holder);
            batch.insert(key, &revision.to_be_bytes());
        }
        self.discovery.apply_batch(batch)?;
        Ok(())
    }

    /// The noted holders, at most `limit` (the caller walks the directory beyond that).
    pub fn pending_view_holders(&self, limit: usize) -> Result<Vec<PendingHolder>> {
        self.discovery
            .scan_prefix(LDAP_PENDING)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                let rest = key.get(LDAP_PENDING.len()..).unwrap_or_default();
                let (domain, holder) = rest
                    .iter()
                    .position(|b| *b == 0)
                    .map(|at| rest.split_at(at))
                    .ok_or_else(|| {
                        Error::Store("a pending directory change is malformed".into())
                    })?;
                Ok(PendingHolder {
                    domain: String::from_utf8_lossy(domain).into_owned(),
                    holder: String::from_utf8_lossy(holder.get(1..).unwrap_or_default())
                        .into_owned(),
                    key: key.clone(),
                    value,
                })
            })
            .collect()
    }

    /// Forgets noted holders the view now shows; one noted again since it was read stays.
    pub fn forget_view_holders(&self, seen: &[PendingHolder]) -> Result<()> {
        for p in seen {
            self.forget_if_unchanged(&p.key, &p.value)?;
        }
        Ok(())
    }

    /// After a full walk that started at store revision `upto`: forgets every holder noted
    /// for a change at or before it (the walk saw those), streaming.
    pub fn forget_view_holders_upto(&self, upto: u64) -> Result<()> {
        for item in self.discovery.scan_prefix(LDAP_PENDING) {
            let (key, value) = item?;
            let revision = <[u8; 8]>::try_from(&value[..]).map_or(0, u64::from_be_bytes);
            if revision <= upto {
                self.forget_if_unchanged(&key, &value)?;
            }
        }
        Ok(())
    }

    fn forget_if_unchanged(&self, key: &[u8], value: &[u8]) -> Result<()> {
        // Err(CompareAndSwapError): a newer change noted it again; keep it.
        let _ = self
            .discovery
            .compare_and_swap(key, Some(value), None as Option<&[u8]>)?;
        Ok(())
    }
}
