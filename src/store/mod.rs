//! The sled store: one tree per record kind, JSON records that carry a schema version and a
//! store-wide revision, and multi-tree transactions so a certificate, its owner index entry and
//! its audit entry are written together or not at all. Acknowledged writes are flushed and
//! synced to stable storage (see `sync`). Audit entries are chained with the audit key once
//! the log is keyed (`AuditKeying`); a writer that holds no key for a keyed log aborts the whole
//! transaction rather than append an unkeyed entry.

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;
use time::OffsetDateTime;

mod accounts;
mod backup;
mod bundles;
mod discovery;
mod external;
mod handle;
mod migrate;
mod organisations;
mod sync;

pub use backup::{Snapshot, TreeDump, BACKUP_FORMAT, BACKUP_VERSION};
pub use bundles::{
    AnchorEvent, AnchorRecord, AnchorState, BundleVersion, SignerRecord, VersionAnchor,
};
pub use discovery::{EntryChange, EntryUpdate, IndexedCert, ZoneState};
pub use external::{AnchorFinding, ExternalAnchor, ExternalAttempt, ExternalState, GoodCopy};
pub use handle::{Healing, StoreFault, StoreHandle, MIN_FREE_BYTES};
pub use migrate::{MigrationReport, SCHEMA};
pub use organisations::{idempotency_key, IdempotencyRecord};

use crate::audit::{AuditDraft, AuditEntry, AuditHead, AuditKey};
use crate::error::{Error, Result};
use crate::model::ca::{CaRecord, CaRole};
use crate::model::issuance::{Proofing, Subscriber};
use crate::model::organisations::HolderBinding;
use crate::model::{CertUsage, Fingerprint, Holder, RevocationReason, Serial, Usage};

pub const RECORD_VERSION: u32 = 1;

const REVISION: &[u8] = b"revision";
const AUDIT_HEAD: &[u8] = b"audit_head";
/// Written and synced to prove the store takes writes (after a write failure).
const WRITE_PROBE: &[u8] = b"write_probe";
/// The id of the key the log is keyed with, once it is: writers without the key then refuse
/// to append (the authoritative boundary is in the sealed key file, outside the store).
const AUDIT_KEY_ID: &[u8] = b"audit_key_id";

/// Whether and how new audit entries are keyed.
pub enum AuditKeying {
    /// The log was never keyed (a store not yet opened with the passphrase since the
    /// upgrade): entries are legacy SHA-256 entries.
    Unkeyed,
    /// The log is keyed but the key is not loaded: why, and whether the key file itself was
    /// found altered (an integrity failure rather than a missing key).
    Locked {
        why: String,
        integrity: bool,
    },
    Keyed(std::sync::Arc<AuditKey>),
}

type SharedKeying = std::sync::Arc<std::sync::RwLock<AuditKeying>>;

/// An issued certificate and everything recorded about its request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertRecord {
    pub record_version: u32,
    pub revision: u64,
    pub serial: Serial,
    /// Shared by the two halves of a pair.
    pub request_id: String,
    /// The Direct address (`local@domain`) or health domain the certificate is bound to.
    #[schema(value_type = String)]
    pub holder: Holder,
    pub dns_owner: String,
    pub usage: CertUsage,
    pub requested_usage: Usage,
    pub profile: String,
    pub level_of_assurance: String,
    pub category: String,
    pub subscriber: Subscriber,
    pub registrar: String,
    pub proofing: Proofing,
    pub key: String,
    /// `csr` or `generated`.
    pub key_origin: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub fingerprint: Fingerprint,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The certificate, base64 of DER.
    #[serde(with = "crate::model::base64_bytes")]
    #[schema(value_type = String, format = Byte)]
    pub der: Vec<u8>,
}

/// A revocation. Permanent: there is no un-revoke.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revocation {
    pub record_version: u32,
    pub revision: u64,
    pub serial: Serial,
    pub ca: CaRole,
    pub reason: RevocationReason,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    pub revoked_by: String,
}

