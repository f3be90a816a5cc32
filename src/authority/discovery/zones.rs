//! Zone publication: which certificates a domain's zone shows (valid now, not revoked), when
//! its SOA serial moves (only when its content changed, never backwards), and the order of
//! steps: plan from the store, write atomically, then reload. Split from the directory (LDIF)
//! export because the two share only the publishable-certificate walk in `discovery`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use super::published::{next_serial, ZoneJob, ZoneOutcome};
use super::{sha256, shards, Revoked};
use crate::authority::Authority;
use crate::config::DomainSettings;
use crate::discovery::{self, dns, writer, ReloadOutcome};
use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::store::ZoneState;

/// What the last complete zone sweep covered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SweepMark {
    /// The publication settings it applied (others: every zone is checked whole).
    settings: String,
    /// Unix time up to which expiries and starts of validity are in the zones.
    swept_until: i64,
}

/// The content identity of one zone: its record count and the digest of its settings and
/// certificates (by holder and serial, which fix the bytes). Computed from the index alone.
struct ZonePlan {
    records: usize,
    digest: String,
}

/// Threads writing zone files in a full run: fsync waits, not CPU, bound it.
const ZONE_WRITERS: usize = 6;

impl Authority {
    pub(super) fn domain_settings(&self, domain: &HealthDomain) -> Result<DomainSettings> {
        if !self.config.managed_domains.contains(domain) {
            return Err(Error::NotFound(format!(
                "'{domain}' is not a health domain managed by this CA"
            )));
        }
        Ok(self
            .config
            .publish
            .for_domain(domain, &self.config.data_dir))
    }

    /// Publishes the zones of `domain` (or of every managed domain). `out` replaces the
    /// configured file of a single domain and skips the reload.
    pub fn publish_zones(
        &self,
        domain: Option<&HealthDomain>,
        out: Option<&Path>,
    ) -> Result<Vec<ZoneOutcome>> {
        match domain {
            Some(d) => Ok(vec![self.publish_zone(d, out)?]),
            None if out.is_some() => Err(Error::InvalidInput(
                "--out writes one zone: name it with --domain".into(),
            )),
            None => self.publish_all_zones()?.into_iter().collect(),
        }
    }

    /// Writes one domain's zone when its content changed (or the file is missing), then runs
    /// the reload command. A reload failure is in the outcome; the file stays written.
    pub fn publish_zone(&self, domain: &HealthDomain, out: Option<&Path>) -> Result<ZoneOutcome> {
        let settings = self.domain_settings(domain)?;
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let revoked = self.revoked_for(&settings)?;
        let job = self.write_zone(settings, out, self.now(), &revoked, true)?;
        if out.is_some() {
            return Ok(job.outcome);
        }
        Ok(self.finish_zone(job))
    }

    /// Persists a written zone's state, forgets the changes it shows, runs the reload. A
    /// failure to record is logged: the next publication writes the zone again.
    pub(super) fn finish_zone(&self, job: ZoneJob) -> ZoneOutcome {
        let recorded = self.store().and_then(|store| {
            if let Some(state) = &job.state {
                store.put_zone_states(&[(job.outcome.domain.clone(), state.clone())])?;
            }
            store.clear_zone_changes(&job.outcome.domain, job.upto)
        });
        if let Err(e) = recorded {
            tracing::warn!(domain = job.outcome.domain.as_str(), error = %e, "recording the zone state failed");
        }
        self.reload_zone(job)
    }

