//! What discovery publication needs from the store: a per-domain certificate index (so one
//! domain's zone is rebuilt without reading every certificate), the last SOA serial and content
//! digest of each zone (so serials only grow and unchanged zones are left alone), and the
//! directory view with its change log (so an LDIF change file can be cut since any revision).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{decode, encode, CertRecord, Store};
use crate::error::{Error, Result};
use crate::model::Serial;

const LDAP_REVISION: &[u8] = b"ldap/revision";
const LDAP_ENTRY: &str = "ldap/entry/";
const LDAP_LOG: &[u8] = b"ldap/log/";
const ZONE: &str = "zone/";
/// A sharded zone's shard states: `zone-shard/<domain> NUL be_u32(shard)` -> be_u64(records)
/// digest. Apart from the zone's record, so a change rewrites the one shard state it touched
/// instead of a record of 4,096 (~230 KB of JSON, past sled's blob threshold).
const ZONE_SHARD: &str = "zone-shard/";
/// What the last complete zone sweep covered.
const SWEEP_MARK: &[u8] = b"sweep/mark";
/// Directory updates per sled batch.
const LDAP_CHUNK: usize = 1000;

/// One certificate in the domain index: what publication needs, read in key order without
/// touching the (JSON, serial-ordered) certificate records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedCert {
    pub domain: String,
    /// The holder as written (`local@domain` or `domain`).
    pub holder: String,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub der: Vec<u8>,
}

impl IndexedCert {
    /// Valid at `now` (revocation is checked separately).
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// What was last written for one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    pub serial: u32,
    /// SHA-256 (hex) of everything the zone's content depends on, the serial excepted.
    pub digest: String,
    /// Identity of the domain's publication settings when written (empty before schema 3):
    /// another value means the zone is rebuilt whole.
    #[serde(default)]
    pub settings: String,
    /// CERT records in the zone.
    #[serde(default)]
    pub records: usize,
    /// A sharded zone's shard files, in order; empty for a zone written as one file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardState>,
}

/// How a zone state is stored: its shard states are separate keys (`ZONE_SHARD`); `shards`
/// is read from records written before that.
#[derive(Serialize, Deserialize)]
struct StoredZone {
    serial: u32,
    digest: String,
    #[serde(default)]
    settings: String,
    #[serde(default)]
    records: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shards: Vec<ShardState>,
    #[serde(default, skip_serializing_if = "is_zero")]
    shard_count: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn shard_prefix(domain: &str) -> Vec<u8> {
    let mut key = format!("{ZONE_SHARD}{domain}").into_bytes();
    key.push(0);
    key
}

fn shard_key(domain: &str, shard: usize) -> Vec<u8> {
    let mut key = shard_prefix(domain);
    key.extend_from_slice(&u32::try_from(shard).unwrap_or(u32::MAX).to_be_bytes());
    key
}

fn shard_value(state: &ShardState) -> Vec<u8> {
    let mut value = u64::try_from(state.records)
        .unwrap_or(u64::MAX)
        .to_be_bytes()
        .to_vec();
    value.extend_from_slice(state.digest.as_bytes());
    value
}

fn parse_shard_value(value: &[u8]) -> Result<ShardState> {
    let records = value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Error::Store("a zone shard state is malformed".into()))?;
    Ok(ShardState {
        records,
        digest: String::from_utf8_lossy(value.get(8..).unwrap_or_default()).into_owned(),
    })
}

/// What one shard file of a sharded zone holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub records: usize,
    /// Digest (hex) of the shard's (holder, serial) list.
    pub digest: String,
}

/// How a directory entry changed at one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryChange {
    Add,
    Modify,
    Delete,
}

impl EntryChange {
    fn byte(self) -> u8 {
        match self {
            EntryChange::Add => b'a',
            EntryChange::Modify => b'm',
            EntryChange::Delete => b'd',
        }
    }

    fn from_byte(b: u8) -> Option<EntryChange> {
        match b {
            b'a' => Some(EntryChange::Add),
            b'm' => Some(EntryChange::Modify),
            b'd' => Some(EntryChange::Delete),
            _ => None,
        }
    }
}

/// One directory entry's new state: `Some(digest of its values)` when present, `None` when gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryUpdate {
    pub key: String,
    pub state: Option<Vec<u8>>,
    pub change: EntryChange,
}

