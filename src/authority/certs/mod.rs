//! Certificate operations as a principal performs them: which organisation a request's holder
//! belongs to, whether this principal may touch it, rate limits and idempotency. Every
//! operation checks the scope where the record is read or changed (`cert_for`, `certs_for`,
//! the pages of `cert_page_for` (`pages.rs`), the revocation transaction's guard, the issuance
//! transaction's binding check); front ends call these and never decide scope themselves.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::Authority;
use crate::accounts::{Limit, Principal, Role};
use crate::audit::AuditDraft;
use crate::ca::CaRole;
use crate::error::{Error, Result};
use crate::model::{Holder, RevocationReason, Serial};
use crate::organisations::{HolderBinding, OrganisationRecord};
use crate::policy::issuance::{IssueRequest, KeySource};
use crate::store::{CertRecord, IdempotencyRecord, Revocation, Store, RECORD_VERSION};
use crate::x509;

mod ca;
mod issue;
mod lookup;
mod pages;

pub use ca::CaStatus;
pub use issue::{IssueOutcome, IssuedCert};
pub use lookup::{CertFilter, CertStatus, CertView};
pub use pages::{CertPage, PageEnd, PageStart, SCAN_BUDGET};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

/// The organisation a certificate's holder is (or will be) bound to.
#[derive(Debug, Clone)]
pub struct Ownership {
    pub binding: HolderBinding,
    pub organisation: OrganisationRecord,
    /// The binding is created by this issuance.
    pub new: bool,
}

/// A certificate's organisation as views show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrganisationRef {
    pub id: String,
    pub name: String,
    /// The holder's organisation is not settled (migration found several names); admins only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unresolved: bool,
}

/// Issuances per principal in the last minute and day (one timestamp per certificate).
#[derive(Default)]
pub struct RateLimiter {
    recent: Mutex<HashMap<String, VecDeque<OffsetDateTime>>>,
}

impl RateLimiter {
    /// Refuses when `n` more certificates would pass a limit (0 = none); the error carries
    /// the seconds until enough of the window has passed.
    fn check(
        &self,
        who: &str,
        n: usize,
        now: OffsetDateTime,
        per_minute: u32,
        per_day: u32,
    ) -> Result<()> {
        let Ok(mut recent) = self.recent.lock() else {
            return Err(Error::Store("rate limiter lock poisoned".into()));
        };
        let q = recent.entry(who.to_string()).or_default();
        while q.front().is_some_and(|t| now - *t >= Duration::DAY) {
            q.pop_front();
        }
        for (limit, window, what) in [
            (per_minute, Duration::MINUTE, "minute"),
            (per_day, Duration::DAY, "day"),
        ] {
            if limit == 0 {
                continue;
            }
            let limit = limit as usize;
            // Oldest first: the window is a suffix of the queue.
            let start = q.partition_point(|t| now - *t >= window);
            let in_window = q.len() - start;
            if in_window + n > limit {
                // The oldest entries must leave the window before `n` more fit.
                let must_leave = (in_window + n).saturating_sub(limit);
                let until = q
                    .get(start + must_leave.saturating_sub(1))
                    .map(|t| *t + window)
                    .unwrap_or(now + window);
                let secs = (until - now).whole_seconds().max(1) as u64;
                return Err(Error::RateLimited {
                    message: format!(
                        "at most {limit} certificates per {what} for this account; try again in {secs} s"
                    ),
                    retry_after_secs: secs,
                });
            }
        }
        Ok(())
    }

    fn record(&self, who: &str, n: usize, now: OffsetDateTime) {
        if let Ok(mut recent) = self.recent.lock() {
            let q = recent.entry(who.to_string()).or_default();
            for _ in 0..n {
                q.push_back(now);
            }
        }
    }
}

/// The holder a request is for, when it can be read (the policy reports malformed ones).
fn request_holder(request: &IssueRequest) -> Option<Holder> {
    match (&request.address, &request.domain) {
        (Some(a), None) => crate::model::DirectAddress::parse(a)
            .ok()
            .map(Holder::Address),
        (None, Some(d)) => crate::model::HealthDomain::parse(d)
            .ok()
            .map(Holder::Domain),
        _ => None,
    }
}

