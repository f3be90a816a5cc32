//! The indexes that keep zone publication off full scans (issue 14: a change in a domain of a
//! million certificates must reach its zone in 100 ms, and an idle service must not read the
//! store). Three trees, each written in the transaction that issues or revokes:
//! - `zone_buckets`: `domain NUL be_u16(bucket) holder NUL serial` -> validity. The bucket is
//!   a stable hash of the holder, so one range of buckets is one shard file of a sharded zone,
//!   with every record of an owner in it, read without touching the rest of the domain.
//! - `time_index`: `be_u64(unix time) NUL kind NUL serial` -> `domain NUL holder`, kind `a`
//!   (notAfter) or `b` (notBefore): the sweep visits only what expired or became valid since
//!   its last run.
//! - `zone_changes`: `domain NUL be_u64(revision) serial` -> holder: issuances and revocations
//!   not yet published, so a publication knows which shards to rewrite (also after a crash
//!   or a bulk import that published nothing).

use time::OffsetDateTime;

use super::{CertRecord, Store};
use crate::error::{Error, Result};
use crate::model::Serial;

/// Buckets of the holder hash; a zone's shards are contiguous bucket ranges.
pub const BUCKETS: u32 = 1 << 16;
/// `time_index` kinds.
const NOT_AFTER: u8 = b'a';
const NOT_BEFORE: u8 = b'b';
/// Index entries per sled batch when the indexes are built for an existing store.
const BUILD_CHUNK: usize = 10_000;

/// One certificate of a bucket range: what a zone's digest and record order need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub holder: String,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl BucketEntry {
    /// Valid at `now` (revocation is checked separately).
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The bucket of a holder (`local@domain` or `domain`): the first two bytes of its SHA-256.
pub fn holder_bucket(holder: &str) -> u16 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, holder.as_bytes());
    let d = digest.as_ref();
    u16::from_be_bytes([
        d.first().copied().unwrap_or(0),
        d.get(1).copied().unwrap_or(0),
    ])
}

/// The first bucket of shard `shard` of `shards` (`shards` for the end of the last one).
pub fn shard_start(shard: u32, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    let start = (u64::from(shard) * u64::from(BUCKETS)).div_ceil(shards);
    u32::try_from(start).unwrap_or(BUCKETS)
}

/// The shard of a bucket among `shards`: `shard_start(s) <= bucket < shard_start(s + 1)`.
pub fn shard_of_bucket(bucket: u16, shards: u32) -> u32 {
    let shard = u64::from(bucket) * u64::from(shards.max(1)) / u64::from(BUCKETS);
    u32::try_from(shard).unwrap_or(0)
}

fn bucket_key(domain: &str, holder: &str, serial: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(domain.len() + holder.len() + serial.len() + 4);
    key.extend_from_slice(domain.as_bytes());
    key.push(0);
    key.extend_from_slice(&holder_bucket(holder).to_be_bytes());
    key.extend_from_slice(holder.as_bytes());
    key.push(0);
    key.extend_from_slice(serial.as_bytes());
    key
}

fn validity(not_before: OffsetDateTime, not_after: OffsetDateTime) -> [u8; 16] {
    let mut v = [0u8; 16];
    let (a, b) = v.split_at_mut(8);
    a.copy_from_slice(&not_before.unix_timestamp().to_be_bytes());
    b.copy_from_slice(&not_after.unix_timestamp().to_be_bytes());
    v
}

fn time_key(at: OffsetDateTime, kind: u8, serial: &str) -> Vec<u8> {
    let t = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    let mut key = Vec::with_capacity(12 + serial.len());
    key.extend_from_slice(&t.to_be_bytes());
    key.push(0);
    key.push(kind);
    key.push(0);
    key.extend_from_slice(serial.as_bytes());
    key
}

fn domain_holder(domain: &str, holder: &str) -> Vec<u8> {
    let mut v = domain.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(holder.as_bytes());
    v
}

