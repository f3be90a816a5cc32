//! The sled store: one tree per record kind, JSON records that carry a schema version and a
//! store-wide revision, and multi-tree transactions so a certificate, its owner index entry and
//! its audit entry are written together or not at all. Acknowledged writes are flushed and
//! synced to stable storage (see `sync`). Audit entries are chained with the audit key once
//! the log is keyed (`AuditKeying`); a writer that holds no key for a keyed log aborts the whole
//! transaction rather than append an unkeyed entry.
//!
//! This file opens the store and holds the record codec and transaction helpers; the records
//! of each flow live in a file named after it (`certs`, `bundles`, `discovery`, `external`,
//! `accounts`, `organisations`), with `audit`, `backup`, `migrate`, `handle`, `sync` and
//! `commit` (group commit of issuances) beside.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

mod accounts;
mod audit;
mod backup;
mod bundle_versions;
mod bundles;
mod cert_index;
mod certs;
mod commit;
mod discovery;
mod external;
mod handle;
mod migrate;
mod organisations;
mod sync;
mod view_changes;
mod zone_index;

pub use accounts::TokenRecord;
pub use audit::AuditKeying;
pub use backup::{Snapshot, TreeDump, BACKUP_FORMAT, BACKUP_VERSION};
pub use bundle_versions::{BundleVersion, VersionAnchor};
pub use bundles::{AnchorEvent, AnchorRecord, AnchorState, SignerRecord};
pub use cert_index::{CertEntry, CertSource, CountOf};
pub use certs::{CertRecord, CrlRecord, Inserted, IssueJob, IssueWrite, Revocation};
pub use commit::Committed;
pub use discovery::{EntryChange, EntryUpdate, IndexedCert, ShardState, ZoneState};
pub use external::{AnchorFinding, ExternalAnchor, ExternalAttempt, ExternalState, GoodCopy};
pub use handle::{Healing, StoreFault, StoreHandle, MIN_FREE_BYTES};
pub use migrate::{MigrationReport, SCHEMA};
pub use organisations::{idempotency_key, IdempotencyRecord};
pub use view_changes::PendingHolder;
pub use zone_index::{holder_bucket, shard_of_bucket, shard_start, BucketEntry, BUCKETS};

use crate::error::{Error, Result};
use crate::model::ca::CaRecord;
use audit::{append_audit, SharedKeying, AUDIT_KEY_ID};

pub const RECORD_VERSION: u32 = 1;

const REVISION: &[u8] = b"revision";
/// Written and synced to prove the store takes writes (after a write failure).
const WRITE_PROBE: &[u8] = b"write_probe";

/// The opened store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    ca: sled::Tree,
    certs: sled::Tree,
    /// DNS owner name -> the one holder allowed to use it (collision check).
    owners: sled::Tree,
    /// `dns_owner NUL serial` -> empty: every certificate published under an owner name.
    owner_certs: sled::Tree,
    /// `organisation NUL serial bytes` -> empty: the certificates of each organisation's
    /// holders, for scoped listings (see `cert_index`).
    org_certs: sled::Tree,
    revocations: sled::Tree,
    crls: sled::Tree,
    tokens: sled::Tree,
    audit: sled::Tree,
    anchors: sled::Tree,
    /// `f bundle NUL fingerprint NUL id` and `s bundle NUL SHA-256(subject) NUL id` -> empty:
    /// the anchors admission compares a new one with (see `bundles`).
    anchor_index: sled::Tree,
    bundle_versions: sled::Tree,
    /// SHA-256 of an anchor certificate -> its DER: what published versions frame (see
    /// `bundle_versions`).
    bundle_certs: sled::Tree,
    users: sled::Tree,
    /// Browser sessions; written on sign-in and activity, not flushed (a lost session only
    /// means signing in again).
    sessions: sled::Tree,
    /// `domain NUL holder NUL serial` -> validity: the certificates of one zone.
    domain_certs: sled::Tree,
    /// Zone serials and digests, the directory view and its change log.
    discovery: sled::Tree,
    /// `domain NUL bucket holder NUL serial` -> validity: one shard of a zone by range.
    zone_buckets: sled::Tree,
    /// `be_u64(time) NUL kind NUL serial` -> `domain NUL holder`: expiries and starts in order.
    time_index: sled::Tree,
    /// `domain NUL be_u64(revision) serial` -> holder: changes not yet in the zone.
    zone_changes: sled::Tree,
    /// External bundle source name -> its refresh state.
    externals: sled::Tree,
    /// Organisation id -> organisation record.
    organisations: sled::Tree,
    /// Holder (address or domain) -> its organisation binding.
    holders: sled::Tree,
    /// SHA-256 of a SubjectPublicKeyInfo -> the holder it was first certified for.
    key_holders: sled::Tree,
    /// `who NUL key` -> the first result of an issuance sent with an idempotency key.
    idempotency: sled::Tree,
    /// fdatasync after sled's flush (sled alone does not survive a power loss).
    disk: std::sync::Arc<sync::DiskSync>,
    /// How audit entries are chained (see `AuditKeying`).
    keying: SharedKeying,
    /// Issuances waiting for the next group commit (see `commit`).
    commits: std::sync::Arc<commit::GroupCommit>,
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Store(format!("encoding a record: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(format!("a stored {what} record is unreadable: {e}")))
}

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::from(e),
    }
}

