//! The crate error: one enum, each variant with a stable string `code()` that the CLI, the
//! HTTP layer and the audit log use, so callers can branch on codes instead of messages.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::denial::Denial;

/// Every failure the library reports. Non-exhaustive: new failures get new variants (and
/// codes) without breaking callers that match on the ones they handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("request refused: {0}")]
    Denied(Denial),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// It existed and was removed for good (a bundle version pruned by retention).
    #[error("gone: {0}")]
    Gone(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("profile error in {file}: {message}")]
    Profile { file: String, message: String },
    #[error("CA key error: {0}")]
    CaKey(String),
    #[error("the issuing CA is revoked: {0}")]
    IssuingCaRevoked(String),
    #[error("the CA is not initialised in this data directory; run `anchorage init`")]
    NotInitialised,
    #[error("passphrase error: {0}")]
    Passphrase(String),
    #[error("unauthorised: {0}")]
    Unauthorised(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("the holder belongs to another organisation: {0}")]
    HolderOwnedElsewhere(String),
    #[error("outside the organisation's domains: {0}")]
    HolderOutsideOrganisation(String),
    #[error("the holder's organisation is not settled: {0}")]
    HolderUnresolved(String),
    #[error("a domain-bound certificate needs the whole domain: {0}")]
    DomainNotCovered(String),
    #[error("the organisation is disabled: {0}")]
    OrganisationDisabled(String),
    #[error("an organisation is required: {0}")]
    OrganisationRequired(String),
    #[error("the token's owner can no longer act: {0}")]
    OwnerDisabled(String),
    #[error("rate limit reached: {message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("the Idempotency-Key was used for a different request: {0}")]
    IdempotencyKeyReused(String),
    #[error("certificate generation failed: {0}")]
    Generation(String),
    #[error("store error: {0}")]
    Store(String),
    /// A failure of the storage engine itself, kept as the source.
    #[error("store error: {0}")]
    StoreEngine(#[source] sled::Error),
    #[error("the store cannot be written now ({0}); writes resume by themselves once the data directory's file system has room again")]
    StoreUnwritable(String),
    #[error("the data directory {0} is in use by another anchorage process (is `serve` running?)")]
    Locked(String),
    #[error("audit log integrity: {0}")]
    AuditIntegrity(String),
    /// The audit log is keyed and the audit key could not be opened (no passphrase, a wrong
    /// one, a missing key file): nothing is written to the log, and it cannot be verified.
    #[error("audit key unavailable: {0}")]
    AuditKeyUnavailable(String),
    #[error("publication failed: {0}")]
    Publish(String),
    #[error("external bundle refresh failed: {0}")]
    RefreshFailed(String),
    #[error("{path} is readable by group or others (mode {mode}); fix it with: {fix}")]
    InsecurePermissions {
        path: String,
        mode: String,
        fix: String,
    },
    #[error("the store {path} is damaged ({detail}); restore from a backup: anchorage restore FILE --data-dir D (see ops/runbooks/backup-restore.md)")]
    StoreCorrupted { path: String, detail: String },
    #[error("backup file {path}: {problem}")]
    BackupInvalid { path: String, problem: String },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable machine-readable code, part of the public interface.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Denied(_) => "request_denied",
            Error::InvalidInput(_) => "invalid_input",
            Error::NotFound(_) => "not_found",
            Error::Gone(_) => "gone",
            Error::Conflict(_) => "conflict",
            Error::Config(_) => "config_invalid",
            Error::Profile { .. } => "profile_invalid",
            Error::CaKey(_) => "ca_key_error",
            Error::IssuingCaRevoked(_) => "issuing_ca_revoked",
            Error::NotInitialised => "not_initialised",
            Error::Passphrase(_) => "passphrase_error",
            Error::Unauthorised(_) => "unauthorised",
            Error::Forbidden(_) => "forbidden",
            Error::HolderOwnedElsewhere(_) => "holder_owned_elsewhere",
            Error::HolderOutsideOrganisation(_) => "holder_outside_organisation",
            Error::HolderUnresolved(_) => "holder_unresolved",
            Error::DomainNotCovered(_) => "domain_not_covered",
            Error::OrganisationDisabled(_) => "organisation_disabled",
            Error::OrganisationRequired(_) => "organisation_required",
            Error::OwnerDisabled(_) => "owner_disabled",
            Error::RateLimited { .. } => "rate_limited",
            Error::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Error::Generation(_) => "generation_failed",
            Error::Store(_) | Error::StoreEngine(_) => "store_error",
            Error::StoreUnwritable(_) => "store_unwritable",
            Error::Locked(_) => "data_dir_locked",
            Error::AuditIntegrity(_) => "audit_integrity",
            Error::AuditKeyUnavailable(_) => "audit_key_unavailable",
            Error::Publish(_) => "publish_failed",
            Error::RefreshFailed(_) => "refresh_failed",
            Error::InsecurePermissions { .. } => "insecure_permissions",
            Error::StoreCorrupted { .. } => "store_corrupted",
            Error::BackupInvalid { .. } => "backup_invalid",
            Error::Io { .. } => "io_error",
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Store I/O failures seen by this process so far (see [`store_io_fault`]).
static STORE_IO_FAULTS: AtomicU64 = AtomicU64::new(0);

/// Counts a failed store write or sync and returns the error to report: the store's handle
/// (`store::StoreHandle::heal`) probes its database whenever this count moves, so a fault
/// is noticed wherever it surfaced, at no cost while the disk is fine.
pub fn store_io_fault(cause: &std::io::Error) -> Error {
    STORE_IO_FAULTS.fetch_add(1, Ordering::SeqCst);
    Error::StoreUnwritable(cause.to_string())
}

/// How many store I/O failures this process has seen.
pub fn store_io_faults() -> u64 {
    STORE_IO_FAULTS.load(Ordering::SeqCst)
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => store_io_fault(&io),
            sled::Error::Corruption { .. } => Error::StoreCorrupted {
                path: "the store (data directory store/)".into(),
                detail: e.to_string(),
            },
            other => Error::StoreEngine(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