/// The `zone_changes` key of a change at `revision`.
pub(super) fn change_key(domain: &str, revision: u64, serial: &Serial) -> Vec<u8> {
    let mut key = domain.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&revision.to_be_bytes());
    key.extend_from_slice(serial.as_str().as_bytes());
    key
}

/// The index entries of one stored certificate: (bucket key, validity) and the two time keys
/// with their value.
pub(super) struct IndexEntries {
    pub bucket: (Vec<u8>, [u8; 16]),
    pub times: [(Vec<u8>, Vec<u8>); 2],
}

pub(super) fn index_entries(record: &CertRecord) -> IndexEntries {
    let domain = record.holder.domain().as_str();
    let holder = record.holder.to_string();
    index_entries_of(
        domain,
        &holder,
        record.serial.as_str(),
        record.not_before,
        record.not_after,
    )
}

fn index_entries_of(
    domain: &str,
    holder: &str,
    serial: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> IndexEntries {
    let value = domain_holder(domain, holder);
    IndexEntries {
        bucket: (
            bucket_key(domain, holder, serial),
            validity(not_before, not_after),
        ),
        times: [
            (time_key(not_after, NOT_AFTER, serial), value.clone()),
            (time_key(not_before, NOT_BEFORE, serial), value),
        ],
    }
}

fn parse_bucket(prefix_len: usize, key: &[u8], value: &[u8]) -> Result<BucketEntry> {
    let bad = || Error::Store("a zone bucket entry is malformed".into());
    let rest = key.get(prefix_len + 2..).ok_or_else(bad)?;
    let mut parts = rest.splitn(2, |b| *b == 0);
    let holder = String::from_utf8_lossy(parts.next().ok_or_else(bad)?).into_owned();
    let serial = String::from_utf8_lossy(parts.next().ok_or_else(bad)?).into_owned();
    let time = |range: std::ops::Range<usize>| -> Result<OffsetDateTime> {
        let bytes: [u8; 8] = value
            .get(range)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(bytes)).map_err(|_| bad())
    };
    Ok(BucketEntry {
        holder,
        serial: Serial::parse(&serial).map_err(|e| Error::Store(e.to_string()))?,
        not_before: time(0..8)?,
        not_after: time(8..16)?,
    })
}

fn domain_prefix(domain: &str) -> Vec<u8> {
    let mut key = domain.as_bytes().to_vec();
    key.push(0);
    key
}

