//! Certificate listings as pages: a walk in serial order from a cursor (the last serial a page
//! covered) over the certificate tree, or over the organisation index when the caller's scope
//! or the filter names organisations, checking scope and filters on each record as it is read.
//! One page costs O(page size) whatever the store holds (a page with a selective filter stops
//! after a bounded scan and still returns a cursor: a short page is not the end, the end is
//! the absence of a next cursor). The console streams the same walk (`each_cert`), one entry
//! at a time, in constant memory.
//!
//! What a record costs: one read by key after the key walk (`Store::certs_after`); its
//! revocation comes from a walk of the revocations in the same order, and, for a caller who
//! sees everything, its organisation from the organisation index in the same order. Reading
//! the holder's binding instead is a random read per certificate (holders and serials are in
//! different orders), which at 1M certificates pulled a store page per entry; a registrar's
//! scope is still checked against the binding, read with each record.

use std::collections::{BTreeSet, HashMap};

use time::Duration;

use crate::accounts::{Limit, Principal, Role};
use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::model::Serial;
use crate::store::{CertEntry, CertRecord, CertSource, CountOf, Store};

use super::lookup::{view_of, CertFilter, CertView};
use super::{organisation_name, OrganisationRef};

/// Records one page may read before it stops and hands back a cursor: bounds the cost of a
/// page whose filter matches little.
pub const SCAN_BUDGET: usize = 20_000;

/// Where a page starts.
#[derive(Debug, Clone)]
pub enum PageStart {
    /// After this serial (a cursor), or from the first certificate.
    After(Option<Serial>),
    /// After skipping this many matches (deprecated: O(offset)).
    Offset(usize),
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct CertPage {
    pub items: Vec<CertView>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Serial>,
    /// How many certificates match in all, when that is known without a scan: from the
    /// store's counters (an admin listing everything, one organisation or one domain), or
    /// when this first page holds every match.
    pub total: Option<u64>,
}

/// Where a page handed entry by entry ended (`cert_page_each`).
#[derive(Debug, Clone)]
pub struct PageEnd {
    /// Where the next page starts; `None` at the end.
    pub next: Option<Serial>,
    /// As `CertPage::total`.
    pub total: Option<u64>,
}

/// How a walk ended.
enum Stop {
    /// The visitor asked to stop at this serial.
    Visitor,
    /// The scan budget ran out after this serial.
    Budget(Serial),
    Exhausted,
}

/// Filters prepared once per walk.
struct Prepared {
    holder: Option<String>,
    domain: Option<String>,
    search: Option<String>,
    expires_before: Option<time::OffsetDateTime>,
}

impl Authority {
    /// One page of the certificates `principal` may see, filtered, in serial order.
    pub fn cert_page_for(
        &self,
        principal: &Principal,
        filter: &CertFilter,
        start: PageStart,
        limit: usize,
    ) -> Result<CertPage> {
        let mut items = Vec::new();
        let end = self.cert_page_each(principal, filter, start, limit, |view| {
            items.push(view);
            Ok(())
        })?;
        Ok(CertPage {
            items,
            next: end.next,
            total: end.total,
        })
    }

    /// The same page as `cert_page_for`, each entry handed to `visit` as it is read instead
    /// of collected: the API writes each one into the response and drops it, so a page holds
    /// its serialised bytes and one entry, not every entry as well.
    pub fn cert_page_each(
        &self,
        principal: &Principal,
        filter: &CertFilter,
        start: PageStart,
        limit: usize,
        mut visit: impl FnMut(CertView) -> Result<()>,
    ) -> Result<PageEnd> {
        if !matches!(principal.role, Role::Admin | Role::Registrar) {
            return Err(Error::Forbidden(format!(
                "the '{}' role may not list certificates",
                principal.role.as_str()
            )));
        }
        let first_page = matches!(start, PageStart::After(None) | PageStart::Offset(0));
        let (after, mut skip, budget) = match start {
            PageStart::After(after) => (after, 0, Some(SCAN_BUDGET)),
            PageStart::Offset(n) => (None, n, None),
        };
        let mut count = 0usize;
        let mut last: Option<Serial> = None;
        // One match past the page tells whether another page follows.
        let mut extra = false;
        let stop = self.walk(Some(principal), filter, after.as_ref(), budget, |view| {
            if skip > 0 {
                skip -= 1;
                return Ok(true);
            }
            if count == limit {
                extra = true;
                return Ok(false);
            }
            count += 1;
            last = Some(view.record.serial.clone());
            visit(view)?;
            Ok(true)
        })?;
        let next = match stop {
            Stop::Budget(last) => Some(last),
            Stop::Visitor if extra => last,
            _ => None,
        };
        let total = match self.counted(principal, filter)? {
            Some(n) => Some(n),
            None if first_page && next.is_none() => Some(count as u64),
            None => None,
        };
        Ok(PageEnd { next, total })
    }

