//! What makes a certificate listing a page and not a scan: the organisation index
//! (`org_certs`: `organisation NUL serial bytes` -> empty) and the certificate counters in the
//! meta tree (total, per organisation, per health domain). Both are written in the transaction
//! that stores a certificate (`insert_certs`) or moves a holder to another organisation
//! (`put_holder_binding`), and rebuilt from the certificates by `build_cert_index` (the
//! schema 3 migration; idempotent). Listings walk the certificate tree or the index from a
//! cursor (the last serial a page covered) in serial order, so one page costs O(page size)
//! whatever the store holds: before this index `GET /api/v1/certificates` built every entry of a
//! 1M store (26 s, 3.1 GB) to answer one page. A walk of every certificate reads the index
//! (merged over the organisations) and the revocations alongside, in the same serial order,
//! rather than looking each certificate's binding and revocation up.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{decode, u64_of, CertRecord, Revocation, Store};
use crate::error::{Error, Result};
use crate::model::organisations::HolderBinding;
use crate::model::Serial;

const COUNT_ALL: &[u8] = b"count/certs";
const COUNT_ORG: &str = "count/org/";
const COUNT_DOMAIN: &str = "count/domain/";

/// The lower bound of a walk after `after` (exclusive).
fn lower_bound(after: Option<&Serial>) -> Bound<Vec<u8>> {
    match after {
        Some(a) => Bound::Excluded(a.to_bytes()),
        None => Bound::Unbounded,
    }
}

/// Key of the organisation index: `organisation NUL serial bytes` (serial order inside an
/// organisation, the certificate tree's order).
pub(super) fn org_cert_key(organisation: &str, serial: &Serial) -> Vec<u8> {
    let mut key = org_prefix(organisation);
    key.extend_from_slice(&serial.to_bytes());
    key
}

fn org_prefix(organisation: &str) -> Vec<u8> {
    let mut key = organisation.as_bytes().to_vec();
    key.push(0);
    key
}

fn org_counter(organisation: &str) -> Vec<u8> {
    format!("{COUNT_ORG}{organisation}").into_bytes()
}

fn domain_counter(domain: &str) -> Vec<u8> {
    format!("{COUNT_DOMAIN}{domain}").into_bytes()
}

/// Adds `delta` to a counter inside a transaction (never below zero).
fn add(
    meta: &TransactionalTree,
    key: &[u8],
    delta: i64,
) -> std::result::Result<(), UnabortableTransactionError> {
    let now = u64_of(meta.get(key)?);
    let next = if delta >= 0 {
        now.saturating_add(delta.unsigned_abs())
    } else {
        now.saturating_sub(delta.unsigned_abs())
    };
    meta.insert(key, &next.to_be_bytes())?;
    Ok(())
}

/// Indexes and counts one newly stored certificate (inside `insert_certs`).
pub(super) fn index_new_cert(
    org_certs: &TransactionalTree,
    meta: &TransactionalTree,
    organisation: &str,
    domain: &str,
    serial: &Serial,
) -> std::result::Result<(), UnabortableTransactionError> {
    org_certs.insert(org_cert_key(organisation, serial), &[])?;
    add(meta, COUNT_ALL, 1)?;
    add(meta, &org_counter(organisation), 1)?;
    add(meta, &domain_counter(domain), 1)
}

/// Moves one certificate's index entry from `from` to `to` (inside `put_holder_binding`);
/// idempotent: counters move only with the entries.
pub(super) fn move_cert(
    org_certs: &TransactionalTree,
    meta: &TransactionalTree,
    from: Option<&str>,
    to: &str,
    serial: &Serial,
) -> std::result::Result<(), UnabortableTransactionError> {
    if let Some(from) = from.filter(|f| *f != to) {
        if org_certs.remove(org_cert_key(from, serial))?.is_some() {
            add(meta, &org_counter(from), -1)?;
        }
    }
    if org_certs.insert(org_cert_key(to, serial), &[])?.is_none() {
        add(meta, &org_counter(to), 1)?;
    }
    Ok(())
}

/// Where a listing walks.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Every certificate (the certificate tree).
    All,
    /// The certificates of holders bound to these organisations (the index), merged in
    /// serial order.
    Organisations(Vec<String>),
}

/// One certificate of a walk (`certs_after`).
#[derive(Debug)]
pub struct CertEntry {
    pub serial: Serial,
    /// The serial's bytes: the key order walks merge by.
    pub key: Vec<u8>,
    /// `None`: deleted between the index read and the record read.
    pub record: Option<CertRecord>,
}

/// Meta keys `unresolved/<holder>`: the holders whose binding is unresolved (schema 5).
const UNRESOLVED_PREFIX: &[u8] = b"unresolved/";

fn unresolved_key(holder: &str) -> Vec<u8> {
    let mut key = UNRESOLVED_PREFIX.to_vec();
    key.extend_from_slice(holder.as_bytes());
    key
}

