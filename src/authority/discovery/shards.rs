//! Sharded zones, so that a change in a domain of a million certificates reaches DNS in
//! milliseconds (a 1.5 GB zone file cannot be rewritten per change). A zone with more than
//! `publish.shard_above` CERT records is written as `publish.shards` shard files under
//! `<zone file>.d/`, which the zone file `$INCLUDE`s by absolute path: BIND reads a relative
//! `$INCLUDE` from its working directory, not the including file's, so only an absolute path
//! names the same file for every server. A record's shard is a range of its holder's hash
//! bucket (store `zone_index`): every record of an owner name is in one shard, and one shard
//! is read by one range scan. A change rewrites its shard and the small zone file (new SOA
//! serial); the zone digest is built from the per-shard digests kept in the zone state, so
//! nothing walks the whole domain. A full rebuild writes the same bytes: both render a shard
//! from the same ordered range.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::published::{next_serial, ZoneJob, ZoneOutcome};
use super::{sha256, Revoked};
use crate::authority::Authority;
use crate::config::DomainSettings;
use crate::discovery::{dns, writer, ReloadOutcome};
use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::store::{self, ShardState, ZoneState};

/// Pending changes of one domain beyond which its zone is rebuilt whole (a bulk import).
const PENDING_LIMIT: usize = 4096;

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

/// Identity of everything in a domain's settings that shapes its files.
pub(super) fn settings_id(settings: &DomainSettings) -> String {
    hex::encode(sha256(format!("v2 {settings:?}").as_bytes()))
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

/// Replaces each `$INCLUDE <file>` line by the file's content: the zone as one file, for a
/// download whose reader cannot follow this host's paths.
pub(super) fn flatten_includes(zone: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(zone.len());
    for line in zone.split_inclusive(|b| *b == b'\n') {
        match line.strip_prefix(b"$INCLUDE ") {
            Some(path) => {
                let path = PathBuf::from(String::from_utf8_lossy(path).trim_end());
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                out.extend_from_slice(&bytes);
            }
            None => out.extend_from_slice(line),
        }
    }
    Ok(out)
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

    /// The zone file of a sharded zone: the header, then one `$INCLUDE` per shard.
    fn render_sharded_main(
        w: &mut dyn Write,
        settings: &DomainSettings,
        serial: u32,
        dir: &Path,
    ) -> std::io::Result<()> {
        dns::write_header(w, settings, serial)?;
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
        if !changed && stale.is_empty() && path.exists() {
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

    /// After issuance, revocation or a validity change: republishes `domain` from its pending
    /// changes (store `zone_changes`) plus the `extra` holders. A sharded zone rewrites only
    /// the touched shards and its zone file; anything else (a small zone, changed settings,
    /// a missing file, a bulk import) rebuilds the zone whole.
    pub(super) fn publish_changes(
        &self,
        domain: &HealthDomain,
        extra: &BTreeSet<String>,
    ) -> Result<ZoneOutcome> {
        let settings = self.domain_settings(domain)?;
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let now = self.now();
        let store = self.store()?;
        let upto = store.revision()?;
        let last = store.zone_state(domain.as_str())?;
        let pending = store.pending_zone_changes(domain.as_str(), upto, PENDING_LIMIT)?;
        let file = settings.file();
        let id = settings_id(&settings);
        let last = last.filter(|s| {
            !s.shards.is_empty()
                && s.settings == id
                && s.shards.len() == settings.shards as usize
                && pending.len() < PENDING_LIMIT
                && file.exists()
        });
        let Some(last) = last else {
            return self.publish_whole(settings, now);
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
        if records <= settings.shard_above {
            return self.publish_whole(settings, now);
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
    let keep: BTreeSet<PathBuf> = (0..shards).map(|i| shard_file(dir, i, shards)).collect();
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