/// SHA-256 over what makes two requests the same request (never a password or a key).
fn fingerprint(request: &IssueRequest) -> String {
    let key = match &request.key {
        KeySource::Generate => json!("generate"),
        KeySource::Csr {
            signing,
            encryption,
        } => json!([
            hex::encode(x509::spki_hash(signing)),
            encryption.as_ref().map(|e| hex::encode(x509::spki_hash(e)))
        ]),
    };
    let canonical = json!({
        "address": request.address, "domain": request.domain, "usage": request.usage,
        "profile": request.profile, "category": request.category, "key": key,
        "subscriber": request.subscriber, "organisation": request.organisation,
        "proofing": request.proofing,
    });
    hex::encode(x509::spki_hash(canonical.to_string().as_bytes()))
}

/// Checks an idempotency key's shape: 1-255 visible ASCII characters.
fn check_idempotency_key(key: &str) -> Result<()> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::InvalidInput(
            "the Idempotency-Key must be 1-255 visible ASCII characters".into(),
        ))
    }
}

impl Authority {
    /// Issues as `principal`: the holder's organisation comes from its binding (or, for a new
    /// holder, from the request and the principal's scope), never from free text; limits and
    /// the idempotency key are applied. `idempotency_key` repeats return the first result.
    pub fn issue_as(
        &self,
        principal: &Principal,
        request: &IssueRequest,
        p12_password: Option<Zeroizing<String>>,
        idempotency_key: Option<&str>,
    ) -> Result<IssueOutcome> {
        principal.may_issue()?;
        let now = self.now();
        let print = fingerprint(request);
        let idempotency = match idempotency_key {
            Some(key) => {
                check_idempotency_key(key)?;
                if let Some(first) = self.store()?.idempotency_record(&principal.id, key)? {
                    if now - first.created_at < IDEMPOTENCY_WINDOW {
                        return self.replay(&first, &print);
                    }
                }
                Some((
                    crate::store::idempotency_key(&principal.id, key),
                    IdempotencyRecord {
                        record_version: RECORD_VERSION,
                        fingerprint: print.clone(),
                        serials: Vec::new(),
                        created_at: now,
                    },
                ))
            }
            None => None,
        };
        let count = if request.usage.trim() == "pair" { 2 } else { 1 };
        if principal.id != "operator" {
            let limits = &self.config.issuance;
            if let Err(e) = self.rate.check(
                &principal.id,
                count,
                now,
                limits.rate_limit_per_minute,
                limits.rate_limit_per_day,
            ) {
                self.store()?.audit(
                    now,
                    AuditDraft::new(
                        &principal.actor,
                        "cert.rate_limited",
                        request
                            .address
                            .clone()
                            .or(request.domain.clone())
                            .unwrap_or_default(),
                        json!({"message": e.to_string()}),
                    ),
                )?;
                return Err(e);
            }
        }
        let ownership = self.ownership(principal, request)?;
        match self.issue_owned(request, ownership, p12_password, idempotency)? {
            issue::Issued::Fresh(outcome) => {
                self.rate.record(&principal.id, count, now);
                Ok(outcome)
            }
            issue::Issued::Replay(first) => self.replay(&first, &print),
        }
    }

    /// The first result of an idempotent request, without secrets (a PKCS#12 is never
    /// stored): same serials, same status.
    fn replay(&self, first: &IdempotencyRecord, print: &str) -> Result<IssueOutcome> {
        if first.fingerprint != print {
            return Err(Error::IdempotencyKeyReused(
                "this Idempotency-Key was sent before with a different request; use a new key"
                    .into(),
            ));
        }
        let mut certs = Vec::new();
        for serial in &first.serials {
            let r = self
                .store()?
                .cert(serial)?
                .ok_or_else(|| Error::Store(format!("replayed serial {serial} is missing")))?;
            certs.push(IssuedCert {
                serial: r.serial.clone(),
                usage: r.usage,
                holder: r.holder.to_string(),
                fingerprint: r.fingerprint.clone(),
                not_after: r.not_after,
                pem: x509::to_pem("CERTIFICATE", &r.der),
                pkcs12: None,
            });
        }
        Ok(IssueOutcome {
            certs,
            generated_password: None,
            replayed: true,
        })
    }