/// How many certificates a count covers, when the counters know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOf<'a> {
    All,
    Organisation(&'a str),
    Domain(&'a str),
}

impl Store {
    /// Serials after `after` (exclusive), in serial order, from `source`. Lazy: a page reads
    /// only as far as it goes.
    pub fn cert_serials_after<'a>(
        &'a self,
        source: &CertSource,
        after: Option<&Serial>,
    ) -> Box<dyn Iterator<Item = Result<Serial>> + 'a> {
        match source {
            CertSource::All => Box::new(
                self.certs
                    .range::<Vec<u8>, _>((lower_bound(after), Bound::Unbounded))
                    .keys()
                    .map(|k| Ok(Serial::from_bytes(&k?))),
            ),
            CertSource::Organisations(orgs) => Box::new(
                self.cert_orgs_after(orgs, after)
                    .map(|k| k.map(|(k, _)| Serial::from_bytes(&k))),
            ),
        }
    }

    /// The certificates after `after` (exclusive), in serial order, from `source`, each with
    /// its record (`None`: deleted between the index read and the record read): the keys of
    /// the certificate tree or of the organisation index, then each record by key. (Iterating
    /// the certificate tree's values instead kept far more of it in memory: 100 MB instead
    /// of 45 MB for a 30,000-certificate `cert list`.) Lazy.
    pub fn certs_after<'a>(
        &'a self,
        source: &CertSource,
        after: Option<&Serial>,
    ) -> Box<dyn Iterator<Item = Result<CertEntry>> + 'a> {
        let keys: Box<dyn Iterator<Item = Result<Vec<u8>>> + 'a> = match source {
            CertSource::All => Box::new(
                self.certs
                    .range::<Vec<u8>, _>((lower_bound(after), Bound::Unbounded))
                    .keys()
                    .map(|k| Ok(k?.to_vec())),
            ),
            CertSource::Organisations(orgs) => {
                Box::new(self.cert_orgs_after(orgs, after).map(|k| Ok(k?.0)))
            }
        };
        Box::new(keys.map(|key| {
            let key = key?;
            let record = self
                .certs
                .get(&key)?
                .map(|v| decode(&v, "certificate"))
                .transpose()?;
            Ok(CertEntry {
                serial: Serial::from_bytes(&key),
                key,
                record,
            })
        }))
    }

    /// Serial bytes after `after` from the organisation index, each with the position in
    /// `orgs` of the organisation it is filed under: a k-way merge of the organisations'
    /// walks (a holder has one organisation, so no serial appears twice). An unscoped listing
    /// of every certificate merges this with its walk instead of reading each holder's
    /// binding (a random read per certificate, since holders and serials are not in the same
    /// order: the cost of a page at 1M certificates).
    pub fn cert_orgs_after<'a>(
        &'a self,
        orgs: &[String],
        after: Option<&Serial>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, usize)>> + 'a {
        let after = after.map(Serial::to_bytes);
        let mut walks: Vec<_> = orgs
            .iter()
            .enumerate()
            .map(|(i, org)| {
                let prefix = org_prefix(org);
                let lower = match &after {
                    Some(a) => {
                        let mut k = prefix.clone();
                        k.extend_from_slice(a);
                        Bound::Excluded(k)
                    }
                    None => Bound::Included(prefix.clone()),
                };
                let mut upper = org.as_bytes().to_vec();
                upper.push(1);
                let len = prefix.len();
                self.org_certs
                    .range::<Vec<u8>, _>((lower, Bound::Excluded(upper)))
                    .keys()
                    .map(move |k| {
                        let k = k?;
                        Ok((k.get(len..).unwrap_or_default().to_vec(), i))
                    })
                    .peekable()
            })
            .collect();
        std::iter::from_fn(move || {
            let mut best: Option<(usize, &[u8])> = None;
            for (i, walk) in walks.iter_mut().enumerate() {
                match walk.peek() {
                    Some(Err(_)) => return walk.next(),
                    Some(Ok((bytes, _))) if best.is_none_or(|(_, b)| bytes.as_slice() < b) => {
                        best = Some((i, bytes.as_slice()));
                    }
                    _ => {}
                }
            }
            let (i, _) = best?;
            walks.get_mut(i).and_then(Iterator::next)
        })
    }

    /// The organisations the index files certificates under, in id order; `None` when
    /// there are more than `max`. One seek per organisation (skipping over its entries): a
    /// holder may be bound to an organisation without a record (bulk loads), so the
    /// organisation records do not say which ones the index holds.
    pub fn indexed_organisations(&self, max: usize) -> Result<Option<Vec<String>>> {
        let mut orgs = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(key) = self.org_certs.range(from.clone()..).keys().next() {
            let key = key?;
            let org = key.split(|b| *b == 0).next().unwrap_or_default();
            if orgs.len() == max {
                return Ok(None);
            }
            orgs.push(String::from_utf8_lossy(org).into_owned());
            from = org.to_vec();
            from.push(1);
        }
        Ok(Some(orgs))
    }

    /// The revocations after `after`, in serial order (serial bytes, record), for a walk
    /// of every certificate to merge with instead of one lookup per certificate.
    pub fn revocations_after<'a>(
        &'a self,
        after: Option<&Serial>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Revocation)>> + 'a {
        self.revocations
            .range::<Vec<u8>, _>((lower_bound(after), Bound::Unbounded))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), decode(&v, "revocation")?))
            })
    }

    /// The holders whose binding is unresolved (the migration found several organisation
    /// names for them), for unscoped listings that take organisations from the index: the
    /// `unresolved/` meta keys, written by the schema 5 step and removed when a holder is
    /// settled (usually none, never more than the migration found).
    pub fn unresolved_holders(&self) -> Result<BTreeSet<String>> {
        self.meta
            .scan_prefix(UNRESOLVED_PREFIX)
            .keys()
            .map(|key| {
                let key = key?;
                let holder = key.get(UNRESOLVED_PREFIX.len()..).unwrap_or_default();
                Ok(String::from_utf8_lossy(holder).into_owned())
            })
            .collect()
    }

    /// The schema 5 step: one `unresolved/<holder>` meta key per unresolved binding, so no
    /// listing has to scan the bindings. Only a binding that mentions `conflicting_names`
    /// is decoded. Returns how many were found.
    pub(super) fn build_unresolved_index(&self) -> Result<usize> {
        const MARK: &[u8] = b"\"conflicting_names\"";
        let mut found = 0;
        for value in self.holders.iter().values() {
            let value = value?;
            if value.windows(MARK.len()).any(|w| w == MARK) {
                let binding: HolderBinding = decode(&value, "holder binding")?;
                if !binding.resolved() {
                    self.meta.insert(unresolved_key(&binding.holder), &[])?;
                    found += 1;
                }
            }
        }
        Ok(found)
    }

    /// A holder's binding was resolved: listings no longer mark it.
    pub(super) fn forget_unresolved(&self, holder: &str) -> Result<()> {
        self.meta.remove(unresolved_key(holder))?;
        Ok(())
    }

    /// A counter (see the module doc).
    pub fn cert_count_of(&self, of: CountOf<'_>) -> Result<u64> {
        let key = match of {
            CountOf::All => COUNT_ALL.to_vec(),
            CountOf::Organisation(o) => org_counter(o),
            CountOf::Domain(d) => domain_counter(d),
        };
        Ok(u64_of(self.meta.get(key)?))
    }

    /// Serials of a holder's certificates (from the zone index: `domain NUL holder NUL`).
    pub(super) fn serials_of_holder(&self, domain: &str, holder: &str) -> Result<Vec<Serial>> {
        let mut prefix = domain.as_bytes().to_vec();
        prefix.push(0);
        prefix.extend_from_slice(holder.as_bytes());
        prefix.push(0);
        self.domain_certs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                let text =
                    String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned();
                Serial::parse(&text).map_err(|e| Error::Store(e.to_string()))
            })
            .collect()
    }

    /// Rebuilds the organisation index and the counters from the certificates and holder
    /// bindings. Idempotent; the schema 3 migration (run it again after any repair).
    pub fn build_cert_index(&self) -> Result<u64> {
        self.org_certs.clear()?;
        let mut orgs: BTreeMap<String, u64> = BTreeMap::new();
        let mut domains: BTreeMap<String, u64> = BTreeMap::new();
        let mut all = 0u64;
        let mut bindings: BTreeMap<String, Option<String>> = BTreeMap::new();
        for record in self.certs() {
            let record = record?;
            let holder = record.holder.to_string();
            let org = match bindings.get(&holder) {
                Some(o) => o.clone(),
                None => {
                    let o = self.holder_binding(&holder)?.map(|b| b.organisation);
                    bindings.insert(holder, o.clone());
                    o
                }
            };
            if let Some(org) = org {
                self.org_certs
                    .insert(org_cert_key(&org, &record.serial), &[])?;
                *orgs.entry(org).or_default() += 1;
            }
            *domains
                .entry(record.holder.domain().to_string())
                .or_default() += 1;
            all += 1;
        }
        let stale: Vec<sled::IVec> = self
            .meta
            .scan_prefix(COUNT_ORG)
            .keys()
            .chain(self.meta.scan_prefix(COUNT_DOMAIN).keys())
            .collect::<std::result::Result<_, _>>()?;
        for key in stale {
            self.meta.remove(key)?;
        }
        for (org, n) in &orgs {
            self.meta.insert(org_counter(org), &n.to_be_bytes())?;
        }
        for (domain, n) in &domains {
            self.meta.insert(domain_counter(domain), &n.to_be_bytes())?;
        }
        self.meta.insert(COUNT_ALL, &all.to_be_bytes())?;
        self.flush()?;
        Ok(all)
    }
}
