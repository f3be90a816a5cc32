//! Discovery publication use cases: which certificates a zone or the directory shows (valid
//! now, not revoked), when a zone's SOA serial moves (only when its content changed, never
//! backwards), and the order of steps: plan from the store, write atomically, then reload.
//! Files are streamed to disk certificate by certificate; only the small plan is in memory.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::Authority;
use crate::config::DomainSettings;
use crate::discovery::{self as publish, dns, ldif, writer, ReloadOutcome};
use crate::error::{Error, Result};
use crate::model::{HealthDomain, Serial};
use crate::store::{EntryChange, EntryUpdate, IndexedCert, Store, ZoneState};

/// What publishing one zone did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZoneOutcome {
    pub domain: String,
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub mode: String,
    pub serial: u32,
    pub records: usize,
    /// The content differs from the last published one (the serial moved).
    pub changed: bool,
    /// The file was (re)written.
    pub written: bool,
    pub reload: ReloadOutcome,
}

/// What the last complete zone sweep covered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SweepMark {
    /// Store revision read before the sweep (a change during it makes the next one run).
    revision: u64,
    settings: String,
    /// Unix time of the next expiry or start of validity among the indexed certificates.
    next_change: Option<i64>,
}

/// What an LDIF export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct LdifOutcome {
    pub path: PathBuf,
    /// The directory revision the file reflects; pass it to `--since` next time.
    pub revision: u64,
    pub since: Option<u64>,
    pub entries: usize,
    pub certificates: usize,
}

/// Where an LDIF export goes: a file written atomically (`None`: the configured one), or
/// memory, for a caller that sends the bytes elsewhere. One rendering serves both.
enum LdifSink<'a> {
    File(Option<&'a Path>),
    Memory(&'a mut Vec<u8>),
}

impl LdifSink<'_> {
    /// The file the outcome names: the chosen one, else the default.
    fn path_or(&self, default: impl FnOnce() -> PathBuf) -> PathBuf {
        match self {
            LdifSink::File(Some(path)) => path.to_path_buf(),
            _ => default(),
        }
    }

    fn write(
        self,
        path: &Path,
        mode: u32,
        render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        match self {
            LdifSink::File(_) => writer::write_atomic(path, mode, render),
            LdifSink::Memory(bytes) => render(bytes).map_err(|e| Error::io("LDIF export", e)),
        }
    }
}

/// The content identity of one zone: its record count and the digest of its settings and
/// certificates (by holder and serial, which fix the bytes). Computed from the index alone.
struct ZonePlan {
    records: usize,
    digest: String,
}

/// Domains waiting for their zone to be rewritten, when `serve` batches publication.
#[derive(Default)]
pub struct ZoneQueue {
    /// `None`: publish at once (CLI, library use).
    domains: Mutex<Option<BTreeSet<HealthDomain>>>,
    notify: Arc<Notify>,
}

/// Threads writing zone files in a full run: fsync waits, not CPU, bound it.
const ZONE_WRITERS: usize = 6;

/// A written (or unchanged) zone, with the state to persist once the file is durable.
struct ZoneJob {
    outcome: ZoneOutcome,
    state: Option<ZoneState>,
    settings: DomainSettings,
}

/// How to tell revoked certificates: one lookup each (a single zone), or a set read once
/// (full runs over every certificate).
enum Revoked {
    Lookup,
    Set(HashSet<Vec<u8>>),
}

impl Revoked {
    fn contains(&self, store: &crate::store::Store, serial: &Serial) -> Result<bool> {
        match self {
            Revoked::Lookup => store.is_revoked(serial),
            Revoked::Set(set) => Ok(set.contains(&serial.to_bytes())),
        }
    }
}

/// One holder of the directory with its publishable certificates.
struct Holder {
    domain: String,
    mail: String,
    serials: Vec<Serial>,
    ders: Vec<Vec<u8>>,
}

/// Key of an entry in the directory view: `domain NUL` for a container, `domain NUL holder`
/// for a holder, so containers sort before their holders.
fn entry_key(domain: &str, holder: Option<&str>) -> String {
    format!("{domain}\0{}", holder.unwrap_or(""))
}

