//! The audit key: 32 random bytes that key the audit chain (HMAC-SHA-256), kept outside the
//! store file in `<data dir>/audit.key`, sealed with the CA passphrase (Argon2id +
//! AES-256-GCM, `keyseal`). Whoever can write the store but does not know the passphrase can
//! no longer recompute the chain after rewriting an entry.
//!
//! The sealed plaintext is the key followed by `keyed_from`, the first entry the key chains:
//! entries before it are legacy SHA-256 entries written before the store was upgraded. The
//! file repeats `key_id` and `keyed_from` in clear for people and for `audit verify` without
//! the passphrase, and `load` refuses a file whose clear values differ from the sealed ones, so
//! the boundary cannot be moved without the passphrase.
//!
//! HMAC comes from aws-lc-rs, the crate that already does every other primitive here (digest,
//! AEAD, random, constant-time compare), rather than adding the `hmac` and `sha2` crates.

use std::path::Path;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keyseal::{self, Passphrase, SealedKey};

/// The sealed key's file name in the data directory.
pub const KEY_FILE: &str = "audit.key";

/// The `format` of the key file.
const FORMAT: &str = "anchorage-audit-key-v1";
/// Bound into the seal as associated data: a sealed CA key cannot stand in for it.
const ROLE: &str = "audit-chain";
/// Domain separation: an entry MAC can never be replayed as a checkpoint MAC or a key id.
pub(super) const ENTRY_DOMAIN: &[u8] = b"anchorage audit entry v1\0";
pub(super) const CHECKPOINT_DOMAIN: &[u8] = b"anchorage audit checkpoint v1\0";
const ID_DOMAIN: &[u8] = b"anchorage audit key id v1\0";
const KEY_LEN: usize = 32;

/// The unsealed audit key. Not `Debug`/`Display`: nothing of it reaches a log.
pub struct AuditKey {
    hmac: hmac::Key,
    id: String,
    keyed_from: u64,
}

impl AuditKey {
    pub(super) fn from_secret(secret: &[u8], keyed_from: u64) -> AuditKey {
        let hmac = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&hmac, ID_DOMAIN);
        let id = hex::encode(tag.as_ref().get(..8).unwrap_or_default());
        AuditKey {
            hmac,
            id,
            keyed_from,
        }
    }

    /// A public name of the key (a MAC of a constant, not the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first entry this key chains; earlier entries are legacy SHA-256 entries.
    pub fn keyed_from(&self) -> u64 {
        self.keyed_from
    }

    /// What a keyed entry carries in its `chain` field.
    pub fn label(&self) -> String {
        format!("hmac-sha256:{}", self.id)
    }

    /// Hex HMAC-SHA-256 over `domain || bytes`.
    pub(super) fn mac(&self, domain: &[u8], bytes: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.hmac);
        ctx.update(domain);
        ctx.update(bytes);
        hex::encode(ctx.sign().as_ref())
    }

    /// Constant-time check of a hex MAC.
    pub(super) fn check(&self, domain: &[u8], bytes: &[u8], mac_hex: &str) -> bool {
        let Ok(tag) = hex::decode(mac_hex) else {
            return false;
        };
        let mut input = domain.to_vec();
        input.extend_from_slice(bytes);
        hmac::verify(&self.hmac, &input, &tag).is_ok()
    }
}

/// The key file as stored: clear `key_id`/`keyed_from` plus the sealed key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedAuditKey {
    pub format: String,
    pub key_id: String,
    pub keyed_from: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub sealed: SealedKey,
}

/// Reads the key file without opening it; `None` when there is none.
pub fn read_sealed(path: &Path) -> Result<Option<SealedAuditKey>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::AuditIntegrity(format!(
            "{} is not an audit key file ({e}); restore it from a backup",
            path.display()
        ))
    })
}

/// Makes a new key chaining from entry `keyed_from` and writes it, sealed, to `path` (0600,
/// replacing the file atomically).
pub fn create(
    path: &Path,
    passphrase: &Passphrase,
    keyed_from: u64,
    now: OffsetDateTime,
) -> Result<AuditKey> {
    let mut plain = Zeroizing::new(vec![0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(plain.as_mut_slice())
        .map_err(|_| Error::Generation("the system random generator failed".into()))?;
    let key = AuditKey::from_secret(&plain, keyed_from);
    plain.extend_from_slice(&keyed_from.to_be_bytes());
    let file = SealedAuditKey {
        format: FORMAT.into(),
        key_id: key.id.clone(),
        keyed_from,
        created_at: now,
        sealed: keyseal::seal(&plain, passphrase, ROLE)?,
    };
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Store(format!("encoding the audit key: {e}")))?;
    crate::private_files::write_atomic(path, &bytes, true)?;
    Ok(key)
}

/// Opens the key file with the passphrase; refuses a file whose clear fields were changed.
pub fn load(path: &Path, passphrase: &Passphrase) -> Result<AuditKey> {
    crate::private_files::check(path)?;
    let file = read_sealed(path)?
        .ok_or_else(|| Error::AuditKeyUnavailable(format!("{} does not exist", path.display())))?;
    if file.format != FORMAT {
        return Err(Error::AuditIntegrity(format!(
            "{} has the unknown format '{}'",
            path.display(),
            file.format
        )));
    }
    let plain = keyseal::open(&file.sealed, passphrase, ROLE).map_err(|_| {
        Error::AuditKeyUnavailable(format!(
            "cannot open {}: wrong CA passphrase or a damaged key file",
            path.display()
        ))
    })?;
    let (secret, from) = plain.split_at(plain.len().min(KEY_LEN));
    let keyed_from = <[u8; 8]>::try_from(from)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::AuditIntegrity(format!("{} holds no valid key", path.display())))?;
    let key = AuditKey::from_secret(secret, keyed_from);
    if file.keyed_from != keyed_from || file.key_id != key.id {
        return Err(Error::AuditIntegrity(format!(
            "{} was altered: it says the chain is keyed from entry {} with key {}, the sealed \
             key says entry {keyed_from} with key {}",
            path.display(),
            file.keyed_from,
            file.key_id,
            key.id
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_round_trip_and_boundary_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let pass = Passphrase::new("audit key test passphrase".into()).unwrap();
        let made = create(&path, &pass, 7, OffsetDateTime::UNIX_EPOCH).unwrap();
        let loaded = load(&path, &pass).unwrap();
        assert_eq!((loaded.id(), loaded.keyed_from()), (made.id(), 7));
        assert_eq!(loaded.mac(ENTRY_DOMAIN, b"x"), made.mac(ENTRY_DOMAIN, b"x"));
        assert!(loaded.check(ENTRY_DOMAIN, b"x", &made.mac(ENTRY_DOMAIN, b"x")));
        assert!(!loaded.check(CHECKPOINT_DOMAIN, b"x", &made.mac(ENTRY_DOMAIN, b"x")));

        let wrong = Passphrase::new("another passphrase entirely".into()).unwrap();
        assert_eq!(
            load(&path, &wrong).err().map(|e| e.code()),
            Some("audit_key_unavailable")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("\"keyed_from\": 7", "\"keyed_from\": 1"),
        )
        .unwrap();
        assert_eq!(
            load(&path, &pass).err().map(|e| e.code()),
            Some("audit_integrity"),
            "fail/boundary-moved"
        );
    }
}