/// Index key: `domain NUL holder NUL serial`, so a prefix scan yields one domain's holders in
/// order, with the certificates of one holder (one DNS owner, one LDAP entry) together.
pub(super) fn domain_cert_key(record: &CertRecord) -> Vec<u8> {
    let mut key = domain_prefix(record.holder.domain().as_str());
    key.extend_from_slice(record.holder.to_string().as_bytes());
    key.push(0);
    key.extend_from_slice(record.serial.as_str().as_bytes());
    key
}

/// Index value: notBefore and notAfter (i64 BE Unix seconds), then the DER. The DER is kept
/// here a second time so a zone or the LDIF streams from one ordered scan.
pub(super) fn domain_cert_value(record: &CertRecord) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + record.der.len());
    value.extend_from_slice(&record.not_before.unix_timestamp().to_be_bytes());
    value.extend_from_slice(&record.not_after.unix_timestamp().to_be_bytes());
    value.extend_from_slice(&record.der);
    value
}

fn domain_prefix(domain: &str) -> Vec<u8> {
    let mut key = domain.as_bytes().to_vec();
    key.push(0);
    key
}

/// (domain, holder, serial, notBefore, notAfter) of a domain index entry, without its DER.
pub(super) type IndexValidity = (String, String, String, OffsetDateTime, OffsetDateTime);

pub(super) fn parse_index_validity(key: &[u8], value: &[u8]) -> Result<IndexValidity> {
    let bad = || Error::Store("a domain index entry is malformed".into());
    let mut parts = key.splitn(3, |b| *b == 0);
    let mut text = || {
        parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .ok_or_else(bad)
    };
    let (domain, holder, serial) = (text()?, text()?, text()?);
    let time = |range: std::ops::Range<usize>| -> Result<OffsetDateTime> {
        let bytes: [u8; 8] = value
            .get(range)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(bytes)).map_err(|_| bad())
    };
    Ok((domain, holder, serial, time(0..8)?, time(8..16)?))
}

fn parse_index(key: &[u8], value: &[u8]) -> Result<IndexedCert> {
    let bad = || Error::Store("a domain index entry is malformed".into());
    let mut parts = key.split(|b| *b == 0);
    let mut text = || {
        parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .ok_or_else(bad)
    };
    let (domain, holder, serial) = (text()?, text()?, text()?);
    let time = |range: std::ops::Range<usize>| -> Result<OffsetDateTime> {
        let bytes: [u8; 8] = value
            .get(range)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(bytes)).map_err(|_| bad())
    };
    Ok(IndexedCert {
        domain,
        holder,
        serial: Serial::parse(&serial).map_err(|e| Error::Store(e.to_string()))?,
        not_before: time(0..8)?,
        not_after: time(8..16)?,
        der: value.get(16..).ok_or_else(bad)?.to_vec(),
    })
}

impl Store {
    /// Builds the domain index for certificates stored before it existed.
    pub(super) fn backfill_domain_index(&self) -> Result<()> {
        if !self.domain_certs.is_empty() || self.certs.is_empty() {
            return Ok(());
        }
        for record in self.certs() {
            let record = record?;
            self.domain_certs
                .insert(domain_cert_key(&record), domain_cert_value(&record))?;
        }
        self.flush()
    }

