//! The store as the service holds it: one handle that survives a failing disk.
//!
//! sled 0.34 keeps the first I/O error of its log writer (a full disk, a failing device) as a
//! process-wide "global error" of that database: from then on every write fails, even after
//! space returns, until the database is opened again. A CA must not need a restart for that:
//! the handle notices the fault, and [`StoreHandle::heal`] (called every second by `serve`)
//! checks that the file system has room again, drops the broken database, opens it anew
//! (sled's recovery reads back every write that was acknowledged, since each was synced
//! before the answer) and proves it with a small synced write. Meanwhile reads go on against
//! the old database and writes answer `store_unwritable` (HTTP 503).
//!
//! Callers take the current store for one use case with [`StoreHandle::get`] and let it go;
//! the swap waits (a bounded time) for those uses to end, because sled holds an exclusive
//! lock on its files until the last reference is dropped.
//!
//! Noticing the fault costs nothing while the disk is fine: `From<sled::Error>` and the disk
//! sync count I/O failures process-wide ([`crate::error::store_io_faults`]); only when that
//! count moved does `heal` probe the store with a write.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::Store;
use crate::error::{Error, Result};

/// Reopen only when the file system has at least this much room: sled's log grows in
/// segments of 512 KiB, and a reopen that fails at once would only interrupt reads.
pub const MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// How long a swap waits for the uses of the old database to end.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Why the store cannot be written, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFault {
    /// The underlying error, e.g. "No space left on device (os error 28)".
    pub cause: String,
    /// Free bytes on the store's file system when last checked.
    pub free_bytes: Option<u64>,
}

/// What one [`StoreHandle::heal`] call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healing {
    /// Nothing was wrong.
    Healthy,
    /// The store was reopened and takes writes again.
    Healed,
    /// Writes still fail.
    Unwritable(StoreFault),
}

/// The opened store and its fault state.
pub struct StoreHandle {
    dir: PathBuf,
    /// `None` only when a reopen failed to open the database (retried every second).
    current: RwLock<Option<Arc<Store>>>,
    fault: Mutex<Option<StoreFault>>,
    /// The process-wide count of store I/O faults already looked at (see
    /// [`crate::error::store_io_faults`]).
    faults_seen: Mutex<u64>,
}

impl StoreHandle {
    /// Opens (creating if needed) the store under `dir/store`.
    pub fn open(dir: &Path) -> Result<StoreHandle> {
        let store = Store::open(dir)?;
        Ok(StoreHandle {
            dir: dir.to_path_buf(),
            current: RwLock::new(Some(Arc::new(store))),
            fault: Mutex::new(None),
            faults_seen: Mutex::new(crate::error::store_io_faults()),
        })
    }

    /// The store for one use case; hold it only as long as the use case runs.
    pub fn get(&self) -> Result<Arc<Store>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.clone().ok_or_else(|| {
            Error::StoreUnwritable("the store is being reopened after a write failure".into())
        })
    }

    /// Why writes fail now, if they do.
    pub fn fault(&self) -> Option<StoreFault> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// Checks the store after a write failure anywhere in the process, and reopens it once
    /// the file system has room again. Cheap when nothing failed: no I/O at all.
    pub fn heal(&self) -> Healing {
        let seen = crate::error::store_io_faults();
        let suspected = {
            let mut last = self.faults_seen.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *last != seen;
            *last = seen;
            changed
        };
        if self.fault().is_none() {
            if !suspected {
                return Healing::Healthy;
            }
            // A write failed somewhere: find out whether it was this store.
            match self.get().and_then(|s| s.probe()) {
                Ok(()) => return Healing::Healthy,
                Err(e) => self.set_fault(&e),
            }
        }
        let free = free_bytes(&self.dir);
        if free.is_some_and(|f| f < MIN_FREE_BYTES) {
            return self.still_unwritable(free);
        }
        match self.reopen() {
            Ok(()) => {
                tracing::warn!("the store takes writes again: reopened after a write failure");
                *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Healing::Healed
            }
            Err(e) => {
                tracing::warn!(error = %e, "the store is still unwritable");
                self.set_fault(&e);
                self.still_unwritable(free)
            }
        }
    }

    fn still_unwritable(&self, free: Option<u64>) -> Healing {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let current = fault.get_or_insert_with(|| StoreFault {
            cause: "a write failed".into(),
            free_bytes: None,
        });
        current.free_bytes = free;
        Healing::Unwritable(current.clone())
    }

    fn set_fault(&self, e: &Error) {
        let cause = match e {
            Error::StoreUnwritable(cause) => cause.clone(),
            other => other.to_string(),
        };
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault.is_none() {
            tracing::error!(cause = %cause, "the store cannot be written; writes answer 503 store_unwritable until it heals");
        }
        *fault = Some(StoreFault {
            cause,
            free_bytes: free_bytes(&self.dir),
        });
    }

    /// Drops the broken database and opens it again, then proves it with a synced write.
    fn reopen(&self) -> Result<()> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let deadline = crate::clock::monotonic_now() + DRAIN_WAIT;
        while current.as_ref().is_some_and(|s| Arc::strong_count(s) > 1) {
            if crate::clock::monotonic_now() > deadline {
                return Err(Error::StoreUnwritable(
                    "the store is busy; reopening it is retried".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // sled releases its file lock only when the last reference is dropped; the audit key
        // loaded with the passphrase carries over.
        let keying = current.as_ref().map(|s| s.keying_handle());
        drop(current.take());
        let store = Store::open(&self.dir)?;
        let store = match keying {
            Some(keying) => store.with_keying(keying),
            None => store,
        };
        let probed = store.probe();
        *current = Some(Arc::new(store));
        probed
    }
}

/// Free bytes for an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
