//! What makes a certificate listing a page and not a scan: the organisation index
//! (`org_certs`: `organisation NUL serial bytes` -> empty) and the certificate counters in the
//! meta tree (total, per organisation, per health domain). Both are written in the transaction
//! that stores a certificate (`insert_certs`) or moves a holder to another organisation
//! (`put_holder_binding`), and rebuilt from the certificates by `build_cert_index` (the
//! schema 3 migration; idempotent). Listings walk the certificate tree or the index from a
//! cursor (the last serial a page covered) in serial order, so one page costs O(page size)
//! whatever the store holds: before this index `GET /api/v1/certificates` built every entry of a
//! 1M store (26 s, 3.1 GB) to answer one page.

use std::collections::BTreeMap;
use std::ops::Bound;

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{u64_of, Store};
use crate::error::{Error, Result};
use crate::model::Serial;

const COUNT_ALL: &[u8] = b"count/certs";
const COUNT_ORG: &str = "count/org/";
const COUNT_DOMAIN: &str = "count/domain/";

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
        let after = after.map(Serial::to_bytes);
        match source {
            CertSource::All => {
                let lower = match after {
                    Some(a) => Bound::Excluded(a),
                    None => Bound::Unbounded,
                };
                Box::new(
                    self.certs
                        .range::<Vec<u8>, _>((lower, Bound::Unbounded))
                        .keys()
                        .map(|k| serial_of(&k?)),
                )
            }
            CertSource::Organisations(orgs) => {
                let mut walks: Vec<_> = orgs
                    .iter()
                    .map(|org| {
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
                                Ok(k.get(len..).unwrap_or_default().to_vec())
                            })
                            .peekable()
                    })
                    .collect();
                // A k-way merge of the organisations' walks (a holder has one organisation,
                // so no serial appears twice).
                Box::new(std::iter::from_fn(move || {
                    let mut best: Option<(usize, Vec<u8>)> = None;
                    for (i, walk) in walks.iter_mut().enumerate() {
                        match walk.peek() {
                            Some(Err(_)) => {
                                return walk.next().map(|r| r.and_then(|b| serial_of(&b)));
                            }
                            Some(Ok(bytes)) if best.as_ref().is_none_or(|(_, b)| bytes < b) => {
                                best = Some((i, bytes.clone()));
                            }
                            _ => {}
                        }
                    }
                    let (i, _) = best?;
                    walks
                        .get_mut(i)
                        .and_then(Iterator::next)
                        .map(|r| r.and_then(|b| serial_of(&b)))
                }))
            }
        }
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

fn serial_of(bytes: &[u8]) -> Result<Serial> {
    Serial::parse(&hex::encode(bytes)).map_err(|e| Error::Store(e.to_string()))
}
