//! Sharded zones, so that a change in a domain of a million certificates reaches DNS in
//! milliseconds (a 1.5 GB zone file cannot be rewritten per change). A zone with more than
//! `publish.shard_above` CERT records is written as shard files under `<zone file>.d/`: the
//! zone file (SOA, NS, SRV) `$INCLUDE`s `<zone file>.d/index.zone`, which `$INCLUDE`s each
//! shard, all by absolute path (BIND reads a relative `$INCLUDE` from its working directory,
//! not the including file's, so only an absolute path names the same file for every server).
//! The index changes only with the layout, so a change rewrites one shard and a ~500-byte zone
//! file (new SOA serial) whatever the shard count. The count is `publish.shards`, or (0, the
//! default) a power of two giving ~256 records (~400 KB) per shard: a change costs the rewrite
//! and fsync of one shard, which must stay small at a million records (syncing a 6 MB shard
//! took ~110 ms alone on the benchmark machine). A record's shard is a range of its holder's
//! hash bucket (store `zone_index`): every record of an owner name is in one shard, and one
//! shard is read by one range scan. The zone digest is built from the per-shard digests kept
//! in the zone state, so nothing walks the whole domain. A full rebuild writes the same bytes:
//! both render a shard from the same ordered range.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::published::{next_serial, ZoneJob, ZoneOutcome};
use super::{sha256, Revoked};
use crate::authority::Authority;
use crate::config::{DomainSettings, MAX_SHARDS};
use crate::discovery::{dns, writer, ReloadOutcome};
use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::store::{self, ShardState, ZoneState};

/// Pending changes of one domain beyond which its zone is rebuilt whole (a bulk import).
const PENDING_LIMIT: usize = 4096;
/// Records per shard an automatic count (`publish.shards = 0`) aims at.
const AUTO_RECORDS: usize = 256;
/// Fewest shards of an automatic count.
const AUTO_MIN: u32 = 2;
/// The file of a shard directory that `$INCLUDE`s every shard (not a hex name: no clash).
const INDEX: &str = "index.zone";

/// The shard count a zone of `records` CERT records is written with afresh: the configured
/// one, or the smallest power of two giving at most [`AUTO_RECORDS`] per shard.
pub(super) fn fresh_count(settings: &DomainSettings, records: usize) -> u32 {
    if settings.shards != 0 {
        return settings.shards;
    }
    let want = records.div_ceil(AUTO_RECORDS).max(1).next_power_of_two();
    u32::try_from(want)
        .unwrap_or(MAX_SHARDS)
        .clamp(AUTO_MIN, MAX_SHARDS)
}

/// Whether a zone written with `count` shards keeps that layout at `records` records (another
/// layout rewrites the zone whole): a configured count while it is configured; an automatic
/// one until the zone grew past twice [`AUTO_RECORDS`] per shard or shrank below an eighth,
/// so a domain growing from 10,000 to 1,000,000 records is rebuilt a few times, not per change.
pub(super) fn keeps_count(settings: &DomainSettings, count: u32, records: usize) -> bool {
    if settings.shards != 0 {
        return count == settings.shards;
    }
    let fresh = fresh_count(settings, records);
    fresh <= count.saturating_mul(2) && fresh.saturating_mul(8) >= count
}

/// `settings` with the shard count of one layout (the rendering reads `settings.shards`).
pub(super) fn with_count(settings: &DomainSettings, count: u32) -> DomainSettings {
    DomainSettings {
        shards: count,
        ..settings.clone()
    }
}

/// The shard count a full run plans with first: the last layout's when it still applies,
/// else the configured count, or the largest for an automatic one (its plans give the record
/// count the final choice needs). The flag says the layout is the last one.
pub(super) fn first_count(settings: &DomainSettings, last: Option<&ZoneState>) -> (u32, bool) {
    let previous = last
        .filter(|s| !s.shards.is_empty())
        .and_then(|s| Some((s, u32::try_from(s.shards.len()).ok()?)))
        .filter(|(s, n)| {
            (settings.shards == 0 || settings.shards == *n)
                && s.settings == settings_id(&with_count(settings, *n))
        });
    let small = last.is_some_and(|s| s.shards.is_empty() && s.records <= settings.shard_above);
    match previous {
        Some((_, n)) => (n, true),
        None if settings.shards != 0 => (settings.shards, false),
        // A zone that was one file is likely still small: plan cheaply, re-plan if not.
        None if small => (AUTO_MIN, false),
        None => (MAX_SHARDS, false),
    }
}

