//! The audit log's use cases: keeping the audit key loaded wherever the store is written
//! (created at `init`, created on the first open with the passphrase for a store written
//! before keying, opened on every later open or unlock), verifying the chain (against a
//! checkpoint when one is given), and making checkpoints and delivering them to a file or URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::Authority;
use crate::audit::{self, key, AuditDraft, AuditKey, AuditReport, Checkpoint};
use crate::ca::CaRole;
use crate::error::{Error, Result};
use crate::keyseal::{self, Passphrase};

/// How long sending a checkpoint to a URL may take.
const SEND_TIMEOUT_SECS: u64 = 30;

impl Authority {
    /// Where the sealed audit key lives: beside the store, never inside it.
    pub fn audit_key_path(&self) -> PathBuf {
        self.config.data_dir.join(key::KEY_FILE)
    }

    /// At open: loads the audit key when a passphrase is configured (creating it for a log
    /// written before keying). Without one, writers of a keyed log fail with
    /// `audit_key_unavailable` and readers still work.
    pub(super) fn load_audit_key(&self) -> Result<()> {
        if self.store()?.audit_head()?.is_none() && !self.audit_key_path().exists() {
            return Ok(());
        }
        let Ok((passphrase, _)) = self.passphrase(false) else {
            return Ok(());
        };
        if let Err(e) = self.ensure_audit_key(&passphrase) {
            tracing::warn!(code = e.code(), "the audit key is not loaded: {e}");
            self.store()?.audit_key_unavailable(&e)?;
        }
        Ok(())
    }

    /// Makes sure new audit entries are keyed: opens `audit.key`, or creates it for a log
    /// never keyed (its existing entries stay legacy SHA-256 entries; an `audit.keyed` entry
    /// marks the boundary).
    pub fn ensure_audit_key(&self, passphrase: &Passphrase) -> Result<()> {
        if matches!(self.store()?.audit_key(), Ok(Some(_))) {
            return Ok(());
        }
        let path = self.audit_key_path();
        if path.exists() {
            return self
                .store()?
                .install_audit_key(key::load(&path, passphrase)?);
        }
        if self.store()?.audit_key_locked()? {
            return Err(Error::AuditKeyUnavailable(format!(
                "{} is missing but this store's audit log is keyed: restore the file from a \
                 backup (without it the log can be neither verified nor extended)",
                path.display()
            )));
        }
        let head = self.store()?.audit_head()?;
        let Some(head) = head else {
            return self.create_audit_key(passphrase, 1);
        };
        // A key sealed with a mistyped passphrase would lock the log for good: check the
        // passphrase against the issuing CA key first.
        if let Some(sealed) = self
            .store()?
            .ca_record(CaRole::Issuing)?
            .and_then(|r| r.sealed_key)
        {
            keyseal::open(&sealed, passphrase, CaRole::Issuing.as_str())?;
        }
        let keyed_from = head.seq + 1;
        self.create_audit_key(passphrase, keyed_from)?;
        let id = self.store()?.audit_key()?.map(|k| k.id().to_string());
        self.store()?.audit(
            self.now(),
            AuditDraft::new(
                "system",
                "audit.keyed",
                key::KEY_FILE,
                json!({"key_id": id, "keyed_from": keyed_from}),
            ),
        )?;
        tracing::warn!(
            keyed_from,
            "the audit log is keyed from entry {keyed_from} on; keep {} with your backups",
            path.display()
        );
        Ok(())
    }

    /// A new key for a new log (`init`): replaces any key file a failed attempt left.
    pub(super) fn key_new_audit_log(&self, passphrase: &Passphrase) -> Result<()> {
        match self.store()?.audit_head()? {
            None => self.create_audit_key(passphrase, 1),
            Some(_) => self.ensure_audit_key(passphrase),
        }
    }

    fn create_audit_key(&self, passphrase: &Passphrase, keyed_from: u64) -> Result<()> {
        let key = key::create(&self.audit_key_path(), passphrase, keyed_from, self.now())?;
        self.store()?.install_audit_key(key)
    }

    /// The key to verify with: `None` only for a log that was never keyed.
    fn verification_key(&self) -> Result<Option<Arc<AuditKey>>> {
        self.store()?.audit_key()
    }

    /// Checks the whole chain (keyed entries need the audit key).
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let key = self.verification_key()?;
        audit::verify(
            self.store()?.audit_entries(),
            self.store()?.audit_head()?.as_ref(),
            key.as_deref(),
            None,
        )
    }

    /// Checks the whole chain and that nothing `checkpoint` covers was rewritten, deleted or
    /// cut off since it was made.
    pub fn verify_audit_since(&self, checkpoint: &Checkpoint) -> Result<AuditReport> {
        let key = self.verification_key()?.ok_or_else(|| {
            Error::AuditKeyUnavailable(
                "this audit log is not keyed, so no checkpoint can be checked against it".into(),
            )
        })?;
        audit::verify(
            self.store()?.audit_entries(),
            self.store()?.audit_head()?.as_ref(),
            Some(&key),
            Some(checkpoint),
        )
    }

    /// A checkpoint of the log as it is now, after verifying it (a broken log is never
    /// anchored). Recorded as `audit.checkpoint`, naming where it goes.
    pub fn audit_checkpoint(&self, actor: &str, destinations: &[String]) -> Result<Checkpoint> {
        let key = self.verification_key()?.ok_or_else(|| {
            Error::AuditKeyUnavailable(format!(
                "the audit log is not keyed yet: run an anchorage command with the CA passphrase \
                 available ({} or passphrase_file) to key it",
                crate::config::PASSPHRASE_ENV
            ))
        })?;
        let report = self.verify_audit()?;
        let checkpoint = Checkpoint::sign(&key, report.entries, &report.head_hash, self.now());
        let target = if destinations.is_empty() {
            "-".to_string()
        } else {
            destinations.join(", ")
        };
        self.store()?.audit(
            self.now(),
            AuditDraft::new(
                actor,
                "audit.checkpoint",
                target,
                json!({"entries": checkpoint.entries, "head_hash": checkpoint.head_hash,
                       "at": checkpoint.at_text()}),
            ),
        )?;
        Ok(checkpoint)
    }
}

/// How a destination is named in the audit log and in messages: URLs without credentials.
pub fn checkpoint_destinations(path: Option<&Path>, url: Option<&str>) -> Vec<String> {
    path.map(|p| p.display().to_string())
        .into_iter()
        .chain(url.map(crate::external::source::redact_url))
        .collect()
}

/// Writes a checkpoint document (pretty JSON) to `path`, atomically; 0644: it holds no
/// secret, and a witness process may read it.
pub fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(checkpoint)
        .map_err(|e| Error::Store(format!("encoding the checkpoint: {e}")))?;
    bytes.push(b'\n');
    crate::private_files::write_atomic(path, &bytes, false)
}

/// POSTs a checkpoint document (JSON) to `url`; anything but a 2xx answer is an error.
pub async fn send_checkpoint(url: &str, checkpoint: &Checkpoint) -> Result<()> {
    let shown = crate::external::source::redact_url(url);
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(SEND_TIMEOUT_SECS))
        .build()
        .map_err(|e| Error::Publish(format!("HTTP client: {e}")))?
        .post(url)
        .json(checkpoint)
        .send()
        .await
        .map_err(|e| {
            Error::Publish(format!(
                "sending the audit checkpoint to {shown} failed: {}",
                e.without_url()
            ))
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Publish(format!(
            "{shown} refused the audit checkpoint: HTTP {status}"
        )));
    }
    Ok(())
}