fn u64_of(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Bumps the store revision inside a transaction.
fn next_revision(
    meta: &TransactionalTree,
) -> std::result::Result<u64, UnabortableTransactionError> {
    let next = u64_of(meta.get(REVISION)?) + 1;
    meta.insert(REVISION, &next.to_be_bytes())?;
    Ok(next)
}

/// What a corruption error says about where sled found it: the log file `db`, and the
/// offset or blob sled names.
fn corrupted_file(store: &Path, at: Option<sled::DiskPtr>) -> (String, String) {
    let detail = match at {
        Some(ptr) => format!("sled read corrupted data at {ptr:?}"),
        None => "sled read corrupted data".into(),
    };
    (store.join("db").display().to_string(), detail)
}

/// Makes the store under `dir` private again after sled wrote new files.
fn private_files_after_write(dir: &Path) -> Result<()> {
    crate::private_files::restrict_tree(&dir.join("store"))
}

impl Store {
    /// Opens (creating if needed) the store under `dir/store`.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join("store");
        crate::private_files::check(&path)?;
        crate::private_files::create_dir(&path)?;
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            // sled caches up to 1 GiB by default; records are read rarely after the write, and
            // an idle service should stay small.
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    Error::Locked(dir.display().to_string())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    Error::Locked(dir.display().to_string())
                }
                sled::Error::Corruption { at, .. } => {
                    let (path, detail) = corrupted_file(&path, at);
                    Error::StoreCorrupted { path, detail }
                }
                other => Error::Store(format!("opening {}: {other}", path.display())),
            })?;
        // sled creates its files with the process umask: make them private.
        crate::private_files::restrict_tree(&path)?;
        let tree = |name: &str| db.open_tree(name);
        let meta = tree("meta")?;
        let keyed =
            meta.get(AUDIT_KEY_ID)?.is_some() || dir.join(crate::audit::key::KEY_FILE).exists();
        let keying = if keyed {
            AuditKeying::Locked {
                why: format!(
                    "the audit log is keyed ({}) and the audit key is not loaded: set \
                     ANCHORAGE_PASSPHRASE or passphrase_file so anchorage can open it",
                    crate::audit::key::KEY_FILE,
                ),
                integrity: false,
            }
        } else {
            AuditKeying::Unkeyed
        };
        let store = Store {
            keying: std::sync::Arc::new(std::sync::RwLock::new(keying)),
            meta,
            ca: tree("ca")?,
            certs: tree("certs")?,
            owners: tree("owners")?,
            owner_certs: tree("owner_certs")?,
            org_certs: tree("org_certs")?,
            revocations: tree("revocations")?,
            crls: tree("crls")?,
            tokens: tree("tokens")?,
            audit: tree("audit")?,
            anchors: tree("anchors")?,
            anchor_index: tree("anchor_index")?,
            bundle_versions: tree("bundle_versions")?,
            bundle_certs: tree("bundle_certs")?,
            users: tree("users")?,
            sessions: tree("sessions")?,
            domain_certs: tree("domain_certs")?,
            discovery: tree("discovery")?,
            zone_buckets: tree("zone_buckets")?,
            time_index: tree("time_index")?,
            zone_changes: tree("zone_changes")?,
            externals: tree("externals")?,
            organisations: tree("organisations")?,
            holders: tree("holders")?,
            key_holders: tree("key_holders")?,
            idempotency: tree("idempotency")?,
            disk: std::sync::Arc::new(sync::DiskSync::open(&path)?),
            commits: std::sync::Arc::default(),
            db,
        };
        store.backfill_domain_index()?;
        store.backfill_anchor_index()?;
        Ok(store)
    }

    /// Makes every write so far durable, also against a power loss.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        self.disk.sync()
    }

    /// The audit keying state, shared with a reopened copy of this store (see `handle`).
    fn keying_handle(&self) -> SharedKeying {
        self.keying.clone()
    }

    /// This store with the audit keying of the instance it replaces: the key loaded with the
    /// passphrase stays loaded across a reopen.
    fn with_keying(mut self, keying: SharedKeying) -> Store {
        self.keying = keying;
        self
    }

    /// Proves that the store takes writes: a small record, flushed and synced.
    pub fn probe(&self) -> Result<()> {
        let next = u64_of(self.meta.get(WRITE_PROBE)?).wrapping_add(1);
        self.meta.insert(WRITE_PROBE, &next.to_be_bytes())?;
        self.flush()
    }

    pub fn revision(&self) -> Result<u64> {
        Ok(u64_of(self.meta.get(REVISION)?))
    }

    /// For tests that prove a mismatched CA key is refused: overwrites a CA record with no
    /// check and no audit entry.
    #[doc(hidden)]
    pub fn danger_put_ca_record(&self, record: &CaRecord) -> Result<()> {
        self.ca.insert(record.role.as_str(), encode(record)?)?;
        self.flush()
    }

    /// For tests that prove an unreadable store is reported: overwrites a CA record with raw
    /// bytes (as disk corruption or a record written by a newer version would leave it).
    #[doc(hidden)]
    pub fn danger_put_raw_ca_record(&self, role: &str, bytes: &[u8]) -> Result<()> {
        self.ca.insert(role, bytes)?;
        self.flush()
    }

    /// For tests that prove tampering is detected: raw access to the audit tree.
    #[doc(hidden)]
    pub fn danger_audit_tree(&self) -> &sled::Tree {
        &self.audit
    }

    /// For tests that prove tampering is detected: raw access to the meta tree (the audit
    /// head and the keyed marker live there).
    #[doc(hidden)]
    pub fn danger_meta_tree(&self) -> &sled::Tree {
        &self.meta
    }
}
