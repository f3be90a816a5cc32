//! Power-loss durability under sled. sled 0.34's `flush` writes its log with
//! `sync_file_range`, which neither flushes the device's write cache nor file metadata, and
//! its large-page blob files are never synced; only a background thread fsyncs, every 500 ms.
//! A CA must not acknowledge a certificate that a power cut can erase (it could not be
//! revoked, and its serial could be issued again), so after sled's flush the store calls
//! `fdatasync` on sled's log file and syncs any blob file not synced before.
//!
//! sled creates its files with the process umask; each blob or other file it adds is made
//! private (0600) the first time a sync sees it, so the store stays private under `umask 000`.
//!
//! Concurrent callers share syncs (group commit): a sync that started after a caller's own
//! flush returned covers that caller, so it does not sync again.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Syncs one sled directory's files to stable storage.
pub struct DiskSync {
    log: File,
    /// The sled directory: files sled adds there later (snapshots) are made private too.
    dir: PathBuf,
    blobs_dir: PathBuf,
    /// Number of sync requests taken so far.
    requested: AtomicU64,
    /// Guarded: the highest request number a completed sync covers, and the blob files
    /// already synced.
    state: Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    covered: u64,
    synced_blobs: HashSet<std::ffi::OsString>,
    /// Files of the sled directory already made private.
    private_files: HashSet<std::ffi::OsString>,
}

impl DiskSync {
    /// For the sled database at `path` (the directory sled was opened on).
    pub fn open(path: &Path) -> Result<DiskSync> {
        let log_path = path.join("db");
        let log = File::open(&log_path).map_err(|e| Error::io(&log_path, e))?;
        Ok(DiskSync {
            log,
            dir: path.to_path_buf(),
            blobs_dir: path.join("blobs"),
            requested: AtomicU64::new(0),
            state: Mutex::new(SyncState::default()),
        })
    }

    /// Makes everything sled has written so far survive a power loss. Call after
    /// `sled::Db::flush` has returned.
    pub fn sync(&self) -> Result<()> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::Store("the store sync lock is poisoned".into()))?;
        if state.covered >= ticket {
            return Ok(());
        }
        // Every request numbered up to here was taken after its caller's flush, and before
        // this sync starts, so this sync covers all of them.
        let upto = self.requested.load(Ordering::SeqCst);
        self.sync_blobs(&mut state.synced_blobs)?;
        self.restrict_new_files(&mut state.private_files)?;
        self.log
            .sync_data()
            .map_err(|e| crate::error::store_io_fault(&e))?;
        state.covered = upto;
        Ok(())
    }

    /// sled creates files (snapshots, a new log) with the process umask; each new one is
    /// made private (0600) once.
    fn restrict_new_files(&self, known: &mut HashSet<std::ffi::OsString>) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut present = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && !known.contains(&name) {
                crate::private_files::restrict_file(&entry.path())?;
            }
            present.insert(name);
        }
        *known = present;
        Ok(())
    }

    /// Blob files are written once (`create_new`) and never changed, so each is synced once;
    /// the directory is synced too, so their names survive.
    fn sync_blobs(&self, synced: &mut HashSet<std::ffi::OsString>) -> Result<()> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.blobs_dir, e)),
        };
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.blobs_dir, e))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => {
                        // sled creates blobs with the process umask; they hold records.
                        crate::private_files::restrict_file(&entry.path())?;
                        f.sync_data().map_err(|e| Error::io(entry.path(), e))?
                    }
                    // sled removed it meanwhile (a rewritten page): nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(entry.path(), e)),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&self.blobs_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&self.blobs_dir, e))?;
        }
        *synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::DiskSync;

    #[test]
    fn syncs_the_log_and_new_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let sync = DiskSync::open(dir.path()).unwrap();
        sync.sync().unwrap();
        std::fs::write(dir.path().join("blobs").join("42"), b"blob").unwrap();
        sync.sync().unwrap();
        // A file sled adds later (a snapshot) is made private.
        std::fs::write(dir.path().join("snap.1"), b"snap").unwrap();
        std::fs::set_permissions(
            dir.path().join("snap.1"),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        sync.sync().unwrap();
        {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.path().join("snap.1"))
                    .unwrap()
                    .permissions(),
            );
            assert_eq!(mode & 0o777, 0o600);
            let blob = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.path().join("blobs").join("42"))
                    .unwrap()
                    .permissions(),
            );
            assert_eq!(blob & 0o777, 0o600);
            let state = sync.state.lock().unwrap();
            assert!(state.synced_blobs.contains(std::ffi::OsStr::new("42")));
            assert_eq!(state.covered, 3);
        }
        // A removed blob is forgotten, so the set does not grow forever.
        std::fs::remove_file(dir.path().join("blobs").join("42")).unwrap();
        sync.sync().unwrap();
        assert!(sync.state.lock().unwrap().synced_blobs.is_empty());
    }

    #[test]
    fn concurrent_callers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        let sync = std::sync::Arc::new(DiskSync::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = sync.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        s.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every request is covered by the end.
        assert_eq!(sync.state.lock().unwrap().covered, 200);
    }

    #[test]
    fn a_missing_log_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DiskSync::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("db"), "{err}");
    }
}