/// The directory of a sharded zone's shard files: `<zone file>.d`.
pub(super) fn shard_dir(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".d");
    PathBuf::from(name)
}

/// Shard `shard`'s file: lower-case hex, as wide as the largest shard number needs.
fn shard_file(dir: &Path, shard: u32, shards: u32) -> PathBuf {
    let width = format!("{:x}", shards.saturating_sub(1)).len();
    dir.join(format!("{shard:0width$x}.zone"))
}

/// The zone file as an absolute path (what `$INCLUDE` lines are built from).
fn absolute(file: &Path) -> Result<PathBuf> {
    std::path::absolute(file).map_err(|e| Error::io(file, e))
}

/// Identity of everything in a domain's settings that shapes its files (for a sharded zone,
/// the settings with its shard count; v3: the shard index file).
pub(super) fn settings_id(settings: &DomainSettings) -> String {
    hex::encode(sha256(format!("v3 {settings:?}").as_bytes()))
}

/// The digest of a sharded zone: its settings and its shards' digests, in order.
fn sharded_digest(settings_id: &str, shards: &[ShardState]) -> String {
    let mut text = format!("sharded {settings_id}\n");
    for s in shards {
        text.push_str(&s.digest);
        text.push('\n');
    }
    hex::encode(sha256(text.as_bytes()))
}

/// Replaces each `$INCLUDE <file>` line by the file's content (the index's own includes
/// too): the zone as one file, for a download whose reader cannot follow this host's paths.
pub(super) fn flatten_includes(zone: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(zone.len());
    flatten_into(zone, &mut out, 2)?;
    Ok(out)
}

fn flatten_into(text: &[u8], out: &mut Vec<u8>, depth: u32) -> Result<()> {
    for line in text.split_inclusive(|b| *b == b'\n') {
        match line.strip_prefix(b"$INCLUDE ") {
            Some(path) if depth > 0 => {
                let path = PathBuf::from(String::from_utf8_lossy(path).trim_end());
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                flatten_into(&bytes, out, depth - 1)?;
            }
            _ => out.extend_from_slice(line),
        }
    }
    Ok(())
}

impl Authority {
    /// Record counts and digests of shards `range` of the zone, from the bucket index alone
    /// (no certificate is read).
    pub(super) fn shard_plans(
        &self,
        settings: &DomainSettings,
        range: std::ops::Range<u32>,
        now: OffsetDateTime,
        revoked: &Revoked,
    ) -> Result<Vec<ShardState>> {
        let store = self.store()?;
        let domain = settings.domain.as_str();
        let mut out = Vec::new();
        for shard in range {
            let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            let mut records = 0;
            let (start, end) = (
                store::shard_start(shard, settings.shards),
                store::shard_start(shard + 1, settings.shards),
            );
            for entry in store.bucket_entries(domain, start, end) {
                let entry = entry?;
                if !entry.is_current(now) || revoked.contains(&store, &entry.serial)? {
                    continue;
                }
                digest.update(entry.holder.as_bytes());
                digest.update(b" ");
                digest.update(entry.serial.as_str().as_bytes());
                digest.update(b"\n");
                records += 1;
            }
            let digest = digest.finish();
            out.push(ShardState {
                records,
                digest: hex::encode(digest.as_ref().get(..16).unwrap_or_default()),
            });
        }
        Ok(out)
    }

    /// Streams one shard: a comment, then its CERT records in bucket order.
    fn render_shard(
        &self,
        w: &mut dyn Write,
        settings: &DomainSettings,
        shard: u32,
        now: OffsetDateTime,
        revoked: &Revoked,
    ) -> std::io::Result<()> {
        let store = self.store().map_err(std::io::Error::other)?;
        let domain = settings.domain.as_str();
        writeln!(
            w,
            "; shard {shard} of {} of the {domain} zone, written by anchorage",
            settings.shards
        )?;
        let (start, end) = (
            store::shard_start(shard, settings.shards),
            store::shard_start(shard + 1, settings.shards),
        );
        let mut owner = (String::new(), String::new());
        for entry in store.bucket_entries(domain, start, end) {
            let entry = entry.map_err(std::io::Error::other)?;
            let skip = !entry.is_current(now)
                || revoked
                    .contains(&store, &entry.serial)
                    .map_err(std::io::Error::other)?;
            if skip {
                continue;
            }
            let der = store
                .indexed_der(domain, &entry.holder, &entry.serial)
                .map_err(std::io::Error::other)?;
            if owner.0 != entry.holder {
                let name = dns::owner_name(&entry.holder.replace('@', "."));
                owner = (entry.holder, name);
            }
            dns::write_cert(w, &owner.1, settings.ttl, &der)?;
        }
        Ok(())
    }