impl Store {
    /// The certificates of `domain` whose holder falls in buckets `start..end` (`end` up to
    /// [`BUCKETS`]), in (bucket, holder, serial) order: one shard of a sharded zone.
    pub fn bucket_entries(
        &self,
        domain: &str,
        start: u32,
        end: u32,
    ) -> impl Iterator<Item = Result<BucketEntry>> + '_ {
        let prefix = domain_prefix(domain);
        let bound = |b: u32| -> Vec<u8> {
            let mut k = prefix.clone();
            match u16::try_from(b) {
                Ok(b) => k.extend_from_slice(&b.to_be_bytes()),
                // Past the last bucket: the next domain prefix.
                Err(_) => {
                    k.pop();
                    k.push(1);
                }
            }
            k
        };
        let (lo, hi) = (bound(start), bound(end));
        let len = prefix.len();
        self.zone_buckets.range(lo..hi).map(move |item| {
            let (k, v) = item?;
            parse_bucket(len, &k, &v)
        })
    }

    /// The DER of one certificate of the domain index.
    pub fn indexed_der(&self, domain: &str, holder: &str, serial: &Serial) -> Result<Vec<u8>> {
        let mut key = domain_prefix(domain);
        key.extend_from_slice(holder.as_bytes());
        key.push(0);
        key.extend_from_slice(serial.as_str().as_bytes());
        let value = self.domain_certs.get(&key)?.ok_or_else(|| {
            Error::Store(format!(
                "certificate {serial} is missing from the domain index"
            ))
        })?;
        Ok(value.get(16..).unwrap_or_default().to_vec())
    }

    /// (domain, holder) of every certificate that expired or became valid at a time in
    /// `after < t <= upto` (Unix seconds), in time order; a holder may repeat.
    pub fn validity_changes(
        &self,
        after: i64,
        upto: i64,
    ) -> impl Iterator<Item = Result<(String, String)>> + '_ {
        let from = u64::try_from(after.saturating_add(1)).unwrap_or(0);
        let to = u64::try_from(upto.saturating_add(1)).unwrap_or(0);
        self.time_index
            .range(from.to_be_bytes()..to.max(from).to_be_bytes())
            .values()
            .map(|v| {
                let v = v?;
                let mut parts = v.splitn(2, |b| *b == 0);
                let mut text = || {
                    parts
                        .next()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .ok_or_else(|| Error::Store("a time index entry is malformed".into()))
                };
                Ok((text()?, text()?))
            })
    }

    /// Holders of `domain` changed (issued, revoked) at revisions up to `upto` and not yet
    /// published; at most `limit` (the caller rebuilds the whole zone beyond that).
    pub fn pending_zone_changes(
        &self,
        domain: &str,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<String>> {
        let (lo, hi) = change_range(domain, upto);
        self.zone_changes
            .range(lo..hi)
            .values()
            .take(limit)
            .map(|v| Ok(String::from_utf8_lossy(&v?).into_owned()))
            .collect()
    }

    /// Forgets the changes of `domain` up to revision `upto`, once its zone shows them (the
    /// directory view notes their holders first, when there is one: `view_changes`).
    pub fn clear_zone_changes(&self, domain: &str, upto: u64) -> Result<()> {
        let (lo, hi) = change_range(domain, upto);
        let revision_at = domain.len() + 1;
        loop {
            let items: Vec<(sled::IVec, sled::IVec)> = self
                .zone_changes
                .range(lo.clone()..hi.clone())
                .take(BUILD_CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if items.is_empty() {
                return Ok(());
            }
            self.note_view_changes(
                domain,
                items.iter().map(|(k, v)| {
                    let revision = k
                        .get(revision_at..revision_at + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(0, u64::from_be_bytes);
                    (revision, &v[..])
                }),
            )?;
            let mut batch = sled::Batch::default();
            for (k, _) in items {
                batch.remove(k);
            }
            self.zone_changes.apply_batch(batch)?;
        }
    }

    /// Builds `zone_buckets` and `time_index` from the domain index (a migration step; safe to
    /// run again: it writes the same entries). Streams in batches; returns the entries indexed.
    pub(super) fn build_zone_indexes(&self) -> Result<usize> {
        let mut count = 0;
        let mut buckets = sled::Batch::default();
        let mut times = sled::Batch::default();
        let mut pending = 0;
        for item in self.domain_certs.iter() {
            let (k, v) = item?;
            let cert = super::discovery::parse_index_validity(&k, &v)?;
            let e = index_entries_of(&cert.0, &cert.1, &cert.2, cert.3, cert.4);
            buckets.insert(e.bucket.0, &e.bucket.1[..]);
            for (key, value) in e.times {
                times.insert(key, value);
            }
            count += 1;
            pending += 1;
            if pending == BUILD_CHUNK {
                self.zone_buckets
                    .apply_batch(std::mem::take(&mut buckets))?;
                self.time_index.apply_batch(std::mem::take(&mut times))?;
                pending = 0;
            }
        }
        self.zone_buckets.apply_batch(buckets)?;
        self.time_index.apply_batch(times)?;
        Ok(count)
    }
}

fn change_range(domain: &str, upto: u64) -> (Vec<u8>, Vec<u8>) {
    let lo = domain_prefix(domain);
    let mut hi = lo.clone();
    hi.extend_from_slice(&upto.saturating_add(1).to_be_bytes());
    if upto == u64::MAX {
        hi = domain.as_bytes().to_vec();
        hi.push(1);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_buckets() {
        for shards in [2u32, 3, 7, 256, 4096] {
            assert_eq!(shard_start(0, shards), 0);
            assert_eq!(shard_start(shards, shards), BUCKETS);
            for bucket in [0u16, 1, 255, 256, 32767, 32768, 65534, 65535] {
                let s = shard_of_bucket(bucket, shards);
                assert!(s < shards, "{bucket} of {shards}");
                assert!(
                    shard_start(s, shards) <= u32::from(bucket)
                        && u32::from(bucket) < shard_start(s + 1, shards),
                    "bucket {bucket} is in shard {s} of {shards}"
                );
            }
        }
        assert_ne!(holder_bucket("a@d.example"), holder_bucket("b@d.example"));
    }

    /// The schema 4 step indexes certificates stored before the indexes existed, and running
    /// it again changes nothing.
    #[test]
    fn indexes_are_built_from_the_domain_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        for (holder, serial, nb, na) in [
            ("a@d.example", "0a", 1_000, 5_000),
            ("b@d.example", "0b", 2_000, 6_000),
            ("d.example", "0c", 1_500, 9_000),
        ] {
            let mut key = b"d.example\0".to_vec();
            key.extend_from_slice(holder.as_bytes());
            key.push(0);
            key.extend_from_slice(serial.as_bytes());
            let mut value = validity(t(nb), t(na)).to_vec();
            value.extend_from_slice(b"DER");
            store.domain_certs.insert(key, value).unwrap();
        }
        for _ in 0..2 {
            assert_eq!(store.build_zone_indexes().unwrap(), 3);
            let all: Vec<BucketEntry> = store
                .bucket_entries("d.example", 0, BUCKETS)
                .collect::<Result<_>>()
                .unwrap();
            assert_eq!(all.len(), 3);
            let mut buckets: Vec<u16> = all.iter().map(|e| holder_bucket(&e.holder)).collect();
            let sorted = {
                let mut b = buckets.clone();
                b.sort();
                b
            };
            assert_eq!(buckets, sorted, "bucket order");
            buckets.dedup();
            assert_eq!(store.bucket_entries("other.example", 0, BUCKETS).count(), 0);
            // Two shards hold every entry between them, each entry once.
            let halves = store
                .bucket_entries("d.example", 0, shard_start(1, 2))
                .count()
                + store
                    .bucket_entries("d.example", shard_start(1, 2), BUCKETS)
                    .count();
            assert_eq!(halves, 3);
        }
        let a = store
            .bucket_entries("d.example", 0, BUCKETS)
            .map(|e| e.unwrap())
            .find(|e| e.holder == "a@d.example")
            .unwrap();
        assert_eq!((a.not_before, a.not_after), (t(1_000), t(5_000)));
        assert_eq!(
            store
                .indexed_der("d.example", "a@d.example", &a.serial)
                .unwrap(),
            b"DER"
        );
        // (1_500, 5_000]: b becomes valid at 2_000, a expires at 5_000; nothing else.
        let changes: Vec<(String, String)> = store
            .validity_changes(1_500, 5_000)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            changes,
            vec![
                ("d.example".to_string(), "b@d.example".to_string()),
                ("d.example".to_string(), "a@d.example".to_string()),
            ]
        );
        assert_eq!(store.validity_changes(9_000, 20_000).count(), 0);

        // Pending changes are read and forgotten up to a revision, per domain.
        let serial = Serial::parse("0a").unwrap();
        for (domain, revision, holder) in [
            ("d.example", 3, "a@d.example"),
            ("d.example", 5, "b@d.example"),
            ("e.example", 4, "x@e.example"),
        ] {
            store
                .zone_changes
                .insert(change_key(domain, revision, &serial), holder)
                .unwrap();
        }
        assert_eq!(
            store.pending_zone_changes("d.example", 4, 10).unwrap(),
            vec!["a@d.example"]
        );
        store.clear_zone_changes("d.example", 4).unwrap();
        assert_eq!(
            store
                .pending_zone_changes("d.example", u64::MAX, 10)
                .unwrap(),
            vec!["b@d.example"]
        );
        assert_eq!(
            store
                .pending_zone_changes("e.example", u64::MAX, 10)
                .unwrap(),
            vec!["x@e.example"]
        );
    }
}
