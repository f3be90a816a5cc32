//! The external-bundle use case after the network: judge a download (parse, verify, admit),
//! then either keep the last good copy and record the failure, touch only timestamps for
//! unchanged content, or swap in the new anchor set as a new version atomically and rebuild
//! the local bundles that include it. The read side (status views, staleness) is in `status`.
//!
//! A verified copy signed earlier than the one accepted last (CMS `signingTime`) is a
//! rollback: an old bundle replayed, perhaps to bring back an anchor since removed. It is
//! refused with the status `rollback` unless the operator accepts it explicitly (audited with
//! both signing times). The formats parsed here carry no content sequence number (the
//! content is a certs-only PKCS#7 or opaque metadata), so the signing time is the only order.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::Authority;
use crate::audit::AuditDraft;
use crate::bundle;
use crate::bundle::verify::{self, Verification};
use crate::error::{Error, Result};
use crate::external::fetch::{Fetched, Validators};
use crate::external::source::{AdmissionMode, ExternalSource};
use crate::external::{Failure, RefreshStatus};
use crate::model::Fingerprint;
use crate::policy::admission::{self, AdmissionPolicy};
use crate::store::{
    AnchorFinding, BundleVersion, ExternalAnchor, ExternalAttempt, ExternalState, GoodCopy,
    VersionAnchor, RECORD_VERSION,
};
use crate::x509;

mod status;

pub use status::{staleness, SourceView, Staleness};

/// What one refresh did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RefreshReport {
    pub source: String,
    pub status: RefreshStatus,
    pub http_code: Option<u16>,
    pub reason: String,
    /// The new version of the external bundle, when the anchor set changed.
    pub published_version: Option<u64>,
    /// Local bundles republished with the new anchors: (name, version).
    pub republished: Vec<(String, u64)>,
}

/// The verdict on a download.
enum Judged {
    Failed {
        failure: Failure,
        sha256: Option<String>,
        verification: Option<Verification>,
        anchors: Option<Vec<ExternalAnchor>>,
    },
    Unchanged {
        status: RefreshStatus,
        reason: String,
        /// Fresh validators from a 200 with the same body.
        validators: Option<Validators>,
    },
    New {
        sha256: String,
        validators: Validators,
        verification: Verification,
        anchors: Vec<ExternalAnchor>,
        admitted: Vec<Vec<u8>>,
        /// An older copy the operator accepted: the two signing times, for the audit log.
        accepted_older: Option<serde_json::Value>,
    },
}

impl Authority {
    /// The source of the external bundle `name`.
    pub fn external_source(&self, name: &str) -> Result<ExternalSource> {
        self.rules().external_source(name).cloned()
    }

    /// The validators of the last good copy, for a conditional GET; none when they came
    /// from another URL than the one declared now (a validator names a copy at one URL).
    /// Whether a source is due at start-up: its last good copy is older than its interval, or
    /// it has none (an unreadable state counts as due).
    pub fn external_refresh_due(&self, name: &str) -> bool {
        let Ok(source) = self.external_source(name) else {
            return false;
        };
        let interval = time::Duration::try_from(source.interval()).unwrap_or(time::Duration::DAY);
        match self.store().and_then(|s| s.external_state(name)) {
            Ok(Some(state)) => state
                .good
                .is_none_or(|g| self.now() - g.confirmed_at > interval),
            Ok(None) | Err(_) => true,
        }
    }

    pub fn external_validators(&self, name: &str) -> Result<Validators> {
        let url_digest = url_sha256(&self.external_source(name)?.url);
        Ok(self
            .store()?
            .external_state(name)?
            .and_then(|s| s.good)
            .filter(|g| g.validators_url_sha256.as_deref() == Some(url_digest.as_str()))
            .map(|g| Validators {
                etag: g.etag,
                last_modified: g.last_modified,
            })
            .unwrap_or_default())
    }

