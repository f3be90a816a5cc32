//! Discovery publication use cases: which certificates a zone or the directory shows (valid
//! now, not revoked), when a zone's SOA serial moves (only when its content changed, never
//! backwards), and the order of steps: plan from the store, write atomically, then reload.
//! Files are streamed to disk certificate by certificate; only the small plan is in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::Authority;
use crate::config::DomainSettings;
use crate::error::{Error, Result};
use crate::model::{HealthDomain, Serial};
use crate::publish::{self, dns, ldif, writer, ReloadOutcome};
use crate::store::{EntryChange, EntryUpdate, IndexedCert, ZoneState};

/// What publishing one zone did.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneOutcome {
    pub domain: String,
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

/// The certificates one zone publishes, in file order, and the digest of its content.
struct ZonePlan {
    certs: Vec<IndexedCert>,
    digest: String,
}

/// One directory entry: a domain container (`holder` empty) or a holder with its serials.
struct DirectoryEntry {
    domain: String,
    holder: Option<String>,
    serials: Vec<Serial>,
}

impl DirectoryEntry {
    /// Key of the entry in the directory view: containers sort before their holders.
    fn key(&self) -> String {
        format!("{}\0{}", self.domain, self.holder.as_deref().unwrap_or(""))
    }

    fn state(&self) -> Vec<u8> {
        let mut text = String::from("v1");
        for s in &self.serials {
            text.push(' ');
            text.push_str(s.as_str());
        }
        sha256(text.as_bytes())
            .get(..16)
            .unwrap_or_default()
            .to_vec()
    }
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
            None => {
                let mut domains = self.config.managed_domains.clone();
                domains.sort();
                domains.iter().map(|d| self.publish_zone(d, None)).collect()
            }
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
        let now = self.now();
        let plan = self.zone_plan(&settings, now)?;
        let last = self.store.zone_state(domain.as_str())?;
        let changed = last.as_ref().is_none_or(|s| s.digest != plan.digest);
        let serial = match &last {
            Some(s) if !changed => s.serial,
            _ => next_serial(last.as_ref().map(|s| s.serial), now),
        };
        let path = out.map_or_else(|| settings.file(), Path::to_path_buf);
        let mut outcome = ZoneOutcome {
            domain: domain.to_string(),
            path: path.clone(),
            mode: settings.mode.as_str().into(),
            serial,
            records: plan.certs.len(),
            changed,
            written: false,
            reload: ReloadOutcome::NotConfigured,
        };
        if !changed && path.exists() {
            return Ok(outcome);
        }
        writer::write_atomic(&path, |w| self.render_zone(w, &settings, serial, &plan))?;
        outcome.written = true;
        if out.is_none() {
            if changed {
                self.store.put_zone_state(
                    domain.as_str(),
                    &ZoneState {
                        serial,
                        digest: plan.digest,
                    },
                )?;
            }
            outcome.reload = publish::reload(
                &settings.reload_command,
                domain.as_str(),
                &path,
                Duration::from_secs(settings.reload_timeout_secs),
            );
        }
        Ok(outcome)
    }

    /// The current zone file of `domain` (published first when out of date), for download.
    pub fn zone_text(&self, domain: &HealthDomain) -> Result<(ZoneOutcome, Vec<u8>)> {
        let outcome = self.publish_zone(domain, None)?;
        let bytes = std::fs::read(&outcome.path).map_err(|e| Error::io(&outcome.path, e))?;
        Ok((outcome, bytes))
    }

    /// After an issuance or revocation: republish the affected domain only. Failures are
    /// logged, never undo the change that triggered them.
    pub(super) fn publish_after_change(&self, domain: &HealthDomain) {
        match self.publish_zone(domain, None) {
            Ok(outcome) => log_outcome(&outcome),
            Err(e) => tracing::error!(
                domain = domain.as_str(), error = %e, code = e.code(),
                "writing the zone file failed; the previous file is unchanged"
            ),
        }
    }

    /// The scheduled sweep: republishes every zone whose content changed, which drops
    /// certificates that expired since the last run.
    pub fn sweep_zones(&self) -> Vec<ZoneOutcome> {
        let mut domains = self.config.managed_domains.clone();
        domains.sort();
        let mut out = Vec::new();
        for domain in &domains {
            match self.publish_zone(domain, None) {
                Ok(outcome) => {
                    log_outcome(&outcome);
                    out.push(outcome);
                }
                Err(e) => tracing::error!(
                    domain = domain.as_str(), error = %e, code = e.code(),
                    "writing the zone file failed; the previous file is unchanged"
                ),
            }
        }
        out
    }

    fn zone_plan(&self, settings: &DomainSettings, now: OffsetDateTime) -> Result<ZonePlan> {
        let mut certs = Vec::new();
        let mut digest = format!(
            "v1 {:?} {} {:?} {:?}\n",
            settings.mode, settings.ttl, settings.soa, settings.ldap_srv
        );
        for cert in self.store.domain_certs(settings.domain.as_str()) {
            let cert = cert?;
            if cert.is_current(now) && !self.store.is_revoked(&cert.serial)? {
                digest.push_str(&cert.holder);
                digest.push(' ');
                digest.push_str(cert.serial.as_str());
                digest.push('\n');
                certs.push(cert);
            }
        }
        Ok(ZonePlan {
            certs,
            digest: hex::encode(sha256(digest.as_bytes())),
        })
    }

    fn render_zone(
        &self,
        w: &mut dyn Write,
        settings: &DomainSettings,
        serial: u32,
        plan: &ZonePlan,
    ) -> std::io::Result<()> {
        dns::write_header(w, settings, serial)?;
        let mut owner = (String::new(), String::new());
        for cert in &plan.certs {
            if owner.0 != cert.holder {
                // A local part never holds '@' (model.rs), so this is `local.domain`.
                owner = (
                    cert.holder.clone(),
                    dns::owner_name(&cert.holder.replace('@', ".")),
                );
            }
            let der = self
                .stored_der(&cert.serial)
                .map_err(std::io::Error::other)?;
            dns::write_cert(w, &owner.1, settings.ttl, &der)?;
        }
        Ok(())
    }

    fn stored_der(&self, serial: &Serial) -> Result<Vec<u8>> {
        self.store
            .cert_der(serial)?
            .ok_or_else(|| Error::Store(format!("certificate {serial} is indexed but missing")))
    }

    // ---- LDIF --------------------------------------------------------------------------

    /// Writes the full LDIF export (to `out` or the configured file).
    pub fn publish_ldif(&self, out: Option<&Path>) -> Result<LdifOutcome> {
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let entries = self.directory_plan(self.now())?;
        let revision = self.sync_directory(&entries)?;
        let path = out.map_or_else(
            || self.config.publish.ldif_file(&self.config.data_dir),
            Path::to_path_buf,
        );
        let base = self.config.publish.ldap.base_dn.as_str();
        let mut certificates = 0;
        writer::write_atomic(&path, |w| {
            // No `version: 1` line: slapadd, the documented way to load a full export,
            // reads it as an attribute and refuses the file; ldapadd loads it either way.
            writeln!(
                w,
                "# Direct certificate discovery export written by anchorage"
            )?;
            writeln!(w, "# directory revision {revision}\n")?;
            ldif::base_entry(w, base)?;
            for entry in &entries {
                certificates += entry.serials.len();
                self.write_entry(w, entry, false)?;
            }
            Ok(())
        })?;
        Ok(LdifOutcome {
            path,
            revision,
            since: None,
            entries: entries.len() + 1,
            certificates,
        })
    }

    /// Writes an LDIF change file (add / modify / delete records for `ldapmodify`) taking a
    /// directory loaded at revision `since` to the current state.
    pub fn publish_ldif_changes(&self, since: u64, out: Option<&Path>) -> Result<LdifOutcome> {
        let _guard = self
            .publish_lock
            .lock()
            .map_err(|_| Error::Publish("a previous publication panicked".into()))?;
        let entries = self.directory_plan(self.now())?;
        let revision = self.sync_directory(&entries)?;
        if since > revision {
            return Err(Error::InvalidInput(format!(
                "--since {since} is ahead of the directory revision {revision}"
            )));
        }
        let path = out.map_or_else(
            || {
                self.config
                    .publish
                    .ldif_file(&self.config.data_dir)
                    .with_file_name(format!("directory-changes-{since}-{revision}.ldif"))
            },
            Path::to_path_buf,
        );
        let by_key: HashMap<String, &DirectoryEntry> =
            entries.iter().map(|e| (e.key(), e)).collect();
        let firsts = self.store.ldap_first_changes_since(since)?;
        let base = self.config.publish.ldap.base_dn.as_str();
        let (mut count, mut certificates) = (0, 0);
        writer::write_atomic(&path, |w| {
            writeln!(w, "version: 1")?;
            writeln!(
                w,
                "# changes from directory revision {since} to {revision}, written by anchorage\n"
            )?;
            let mut deletes = Vec::new();
            for (key, first) in &firsts {
                let existed = *first != EntryChange::Add;
                match (existed, by_key.get(key)) {
                    (false, Some(entry)) => {
                        certificates += entry.serials.len();
                        self.write_entry(w, entry, true)?;
                    }
                    (true, Some(entry)) if entry.holder.is_some() => {
                        certificates += entry.serials.len();
                        let ders = self.ders(&entry.serials).map_err(std::io::Error::other)?;
                        let mail = entry.holder.as_deref().unwrap_or_default();
                        let holder = ldif::HolderEntry {
                            mail,
                            domain: &entry.domain,
                            ders: &ders,
                        };
                        ldif::holder_modify(w, &holder, base)?;
                    }
                    (true, None) => {
                        deletes.push(key_dn(key, base));
                        continue;
                    }
                    _ => continue,
                }
                count += 1;
            }
            // Children before their container.
            for dn in deletes.iter().rev() {
                ldif::delete(w, dn)?;
                count += 1;
            }
            Ok(())
        })?;
        Ok(LdifOutcome {
            path,
            revision,
            since: Some(since),
            entries: count,
            certificates,
        })
    }

    fn write_entry(
        &self,
        w: &mut dyn Write,
        entry: &DirectoryEntry,
        change: bool,
    ) -> std::io::Result<()> {
        let base = self.config.publish.ldap.base_dn.as_str();
        match &entry.holder {
            None if change => ldif::container_add(w, &entry.domain, base),
            None => ldif::container_entry(w, &entry.domain, base),
            Some(mail) => {
                let ders = self.ders(&entry.serials).map_err(std::io::Error::other)?;
                let holder = ldif::HolderEntry {
                    mail,
                    domain: &entry.domain,
                    ders: &ders,
                };
                ldif::holder_entry(w, &holder, base, change)
            }
        }
    }

    fn ders(&self, serials: &[Serial]) -> Result<Vec<Vec<u8>>> {
        serials.iter().map(|s| self.stored_der(s)).collect()
    }

    /// Every entry the directory should hold now, in key order: per managed domain its
    /// container, then each holder with at least one publishable certificate.
    fn directory_plan(&self, now: OffsetDateTime) -> Result<Vec<DirectoryEntry>> {
        let mut domains = self.config.managed_domains.clone();
        domains.sort();
        let mut out = Vec::new();
        for domain in &domains {
            out.push(DirectoryEntry {
                domain: domain.to_string(),
                holder: None,
                serials: Vec::new(),
            });
            let mut holders: BTreeMap<String, Vec<Serial>> = BTreeMap::new();
            for cert in self.store.domain_certs(domain.as_str()) {
                let cert = cert?;
                if cert.is_current(now) && !self.store.is_revoked(&cert.serial)? {
                    holders.entry(cert.holder).or_default().push(cert.serial);
                }
            }
            out.extend(holders.into_iter().map(|(holder, serials)| DirectoryEntry {
                domain: domain.to_string(),
                holder: Some(holder),
                serials,
            }));
        }
        Ok(out)
    }

    /// Records in the directory view what changed since the last export; returns the
    /// directory revision that `entries` represent.
    fn sync_directory(&self, entries: &[DirectoryEntry]) -> Result<u64> {
        let mut updates = Vec::new();
        let mut present = HashSet::with_capacity(entries.len());
        for entry in entries {
            let key = entry.key();
            let state = entry.state();
            match self.store.ldap_entry(&key)? {
                None => updates.push(EntryUpdate {
                    key: key.clone(),
                    state: Some(state),
                    change: EntryChange::Add,
                }),
                Some(old) if old != state => updates.push(EntryUpdate {
                    key: key.clone(),
                    state: Some(state),
                    change: EntryChange::Modify,
                }),
                Some(_) => {}
            }
            present.insert(key);
        }
        for key in self.store.ldap_entry_keys() {
            let key = key?;
            if !present.contains(&key) {
                updates.push(EntryUpdate {
                    key,
                    state: None,
                    change: EntryChange::Delete,
                });
            }
        }
        self.store.record_ldap_changes(&updates)
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