/// The recorded state of a holder entry: a digest of its serials (containers: constant).
fn entry_state(serials: &[Serial]) -> Vec<u8> {
    let mut text = String::from("v1");
    for s in serials {
        text.push(' ');
        text.push_str(s.as_str());
    }
    sha256(text.as_bytes())
        .get(..16)
        .unwrap_or_default()
        .to_vec()
}

/// Collects what changed in the directory view while the directory is streamed.
#[derive(Default)]
struct ViewSync {
    updates: Vec<EntryUpdate>,
    seen: HashSet<String>,
}

impl Authority {
    fn domain_settings(&self, domain: &HealthDomain) -> Result<DomainSettings> {
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
        let job = self.write_zone(settings, out, self.now(), &Revoked::Lookup, true)?;
        if out.is_some() {
            return Ok(job.outcome);
        }
        if let Some(state) = &job.state {
            self.store()?
                .put_zone_states(&[(job.outcome.domain.clone(), state.clone())])?;
        }
        Ok(self.reload_zone(job))
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
        Ok(jobs
            .into_iter()
            .map(|(_, job)| job.map(|j| self.reload_zone(j)))
            .collect())
    }

    /// Plans one zone, picks its serial and writes the file when needed; persisting the new
    /// state and reloading are the caller's (after the file is durable).
    fn write_zone(
        &self,
        settings: DomainSettings,
        out: Option<&Path>,
        now: OffsetDateTime,
        revoked: &Revoked,
        sync_dir: bool,
    ) -> Result<ZoneJob> {
        let domain = settings.domain.as_str();
        let plan = self.zone_plan(&settings, now, revoked)?;
        let last = self.store()?.zone_state(domain)?;
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
        };
        // The configured file is left alone when its content is current; a copy (`--out`)
        // is always written.
        if !changed && out.is_none() && path.exists() {
            return Ok(job);
        }
        writer::write_atomic_with(&path, self.config.publish.file_mode_bits(), sync_dir, |w| {
            self.render_zone(w, &job.settings, serial, now, revoked)
        })?;
        job.outcome.written = true;
        if changed {
            job.state = Some(ZoneState {
                serial,
                digest: plan.digest,
            });
        }
        Ok(job)
    }

    fn reload_zone(&self, mut job: ZoneJob) -> ZoneOutcome {
        if job.outcome.written {
            job.outcome.reload = publish::reload(
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
        Ok((outcome, bytes))
    }

    /// From now on zones changed by issuance or revocation are queued for
    /// [`Authority::publish_queued_zones`] instead of written in the request; the returned
    /// `Notify` fires when a domain is queued. `serve` does this, so a burst of issuances in a
    /// large domain rewrites its zone once, not once per certificate.
    pub fn queue_zone_publication(&self) -> Arc<Notify> {
        if let Ok(mut queue) = self.zone_queue.domains.lock() {
            queue.get_or_insert_with(BTreeSet::new);
        }
        self.zone_queue.notify.clone()
    }

    /// Publishes the queued domains (see [`Authority::queue_zone_publication`]).
    pub fn publish_queued_zones(&self) -> Vec<ZoneOutcome> {
        let domains = match self.zone_queue.domains.lock() {
            Ok(mut queue) => queue.as_mut().map(std::mem::take).unwrap_or_default(),
            Err(_) => BTreeSet::new(),
        };
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for domain in domains {
            match self.publish_now(&domain) {
                Some(outcome) => out.push(outcome),
                None => failed.push(domain),
            }
        }
        // Kept for the next run (a change, the sweep, or the store healing after a full disk),
        // so a zone never misses a change whose publication failed.
        if !failed.is_empty() {
            if let Ok(mut queue) = self.zone_queue.domains.lock() {
                queue.get_or_insert_with(BTreeSet::new).extend(failed);
            }
        }
        out
    }

    /// After an issuance or revocation: republish the affected domain only (now, or queued
    /// in `serve`). Failures are logged, never undo the change that triggered them.
    pub(super) fn publish_after_change(&self, domain: &HealthDomain) {
        if let Ok(mut queue) = self.zone_queue.domains.lock() {
            if let Some(queue) = queue.as_mut() {
                queue.insert(domain.clone());
                self.zone_queue.notify.notify_one();
                return;
            }
        }
        self.publish_now(domain);
    }

    fn publish_now(&self, domain: &HealthDomain) -> Option<ZoneOutcome> {
        match self.publish_zone(domain, None) {
            Ok(outcome) => {
                log_outcome(&outcome);
                Some(outcome)
            }
            Err(e) => {
                tracing::error!(
                    domain = domain.as_str(), error = %e, code = e.code(),
                    "writing the zone file failed; the previous file is unchanged"
                );
                None
            }
        }
    }

    /// The scheduled sweep: republishes every zone whose content changed, which drops
    /// certificates that expired since the last run.
    pub fn sweep_zones(&self) -> Vec<ZoneOutcome> {
        let now = self.now();
        let (mark, needed) = match self.sweep_needed(now) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "checking the zone sweep failed");
                return Vec::new();
            }
        };
        if !needed {
            tracing::debug!("zone sweep skipped: nothing changed or expired since the last one");
            return Vec::new();
        }
        let results = match self.publish_all_zones() {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "the zone sweep failed");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for result in results {
            match result {
                Ok(outcome) => {
                    log_outcome(&outcome);
                    out.push(outcome);
                }
                Err(e) => tracing::error!(
                    error = %e, code = e.code(),
                    "writing a zone file failed; the previous file is unchanged"
                ),
            }
        }
        if out.len() == self.config.managed_domains.len() {
            if let Err(e) = self.record_sweep(mark, now) {
                tracing::warn!(error = %e, "recording the zone sweep failed");
            }
        }
        out
    }

    /// Whether a full sweep has anything to do: it scans every certificate, and sled keeps
    /// what a scan touched resident (~1.5 KB per certificate), so an idle service must not
    /// scan for nothing. A sweep is needed when the store or the publication settings changed
    /// since the last complete one, a zone file is missing, or a certificate has since
    /// expired or become valid.
    fn sweep_needed(&self, now: OffsetDateTime) -> Result<(SweepMark, bool)> {
        let current = SweepMark {
            revision: self.store()?.revision()?,
            settings: self.publication_digest()?,
            next_change: None,
        };
        let last: Option<SweepMark> = self
            .store()?
            .sweep_mark()?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let files_present = self.config.managed_domains.iter().all(|d| {
            self.domain_settings(d)
                .map(|s| s.file().exists())
                .unwrap_or(false)
        });
        let unchanged = last.as_ref().is_some_and(|m| {
            m.revision == current.revision
                && m.settings == current.settings
                && m.next_change.is_none_or(|t| now.unix_timestamp() < t)
        });
        Ok((current, !(unchanged && files_present)))
    }

    /// Records a complete sweep with the next instant a certificate expires or becomes valid.
    fn record_sweep(&self, mut mark: SweepMark, now: OffsetDateTime) -> Result<()> {
        let mut next: Option<OffsetDateTime> = None;
        for domain in &self.config.managed_domains {
            for cert in self.store()?.domain_certs(domain.as_str()) {
                let cert = cert?;
                for t in [cert.not_before, cert.not_after] {
                    if t > now && next.is_none_or(|n| t < n) {
                        next = Some(t);
                    }
                }
            }
        }
        mark.next_change = next.map(OffsetDateTime::unix_timestamp);
        let bytes = serde_json::to_vec(&mark)
            .map_err(|e| Error::Store(format!("encoding the sweep mark: {e}")))?;
        self.store()?.put_sweep_mark(&bytes)
    }

    /// SHA-256 of everything that shapes the zone files besides the certificates.
    fn publication_digest(&self) -> Result<String> {
        let text = serde_json::to_vec(&(&self.config.publish, &self.config.managed_domains))
            .map_err(|e| Error::Config(format!("encoding the publication settings: {e}")))?;
        Ok(hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text).as_ref(),
        ))
    }

    /// The publishable certificates of one domain (valid at `now`, not revoked), in order.
    fn publishable<'a>(
        store: &'a Store,
        domain: &str,
        now: OffsetDateTime,
        revoked: &'a Revoked,
    ) -> impl Iterator<Item = Result<IndexedCert>> + 'a {
        store
            .domain_certs(domain)
            .filter_map(move |cert| match cert {
                Ok(cert) if !cert.is_current(now) => None,
                Ok(cert) => match revoked.contains(store, &cert.serial) {
                    Ok(false) => Some(Ok(cert)),
                    Ok(true) => None,
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(e)),
            })
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

    // ---- LDIF --------------------------------------------------------------------------

    /// Writes the full LDIF export (to `out` or the configured file), streaming holder by
    /// holder, and records in the directory view what changed since the last export.
    pub fn publish_ldif(&self, out: Option<&Path>) -> Result<LdifOutcome> {
        self.export_ldif(LdifSink::File(out))
    }

    /// Writes an LDIF change file (add / modify / delete records for `ldapmodify`) taking a
    /// directory loaded at revision `since` to the current state.
    pub fn publish_ldif_changes(&self, since: u64, out: Option<&Path>) -> Result<LdifOutcome> {
        self.export_ldif_changes(since, LdifSink::File(out))
    }

    /// The full export (`since` absent) or the change file from `since`, as bytes rather
    /// than a file: for `GET /api/v1/directory/ldif`, whose caller writes the file itself.
    /// Records view changes exactly as the file exports do, so the returned revision is a
    /// valid `since` for the next call either way. The outcome's `path` is where the file
    /// export would have gone by default.
    pub fn ldif_bytes(&self, since: Option<u64>) -> Result<(LdifOutcome, Vec<u8>)> {
        let mut bytes = Vec::new();
        let outcome = match since {
            Some(since) => self.export_ldif_changes(since, LdifSink::Memory(&mut bytes))?,
            None => self.export_ldif(LdifSink::Memory(&mut bytes))?,
        };
        Ok((outcome, bytes))
    }

    fn export_ldif(&self, sink: LdifSink<'_>) -> Result<LdifOutcome> {
        let _guard = self
            .ldif_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let path = sink.path_or(|| self.config.publish.ldif_file(&self.config.data_dir));
        let base = self.config.publish.ldap.base_dn.as_str();
        let now = self.now();
        let mut sync = ViewSync::default();
        let (mut entries, mut certificates) = (1, 0);
        let mut failure = None;
        sink.write(&path, self.config.publish.file_mode_bits(), |w| {
            // No `version: 1` line: slapadd, the documented way to load a full export,
            // reads it as an attribute and refuses the file; ldapadd loads it either way.
            writeln!(
                w,
                "# Direct certificate discovery export written by anchorage\n"
            )?;
            ldif::base_entry(w, base, false)?;
            let result = self.walk_directory(now, &mut sync, |domain, holder| {
                entries += 1;
                match holder {
                    None => ldif::container_entry(w, domain, base),
                    Some(h) => {
                        certificates += h.ders.len();
                        ldif::holder_entry(w, &h.entry(), base, false)
                    }
                }
            });
            match result {
                Ok(()) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Err(std::io::Error::other("reading the store failed"))
                }
            }
        })
        .map_err(|e| failure.take().unwrap_or(e))?;
        let revision = self.apply_view_sync(sync)?;
        Ok(LdifOutcome {
            path,
            revision,
            since: None,
            entries,
            certificates,
        })
    }

    fn export_ldif_changes(&self, since: u64, sink: LdifSink<'_>) -> Result<LdifOutcome> {
        let _guard = self
            .ldif_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let now = self.now();
        let mut sync = ViewSync::default();
        self.walk_directory(now, &mut sync, |_, _| Ok(()))?;
        let revision = self.apply_view_sync(sync)?;
        if since > revision {
            // Worded for both the CLI flag and the HTTP query parameter of the same name.
            return Err(Error::InvalidInput(format!(
                "since {since} is ahead of the directory revision {revision}: pass a revision \
                 printed by an earlier export"
            )));
        }
        let path = sink.path_or(|| {
            self.config
                .publish
                .ldif_changes_file(&self.config.data_dir, since, revision)
        });
        // From revision 0 (an empty directory) every entry there is now is an add.
        let firsts = if since == 0 {
            self.store()?
                .ldap_entry_keys()
                .map(|k| k.map(|k| (k, EntryChange::Add)))
                .collect::<Result<BTreeMap<_, _>>>()?
        } else {
            self.store()?.ldap_first_changes_since(since)?
        };
        let base = self.config.publish.ldap.base_dn.as_str();
        let (mut count, mut certificates) = (0, 0);
        let mut failure = None;
        sink.write(&path, self.config.publish.file_mode_bits(), |w| {
            writeln!(w, "version: 1")?;
            writeln!(
                w,
                "# changes from directory revision {since} to {revision}, written by anchorage\n"
            )?;
            if since == 0 {
                ldif::base_entry(w, base, true)?;
                count += 1;
            }
            let result = self.write_changes(w, &firsts, now, base, &mut count, &mut certificates);
            match result {
                Ok(()) => Ok(()),
                Err(e) => {
                    failure = Some(e);
                    Err(std::io::Error::other("reading the store failed"))
                }
            }
        })
        .map_err(|e| failure.take().unwrap_or(e))?;
        Ok(LdifOutcome {
            path,
            revision,
            since: Some(since),
            entries: count,
            certificates,
        })
    }

    fn write_changes(
        &self,
        w: &mut dyn Write,
        firsts: &BTreeMap<String, EntryChange>,
        now: OffsetDateTime,
        base: &str,
        count: &mut usize,
        certificates: &mut usize,
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::io("LDIF change file", e);
        let mut deletes = Vec::new();
        for (key, first) in firsts {
            let existed = *first != EntryChange::Add;
            let exists = self.store()?.ldap_entry(key)?.is_some();
            let (domain, holder) = key.split_once('\0').unwrap_or((key.as_str(), ""));
            match (existed, exists, holder.is_empty()) {
                (false, true, true) => ldif::container_add(w, domain, base).map_err(io)?,
                (false, true, false) | (true, true, false) => {
                    let h = self.holder(domain, holder, now)?;
                    *certificates += h.ders.len();
                    if existed {
                        ldif::holder_modify(w, &h.entry(), base).map_err(io)?;
                    } else {
                        ldif::holder_entry(w, &h.entry(), base, true).map_err(io)?;
                    }
                }
                (true, false, _) => {
                    deletes.push(key_dn(key, base));
                    continue;
                }
                _ => continue,
            }
            *count += 1;
        }
        // Children before their container.
        for dn in deletes.iter().rev() {
            ldif::delete(w, dn).map_err(io)?;
            *count += 1;
        }
        Ok(())
    }

    /// One holder's publishable certificates.
    fn holder(&self, domain: &str, mail: &str, now: OffsetDateTime) -> Result<Holder> {
        let mut holder = Holder {
            domain: domain.to_string(),
            mail: mail.to_string(),
            serials: Vec::new(),
            ders: Vec::new(),
        };
        for cert in self.store()?.holder_certs(domain, mail) {
            let cert = cert?;
            if cert.is_current(now) && !self.store()?.is_revoked(&cert.serial)? {
                holder.serials.push(cert.serial);
                holder.ders.push(cert.der);
            }
        }
        Ok(holder)
    }

    /// Visits every directory entry in order: per managed domain its container, then each
    /// holder with at least one publishable certificate; notes view changes on the way.
    fn walk_directory(
        &self,
        now: OffsetDateTime,
        sync: &mut ViewSync,
        mut visit: impl FnMut(&str, Option<&Holder>) -> std::io::Result<()>,
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::io("LDIF export", e);
        let store = self.store()?;
        let revoked = Revoked::Set(store.revoked_serial_keys()?);
        let mut domains = self.config.managed_domains.clone();
        domains.sort();
        for domain in &domains {
            let domain = domain.as_str();
            self.note_entry(sync, entry_key(domain, None), Vec::new())?;
            visit(domain, None).map_err(io)?;
            let mut current: Option<Holder> = None;
            for cert in Self::publishable(&store, domain, now, &revoked) {
                let cert = cert?;
                if current.as_ref().is_some_and(|h| h.mail != cert.holder) {
                    if let Some(h) = current.take() {
                        self.finish_holder(sync, &h, &mut visit)?;
                    }
                }
                let h = current.get_or_insert_with(|| Holder {
                    domain: domain.to_string(),
                    mail: cert.holder.clone(),
                    serials: Vec::new(),
                    ders: Vec::new(),
                });
                h.serials.push(cert.serial);
                h.ders.push(cert.der);
            }
            if let Some(h) = current.take() {
                self.finish_holder(sync, &h, &mut visit)?;
            }
        }
        Ok(())
    }

    fn finish_holder(
        &self,
        sync: &mut ViewSync,
        holder: &Holder,
        visit: &mut impl FnMut(&str, Option<&Holder>) -> std::io::Result<()>,
    ) -> Result<()> {
        let key = entry_key(&holder.domain, Some(&holder.mail));
        self.note_entry(sync, key, entry_state(&holder.serials))?;
        visit(&holder.domain, Some(holder)).map_err(|e| Error::io("LDIF export", e))
    }

    fn note_entry(&self, sync: &mut ViewSync, key: String, state: Vec<u8>) -> Result<()> {
        let change = match self.store()?.ldap_entry(&key)? {
            None => Some(EntryChange::Add),
            Some(old) if old != state => Some(EntryChange::Modify),
            Some(_) => None,
        };
        if let Some(change) = change {
            sync.updates.push(EntryUpdate {
                key: key.clone(),
                state: Some(state),
                change,
            });
        }
        sync.seen.insert(key);
        Ok(())
    }

    /// Records the noted changes, plus deletes for entries no longer seen, under a new
    /// directory revision (the current one when nothing changed).
    fn apply_view_sync(&self, mut sync: ViewSync) -> Result<u64> {
        for key in self.store()?.ldap_entry_keys() {
            let key = key?;
            if !sync.seen.contains(&key) {
                sync.updates.push(EntryUpdate {
                    key,
                    state: None,
                    change: EntryChange::Delete,
                });
            }
        }
        self.store()?.record_ldap_changes(&sync.updates)
    }
}