    /// The certificates of one health domain, holder by holder.
    pub fn domain_certs(&self, domain: &str) -> impl Iterator<Item = Result<IndexedCert>> + '_ {
        self.domain_certs
            .scan_prefix(domain_prefix(domain))
            .map(|item| {
                let (k, v) = item?;
                parse_index(&k, &v)
            })
    }

    /// What the last complete zone sweep covered (opaque to the store).
    pub fn sweep_mark(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.discovery.get(SWEEP_MARK)?.map(|v| v.to_vec()))
    }

    pub fn put_sweep_mark(&self, mark: &[u8]) -> Result<()> {
        self.discovery.insert(SWEEP_MARK, mark)?;
        Ok(())
    }

    /// Serials (as stored keys) of every revoked certificate.
    pub fn revoked_serial_keys(&self) -> Result<std::collections::HashSet<Vec<u8>>> {
        self.revocations
            .iter()
            .keys()
            .map(|k| Ok(k?.to_vec()))
            .collect()
    }

    pub fn is_revoked(&self, serial: &Serial) -> Result<bool> {
        Ok(self.revocations.contains_key(serial.to_bytes())?)
    }

    /// The certificates of one holder (`local@domain` or `domain`) of `domain`.
    pub fn holder_certs(
        &self,
        domain: &str,
        holder: &str,
    ) -> impl Iterator<Item = Result<IndexedCert>> + '_ {
        let mut prefix = domain_prefix(domain);
        prefix.extend_from_slice(holder.as_bytes());
        prefix.push(0);
        self.domain_certs.scan_prefix(prefix).map(|item| {
            let (k, v) = item?;
            parse_index(&k, &v)
        })
    }

    /// The last written state of a zone. A sharded zone whose shard states are not all there
    /// comes back with fewer shards than it had, which no layout matches: it is rebuilt.
    pub fn zone_state(&self, domain: &str) -> Result<Option<ZoneState>> {
        let Some(bytes) = self.discovery.get(format!("{ZONE}{domain}"))? else {
            return Ok(None);
        };
        let stored: StoredZone = decode(&bytes, "zone state")?;
        let mut shards = stored.shards;
        if stored.shard_count > 0 {
            shards = self.zone_shards(domain)?;
            shards.truncate(stored.shard_count);
        }
        Ok(Some(ZoneState {
            serial: stored.serial,
            digest: stored.digest,
            settings: stored.settings,
            records: stored.records,
            shards,
        }))
    }

    /// The stored shard states of a zone, in shard order, up to the first gap.
    fn zone_shards(&self, domain: &str) -> Result<Vec<ShardState>> {
        let prefix = shard_prefix(domain);
        let mut out = Vec::new();
        for item in self.discovery.scan_prefix(&prefix) {
            let (key, value) = item?;
            if key.get(prefix.len()..)
                != Some(&u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes()[..])
            {
                break;
            }
            out.push(parse_shard_value(&value)?);
        }
        Ok(out)
    }

    /// Records the last written state of zones, durably, in one batch: a sharded zone's
    /// shard states that differ from the stored ones, and its record.
    pub fn put_zone_states(&self, states: &[(String, ZoneState)]) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (domain, state) in states {
            let stored_shards: Vec<(usize, ShardState)> = self
                .discovery
                .scan_prefix(shard_prefix(domain))
                .map(|item| {
                    let (key, value) = item?;
                    let index = key
                        .get(key.len().saturating_sub(4)..)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(usize::MAX, |b| u32::from_be_bytes(b) as usize);
                    Ok((index, parse_shard_value(&value)?))
                })
                .collect::<Result<_>>()?;
            for (index, _) in &stored_shards {
                if *index >= state.shards.len() {
                    batch.remove(shard_key(domain, *index));
                }
            }
            for (index, shard) in state.shards.iter().enumerate() {
                let same = stored_shards
                    .get(index)
                    .is_some_and(|(i, old)| *i == index && old == shard);
                if !same {
                    batch.insert(shard_key(domain, index), shard_value(shard));
                }
            }
            let stored = StoredZone {
                serial: state.serial,
                digest: state.digest.clone(),
                settings: state.settings.clone(),
                records: state.records,
                shards: Vec::new(),
                shard_count: state.shards.len(),
            };
            batch.insert(format!("{ZONE}{domain}").as_bytes(), encode(&stored)?);
        }
        self.discovery.apply_batch(batch)?;
        self.flush()
    }

    /// The directory revision: bumped by every batch of directory changes.
    pub fn ldap_revision(&self) -> Result<u64> {
        Ok(super::u64_of(self.discovery.get(LDAP_REVISION)?))
    }

    /// The recorded state of a directory entry (`None`: not in the directory).
    pub fn ldap_entry(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .discovery
            .get(format!("{LDAP_ENTRY}{key}"))?
            .map(|v| v.to_vec()))
    }

    /// Every entry key recorded as present, in order.
    pub fn ldap_entry_keys(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.discovery.scan_prefix(LDAP_ENTRY).keys().map(|k| {
            let k = k?;
            Ok(String::from_utf8_lossy(k.get(LDAP_ENTRY.len()..).unwrap_or_default()).into_owned())
        })
    }

    /// Records a batch of directory changes under one new revision; returns the revision
    /// (the current one when the batch is empty).
    pub fn record_ldap_changes(&self, updates: &[EntryUpdate]) -> Result<u64> {
        if updates.is_empty() {
            return self.ldap_revision();
        }
        // Written in chunks (one sled batch of 200,000 writes, the first export of a large
        // store, peaks near 2 GB), the revision last. A crash in between leaves some
        // entries updated and logged under the revision the next export uses again, so the
        // log stays consistent; the first logged change of an entry at a revision is kept.
        let revision = self.ldap_revision()? + 1;
        for chunk in updates.chunks(LDAP_CHUNK) {
            let mut batch = sled::Batch::default();
            for update in chunk {
                let entry = format!("{LDAP_ENTRY}{}", update.key);
                match &update.state {
                    Some(state) => batch.insert(entry.as_bytes(), state.as_slice()),
                    None => batch.remove(entry.as_bytes()),
                }
                // Revision 1 fills an empty view: every change is an add, and "changes since
                // revision 0" are read from the view itself, so its log is not needed.
                if revision == 1 {
                    continue;
                }
                let mut log = LDAP_LOG.to_vec();
                log.extend_from_slice(&revision.to_be_bytes());
                log.extend_from_slice(update.key.as_bytes());
                if !self.discovery.contains_key(&log)? {
                    batch.insert(log, &[update.change.byte()]);
                }
            }
            self.discovery.apply_batch(batch)?;
        }
        self.discovery
            .insert(LDAP_REVISION, &revision.to_be_bytes())?;
        self.flush()?;
        Ok(revision)
    }

    /// The first change of every entry changed after `revision`, by entry key.
    pub fn ldap_first_changes_since(
        &self,
        revision: u64,
    ) -> Result<std::collections::BTreeMap<String, EntryChange>> {
        let mut start = LDAP_LOG.to_vec();
        start.extend_from_slice(&(revision.saturating_add(1)).to_be_bytes());
        let mut end = LDAP_LOG.to_vec();
        end.push(0xff);
        let mut out = std::collections::BTreeMap::new();
        for item in self.discovery.range(start..end) {
            let (k, v) = item?;
            let key = k
                .get(LDAP_LOG.len() + 8..)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let change = v
                .first()
                .copied()
                .and_then(EntryChange::from_byte)
                .ok_or_else(|| Error::Store("a directory log entry is malformed".into()))?;
            out.entry(key).or_insert(change);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(records: usize, digest: &str) -> ShardState {
        ShardState {
            records,
            digest: digest.into(),
        }
    }

    /// A sharded zone's shard states live in their own keys and come back whole; a smaller
    /// layout drops the extra ones; a zone written as one file has none; a missing shard
    /// state shortens what is read, so no layout matches it.
    #[test]
    fn zone_states_keep_their_shards_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut state = ZoneState {
            serial: 7,
            digest: "d".into(),
            settings: "s".into(),
            records: 6,
            shards: vec![shard(1, "a"), shard(2, "b"), shard(3, "c")],
        };
        store
            .put_zone_states(&[("d.example".into(), state.clone())])
            .unwrap();
        assert_eq!(store.zone_state("d.example").unwrap(), Some(state.clone()));
        let main = store.discovery.get("zone/d.example").unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&main).contains("\"a\""),
            "not inline"
        );

        state.shards[1] = shard(1, "b2");
        state.shards.pop();
        store
            .put_zone_states(&[("d.example".into(), state.clone())])
            .unwrap();
        assert_eq!(store.zone_state("d.example").unwrap(), Some(state.clone()));
        assert_eq!(store.zone_shards("d.example").unwrap().len(), 2);
        assert_eq!(store.zone_state("e.example").unwrap(), None);

        store.discovery.remove(shard_key("d.example", 0)).unwrap();
        assert!(store
            .zone_state("d.example")
            .unwrap()
            .unwrap()
            .shards
            .is_empty());

        state.shards.clear();
        store
            .put_zone_states(&[("d.example".into(), state.clone())])
            .unwrap();
        assert_eq!(store.zone_state("d.example").unwrap(), Some(state));
        assert!(store.zone_shards("d.example").unwrap().is_empty());
    }
}
