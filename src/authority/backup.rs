//! The backup and restore use cases: a snapshot of the store plus the data directory's
//! configuration in one checked file, and a restore that builds a data directory beside the
//! target and renames it into place, so a failure never leaves a half-written one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Authority;
use crate::config;
use crate::error::{Error, Result};
use crate::store::{Snapshot, Store};

/// What a restore rebuilt.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    /// The store revision of the snapshot.
    pub revision: u64,
    pub trees: usize,
    pub entries: usize,
    pub created_at: String,
    pub config_restored: bool,
    /// The sealed audit key came back too (a keyed log verifies after the restore).
    pub audit_key_restored: bool,
}

impl Authority {
    /// The bytes of a backup file: a consistent snapshot of every tree and the configuration.
    pub fn backup(&self) -> Result<Vec<u8>> {
        let config = read_optional(&self.config.data_dir.join(config::DATA_DIR_CONFIG))?;
        let audit_key = read_optional(&self.audit_key_path())?;
        let created_at = self
            .now()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::Store(format!("formatting the backup time: {e}")))?;
        self.store()?
            .snapshot(created_at, config, audit_key)?
            .encode()
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Rebuilds `data_dir` from the backup file `file`. Refuses a damaged file before writing
/// anything, and an existing non-empty `data_dir`.
pub fn restore(file: &Path, data_dir: &Path) -> Result<RestoreReport> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let snapshot = Snapshot::decode(file, &bytes)?;
    drop(bytes);
    let occupied = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(data_dir, e)),
    };
    if occupied {
        return Err(Error::Conflict(format!(
            "{} is not empty; restore into a new directory (move the broken one aside first)",
            data_dir.display()
        )));
    }
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidInput(format!("{} names no directory", data_dir.display())))?;
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let result = build(&staging, &snapshot).and_then(|()| {
        if data_dir.exists() {
            std::fs::remove_dir(data_dir).map_err(|e| Error::io(data_dir, e))?;
        }
        std::fs::rename(&staging, data_dir).map_err(|e| Error::io(data_dir, e))?;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(parent, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result?;
    Ok(RestoreReport {
        data_dir: data_dir.to_path_buf(),
        revision: snapshot.revision,
        trees: snapshot.trees.len(),
        entries: snapshot.entries(),
        created_at: snapshot.created_at.clone(),
        config_restored: snapshot.config.is_some(),
        audit_key_restored: snapshot.audit_key.is_some(),
    })
}

fn build(staging: &Path, snapshot: &Snapshot) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(staging)
        .map_err(|e| Error::io(staging, e))?;
    let store = Store::restore(staging, snapshot)?;
    drop(store);
    let files = [
        (config::DATA_DIR_CONFIG, &snapshot.config),
        (crate::audit::key::KEY_FILE, &snapshot.audit_key),
    ];
    for (name, text) in files {
        if let Some(text) = text {
            write_new_private(&staging.join(name), text)?;
        }
    }
    Ok(())
}

fn write_new_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
