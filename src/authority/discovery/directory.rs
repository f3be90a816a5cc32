//! The directory (LDAP) view of discovery: the full LDIF export and the change file taking
//! a directory from one revision to the next, both streamed holder by holder, with the
//! directory view in the store recording what each export showed (kept current from the
//! changes alone between full exports: `view`). Split from zones because
//! it keeps its own state (entry digests and revisions) and its own lock.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use super::{sha256, Revoked};
use crate::authority::Authority;
use crate::discovery::{ldif, writer};
use crate::error::{Error, Result};
use crate::model::Serial;
use crate::store::{EntryChange, EntryUpdate};

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

/// One holder of the directory with its publishable certificates.
pub(super) struct Holder {
    domain: String,
    mail: String,
    pub(super) serials: Vec<Serial>,
    ders: Vec<Vec<u8>>,
}

/// Key of an entry in the directory view: `domain NUL` for a container, `domain NUL holder`
/// for a holder, so containers sort before their holders.
pub(super) fn entry_key(domain: &str, holder: Option<&str>) -> String {
    format!("{domain}\0{}", holder.unwrap_or(""))
}

/// The recorded state of a holder entry: a digest of its serials (containers: constant).
pub(super) fn entry_state(serials: &[Serial]) -> Vec<u8> {
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
pub(super) struct ViewSync {
    updates: Vec<EntryUpdate>,
    seen: HashSet<String>,
}

impl Authority {
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
        let upto = self.begin_full_view_walk(now)?;
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
        self.end_full_view_walk(now, upto)?;
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
        let revision = self.sync_view(now)?;
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
    pub(super) fn holder(&self, domain: &str, mail: &str, now: OffsetDateTime) -> Result<Holder> {
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
    pub(super) fn walk_directory(
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
    pub(super) fn apply_view_sync(&self, mut sync: ViewSync) -> Result<u64> {
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
