//! Keeps the directory view (what the LDIF export shows, entry by entry) current from what
//! changed, so an LDIF change file (`publish ldif --since`) costs the changes since the last
//! sync, not a walk of every certificate (issue 14: at a million certificates the walk read
//! ~1.5 GB). The changed holders are the issuances and revocations not yet seen by the view
//! (`zone_changes` still pending, and those zone publication cleared since, which the store
//! notes for the view) and the certificates that expired or became valid since the view's
//! watermark (the time index). The first sync, or one after the managed domains changed,
//! walks every certificate once, as the full export always does. Both paths record the same
//! view: a holder's entry state is computed by the same function from the same certificates.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::directory::{entry_key, entry_state, ViewSync};
use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::store::{EntryChange, EntryUpdate};

/// Changed holders beyond which a sync walks the directory instead (a bulk import): the walk
/// streams, a set of a million holders would not.
const INCREMENTAL_LIMIT: usize = 100_000;

/// The view's watermark.
#[derive(Debug, Serialize, Deserialize)]
struct ViewMark {
    /// The managed domains the view was built for ("" while a full walk runs: the mark is
    /// written first, so zone publication notes the changes the walk may miss).
    domains: String,
    /// Unix time up to which expiries and starts of validity are in the view.
    swept_until: i64,
}

impl Authority {
    fn view_domains(&self) -> String {
        let mut domains: Vec<&str> = self
            .config
            .managed_domains
            .iter()
            .map(|d| d.as_str())
            .collect();
        domains.sort_unstable();
        domains.join(" ")
    }

    fn put_view_mark(&self, mark: &ViewMark) -> Result<()> {
        let bytes = serde_json::to_vec(mark)
            .map_err(|e| Error::Store(format!("encoding the directory mark: {e}")))?;
        self.store()?.put_ldap_mark(&bytes)
    }

    /// Before a full walk of the directory: from now on zone publication notes the holders
    /// of the changes it clears, and no incremental sync trusts the view until the walk ends.
    /// Returns the store revision the walk starts from (for [`Self::end_full_view_walk`]).
    pub(super) fn begin_full_view_walk(&self, now: OffsetDateTime) -> Result<u64> {
        let upto = self.store()?.revision()?;
        self.put_view_mark(&ViewMark {
            domains: String::new(),
            swept_until: now.unix_timestamp(),
        })?;
        Ok(upto)
    }

    /// After a full walk recorded the view as of `now`: the changes up to `upto` are in it.
    pub(super) fn end_full_view_walk(&self, now: OffsetDateTime, upto: u64) -> Result<()> {
        self.put_view_mark(&ViewMark {
            domains: self.view_domains(),
            swept_until: now.unix_timestamp(),
        })?;
        self.store()?.forget_view_holders_upto(upto)
    }

    /// The full-walk path of [`Self::sync_view`].
    fn sync_view_whole(&self, now: OffsetDateTime) -> Result<u64> {
        let upto = self.begin_full_view_walk(now)?;
        let mut sync = ViewSync::default();
        self.walk_directory(now, &mut sync, |_, _| Ok(()))?;
        let revision = self.apply_view_sync(sync)?;
        self.end_full_view_walk(now, upto)?;
        Ok(revision)
    }

    /// Brings the directory view up to date as of `now` and returns its revision: from the
    /// changed holders when the view is current for these domains, by a full walk otherwise.
    /// The caller holds the LDIF lock.
    pub(super) fn sync_view(&self, now: OffsetDateTime) -> Result<u64> {
        let store = self.store()?;
        let mark: Option<ViewMark> = store
            .ldap_mark()?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(mark) = mark.filter(|m| m.domains == self.view_domains()) else {
            return self.sync_view_whole(now);
        };
        let mut holders: BTreeSet<(String, String)> = BTreeSet::new();
        let mut domains = self.config.managed_domains.clone();
        domains.sort();
        // Pending zone changes first, then the noted ones: a change cleared between the two
        // reads was noted before it was cleared, so it is in the second.
        for domain in &domains {
            let pending =
                store.pending_zone_changes(domain.as_str(), u64::MAX, INCREMENTAL_LIMIT)?;
            if pending.len() == INCREMENTAL_LIMIT {
                return self.sync_view_whole(now);
            }
            for holder in pending {
                holders.insert((domain.to_string(), holder));
            }
        }
        let noted = store.pending_view_holders(INCREMENTAL_LIMIT)?;
        if noted.len() == INCREMENTAL_LIMIT {
            return self.sync_view_whole(now);
        }
        holders.extend(noted.iter().map(|p| (p.domain.clone(), p.holder.clone())));
        let until = now.unix_timestamp().max(mark.swept_until);
        for change in store.validity_changes(mark.swept_until, until) {
            holders.insert(change?);
        }
        let mut updates = Vec::new();
        for (domain, holder) in holders {
            if !domains.iter().any(|d| d.as_str() == domain) {
                continue;
            }
            let key = entry_key(&domain, Some(&holder));
            let current = self.holder(&domain, &holder, now)?;
            let recorded = store.ldap_entry(&key)?;
            let update = if current.serials.is_empty() {
                recorded.map(|_| EntryUpdate {
                    key,
                    state: None,
                    change: EntryChange::Delete,
                })
            } else {
                let state = entry_state(&current.serials);
                match recorded {
                    None => Some(EntryChange::Add),
                    Some(old) if old != state => Some(EntryChange::Modify),
                    Some(_) => None,
                }
                .map(|change| EntryUpdate {
                    key,
                    state: Some(state),
                    change,
                })
            };
            updates.extend(update);
        }
        let revision = store.record_ldap_changes(&updates)?;
        self.put_view_mark(&ViewMark {
            domains: mark.domains,
            swept_until: until,
        })?;
        store.forget_view_holders(&noted)?;
        Ok(revision)
    }
}