    /// The zone file of a sharded zone: the header, then the `$INCLUDE` of the shard index.
    fn render_sharded_main(
        w: &mut dyn Write,
        settings: &DomainSettings,
        serial: u32,
        dir: &Path,
    ) -> std::io::Result<()> {
        dns::write_header(w, settings, serial)?;
        writeln!(w, "$INCLUDE {}", dir.join(INDEX).display())
    }

    /// The shard index: one `$INCLUDE` per shard, in order, nothing else (so the zone
    /// flattened for a download is the same bytes as `--out`).
    fn render_index(
        w: &mut dyn Write,
        settings: &DomainSettings,
        dir: &Path,
    ) -> std::io::Result<()> {
        for shard in 0..settings.shards {
            writeln!(
                w,
                "$INCLUDE {}",
                shard_file(dir, shard, settings.shards).display()
            )?;
        }
        Ok(())
    }

    /// Writes a sharded zone whole (`plans` from [`Authority::shard_plans`] over every
    /// shard): the shards whose content changed or whose file is missing, then the zone
    /// file. `out` gets the zone as one file instead (shards inline, no `$INCLUDE`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_sharded(
        &self,
        settings: DomainSettings,
        out: Option<&Path>,
        now: OffsetDateTime,
        revoked: &Revoked,
        sync_dir: bool,
        last: Option<ZoneState>,
        plans: Vec<ShardState>,
        upto: u64,
    ) -> Result<ZoneJob> {
        let id = settings_id(&settings);
        let records = plans.iter().map(|p| p.records).sum();
        let digest = sharded_digest(&id, &plans);
        let changed = last.as_ref().is_none_or(|s| s.digest != digest);
        let serial = match &last {
            Some(s) if !changed => s.serial,
            _ => next_serial(last.as_ref().map(|s| s.serial), now),
        };
        let mode = self.config.publish.file_mode_bits();
        let path = out.map_or_else(|| settings.file(), Path::to_path_buf);
        let mut job = ZoneJob::new(&settings, &path, serial, records, changed, upto);
        if let Some(out) = out {
            writer::write_atomic(out, mode, |w| {
                dns::write_header(w, &settings, serial)?;
                for shard in 0..settings.shards {
                    self.render_shard(w, &settings, shard, now, revoked)?;
                }
                Ok(())
            })?;
            job.outcome.written = true;
            job.settings = settings;
            return Ok(job);
        }
        let dir = shard_dir(&absolute(&path)?);
        let same_layout = last
            .as_ref()
            .is_some_and(|s| s.settings == id && s.shards.len() == plans.len());
        let stale: Vec<u32> = (0..settings.shards)
            .filter(|&i| {
                let old = last
                    .as_ref()
                    .filter(|_| same_layout)
                    .and_then(|s| s.shards.get(i as usize));
                old != plans.get(i as usize) || !shard_file(&dir, i, settings.shards).exists()
            })
            .collect();
        if !changed && stale.is_empty() && path.exists() && dir.join(INDEX).exists() {
            job.settings = settings;
            return Ok(job);
        }
        for &shard in &stale {
            writer::write_atomic_with(
                &shard_file(&dir, shard, settings.shards),
                mode,
                false,
                |w| self.render_shard(w, &settings, shard, now, revoked),
            )?;
        }
        Self::write_index(&settings, &dir, mode)?;
        writer::sync_dir(&dir)?;
        writer::write_atomic_with(&path, mode, sync_dir, |w| {
            Self::render_sharded_main(w, &settings, serial, &dir)
        })?;
        remove_other_shards(&dir, settings.shards);
        job.outcome.written = true;
        job.state = Some(ZoneState {
            serial,
            digest,
            settings: id,
            records,
            shards: plans,
        });
        job.settings = settings;
        Ok(job)
    }

    /// Writes the shard index when it is missing or lists another layout.
    fn write_index(settings: &DomainSettings, dir: &Path, mode: u32) -> Result<()> {
        let mut want = Vec::new();
        Self::render_index(&mut want, settings, dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(INDEX);
        if std::fs::read(&path).ok().as_deref() == Some(&want[..]) {
            return Ok(());
        }
        writer::write_atomic_with(&path, mode, false, |w| w.write_all(&want))
    }

    /// After issuance, revocation or a validity change: republishes `domain` from its pending
    /// changes (store `zone_changes`) plus the `extra` holders. A sharded zone rewrites only
    /// the touched shards and its zone file; anything else (a small zone, changed settings,
    /// a missing file, a bulk import) rebuilds the zone whole.
    pub(super) fn publish_changes(
        &self,
        domain: &HealthDomain,
        extra: &BTreeSet<String>,
    ) -> Result<ZoneOutcome> {
        let configured = self.domain_settings(domain)?;
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let now = self.now();
        let store = self.store()?;
        let upto = store.revision()?;
        let last = store.zone_state(domain.as_str())?;
        let pending = store.pending_zone_changes(domain.as_str(), upto, PENDING_LIMIT)?;
        let file = configured.file();
        let (count, same_layout) = first_count(&configured, last.as_ref());
        let settings = with_count(&configured, count);
        let id = settings_id(&settings);
        let last = last.filter(|_| {
            same_layout
                && pending.len() < PENDING_LIMIT
                && file.exists()
                && absolute(&file).is_ok_and(|f| shard_dir(&f).join(INDEX).exists())
        });
        let Some(last) = last else {
            return self.publish_whole(configured, now);
        };
        let touched: BTreeSet<u32> = pending
            .iter()
            .chain(extra)
            .map(|h| store::shard_of_bucket(store::holder_bucket(h), settings.shards))
            .collect();
        let mut plans = last.shards.clone();
        for &shard in &touched {
            let plan = self.shard_plans(&settings, shard..shard + 1, now, &Revoked::Lookup)?;
            if let (Some(slot), Some(plan)) =
                (plans.get_mut(shard as usize), plan.into_iter().next())
            {
                *slot = plan;
            }
        }
        let records: usize = plans.iter().map(|p| p.records).sum();
        if records <= settings.shard_above || !keeps_count(&configured, count, records) {
            return self.publish_whole(configured, now);
        }
        let digest = sharded_digest(&id, &plans);
        let changed = digest != last.digest;
        let serial = if changed {
            next_serial(Some(last.serial), now)
        } else {
            last.serial
        };
        let mut job = ZoneJob::new(&settings, &file, serial, records, changed, upto);
        job.settings = settings;
        if !changed {
            store.clear_zone_changes(domain.as_str(), upto)?;
            return Ok(job.outcome);
        }
        let settings = &job.settings;
        let mode = self.config.publish.file_mode_bits();
        let dir = shard_dir(&absolute(&file)?);
        for &shard in &touched {
            if plans.get(shard as usize) != last.shards.get(shard as usize)
                || !shard_file(&dir, shard, settings.shards).exists()
            {
                writer::write_atomic_with(
                    &shard_file(&dir, shard, settings.shards),
                    mode,
                    false,
                    |w| self.render_shard(w, settings, shard, now, &Revoked::Lookup),
                )?;
            }
        }
        writer::sync_dir(&dir)?;
        writer::write_atomic(&file, mode, |w| {
            Self::render_sharded_main(w, settings, serial, &dir)
        })?;
        job.outcome.written = true;
        job.state = Some(ZoneState {
            serial,
            digest,
            settings: id,
            records,
            shards: plans,
        });
        Ok(self.finish_zone(job))
    }

    /// The whole-zone path of [`Authority::publish_changes`] (the publish lock held).
    fn publish_whole(&self, settings: DomainSettings, now: OffsetDateTime) -> Result<ZoneOutcome> {
        let revoked = self.revoked_for(&settings)?;
        let job = self.write_zone(settings, None, now, &revoked, true)?;
        Ok(self.finish_zone(job))
    }
}