    /// Records the outcome of a download of `name` started at `started` and publishes what
    /// it brings. The last good copy stays published on every failure. A copy signed
    /// earlier than the last accepted one is refused as `rollback` unless `accept_older`.
    pub fn apply_refresh(
        &self,
        name: &str,
        outcome: std::result::Result<Fetched, Failure>,
        tries: u32,
        started: OffsetDateTime,
        actor: &str,
        accept_older: bool,
    ) -> Result<RefreshReport> {
        // A new version is signed (.p7m): the keys first, so a locked CA fails before judging.
        self.ensure_unlocked()?;
        let rules = self.rules();
        let source = rules.external_source(name)?;
        let policy = rules.admission_policy(name)?;
        let mut state = self
            .store()?
            .external_state(name)?
            .unwrap_or_else(|| ExternalState {
                record_version: RECORD_VERSION,
                source: name.to_string(),
                ..ExternalState::default()
            });
        let checked_under = checked_under(source, policy)?;
        let now = self.now();
        let judged = self.judge(
            name,
            source,
            policy,
            &state,
            outcome,
            now,
            &checked_under,
            accept_older,
        )?;
        let mut attempt = ExternalAttempt {
            started_at: started,
            finished_at: now,
            status: RefreshStatus::Ok,
            http_code: None,
            reason: String::new(),
            tries,
            sha256: None,
            verification: None,
            anchors: None,
        };
        let mut report = RefreshReport {
            source: name.to_string(),
            status: RefreshStatus::Ok,
            http_code: None,
            reason: String::new(),
            published_version: None,
            republished: Vec::new(),
        };
        match judged {
            Judged::Failed {
                failure,
                sha256,
                verification,
                anchors,
            } => {
                let extra = (failure.status == RefreshStatus::Rollback).then(|| {
                    signing_times(
                        state.good.as_ref().map(|g| &g.verification),
                        verification.as_ref(),
                        sha256.as_deref(),
                    )
                });
                attempt.status = failure.status;
                attempt.http_code = failure.http_code;
                attempt.reason = failure.reason;
                attempt.sha256 = sha256;
                attempt.verification = verification;
                attempt.anchors = anchors;
                state.consecutive_failures += 1;
                self.finish(&mut state, attempt, &mut report);
                self.store()?.put_external_state(&state)?;
                self.audit_attempt(name, actor, &report, extra)?;
            }
            Judged::Unchanged {
                status,
                reason,
                validators,
            } => {
                attempt.status = status;
                attempt.reason = reason;
                if let Some(good) = state.good.as_mut() {
                    good.confirmed_at = now;
                    if let Some(v) = validators {
                        good.etag = v.etag;
                        good.last_modified = v.last_modified;
                        good.validators_url_sha256 = Some(url_sha256(&source.url));
                    }
                    attempt.sha256 = Some(good.sha256.clone());
                    attempt.verification = Some(good.verification.clone());
                    attempt.anchors = Some(good.anchors.clone());
                }
                state.consecutive_failures = 0;
                state.last_success_at = Some(now);
                self.finish(&mut state, attempt, &mut report);
                self.store()?.put_external_state(&state)?;
                self.audit_attempt(name, actor, &report, None)?;
                // A copy that was withdrawn while stale comes back now.
                report.republished = self.republish_includers(name, actor)?;
            }
            Judged::New {
                sha256,
                validators,
                verification,
                anchors,
                admitted,
                accepted_older,
            } => {
                if let Some(details) = accepted_older {
                    tracing::warn!(source = %name, actor, %details, "an external bundle signed earlier than the last accepted copy was accepted by the operator");
                    self.store()?.audit(
                        now,
                        AuditDraft::new(actor, "bundle.refresh_accept_older", name, details),
                    )?;
                }
                let admitted_count = admitted.len();
                attempt.sha256 = Some(sha256.clone());
                attempt.verification = Some(verification.clone());
                attempt.anchors = Some(anchors.clone());
                attempt.reason = format!(
                    "{} anchors, {admitted_count} admitted; {}",
                    anchors.len(),
                    verification.note
                );
                state.consecutive_failures = 0;
                state.last_success_at = Some(now);
                let version = self.external_version(name, &anchors, admitted, now)?;
                state.good = Some(GoodCopy {
                    sha256,
                    checked_under,
                    fetched_at: now,
                    confirmed_at: now,
                    version: version
                        .as_ref()
                        .map(|v| v.version)
                        .or_else(|| state.good.as_ref().map(|g| g.version))
                        .unwrap_or(0),
                    etag: validators.etag,
                    last_modified: validators.last_modified,
                    validators_url_sha256: Some(url_sha256(&source.url)),
                    verification,
                    anchors,
                });
                self.finish(&mut state, attempt, &mut report);
                match &version {
                    Some(v) => {
                        self.store()?.publish_external(
                            &state,
                            v,
                            AuditDraft::new(
                                actor,
                                "bundle.refresh",
                                name,
                                json!({"version": v.version, "sha256": v.sha256, "anchors": v.anchors.len(), "added": v.added.len(), "removed": v.removed.len()}),
                            ),
                        )?;
                        self.prune_versions(&v.bundle, actor)?;
                        self.published();
                        report.published_version = Some(v.version);
                    }
                    None => {
                        self.store()?.put_external_state(&state)?;
                        self.audit_attempt(name, actor, &report, None)?;
                    }
                }
                report.republished = self.republish_includers(name, actor)?;
            }
        }
        Ok(report)
    }