    /// Decides the organisation of the request's holder and whether `principal` may issue for
    /// it. `None` when the holder cannot be read (the issuance policy names the problem).
    pub fn ownership(
        &self,
        principal: &Principal,
        request: &IssueRequest,
    ) -> Result<Option<Ownership>> {
        let Some(holder) = request_holder(request) else {
            return Ok(None);
        };
        principal.may_issue_in(holder.domain().as_str())?;
        if !self.config.managed_domains.contains(holder.domain()) {
            // The issuance policy names this problem, with every other one.
            return Ok(None);
        }
        let named = request
            .organisation
            .as_deref()
            .or(request.subscriber.organization.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let admin = principal.role == Role::Admin;
        let elsewhere = |what: &str| {
            Error::HolderOwnedElsewhere(format!(
                "{holder} belongs to {what}; its certificates are issued only for that \
                 organisation, by its registrars or an admin"
            ))
        };
        if let Some(binding) = self.store()?.holder_binding(&holder.to_string())? {
            let org = self
                .store()?
                .organisation(&binding.organisation)?
                .ok_or_else(|| {
                    Error::Store(format!(
                        "{holder} is bound to the missing organisation '{}'",
                        binding.organisation
                    ))
                })?;
            let ours = principal.scope.organisations.allows(&org.id);
            let shown = if admin || ours {
                format!("organisation '{}' ({})", org.id, org.name)
            } else {
                "another organisation".to_string()
            };
            if !binding.resolved() && !admin {
                return Err(Error::HolderUnresolved(format!(
                    "{holder}'s certificates name different organisations; an admin must settle \
                     it first (anchorage org check, anchorage holder transfer)"
                )));
            }
            if !ours {
                return Err(elsewhere(&shown));
            }
            if named.is_some_and(|n| !org.is_named(n)) {
                return Err(elsewhere(&shown));
            }
            if !org.enabled() {
                return Err(Error::OrganisationDisabled(format!(
                    "organisation '{}' is disabled; nothing more is issued for its holders",
                    org.id
                )));
            }
            return Ok(Some(Ownership {
                binding,
                organisation: org,
                new: false,
            }));
        }
        // A new holder: which organisations could it belong to?
        let orgs = self.store()?.organisations()?;
        let whole_owner = orgs.iter().find(|o| o.owns_domain(holder.domain()));
        if let (Holder::Domain(d), Limit::Only(ids)) = (&holder, &principal.scope.organisations) {
            if !whole_owner.is_some_and(|o| ids.contains(&o.id)) {
                return Err(Error::DomainNotCovered(format!(
                    "a certificate for the domain {d} covers every address in it; only an admin, \
                     a registrar not limited to organisations, or a registrar of the organisation \
                     that owns the whole domain may request one"
                )));
            }
        }
        let org = match named {
            Some(text) => orgs.iter().find(|o| o.is_named(text)).ok_or_else(|| {
                Error::OrganisationRequired(format!(
                    "there is no organisation '{}' (see GET /api/v1/organisations)",
                    text.chars().take(128).collect::<String>()
                ))
            })?,
            None => {
                let single = principal
                    .scope
                    .organisations
                    .single()
                    .and_then(|id| orgs.iter().find(|o| o.id == id));
                single
                    .or(whole_owner.filter(|o| principal.scope.organisations.allows(&o.id)))
                    .ok_or_else(|| {
                        Error::OrganisationRequired(format!(
                            "{holder} holds no certificate yet: name the organisation it belongs \
                             to (organisation)"
                        ))
                    })?
            }
        };
        if let Some(owner) = whole_owner.filter(|o| o.id != org.id) {
            let shown = if admin || principal.scope.organisations.allows(&owner.id) {
                format!("organisation '{}'", owner.id)
            } else {
                "another organisation".to_string()
            };
            return Err(elsewhere(&shown));
        }
        if !principal.scope.organisations.allows(&org.id) {
            return Err(Error::Forbidden(format!(
                "this registrar does not work for organisation '{}'",
                org.id
            )));
        }
        if !org.enabled() {
            return Err(Error::OrganisationDisabled(format!(
                "organisation '{}' is disabled",
                org.id
            )));
        }
        if !org.covers(&holder) {
            return Err(Error::HolderOutsideOrganisation(format!(
                "organisation '{}' may hold identifiers only in {}",
                org.id,
                if org.domains.is_empty() {
                    "no domain yet".to_string()
                } else {
                    org.domains.join(", ")
                }
            )));
        }
        Ok(Some(Ownership {
            binding: HolderBinding {
                record_version: RECORD_VERSION,
                holder: holder.to_string(),
                organisation: org.id.clone(),
                bound_at: self.now(),
                bound_by: principal.actor.clone(),
                conflicting_names: Vec::new(),
            },
            organisation: org.clone(),
            new: true,
        }))
    }

    /// One certificate, if `principal` may see it; "not found" otherwise, exactly like a
    /// serial that does not exist.
    pub fn cert_for(&self, principal: &Principal, serial: &Serial) -> Result<CertView> {
        let not_found = || Error::NotFound(format!("no certificate with serial {serial}"));
        let record = self.store()?.cert(serial)?.ok_or_else(not_found)?;
        let binding = self.store()?.holder_binding(&record.holder.to_string())?;
        if !principal.sees_holder(record.holder.domain().as_str(), binding.as_ref()) {
            return Err(not_found());
        }
        self.view(record)
    }

    /// The certificates `principal` may see, filtered.
    pub fn certs_for(&self, principal: &Principal, filter: &CertFilter) -> Result<Vec<CertView>> {
        if !matches!(principal.role, Role::Admin | Role::Registrar) {
            return Err(Error::Forbidden(format!(
                "the '{}' role may not list certificates",
                principal.role.as_str()
            )));
        }
        let mut views = self.certs(filter)?;
        views.retain(|v| {
            principal.sees_owned(
                v.record.holder.domain().as_str(),
                v.organisation
                    .as_ref()
                    .map(|o| (o.id.as_str(), !o.unresolved)),
            )
        });
        Ok(views)
    }

    /// Revokes as `principal`; a certificate it may not see is "not found". The check runs
    /// inside the revocation transaction, against the record and binding it changes.
    pub fn revoke_as(
        &self,
        principal: &Principal,
        serial: &Serial,
        reason: RevocationReason,
    ) -> Result<Revocation> {
        principal.may_issue()?;
        let visible = |record: &crate::store::CertRecord, binding: Option<&HolderBinding>| {
            principal.sees_holder(record.holder.domain().as_str(), binding)
        };
        self.revoke_checked(serial, reason, &principal.actor, &visible)
    }

    /// The organisation reference of a holder, for views.
    /// `names` remembers organisation names across the views of one listing, so a listing
    /// reads each organisation record once.
    pub(super) fn organisation_ref(
        &self,
        holder: &str,
        names: &mut HashMap<String, String>,
    ) -> Result<Option<OrganisationRef>> {
        let store = self.store()?;
        let Some(binding) = store.holder_binding(holder)? else {
            return Ok(None);
        };
        let name = organisation_name(&store, &binding.organisation, names)?;
        Ok(Some(OrganisationRef {
            unresolved: !binding.resolved(),
            id: binding.organisation,
            name,
        }))
    }
}
impl Authority {
    /// Revokes an issued certificate. The caller regenerates the CRL (at once in the CLI,
    /// coalesced in the server).
    pub fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<Revocation> {
        self.revoke_checked(serial, reason, actor, &|_, _| true)
    }