impl Holder {
    fn entry(&self) -> ldif::HolderEntry<'_> {
        ldif::HolderEntry {
            mail: &self.mail,
            domain: &self.domain,
            ders: &self.ders,
        }
    }
}

/// The DN of a directory-view key (`domain NUL holder`, holder empty for a container).
fn key_dn(key: &str, base: &str) -> String {
    match key.split_once('\0') {
        Some((domain, "")) => ldif::container_dn(domain, base),
        Some((domain, holder)) => ldif::holder_dn(holder, domain, base),
        None => ldif::container_dn(key, base),
    }
}

fn log_outcome(outcome: &ZoneOutcome) {
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

/// The next SOA serial: date-based (YYYYMMDDnn) while that grows, else last + 1, so it never
/// goes back and allows any number of changes a day.
pub fn next_serial(last: Option<u32>, now: OffsetDateTime) -> u32 {
    let date = u32::try_from(now.year()).unwrap_or(0) * 1_000_000
        + u32::from(u8::from(now.month())) * 10_000
        + u32::from(now.day()) * 100;
    match last {
        Some(last) => date.max(last.wrapping_add(1)),
        None => date,
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn serials_only_grow() {
        let day = datetime!(2026-11-21 08:00 UTC);
        assert_eq!(next_serial(None, day), 2026112100);
        assert_eq!(next_serial(Some(2026112100), day), 2026112101);
        assert_eq!(next_serial(Some(2026112199), day), 2026112200);
        assert_eq!(
            next_serial(Some(2026112105), datetime!(2026-11-22 00:00 UTC)),
            2026112200
        );
        assert_eq!(
            next_serial(Some(2026112300), datetime!(2026-11-22 00:00 UTC)),
            2026112301,
            "a clock set back never lowers the serial"
        );
    }
}