    /// Records an attempt that published nothing new (a failure, an unchanged copy) in the
    /// audit log, with `extra` fields (a rollback's signing times); a new version is
    /// audited with its publication as `bundle.refresh`.
    fn audit_attempt(
        &self,
        name: &str,
        actor: &str,
        report: &RefreshReport,
        extra: Option<serde_json::Value>,
    ) -> Result<()> {
        let mut details = json!({"status": report.status.as_str(), "http_code": report.http_code, "reason": report.reason});
        if let (Some(map), Some(serde_json::Value::Object(more))) = (details.as_object_mut(), extra)
        {
            map.extend(more);
        }
        self.store()?.audit(
            self.now(),
            AuditDraft::new(actor, "bundle.refresh_attempt", name, details),
        )?;
        Ok(())
    }

    /// Sets the attempt, counts it, logs the one line per attempt and fills the report.
    fn finish(
        &self,
        state: &mut ExternalState,
        attempt: ExternalAttempt,
        report: &mut RefreshReport,
    ) {
        *state
            .attempts
            .entry(attempt.status.as_str().to_string())
            .or_default() += 1;
        report.status = attempt.status;
        report.http_code = attempt.http_code;
        report.reason = attempt.reason.clone();
        let anchors = attempt.anchors.as_ref().map_or(0, Vec::len);
        if attempt.status.is_success() {
            tracing::info!(source = %state.source, status = %attempt.status, reason = %attempt.reason, anchors, tries = attempt.tries, "external bundle refresh");
        } else {
            tracing::warn!(source = %state.source, status = %attempt.status, http_code = ?attempt.http_code, reason = %attempt.reason, anchors, tries = attempt.tries, consecutive_failures = state.consecutive_failures, "external bundle refresh failed; the last good copy stays published");
        }
        state.last_attempt = Some(attempt);
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        name: &str,
        source: &ExternalSource,
        policy: &AdmissionPolicy,
        state: &ExternalState,
        outcome: std::result::Result<Fetched, Failure>,
        now: OffsetDateTime,
        checked_under: &str,
        accept_older: bool,
    ) -> Result<Judged> {
        let failed = |failure: Failure| Judged::Failed {
            failure,
            sha256: None,
            verification: None,
            anchors: None,
        };
        let (bytes, validators, content_type) = match outcome {
            Err(f) => return Ok(failed(f)),
            Ok(Fetched::NotModified) if state.good.is_some() => {
                return Ok(Judged::Unchanged {
                    status: RefreshStatus::NotModified,
                    reason: "304 Not Modified: the published copy is current".into(),
                    validators: None,
                })
            }
            Ok(Fetched::NotModified) => {
                return Ok(failed(Failure {
                    status: RefreshStatus::HttpStatus,
                    reason: "304 Not Modified, but there is no copy to keep".into(),
                    http_code: Some(304),
                }))
            }
            Ok(Fetched::Body {
                bytes,
                validators,
                content_type,
            }) => (bytes, validators, content_type),
        };
        let sha256 = Fingerprint::of(&bytes).0;
        if state
            .good
            .as_ref()
            .is_some_and(|g| g.sha256 == sha256 && g.checked_under == checked_under)
        {
            return Ok(Judged::Unchanged {
                status: RefreshStatus::Ok,
                reason: "unchanged (same SHA-256): only the timestamps were updated".into(),
                validators: Some(validators),
            });
        }
        let with_digest = |failure: Failure, verification, anchors| Judged::Failed {
            failure,
            sha256: Some(sha256.clone()),
            verification,
            anchors,
        };
        let mut parsed = match bundle::read_bundle(&bytes, source.max_anchors) {
            Ok(p) => p,
            Err(e) => {
                let mut f = Failure::from(e);
                if let Some(t) = content_type.filter(|t| !t.contains("pkcs7")) {
                    f.reason = format!("{} (Content-Type: {t})", f.reason);
                }
                return Ok(with_digest(f, None, None));
            }
        };
        drop(bytes);
        let verification = match verify::verify(&parsed, &source.pins, now) {
            Ok(v) => v,
            Err(e) => return Ok(with_digest(Failure::from(e), None, None)),
        };
        let previous = state.good.as_ref().map(|g| &g.verification);
        let mut accepted_older = None;
        if let Some(reason) = rollback(previous, &verification) {
            if !accept_older {
                let f = Failure::new(
                    RefreshStatus::Rollback,
                    format!("{reason}; the last good copy stays published (accept it with `anchorage refresh run {name} --accept-older`)"),
                );
                return Ok(with_digest(f, Some(verification), None));
            }
            accepted_older = Some(signing_times(previous, Some(&verification), Some(&sha256)));
        }
        // Memory stays near three times the bundle size: the signed copy goes once checked.
        parsed.signed = None;
        if parsed.anchors.is_empty() {
            let f = Failure::new(RefreshStatus::Empty, "the bundle holds no anchors".into());
            return Ok(with_digest(f, Some(verification), Some(Vec::new())));
        }
        let (anchors, admitted) =
            self.admit_all(source, policy, std::mem::take(&mut parsed.anchors), now)?;
        if admitted.is_empty() {
            let f = Failure::new(
                RefreshStatus::AllRejected,
                format!("all {} anchors failed the admission policy", anchors.len()),
            );
            return Ok(with_digest(f, Some(verification), Some(anchors)));
        }
        Ok(Judged::New {
            sha256,
            validators,
            verification,
            anchors,
            admitted,
            accepted_older,
        })
    }