    /// Every managed domain's zone, written by several threads (the cost is mostly waiting
    /// for fsync), with one directory fsync and one store flush for the whole run.
    fn publish_all_zones(&self) -> Result<Vec<Result<ZoneOutcome>>> {
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let now = self.now();
        let store = self.store()?;
        let revoked = Revoked::Set(store.revoked_serial_keys()?);
        let mut domains = self.config.managed_domains.clone();
        domains.sort();
        let next = AtomicUsize::new(0);
        let mut jobs: Vec<(usize, Result<ZoneJob>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..ZONE_WRITERS.min(domains.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(domain) = domains.get(i) else {
                                break;
                            };
                            let settings = self.domain_settings(domain);
                            done.push((
                                i,
                                settings
                                    .and_then(|s| self.write_zone(s, None, now, &revoked, false)),
                            ));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        jobs.sort_by_key(|(i, _)| *i);
        let mut dirs: Vec<PathBuf> = jobs
            .iter()
            .filter_map(|(_, j)| j.as_ref().ok())
            .filter(|j| j.outcome.written)
            .filter_map(|j| j.outcome.path.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            writer::sync_dir(dir)?;
        }
        let states: Vec<(String, ZoneState)> = jobs
            .iter()
            .filter_map(|(_, j)| j.as_ref().ok())
            .filter_map(|j| Some((j.outcome.domain.clone(), j.state.clone()?)))
            .collect();
        self.store()?.put_zone_states(&states)?;
        for (_, job) in &jobs {
            if let Ok(job) = job {
                self.store()?
                    .clear_zone_changes(&job.outcome.domain, job.upto)?;
            }
        }
        Ok(jobs
            .into_iter()
            .map(|(_, job)| job.map(|j| self.reload_zone(j)))
            .collect())
    }

    /// Plans one zone, picks its serial and writes the file when needed; persisting the new
    /// state and reloading are the caller's (after the file is durable).
    pub(super) fn write_zone(
        &self,
        settings: DomainSettings,
        out: Option<&Path>,
        now: OffsetDateTime,
        revoked: &Revoked,
        sync_dir: bool,
    ) -> Result<ZoneJob> {
        let domain = settings.domain.as_str();
        let upto = self.store()?.revision()?;
        let last = self.store()?.zone_state(domain)?;
        let (first, same_layout) = shards::first_count(&settings, last.as_ref());
        let mut sharded = shards::with_count(&settings, first);
        let mut plans = self.shard_plans(&sharded, 0..first, now, revoked)?;
        let records: usize = plans.iter().map(|s| s.records).sum();
        if records > settings.shard_above {
            let count = if same_layout && shards::keeps_count(&settings, first, records) {
                first
            } else {
                shards::fresh_count(&settings, records)
            };
            if count != first {
                sharded = shards::with_count(&settings, count);
                plans = self.shard_plans(&sharded, 0..count, now, revoked)?;
            }
            return self.write_sharded(sharded, out, now, revoked, sync_dir, last, plans, upto);
        }
        let plan = self.zone_plan(&settings, now, revoked)?;
        let changed = last.as_ref().is_none_or(|s| s.digest != plan.digest);
        let serial = match &last {
            Some(s) if !changed => s.serial,
            _ => next_serial(last.as_ref().map(|s| s.serial), now),
        };
        let path = out.map_or_else(|| settings.file(), Path::to_path_buf);
        let mut job = ZoneJob {
            outcome: ZoneOutcome {
                domain: domain.to_string(),
                path: path.clone(),
                mode: settings.mode.as_str().into(),
                serial,
                records: plan.records,
                changed,
                written: false,
                reload: ReloadOutcome::NotConfigured,
            },
            state: None,
            settings,
            upto,
        };
        let was_sharded = last.as_ref().is_some_and(|s| !s.shards.is_empty());
        // The configured file is left alone when its content is current; a copy (`--out`)
        // is always written.
        if !changed && !was_sharded && out.is_none() && path.exists() {
            return Ok(job);
        }
        writer::write_atomic_with(&path, self.config.publish.file_mode_bits(), sync_dir, |w| {
            self.render_zone(w, &job.settings, serial, now, revoked)
        })?;
        job.outcome.written = true;
        if out.is_none() {
            shards::remove_shard_dir(&path);
        }
        if changed || was_sharded {
            job.state = Some(ZoneState {
                serial,
                digest: plan.digest,
                settings: shards::settings_id(&job.settings),
                records: plan.records,
                shards: Vec::new(),
            });
        }
        Ok(job)
    }

    fn reload_zone(&self, mut job: ZoneJob) -> ZoneOutcome {
        if job.outcome.written {
            job.outcome.reload = discovery::reload(
                &job.settings.reload_command,
                &job.outcome.domain,
                &job.outcome.path,
                Duration::from_secs(job.settings.reload_timeout_secs),
            );
        }
        job.outcome
    }

    /// The current zone file of `domain` (published first when out of date), for download.
    pub fn zone_text(&self, domain: &HealthDomain) -> Result<(ZoneOutcome, Vec<u8>)> {
        let outcome = self.publish_zone(domain, None)?;
        let bytes = std::fs::read(&outcome.path).map_err(|e| Error::io(&outcome.path, e))?;
        // A sharded zone is sent as one file: the reader cannot follow this host's paths.
        let sharded = self
            .store()?
            .zone_state(domain.as_str())?
            .is_some_and(|s| !s.shards.is_empty());
        let bytes = if sharded {
            shards::flatten_includes(&bytes)?
        } else {
            bytes
        };
        Ok((outcome, bytes))
    }

    /// The scheduled sweep (and the one at start): brings every zone up to date without
    /// reading the store whole. It republishes the domains with unpublished changes (store
    /// `zone_changes`: a change whose publication failed, a crash, a bulk import), a missing
    /// zone file, or certificates that expired or became valid since the last sweep (the
    /// time index, from its watermark); a sharded zone rewrites only the touched shards. Only
    /// the first sweep, or one after the publication settings changed, checks every zone
    /// whole. (sled keeps what a full scan touched resident, ~1.5 KB per certificate, so an
    /// idle service must not scan.)
    pub fn sweep_zones(&self) -> Vec<ZoneOutcome> {
        let now = self.now();
        match self.sweep_at(now) {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "the zone sweep failed");
                Vec::new()
            }
        }
    }

