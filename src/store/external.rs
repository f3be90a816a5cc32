//! Refresh state of external bundle sources: the last attempt (with every anchor it parsed and
//! the admission verdict on each), the last good copy, timestamps, failure counts and the
//! per-status attempt counters the metrics show. A new good copy is stored together with the
//! bundle version it publishes, in one transaction, so readers never see one without the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::{abort, append_audit, decode, encode, tx_error, BundleVersion, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::external::RefreshStatus;
use crate::model::external::Verification;

/// Why admission refused (or, report-only, would refuse) an anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnchorFinding {
    pub code: String,
    pub message: String,
}

/// One anchor of an external bundle with the admission verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalAnchor {
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
    pub subject: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_after: Option<OffsetDateTime>,
    pub admitted: bool,
    pub reasons: Vec<AnchorFinding>,
}

/// One refresh attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalAttempt {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub status: RefreshStatus,
    #[serde(default)]
    pub http_code: Option<u16>,
    pub reason: String,
    pub tries: u32,
    /// SHA-256 of the body, when one was downloaded.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub verification: Option<Verification>,
    /// Every anchor parsed, when the attempt got that far.
    #[serde(default)]
    pub anchors: Option<Vec<ExternalAnchor>>,
}

/// The copy being republished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoodCopy {
    /// SHA-256 of the body as downloaded.
    pub sha256: String,
    /// SHA-256 of the declaration and policy it was checked under: a changed pin or policy
    /// forces a full check even when the body is unchanged.
    pub checked_under: String,
    #[serde(with = "time::serde::rfc3339")]
    pub fetched_at: OffsetDateTime,
    /// Last time the publisher confirmed this copy is current (200 with the same digest, or
    /// 304). Staleness counts from here.
    #[serde(with = "time::serde::rfc3339")]
    pub confirmed_at: OffsetDateTime,
    /// The version of the external bundle's republication holding this copy's anchors.
    pub version: u64,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// SHA-256 of the URL the validators came from (a digest, so the store keeps no URL
    /// credentials or tokens). Validators only hold for that URL: after the declaration
    /// moves to another one, the next fetch is unconditional. `None` in records written
    /// before this was kept, which therefore also fetch unconditionally once.
    #[serde(default)]
    pub validators_url_sha256: Option<String>,
    pub verification: Verification,
    pub anchors: Vec<ExternalAnchor>,
}

/// Everything kept about one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExternalState {
    pub record_version: u32,
    pub source: String,
    #[serde(default)]
    pub last_attempt: Option<ExternalAttempt>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub consecutive_failures: u64,
    #[serde(default)]
    pub good: Option<GoodCopy>,
    /// Attempts by status name, since the store was created.
    #[serde(default)]
    pub attempts: BTreeMap<String, u64>,
}

impl Store {
    pub fn external_state(&self, source: &str) -> Result<Option<ExternalState>> {
        self.externals
            .get(source)?
            .map(|b| decode(&b, "external source"))
            .transpose()
    }

    /// Records an attempt that publishes nothing new.
    pub fn put_external_state(&self, state: &ExternalState) -> Result<()> {
        self.externals
            .insert(state.source.as_bytes(), encode(state)?)?;
        self.flush()
    }

    /// Records an attempt together with the new version it publishes, atomically.
    pub fn publish_external(
        &self,
        state: &ExternalState,
        version: &BundleVersion,
        draft: AuditDraft,
    ) -> Result<()> {
        let state_bytes = encode(state)?;
        let version_bytes = encode(version)?;
        let key = super::bundle_versions::version_key(&version.bundle, version.version);
        (
            &self.externals,
            &self.bundle_versions,
            &self.meta,
            &self.audit,
        )
            .transaction(|(externals, versions, meta, audit)| {
                if versions.get(&key)?.is_some() {
                    return abort(Error::Conflict(format!(
                        "version {} of bundle '{}' exists already",
                        version.version, version.bundle
                    )));
                }
                versions.insert(key.clone(), version_bytes.clone())?;
                externals.insert(state.source.as_bytes(), state_bytes.clone())?;
                append_audit(
                    &self.keying,
                    meta,
                    audit,
                    version.published_at,
                    draft.clone(),
                )?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }
}