/// The latest CRL of one CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrlRecord {
    pub record_version: u32,
    pub ca: CaRole,
    pub number: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    /// Store revision the CRL reflects; a newer revocation makes it stale.
    pub revision: u64,
    #[serde(with = "crate::model::base64_bytes")]
    pub der: Vec<u8>,
}

/// An API token; only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub record_version: u32,
    pub id: String,
    pub hash: String,
    pub role: String,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// What a registrar or member token may touch (issue scoping); empty for admin tokens.
    #[serde(default)]
    pub scope: crate::model::accounts::Scope,
    /// The user who created the token, when created by a signed-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl TokenRecord {
    /// `live`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "live"
        }
    }
}

/// What the issuance transaction checks and writes beside the certificates.
#[derive(Debug, Clone)]
pub struct IssueWrite {
    /// The holder's organisation: stored when the holder has none yet, compared otherwise.
    pub binding: HolderBinding,
    /// SHA-256 of each certified SubjectPublicKeyInfo.
    pub key_hashes: Vec<Vec<u8>>,
    /// The profile allows one key for several holders.
    pub allow_key_reuse: bool,
    /// The idempotency tree key and the record to keep.
    pub idempotency: Option<(Vec<u8>, IdempotencyRecord)>,
}

impl IssueWrite {
    /// A write that binds `holder` to `organisation` and indexes no key: for bulk loads
    /// (benchmarks, imports) whose keys are checked elsewhere.
    pub fn bulk(holder: &Holder, organisation: &str, at: OffsetDateTime) -> IssueWrite {
        IssueWrite {
            binding: HolderBinding {
                record_version: RECORD_VERSION,
                holder: holder.to_string(),
                organisation: organisation.to_string(),
                bound_at: at,
                bound_by: "bulk".into(),
                conflicting_names: Vec::new(),
            },
            key_hashes: Vec::new(),
            allow_key_reuse: true,
            idempotency: None,
        }
    }
}

/// What `insert_certs` did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored at this revision.
    Stored(u64),
    /// The idempotency key was used before: nothing stored; the first result.
    Replay(IdempotencyRecord),
}

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
    revocations: sled::Tree,
    crls: sled::Tree,
    tokens: sled::Tree,
    audit: sled::Tree,
    anchors: sled::Tree,
    bundle_versions: sled::Tree,
    users: sled::Tree,
    /// Browser sessions; written on sign-in and activity, not flushed (a lost session only
    /// means signing in again).
    sessions: sled::Tree,
    /// `domain NUL holder NUL serial` -> validity: the certificates of one zone.
    domain_certs: sled::Tree,
    /// Zone serials and digests, the directory view and its change log.
    discovery: sled::Tree,
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

/// The key new entries are chained with; `None` for a log never keyed. A keyed log whose key
/// is not loaded refuses the write rather than append an unkeyed entry.
fn chain_key(keying: &SharedKeying) -> Result<Option<std::sync::Arc<AuditKey>>> {
    match &*keying
        .read()
        .map_err(|_| Error::Store("lock poisoned".into()))?
    {
        AuditKeying::Unkeyed => Ok(None),
        AuditKeying::Keyed(key) => Ok(Some(key.clone())),
        AuditKeying::Locked {
            why,
            integrity: true,
        } => Err(Error::AuditIntegrity(why.clone())),
        AuditKeying::Locked { why, .. } => Err(Error::AuditKeyUnavailable(why.clone())),
    }
}

/// Appends an audit entry inside a transaction.
fn append_audit(
    keying: &SharedKeying,
    meta: &TransactionalTree,
    audit: &TransactionalTree,
    at: OffsetDateTime,
    draft: AuditDraft,
) -> TxResult<AuditEntry> {
    let key = match chain_key(keying) {
        Ok(k) => k,
        Err(e) => return abort(e),
    };
    let head: Option<AuditHead> = match meta.get(AUDIT_HEAD)? {
        Some(b) => match decode(&b, "audit head") {
            Ok(h) => Some(h),
            Err(e) => return abort(e),
        },
        None => None,
    };
    let entry = match AuditEntry::chain(head.as_ref(), at, draft, key.as_deref()) {
        Ok(e) => e,
        Err(e) => return abort(e),
    };
    let (bytes, head_bytes) = match (encode(&entry), encode(&entry.head())) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return abort(e),
    };
    audit.insert(&entry.seq.to_be_bytes(), bytes)?;
    meta.insert(AUDIT_HEAD, head_bytes)?;
    Ok(entry)
}