    /// Revokes at the console and re-signs the issuing CA's CRL at once (no server is there to
    /// batch revocations). The keys are unlocked first, so nothing is revoked that cannot be
    /// published.
    pub fn revoke_and_publish(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<(Revocation, crate::store::CrlRecord)> {
        self.ensure_unlocked()?;
        let revocation = self.revoke(serial, reason, actor)?;
        let crl = self.publish_crl(CaRole::Issuing)?;
        Ok((revocation, crl))
    }

    fn revoke_checked(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
        visible: &dyn Fn(&CertRecord, Option<&crate::organisations::HolderBinding>) -> bool,
    ) -> Result<Revocation> {
        let record = self
            .store()?
            .cert(serial)?
            .ok_or_else(|| Error::NotFound(format!("no certificate with serial {serial}")))?;
        let revocation = Revocation {
            record_version: RECORD_VERSION,
            revision: 0,
            serial: serial.clone(),
            ca: CaRole::Issuing,
            reason,
            revoked_at: self.now(),
            revoked_by: actor.to_string(),
        };
        let stored = self.store()?.revoke(
            &revocation,
            AuditDraft::new(
                actor,
                "cert.revoke",
                serial.to_string(),
                json!({"holder": record.holder.to_string(), "reason": reason.as_str()}),
            ),
            visible,
        )?;
        self.store()?.flush()?;
        self.publish_after_change(record.holder.domain());
        Ok(stored)
    }
}

/// An organisation's name for a listing, read from the store once per listing: `names`
/// keeps the ones read, by id (empty for a binding to an organisation without a record).
pub(super) fn organisation_name(
    store: &Store,
    id: &str,
    names: &mut HashMap<String, String>,
) -> Result<String> {
    if let Some(name) = names.get(id) {
        return Ok(name.clone());
    }
    let name = store.organisation(id)?.map(|o| o.name).unwrap_or_default();
    names.insert(id.to_string(), name.clone());
    Ok(name)
}