    fn sweep_at(&self, now: OffsetDateTime) -> Result<Vec<ZoneOutcome>> {
        let settings = self.publication_digest()?;
        let last: Option<SweepMark> = self
            .store()?
            .sweep_mark()?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mark = SweepMark {
            settings,
            swept_until: now.unix_timestamp(),
        };
        let mut out = Vec::new();
        let mut complete = true;
        match last.filter(|m| m.settings == mark.settings) {
            None => {
                for result in self.publish_all_zones()? {
                    match result {
                        Ok(outcome) => {
                            log_outcome(&outcome);
                            out.push(outcome);
                        }
                        Err(e) => {
                            complete = false;
                            tracing::error!(
                                error = %e, code = e.code(),
                                "writing a zone file failed; the previous file is unchanged"
                            );
                        }
                    }
                }
            }
            Some(last) => {
                let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                if last.swept_until < mark.swept_until {
                    for change in self
                        .store()?
                        .validity_changes(last.swept_until, mark.swept_until)
                    {
                        let (domain, holder) = change?;
                        touched.entry(domain).or_default().insert(holder);
                    }
                }
                let store = self.store()?;
                for domain in &self.config.managed_domains {
                    let holders = touched.remove(domain.as_str()).unwrap_or_default();
                    let pending = !store
                        .pending_zone_changes(domain.as_str(), u64::MAX, 1)?
                        .is_empty();
                    let missing = !self.domain_settings(domain)?.file().exists();
                    if holders.is_empty() && !pending && !missing {
                        continue;
                    }
                    match self.publish_changes(domain, &holders) {
                        Ok(outcome) => {
                            log_outcome(&outcome);
                            out.push(outcome);
                        }
                        Err(e) => {
                            complete = false;
                            tracing::error!(
                                domain = domain.as_str(), error = %e, code = e.code(),
                                "writing the zone file failed; the previous file is unchanged"
                            );
                        }
                    }
                }
            }
        }
        // An incomplete sweep keeps the old watermark, so the next one retries.
        if complete {
            let bytes = serde_json::to_vec(&mark)
                .map_err(|e| Error::Store(format!("encoding the sweep mark: {e}")))?;
            self.store()?.put_sweep_mark(&bytes)?;
        }
        if out.is_empty() {
            tracing::debug!("zone sweep: nothing changed or expired since the last one");
        }
        Ok(out)
    }

    /// SHA-256 of everything that shapes the zone files besides the certificates.
    fn publication_digest(&self) -> Result<String> {
        let text = serde_json::to_vec(&(&self.config.publish, &self.config.managed_domains))
            .map_err(|e| Error::Config(format!("encoding the publication settings: {e}")))?;
        Ok(hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text).as_ref(),
        ))
    }

    fn zone_plan(
        &self,
        settings: &DomainSettings,
        now: OffsetDateTime,
        revoked: &Revoked,
    ) -> Result<ZonePlan> {
        let store = self.store()?;
        let mut records = 0;
        let mut digest = format!(
            "v1 {:?} {} {:?} {:?}\n",
            settings.mode, settings.ttl, settings.soa, settings.ldap_srv
        );
        for cert in Self::publishable(&store, settings.domain.as_str(), now, revoked) {
            let cert = cert?;
            digest.push_str(&cert.holder);
            digest.push(' ');
            digest.push_str(cert.serial.as_str());
            digest.push('\n');
            records += 1;
        }
        Ok(ZonePlan {
            records,
            digest: hex::encode(sha256(digest.as_bytes())),
        })
    }

    /// Streams the zone: header, then one CERT record per publishable certificate.
    fn render_zone(
        &self,
        w: &mut dyn Write,
        settings: &DomainSettings,
        serial: u32,
        now: OffsetDateTime,
        revoked: &Revoked,
    ) -> std::io::Result<()> {
        let store = self.store().map_err(std::io::Error::other)?;
        dns::write_header(w, settings, serial)?;
        let mut owner = (String::new(), String::new());
        for cert in Self::publishable(&store, settings.domain.as_str(), now, revoked) {
            let cert = cert.map_err(std::io::Error::other)?;
            if owner.0 != cert.holder {
                // A local part never holds '@' (model.rs), so this is `local.domain`.
                let name = dns::owner_name(&cert.holder.replace('@', "."));
                owner = (cert.holder, name);
            }
            dns::write_cert(w, &owner.1, settings.ttl, &cert.der)?;
        }
        Ok(())
    }
}

pub(super) fn log_outcome(outcome: &ZoneOutcome) {
    if outcome.written {
        tracing::info!(
            domain = outcome.domain.as_str(),
            serial = outcome.serial,
            records = outcome.records,
            path = %outcome.path.display(),
            "published zone"
        );
    }
    if let ReloadOutcome::Failed { message } = &outcome.reload {
        tracing::error!(
            domain = outcome.domain.as_str(),
            path = %outcome.path.display(),
            "zone written but the reload command failed: {message}"
        );
    }
}