/// Key of the owner-to-certificate index: `dns_owner NUL serial`.
fn owner_cert_key(dns_owner: &str, serial: &Serial) -> Vec<u8> {
    let mut key = owner_prefix(dns_owner);
    key.extend_from_slice(serial.as_str().as_bytes());
    key
}

fn owner_prefix(dns_owner: &str) -> Vec<u8> {
    let mut key = dns_owner.as_bytes().to_vec();
    key.push(0);
    key
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
            revocations: tree("revocations")?,
            crls: tree("crls")?,
            tokens: tree("tokens")?,
            audit: tree("audit")?,
            anchors: tree("anchors")?,
            bundle_versions: tree("bundle_versions")?,
            users: tree("users")?,
            sessions: tree("sessions")?,
            domain_certs: tree("domain_certs")?,
            discovery: tree("discovery")?,
            externals: tree("externals")?,
            organisations: tree("organisations")?,
            holders: tree("holders")?,
            key_holders: tree("key_holders")?,
            idempotency: tree("idempotency")?,
            disk: std::sync::Arc::new(sync::DiskSync::open(&path)?),
            db,
        };
        store.backfill_domain_index()?;
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

    // ---- CA ----------------------------------------------------------------------------

    pub fn ca_record(&self, role: CaRole) -> Result<Option<CaRecord>> {
        self.ca
            .get(role.as_str())?
            .map(|b| decode(&b, "CA"))
            .transpose()
    }

    /// Stores a new hierarchy; refuses when one exists already.
    pub fn put_hierarchy(
        &self,
        root: &CaRecord,
        issuing: &CaRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let (root_bytes, issuing_bytes) = (encode(root)?, encode(issuing)?);
        (&self.ca, &self.meta, &self.audit)
            .transaction(|(ca, meta, audit)| {
                if ca.get("root")?.is_some() || ca.get("issuing")?.is_some() {
                    return abort(Error::Conflict(
                        "this data directory already holds a CA hierarchy".into(),
                    ));
                }
                ca.insert("root", root_bytes.clone())?;
                ca.insert("issuing", issuing_bytes.clone())?;
                next_revision(meta)?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    // ---- certificates ------------------------------------------------------------------

    /// The holder published under a DNS owner name, if any certificate was issued for it.
    pub fn owner_holder(&self, dns_owner: &str) -> Result<Option<String>> {
        Ok(self
            .owners
            .get(dns_owner.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Serials of every certificate issued under a DNS owner name, in serial order.
    pub fn serials_of_owner(&self, dns_owner: &str) -> Result<Vec<Serial>> {
        let prefix = owner_prefix(dns_owner);
        self.owner_certs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                let serial =
                    String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned();
                Serial::parse(&serial).map_err(Error::Store)
            })
            .collect()
    }

    /// Stores newly issued certificates (one, or both halves of a pair) with their index and
    /// audit entries atomically, re-checking serial uniqueness, owner collisions, the holder's
    /// organisation, key reuse and the idempotency key. A replay of a stored idempotency key
    /// writes nothing and returns the first result.
    pub fn insert_certs(
        &self,
        records: &mut [CertRecord],
        at: OffsetDateTime,
        draft: AuditDraft,
        issue: &IssueWrite,
    ) -> Result<Inserted> {
        let binding_bytes = encode(&issue.binding)?;
        let idempotency = match &issue.idempotency {
            Some((key, record)) => Some((key.clone(), encode(record)?)),
            None => None,
        };
        let outcome = (
            &self.certs,
            &self.owners,
            &self.owner_certs,
            &self.meta,
            &self.audit,
            &self.domain_certs,
            &self.holders,
            &self.key_holders,
            &self.idempotency,
        )
            .transaction(
                |(
                    certs,
                    owners,
                    owner_certs,
                    meta,
                    audit,
                    domain_certs,
                    holders,
                    key_holders,
                    idempotent,
                )| {
                    if let Some((key, _)) = &idempotency {
                        if let Some(first) = idempotent.get(key)? {
                            return match decode::<IdempotencyRecord>(&first, "idempotency") {
                                Ok(first) => Ok(Inserted::Replay(first)),
                                Err(e) => abort(e),
                            };
                        }
                    }
                    let holder = issue.binding.holder.as_str();
                    match holders.get(holder.as_bytes())? {
                        Some(found) => match decode::<HolderBinding>(&found, "holder binding") {
                            Ok(b) if b.organisation != issue.binding.organisation => {
                                return abort(Error::HolderOwnedElsewhere(format!(
                                    "{holder} belongs to another organisation"
                                )))
                            }
                            Ok(_) => {}
                            Err(e) => return abort(e),
                        },
                        None => {
                            holders.insert(holder.as_bytes(), binding_bytes.clone())?;
                        }
                    }
                    for key in &issue.key_hashes {
                        match key_holders.get(key.as_slice())? {
                            Some(other) if other.as_ref() != holder.as_bytes() => {
                                if !issue.allow_key_reuse {
                                    return abort(Error::Denied(crate::model::denial::Denial::single(
                                        "key_reused",
                                        "csr",
                                        format!(
                                            "this public key is already certified for '{}';                                              each holder needs its own key",
                                            String::from_utf8_lossy(&other)
                                        ),
                                    )));
                                }
                            }
                            Some(_) => {}
                            None => {
                                key_holders.insert(key.as_slice(), holder.as_bytes())?;
                            }
                        }
                    }
                    let revision = next_revision(meta)?;
                    for record in records.iter() {
                        let serial_key = record.serial.to_bytes();
                        if certs.get(&serial_key)?.is_some() {
                            return abort(Error::Conflict(format!(
                                "serial {} is already in use",
                                record.serial
                            )));
                        }
                        let holder = record.holder.to_string();
                        if let Some(existing) = owners.get(record.dns_owner.as_bytes())? {
                            if existing.as_ref() != holder.as_bytes() {
                                return abort(Error::Conflict(format!(
                                    "DNS owner name '{}.' already belongs to '{}'",
                                    record.dns_owner,
                                    String::from_utf8_lossy(&existing)
                                )));
                            }
                        }
                        let mut stored = record.clone();
                        stored.revision = revision;
                        let bytes = match encode(&stored) {
                            Ok(b) => b,
                            Err(e) => return abort(e),
                        };
                        certs.insert(serial_key, bytes)?;
                        owners.insert(record.dns_owner.as_bytes(), holder.as_bytes())?;
                        owner_certs
                            .insert(owner_cert_key(&record.dns_owner, &record.serial), &[])?;
                        domain_certs.insert(
                            discovery::domain_cert_key(&stored),
                            discovery::domain_cert_value(&stored),
                        )?;
                    }
                    if let Some((key, bytes)) = &idempotency {
                        idempotent.insert(key.as_slice(), bytes.as_slice())?;
                    }
                    append_audit(&self.keying, meta, audit, at, draft.clone())?;
                    Ok(Inserted::Stored(revision))
                },
            )
            .map_err(tx_error)?;
        if let Inserted::Stored(revision) = outcome {
            for record in records.iter_mut() {
                record.revision = revision;
            }
        }
        Ok(outcome)
    }

    pub fn cert(&self, serial: &Serial) -> Result<Option<CertRecord>> {
        self.certs
            .get(serial.to_bytes())?
            .map(|b| decode(&b, "certificate"))
            .transpose()
    }

    /// Every certificate, in serial order.
    pub fn certs(&self) -> impl Iterator<Item = Result<CertRecord>> + '_ {
        self.certs.iter().values().map(|v| {
            v.map_err(Error::from)
                .and_then(|b| decode(&b, "certificate"))
        })
    }

    pub fn cert_count(&self) -> usize {
        self.certs.len()
    }

    // ---- revocation --------------------------------------------------------------------

    /// Records a revocation; refuses unknown or already revoked serials. An entry for the
    /// root's CRL is the issuing CA's own certificate, which is not in the certificate tree
    /// (the caller has checked the serial), so only issued certificates are looked up.
    /// `visible` decides, inside the transaction, whether the certificate is the caller's to
    /// revoke (its record and its holder's binding); one that is not is "not found".
    pub fn revoke(
        &self,
        revocation: &Revocation,
        draft: AuditDraft,
        visible: &dyn Fn(&CertRecord, Option<&HolderBinding>) -> bool,
    ) -> Result<Revocation> {
        let key = revocation.serial.to_bytes();
        let ca_cert = revocation.ca == CaRole::Root;
        let not_found =
            || Error::NotFound(format!("no certificate with serial {}", revocation.serial));
        let stored = (
            &self.certs,
            &self.revocations,
            &self.meta,
            &self.audit,
            &self.holders,
        )
            .transaction(|(certs, revocations, meta, audit, holders)| {
                if !ca_cert {
                    let Some(bytes) = certs.get(&key)? else {
                        return abort(not_found());
                    };
                    let record: CertRecord = match decode(&bytes, "certificate") {
                        Ok(r) => r,
                        Err(e) => return abort(e),
                    };
                    let binding = match holders.get(record.holder.to_string().as_bytes())? {
                        Some(b) => match decode::<HolderBinding>(&b, "holder binding") {
                            Ok(b) => Some(b),
                            Err(e) => return abort(e),
                        },
                        None => None,
                    };
                    if !visible(&record, binding.as_ref()) {
                        return abort(not_found());
                    }
                }
                if revocations.get(&key)?.is_some() {
                    return abort(Error::Conflict(format!(
                        "{} {} is already revoked",
                        if ca_cert {
                            "CA certificate"
                        } else {
                            "certificate"
                        },
                        revocation.serial
                    )));
                }
                let mut stored = revocation.clone();
                stored.revision = next_revision(meta)?;
                let bytes = match encode(&stored) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                revocations.insert(key.clone(), bytes)?;
                append_audit(
                    &self.keying,
                    meta,
                    audit,
                    revocation.revoked_at,
                    draft.clone(),
                )?;
                Ok(stored)
            })
            .map_err(tx_error)?;
        Ok(stored)
    }

    pub fn revocation(&self, serial: &Serial) -> Result<Option<Revocation>> {
        self.revocations
            .get(serial.to_bytes())?
            .map(|b| decode(&b, "revocation"))
            .transpose()
    }

    /// Revocations of one CA, in serial order.
    pub fn revocations(&self, ca: CaRole) -> Result<Vec<Revocation>> {
        let mut out = Vec::new();
        for item in self.revocations.iter().values() {
            let r: Revocation = decode(&item?, "revocation")?;
            if r.ca == ca {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Newest revision of any revocation of `ca` (0 when none).
    pub fn latest_revocation_revision(&self, ca: CaRole) -> Result<u64> {
        Ok(self
            .revocations(ca)?
            .iter()
            .map(|r| r.revision)
            .max()
            .unwrap_or(0))
    }

    // ---- CRLs --------------------------------------------------------------------------

    /// Reserves the next CRL number durably, so a number is never reused even after a crash.
    pub fn reserve_crl_number(&self, ca: CaRole) -> Result<u64> {
        let key = format!("crl_number/{}", ca.as_str());
        let next = self.meta.update_and_fetch(key.as_bytes(), |old| {
            let n = u64_of(old.map(sled::IVec::from)) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        self.flush()?;
        Ok(u64_of(next))
    }

    pub fn crl(&self, ca: CaRole) -> Result<Option<CrlRecord>> {
        self.crls
            .get(ca.as_str())?
            .map(|b| decode(&b, "CRL"))
            .transpose()
    }

    /// Saves a CRL unless a newer-numbered one is already stored.
    pub fn put_crl(&self, crl: &CrlRecord) -> Result<()> {
        let bytes = encode(crl)?;
        let number = crl.number;
        (&self.crls,)
            .transaction(|(crls,)| {
                if let Some(old) = crls.get(crl.ca.as_str())? {
                    match decode::<CrlRecord>(&old, "CRL") {
                        Ok(old) if old.number >= number => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return abort(e),
                    }
                }
                crls.insert(crl.ca.as_str(), bytes.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    // ---- tokens ------------------------------------------------------------------------

    pub fn put_token(
        &self,
        token: &TokenRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(token)?;
        (&self.tokens, &self.meta, &self.audit)
            .transaction(|(tokens, meta, audit)| {
                tokens.insert(token.hash.as_bytes(), bytes.clone())?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.tokens
            .get(hash.as_bytes())?
            .map(|b| decode(&b, "token"))
            .transpose()
    }

    /// Marks a token revoked (by id), with its audit entry. Revoking twice is a no-op error.
    pub fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<TokenRecord> {
        let found = self
            .tokens()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::NotFound(format!("no API token with id {id}")))?;
        if found.revoked_at.is_some() {
            return Err(Error::Conflict(format!(
                "API token {id} is already revoked"
            )));
        }
        let mut revoked = found;
        revoked.revoked_at = Some(at);
        self.put_token(&revoked, at, draft)?;
        Ok(revoked)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.tokens
            .iter()
            .values()
            .map(|v| decode(&v?, "token"))
            .collect()
    }

    // ---- audit -------------------------------------------------------------------------

    /// Appends an audit entry on its own (for events that change nothing else).
    pub fn audit(&self, at: OffsetDateTime, draft: AuditDraft) -> Result<AuditEntry> {
        let entry = (&self.meta, &self.audit)
            .transaction(|(meta, audit)| append_audit(&self.keying, meta, audit, at, draft.clone()))
            .map_err(tx_error)?;
        self.flush()?;
        Ok(entry)
    }

    pub fn audit_entries(&self) -> impl Iterator<Item = Result<AuditEntry>> + '_ {
        self.audit
            .iter()
            .values()
            .map(|v| v.map_err(Error::from).and_then(|b| decode(&b, "audit")))
    }

    /// Newest first (the viewer pages backwards).
    pub fn audit_entries_rev(&self) -> impl Iterator<Item = Result<AuditEntry>> + '_ {
        self.audit.iter().rev().map(|kv| {
            kv.map_err(Error::from)
                .and_then(|(_, b)| decode(&b, "audit"))
        })
    }

    /// The loaded audit key, `Unkeyed` or why it is not loaded.
    pub fn audit_key(&self) -> Result<Option<std::sync::Arc<AuditKey>>> {
        chain_key(&self.keying)
    }

    /// Whether the log is keyed but its key is not loaded.
    pub fn audit_key_locked(&self) -> Result<bool> {
        Ok(matches!(
            &*self
                .keying
                .read()
                .map_err(|_| Error::Store("lock poisoned".into()))?,
            AuditKeying::Locked { .. }
        ))
    }

    /// From now on entries are chained with `key`; the store remembers the log is keyed.
    pub fn install_audit_key(&self, key: AuditKey) -> Result<()> {
        self.meta.insert(AUDIT_KEY_ID, key.id().as_bytes())?;
        self.flush()?;
        *self
            .keying
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))? =
            AuditKeying::Keyed(std::sync::Arc::new(key));
        Ok(())
    }

    /// Records why the key of a keyed log could not be loaded: writers and `verify` fail
    /// with the same error.
    pub fn audit_key_unavailable(&self, cause: &Error) -> Result<()> {
        let (why, integrity) = match cause {
            Error::AuditIntegrity(m) => (m.clone(), true),
            Error::AuditKeyUnavailable(m) => (m.clone(), false),
            other => (other.to_string(), false),
        };
        let mut keying = self
            .keying
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        if !matches!(*keying, AuditKeying::Keyed(_)) {
            *keying = AuditKeying::Locked { why, integrity };
        }
        Ok(())
    }

    pub fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.meta
            .get(AUDIT_HEAD)?
            .map(|b| decode(&b, "audit head"))
            .transpose()
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
