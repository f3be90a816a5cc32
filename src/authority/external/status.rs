//! The read side of external bundles: each source's status as the CLI, the API and
//! `/healthz` show it, and how stale its last good copy is. Split from the refresh judging
//! because it writes nothing and depends on no download.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::bundle::verify::Verification;
use crate::error::Result;
use crate::external::source::{AdmissionMode, ExternalSource};
use crate::external::RefreshStatus;
use crate::store::{ExternalAnchor, ExternalState};

/// How old the last good copy is, against the source's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Staleness {
    Fresh,
    /// Past `stale_warn_hours`.
    StaleWarn,
    /// Past `stale_fail_hours`: `/healthz` reports degraded.
    StaleFail,
    /// No good copy yet.
    NoCopy,
}

/// A source's status as the CLI and the API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub name: String,
    /// The source URL without user-info or query string (`https://***@host/b.p7m?…`).
    pub url: String,
    pub enabled: bool,
    pub schedule: String,
    pub admission: AdmissionMode,
    pub pinned: bool,
    /// The last attempt's status; `null` before the first attempt.
    pub status: Option<RefreshStatus>,
    pub http_code: Option<u16>,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<OffsetDateTime>,
    pub consecutive_failures: u64,
    pub staleness: Staleness,
    pub stale: bool,
    /// When the publisher last confirmed the copy now published.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_good_at: Option<OffsetDateTime>,
    pub version: Option<u64>,
    /// SHA-256 of the body of the copy now published.
    pub sha256: Option<String>,
    pub verification: Option<Verification>,
    /// The anchors of the copy now published.
    pub anchors: Vec<ExternalAnchor>,
    /// Every anchor parsed in the last attempt, when it got that far.
    pub last_attempt_anchors: Option<Vec<ExternalAnchor>>,
    pub included_by: Vec<String>,
    pub attempts: BTreeMap<String, u64>,
}

impl Authority {
    /// The status of one source.
    pub fn source_view(&self, name: &str) -> Result<SourceView> {
        let rules = self.rules();
        let source = rules.external_source(name)?;
        let state = self.store()?.external_state(name)?;
        let now = self.now();
        let stale = staleness(source, state.as_ref(), now);
        let state = state.unwrap_or_default();
        let attempt = state.last_attempt.as_ref();
        let good = state.good.as_ref();
        Ok(SourceView {
            name: name.to_string(),
            url: source.redacted_url(),
            enabled: source.enabled,
            schedule: source.schedule.clone(),
            admission: source.admission,
            pinned: !source.pins.is_empty(),
            status: attempt.map(|a| a.status),
            http_code: attempt.and_then(|a| a.http_code),
            reason: attempt.map(|a| a.reason.clone()),
            last_attempt_at: attempt.map(|a| a.finished_at),
            last_success_at: state.last_success_at,
            consecutive_failures: state.consecutive_failures,
            staleness: stale,
            stale: matches!(stale, Staleness::StaleWarn | Staleness::StaleFail),
            last_good_at: good.map(|g| g.confirmed_at),
            version: good.map(|g| g.version),
            sha256: good.map(|g| g.sha256.clone()),
            verification: good.map(|g| g.verification.clone()),
            anchors: good.map(|g| g.anchors.clone()).unwrap_or_default(),
            last_attempt_anchors: attempt.and_then(|a| a.anchors.clone()),
            included_by: rules.inventory.includers(name),
            attempts: state.attempts.clone(),
        })
    }

    /// Every external source's status.
    pub fn source_views(&self) -> Result<Vec<SourceView>> {
        let names: Vec<String> = self
            .inventory()
            .externals()
            .map(|(n, _)| n.to_string())
            .collect();
        names.iter().map(|n| self.source_view(n)).collect()
    }

    /// Enabled sources whose last good copy is past the fail threshold.
    pub fn degraded_sources(&self) -> Result<Vec<String>> {
        let now = self.now();
        let mut out = Vec::new();
        for (name, source) in self.inventory().externals().filter(|(_, s)| s.enabled) {
            let state = self.store()?.external_state(name)?;
            if staleness(source, state.as_ref(), now) == Staleness::StaleFail {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// Enabled sources that never got a good copy (never fetched, or every attempt failed):
    /// their anchors are published by nobody.
    pub fn sources_without_copy(&self) -> Result<Vec<String>> {
        let now = self.now();
        let mut out = Vec::new();
        for (name, source) in self.inventory().externals().filter(|(_, s)| s.enabled) {
            let state = self.store()?.external_state(name)?;
            if staleness(source, state.as_ref(), now) == Staleness::NoCopy {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

/// The staleness of a source's last good copy at `now`.
pub fn staleness(
    source: &ExternalSource,
    state: Option<&ExternalState>,
    now: OffsetDateTime,
) -> Staleness {
    let Some(good) = state.and_then(|s| s.good.as_ref()) else {
        return Staleness::NoCopy;
    };
    let age = now - good.confirmed_at;
    let hours = |h: u64| Duration::hours(i64::try_from(h).unwrap_or(i64::MAX / 3600));
    if age > hours(source.stale_fail_hours) {
        Staleness::StaleFail
    } else if age > hours(source.stale_warn_hours) {
        Staleness::StaleWarn
    } else {
        Staleness::Fresh
    }
}