    /// Runs admission on every anchor: (every anchor with its verdict, the admitted DERs).
    fn admit_all(
        &self,
        source: &ExternalSource,
        policy: &AdmissionPolicy,
        ders: Vec<Vec<u8>>,
        now: OffsetDateTime,
    ) -> Result<(Vec<ExternalAnchor>, Vec<Vec<u8>>)> {
        let mut anchors = Vec::with_capacity(ders.len());
        let mut admitted = Vec::new();
        for der in ders {
            let summary = x509::summarize(&der).ok();
            let (ok, reasons) = match admission::admit(&der, &[], &[], policy, now, false) {
                Ok(_) => (true, Vec::new()),
                Err(denial) => (
                    source.admission == AdmissionMode::ReportOnly && summary.is_some(),
                    denial
                        .reasons
                        .into_iter()
                        .map(|r| AnchorFinding {
                            code: r.code.to_string(),
                            message: r.message,
                        })
                        .collect(),
                ),
            };
            let fingerprint = Fingerprint::of(&der).0;
            if ok {
                admitted.push(der);
            }
            anchors.push(ExternalAnchor {
                fingerprint,
                subject: summary
                    .as_ref()
                    .map(|s| s.subject.clone())
                    .unwrap_or_default(),
                not_after: summary.map(|s| s.not_after),
                admitted: ok,
                reasons,
            });
        }
        Ok((anchors, admitted))
    }

    /// The new version of the external bundle's own republication, or `None` when its
    /// admitted set is what is published already.
    fn external_version(
        &self,
        name: &str,
        anchors: &[ExternalAnchor],
        mut admitted: Vec<Vec<u8>>,
        now: OffsetDateTime,
    ) -> Result<Option<BundleVersion>> {
        let rules = self.rules();
        let declared = rules.declared(name)?;
        admitted.sort();
        let p7b = bundle::build_p7b(&admitted);
        drop(admitted);
        let sha256 = Fingerprint::of(&p7b).0;
        let latest = self.store()?.latest_bundle_version(name)?;
        if latest.as_ref().is_some_and(|l| l.sha256 == sha256) {
            return Ok(None);
        }
        let listed: Vec<VersionAnchor> = anchors
            .iter()
            .filter(|a| a.admitted)
            .map(|a| external_version_anchor(name, a, now))
            .collect();
        let previous = latest
            .as_ref()
            .map(|l| l.anchors.clone())
            .unwrap_or_default();
        let (added, removed) = super::bundles::membership_changes(&previous, &listed);
        let p7m = if declared.declaration.signed {
            Some(self.sign_bundle(&p7b, now)?)
        } else {
            None
        };
        Ok(Some(BundleVersion {
            record_version: RECORD_VERSION,
            bundle: name.to_string(),
            version: latest.map_or(1, |l| l.version + 1),
            published_at: now,
            sha256,
            anchors: listed,
            added,
            removed,
            p7b,
            p7m,
            pruned_at: None,
        }))
    }