    /// Every certificate matching `filter` (no scope: the console on the store), handed to
    /// `visit` one at a time in serial order; returns how many were.
    pub fn each_cert(
        &self,
        filter: &CertFilter,
        mut visit: impl FnMut(CertView) -> Result<()>,
    ) -> Result<u64> {
        let mut n = 0u64;
        self.walk(None, filter, None, None, |view| {
            n += 1;
            visit(view).map(|()| true)
        })?;
        Ok(n)
    }

    /// The total of a listing from the counters, when they answer it exactly.
    fn counted(&self, principal: &Principal, filter: &CertFilter) -> Result<Option<u64>> {
        let narrowed = filter
            .search
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
            || filter.holder.is_some()
            || filter.status.is_some()
            || filter.expiring_within_days.is_some();
        if principal.role != Role::Admin || narrowed {
            return Ok(None);
        }
        let store = self.store()?;
        Ok(match (&filter.organisation, &filter.domain) {
            (None, None) => Some(store.cert_count_of(CountOf::All)?),
            (Some(o), None) => match self.organisation_id(o)? {
                Some(id) => Some(store.cert_count_of(CountOf::Organisation(&id))?),
                None => Some(0),
            },
            (None, Some(d)) => {
                let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                Some(store.cert_count_of(CountOf::Domain(&d))?)
            }
            (Some(_), Some(_)) => None,
        })
    }

    /// The stored id of an organisation named case-insensitively.
    fn organisation_id(&self, id: &str) -> Result<Option<String>> {
        let id = id.trim();
        Ok(self
            .store()?
            .organisations()?
            .into_iter()
            .find(|o| o.id.eq_ignore_ascii_case(id))
            .map(|o| o.id))
    }

    /// Where a walk reads: one organisation's index entries when the filter names one, the
    /// scope's organisations' when the scope names some, else every certificate.
    fn source(&self, principal: Option<&Principal>, filter: &CertFilter) -> Result<CertSource> {
        if let Some(o) = &filter.organisation {
            return Ok(CertSource::Organisations(
                self.organisation_id(o)?.into_iter().collect(),
            ));
        }
        match principal.map(|p| (&p.role, &p.scope.organisations)) {
            Some((Role::Registrar, Limit::Only(set))) => Ok(CertSource::Organisations(
                self.store()?
                    .organisations()?
                    .into_iter()
                    .filter(|o| set.contains(&o.id) || set.contains(&o.id.to_ascii_lowercase()))
                    .map(|o| o.id)
                    .collect(),
            )),
            _ => Ok(CertSource::All),
        }
    }

    /// Walks the certificates after `after` in serial order, checking scope (when a principal
    /// is given) and filters on each, and hands each match to `visit` until it returns false,
    /// the source ends, or `budget` records were read.
    fn walk(
        &self,
        principal: Option<&Principal>,
        filter: &CertFilter,
        after: Option<&Serial>,
        budget: Option<usize>,
        mut visit: impl FnMut(CertView) -> Result<bool>,
    ) -> Result<Stop> {
        let prepared = Prepared {
            holder: filter
                .holder
                .as_ref()
                .map(|h| h.trim().to_ascii_lowercase()),
            domain: filter
                .domain
                .as_ref()
                .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()),
            search: filter
                .search
                .as_ref()
                .map(|q| q.trim().to_lowercase())
                .filter(|q| !q.is_empty()),
            expires_before: filter
                .expiring_within_days
                .map(|days| self.now() + Duration::days(i64::from(days))),
        };
        let source = self.source(principal, filter)?;
        let store = self.store()?;
        let mut names = HashMap::new();
        // Organisations from the index for a caller who sees everything (an admin, the
        // console): the binding decides only what is shown then. A registrar's scope is
        // checked against each holder's binding, read with its record.
        let mut owners = match principal {
            Some(p) if p.role != Role::Admin => None,
            _ => IndexedOwners::open(&store, after)?,
        };
        let mut revoked = match source {
            CertSource::All => Some(store.revocations_after(after).peekable()),
            CertSource::Organisations(_) => None,
        };
        let now = self.now();
        let mut last_read: Option<Serial> = None;
        for (read, entry) in store.certs_after(&source, after).enumerate() {
            let CertEntry {
                serial,
                key,
                record,
            } = entry?;
            if budget.is_some_and(|b| read >= b) {
                // `serial` is not counted: the next page starts after the last one that was.
                if let Some(last) = last_read {
                    return Ok(Stop::Budget(last));
                }
            }
            last_read = Some(serial);
            // Deleted between the index read and now: nothing to list.
            let Some(record) = record else {
                continue;
            };
            if !prepared.matches(&record) {
                continue;
            }
            let revocation = match revoked.as_mut() {
                Some(walk) => merged(walk, &key)?,
                None => store.revocation(&record.serial)?,
            };
            let organisation = match owners.as_mut() {
                Some(o) => o.of(&key, &record, &store, &mut names)?,
                None => self.organisation_ref(&record.holder.to_string(), &mut names)?,
            };
            let view = view_of(record, revocation, organisation, now);
            if filter.status.is_some_and(|s| s != view.status) {
                continue;
            }
            if let Some(p) = principal {
                let owner = view
                    .organisation
                    .as_ref()
                    .map(|o| (o.id.as_str(), !o.unresolved));
                if !p.sees_owned(view.record.holder.domain().as_str(), owner) {
                    continue;
                }
            }
            if filter.organisation.as_ref().is_some_and(|o| {
                view.organisation
                    .as_ref()
                    .is_none_or(|v| !v.id.eq_ignore_ascii_case(o.trim()))
            }) {
                continue;
            }
            if !visit(view)? {
                return Ok(Stop::Visitor);
            }
        }
        Ok(Stop::Exhausted)
    }
}