impl Authority {
    /// How a whole-zone run tells revoked certificates: a lookup each for a zone known to be
    /// small, the revoked set read once otherwise.
    pub(super) fn revoked_for(&self, settings: &DomainSettings) -> Result<Revoked> {
        let store = self.store()?;
        let small = store
            .zone_state(settings.domain.as_str())?
            .is_some_and(|s| s.records <= settings.shard_above && s.shards.is_empty());
        Ok(if small {
            Revoked::Lookup
        } else {
            Revoked::Set(store.revoked_serial_keys()?)
        })
    }
}

/// Removes files of `dir` that are not among the `shards` shard files (left by a different
/// `publish.shards`); a failure only leaves an unused file.
fn remove_other_shards(dir: &Path, shards: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut keep: BTreeSet<PathBuf> = (0..shards).map(|i| shard_file(dir, i, shards)).collect();
    if shards > 0 {
        keep.insert(dir.join(INDEX));
    }
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path.extension().is_some_and(|e| e == "zone");
        if ours && !keep.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// After a zone is written as one file: its shard directory, if it had one, goes.
pub(super) fn remove_shard_dir(file: &Path) {
    let dir = shard_dir(file);
    if dir.is_dir() {
        remove_other_shards(&dir, 0);
        let _ = std::fs::remove_dir(&dir);
    }
}

impl ZoneJob {
    fn new(
        settings: &DomainSettings,
        path: &Path,
        serial: u32,
        records: usize,
        changed: bool,
        upto: u64,
    ) -> ZoneJob {
        ZoneJob {
            outcome: ZoneOutcome {
                domain: settings.domain.to_string(),
                path: path.to_path_buf(),
                mode: settings.mode.as_str().into(),
                serial,
                records,
                changed,
                written: false,
                reload: ReloadOutcome::NotConfigured,
            },
            state: None,
            settings: settings.clone(),
            upto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PublishConfig;

    fn settings(shards: u32) -> DomainSettings {
        let publish = PublishConfig {
            shards,
            ..PublishConfig::default()
        };
        let domain = crate::model::HealthDomain::parse("d.example").unwrap();
        publish.for_domain(&domain, Path::new("/data"))
    }

    fn sharded_state(settings: &DomainSettings, count: u32) -> ZoneState {
        ZoneState {
            serial: 1,
            digest: String::new(),
            settings: settings_id(&with_count(settings, count)),
            records: 0,
            shards: vec![
                ShardState {
                    records: 0,
                    digest: String::new(),
                };
                count as usize
            ],
        }
    }

    /// `publish.shards = 0` sizes shards at ~256 records and keeps a layout until the zone
    /// grew or shrank by a factor; a configured count is used as it is.
    #[test]
    fn automatic_shard_counts_follow_the_zone_size() {
        let auto = settings(0);
        assert_eq!(auto.shards, 0, "0 is the default and means automatic");
        assert_eq!(fresh_count(&auto, 3), AUTO_MIN);
        assert_eq!(fresh_count(&auto, 10_001), 64);
        assert_eq!(fresh_count(&auto, 100_000), 512);
        assert_eq!(fresh_count(&auto, 1_000_000), 4096);
        assert_eq!(fresh_count(&auto, 5_000_000), MAX_SHARDS);
        assert!(keeps_count(&auto, 64, 10_001));
        assert!(keeps_count(&auto, 64, 32_768), "512 records a shard");
        assert!(!keeps_count(&auto, 64, 32_769), "past twice the target");
        assert!(keeps_count(&auto, 512, 16_385));
        assert!(!keeps_count(&auto, 512, 8_192), "shrank below an eighth");
        assert!(keeps_count(&auto, MAX_SHARDS, 5_000_000), "at the cap");

        let fixed = settings(256);
        assert_eq!(fresh_count(&fixed, 1_000_000), 256);
        assert!(keeps_count(&fixed, 256, 5));
        assert!(!keeps_count(&fixed, 512, 100_000));

        // The first plan of a full run: the last layout when it still applies.
        assert_eq!(first_count(&auto, None), (MAX_SHARDS, false));
        assert_eq!(first_count(&fixed, None), (256, false));
        let last = sharded_state(&auto, 512);
        assert_eq!(first_count(&auto, Some(&last)), (512, true));
        assert_eq!(first_count(&fixed, Some(&last)), (256, false));
        let small = ZoneState {
            records: 40,
            shards: Vec::new(),
            ..last.clone()
        };
        assert_eq!(first_count(&auto, Some(&small)), (AUTO_MIN, false));
        let other = ZoneState {
            settings: "another layout".into(),
            ..last
        };
        assert_eq!(first_count(&auto, Some(&other)), (MAX_SHARDS, false));
    }
}