    /// Rebuilds the local bundles that include `source`; returns those that changed.
    pub fn republish_includers(&self, source: &str, actor: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for name in self.inventory().includers(source) {
            if let Some(v) = self.rebuild_bundle(&name, actor)? {
                tracing::info!(bundle = %name, version = v.version, anchors = v.anchors.len(), source, "republished bundle with external anchors");
                out.push((name, v.version));
            }
        }
        Ok(out)
    }

    /// The admitted anchors of the included external bundles (DER with their listing),
    /// leaving out a source past its fail threshold that must not be republished stale.
    pub(super) fn included_anchors(
        &self,
        include: &[String],
    ) -> Result<Vec<(Vec<u8>, VersionAnchor)>> {
        let now = self.now();
        let rules = self.rules();
        let mut out = Vec::new();
        for name in include {
            let source = rules.external_source(name)?;
            let state = self.store()?.external_state(name)?;
            if !source.publish_when_stale
                && staleness(source, state.as_ref(), now) == Staleness::StaleFail
            {
                tracing::warn!(source = %name, "withdrawn from including bundles: past stale_fail_hours and publish_when_stale = false");
                continue;
            }
            let Some(version) = self.store()?.latest_bundle_version(name)? else {
                continue;
            };
            for der in bundle::certificates_in(&version.p7b)? {
                let fingerprint = Fingerprint::of(&der);
                let listed = version
                    .anchors
                    .iter()
                    .find(|a| a.fingerprint == fingerprint)
                    .cloned();
                if let Some(anchor) = listed {
                    out.push((der, anchor));
                }
            }
        }
        Ok(out)
    }
}

/// Why `new` is older than the copy accepted last (`previous`), or `None` when it is not:
/// signed earlier, or without a signing time after a copy that had one.
fn rollback(previous: Option<&Verification>, new: &Verification) -> Option<String> {
    let before = previous?.signing_time?;
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    match new.signing_time {
        Some(t) if t < before => Some(format!(
            "rollback: this copy was signed at {}, before the copy accepted last (signed at {})",
            fmt(t),
            fmt(before)
        )),
        Some(_) => None,
        None => Some(format!(
            "rollback: this copy has no signing time, but the copy accepted last was signed at {}, so it cannot be shown to be newer",
            fmt(before)
        )),
    }
}

/// The audit details of a rollback: both signing times and the refused copy's digest.
fn signing_times(
    previous: Option<&Verification>,
    new: Option<&Verification>,
    sha256: Option<&str>,
) -> serde_json::Value {
    let fmt = |v: Option<&Verification>| {
        v.and_then(|v| v.signing_time).and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
    };
    json!({
        "previous_signing_time": fmt(previous),
        "signing_time": fmt(new),
        "sha256": sha256,
    })
}

/// SHA-256 over what a copy is checked against: the declaration, the pinned certificates and
/// the admission policy, each in its serialized (JSON) form, so the digest moves exactly when
/// one of them changes.
fn checked_under(source: &ExternalSource, policy: &AdmissionPolicy) -> Result<String> {
    let text = serde_json::to_vec(&(source, &source.pins.fingerprints, policy))
        .map_err(|e| Error::Store(format!("encoding what a copy is checked under: {e}")))?;
    Ok(Fingerprint::of(&text).0)
}

/// The digest the validators of a copy are stored under.
fn url_sha256(url: &str) -> String {
    Fingerprint::of(url.as_bytes()).0
}

fn external_version_anchor(name: &str, a: &ExternalAnchor, now: OffsetDateTime) -> VersionAnchor {
    VersionAnchor {
        id: 0,
        fingerprint: Fingerprint(a.fingerprint.clone()),
        subject: a.subject.clone(),
        not_after: a.not_after.unwrap_or(now),
        organization: format!("external:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ExternalSource {
        toml::from_str("url = \"https://bundles.example.org/provider.p7b\"").unwrap()
    }

    #[test]
    fn checked_under_moves_with_the_policy_and_the_pins_only() {
        let source = source();
        let policy = AdmissionPolicy::default();
        let first = checked_under(&source, &policy).unwrap();
        assert_eq!(first.len(), 64, "hex SHA-256");
        assert_eq!(
            first,
            checked_under(&source.clone(), &policy.clone()).unwrap(),
            "stable for the same declaration and policy"
        );
        let stricter = AdmissionPolicy {
            min_days_remaining: 90,
            ..policy.clone()
        };
        assert_ne!(first, checked_under(&source, &stricter).unwrap());
        let mut pinned = source.clone();
        pinned.pins.fingerprints.push("ab".repeat(32));
        assert_ne!(first, checked_under(&pinned, &policy).unwrap());
    }
}
