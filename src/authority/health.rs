//! What `/healthz` reports beyond "up": conditions under which relying parties will start
//! rejecting this CA's certificates, or issuance will stop, while the service still answers.
//! Monitoring should page on them; the service keeps serving (HTTP 200, `degraded`), because
//! CRLs, CA certificates and bundles are still worth serving. When the check itself fails
//! (the store cannot be read) the answer is an error: HTTP 503, status `error`.

use serde::Serialize;
use time::Duration;

use super::Authority;
use crate::ca::CaRole;
use crate::error::Result;

/// Warn this long before a CA certificate expires: a new hierarchy takes a key ceremony.
pub const CA_EXPIRY_WARNING_DAYS: i64 = 30;

/// One reason the service is degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthProblem {
    /// Stable: `crl_overdue`, `ca_expired`, `ca_expires_soon`, `issuing_ca_revoked`,
    /// `external_source_stale`, `external_source_no_copy`; `store_unwritable` (an error:
    /// HTTP 503, status `error`); `store_unreadable` only in the HTTP answer when the check
    /// itself fails (HTTP 503, status `error`).
    pub code: &'static str,
    /// What it concerns: the CA role (`root`, `issuing`) or the external source's name.
    pub subject: String,
    pub message: String,
}

impl HealthProblem {
    /// An error rather than a degradation: the service cannot do its job (HTTP 503).
    pub fn is_error(&self) -> bool {
        self.code == "store_unwritable"
    }
}

impl Authority {
    /// Every degraded condition now; empty when healthy.
    pub fn health_problems(&self) -> Result<Vec<HealthProblem>> {
        let now = self.now();
        let mut out = Vec::new();
        if let Some(fault) = self.store_fault() {
            let room = match fault.free_bytes {
                Some(free) => format!("{} KiB free", free / 1024),
                None => "free space unknown".into(),
            };
            out.push(HealthProblem {
                code: "store_unwritable",
                subject: "store".into(),
                message: format!(
                    "the store cannot be written ({}; {room}): issuance, revocation and reviews \
                     answer 503 until the data directory's file system has room again; the \
                     store reopens by itself, no restart needed",
                    fault.cause
                ),
            });
        }
        for status in self.ca_status()? {
            let role = status.role.as_str();
            if let Some(next) = status.crl_next_update.filter(|t| *t <= now) {
                out.push(HealthProblem {
                    code: "crl_overdue",
                    subject: role.to_string(),
                    message: format!(
                        "the {role} CA's CRL passed its nextUpdate ({next}); relying parties \
                         will reject its certificates until it is re-signed"
                    ),
                });
            }
            if status.not_after <= now {
                out.push(HealthProblem {
                    code: "ca_expired",
                    subject: role.to_string(),
                    message: format!("the {role} CA certificate expired on {}", status.not_after),
                });
            } else if status.not_after - now <= Duration::days(CA_EXPIRY_WARNING_DAYS) {
                out.push(HealthProblem {
                    code: "ca_expires_soon",
                    subject: role.to_string(),
                    message: format!("the {role} CA certificate expires on {}", status.not_after),
                });
            }
            if let Some(r) = status.revocation.filter(|_| status.role == CaRole::Issuing) {
                out.push(HealthProblem {
                    code: "issuing_ca_revoked",
                    subject: role.to_string(),
                    message: format!(
                        "the issuing CA was revoked on {} ({}); nothing can be issued",
                        r.revoked_at,
                        r.reason.as_str()
                    ),
                });
            }
        }
        for name in self.degraded_sources()? {
            out.push(HealthProblem {
                code: "external_source_stale",
                subject: name.clone(),
                message: format!(
                    "external bundle source '{name}' has had no good copy for longer than its \
                     stale_fail_hours"
                ),
            });
        }
        for name in self.sources_without_copy()? {
            out.push(HealthProblem {
                code: "external_source_no_copy",
                subject: name.clone(),
                message: format!(
                    "external bundle source '{name}' is enabled but has never had a good copy; \
                     its anchors are not published (see `anchorage refresh status {name}`)"
                ),
            });
        }
        Ok(out)
    }
}