/// The item of a serial-ordered walk whose key is `key`, advancing the walk past smaller keys.
fn merged<T>(
    walk: &mut std::iter::Peekable<impl Iterator<Item = Result<(Vec<u8>, T)>>>,
    key: &[u8],
) -> Result<Option<T>> {
    loop {
        match walk.peek() {
            Some(Ok((k, _))) if k.as_slice() < key => {
                walk.next();
            }
            Some(Ok((k, _))) if k.as_slice() == key => {
                return walk.next().transpose().map(|o| o.map(|(_, t)| t));
            }
            Some(Err(_)) => return walk.next().transpose().map(|_| None),
            _ => return Ok(None),
        }
    }
}

/// Most organisations an unscoped walk merges from the index (one index range each, opened
/// per page); with more, each holder's binding is read instead.
const MERGED_ORGANISATIONS: usize = 64;

/// The organisation index in serial order: (serial key, position in `orgs`).
type OrgWalk<'a> = std::iter::Peekable<Box<dyn Iterator<Item = Result<(Vec<u8>, usize)>> + 'a>>;

/// The organisations of an unscoped walk's certificates, from the organisation index in
/// serial order (see `Store::cert_orgs_after`), with the holders whose binding is unresolved.
struct IndexedOwners<'a> {
    orgs: Vec<String>,
    walk: OrgWalk<'a>,
    unresolved: BTreeSet<String>,
}

impl<'a> IndexedOwners<'a> {
    /// `None` when the store has too many organisations to merge.
    fn open(store: &'a Store, after: Option<&Serial>) -> Result<Option<IndexedOwners<'a>>> {
        let Some(orgs) = store.indexed_organisations(MERGED_ORGANISATIONS)? else {
            return Ok(None);
        };
        let walk: Box<dyn Iterator<Item = Result<(Vec<u8>, usize)>> + 'a> =
            Box::new(store.cert_orgs_after(&orgs, after));
        Ok(Some(IndexedOwners {
            unresolved: store.unresolved_holders()?,
            walk: walk.peekable(),
            orgs,
        }))
    }

    /// The organisation of the certificate `key` (serial bytes; walked in order).
    fn of(
        &mut self,
        key: &[u8],
        record: &CertRecord,
        store: &Store,
        names: &mut HashMap<String, String>,
    ) -> Result<Option<OrganisationRef>> {
        let Some(i) = merged(&mut self.walk, key)? else {
            return Ok(None);
        };
        let Some(id) = self.orgs.get(i) else {
            return Ok(None);
        };
        let name = organisation_name(store, id, names)?;
        let unresolved =
            !self.unresolved.is_empty() && self.unresolved.contains(&record.holder.to_string());
        Ok(Some(OrganisationRef {
            id: id.clone(),
            name,
            unresolved,
        }))
    }
}

impl Prepared {
    fn matches(&self, record: &CertRecord) -> bool {
        if self
            .holder
            .as_ref()
            .is_some_and(|h| *h != record.holder.to_string())
        {
            return false;
        }
        if self
            .domain
            .as_ref()
            .is_some_and(|d| d != record.holder.domain().as_str())
        {
            return false;
        }
        if self.expires_before.is_some_and(|t| record.not_after > t) {
            return false;
        }
        self.search
            .as_ref()
            .is_none_or(|q| super::lookup::matches_search(record, q))
    }
}
