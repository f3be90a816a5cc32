//! The CAs themselves: their certificates and status, the issuing CA's own revocation (by the
//! root) and the CRLs both sign. Split from issuance because none of it concerns a holder.

use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::audit::AuditDraft;
use crate::authority::Authority;
use crate::ca::{CaRole, RevokedEntry};
use crate::error::{Error, Result};
use crate::model::{Fingerprint, RevocationReason, Serial};
use crate::store::{CrlRecord, Revocation, RECORD_VERSION};
use crate::x509;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaStatus {
    pub role: CaRole,
    /// The CA certificate's serial (hex).
    pub serial: Serial,
    pub subject: String,
    pub fingerprint: Fingerprint,
    pub key: String,
    /// SHA-256 of the CA's SubjectPublicKeyInfo.
    pub key_fingerprint: Fingerprint,
    pub key_online: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub crl_number: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub crl_next_update: Option<OffsetDateTime>,
    /// Set when this CA's certificate is on its issuer's CRL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
}

impl Authority {
    /// CA certificates as DER (issuing first, then root); no key needed.
    pub fn ca_chain(&self) -> Result<Vec<Vec<u8>>> {
        let issuing = self
            .store()?
            .ca_record(CaRole::Issuing)?
            .ok_or(Error::NotInitialised)?;
        let root = self
            .store()?
            .ca_record(CaRole::Root)?
            .ok_or(Error::NotInitialised)?;
        Ok(vec![issuing.cert_der, root.cert_der])
    }

    pub fn ca_cert(&self, role: CaRole) -> Result<Vec<u8>> {
        Ok(self
            .store()?
            .ca_record(role)?
            .ok_or(Error::NotInitialised)?
            .cert_der)
    }

    pub fn ca_status(&self) -> Result<Vec<CaStatus>> {
        let mut out = Vec::new();
        for role in [CaRole::Root, CaRole::Issuing] {
            let record = self
                .store()?
                .ca_record(role)?
                .ok_or(Error::NotInitialised)?;
            let summary =
                x509::summarize(&record.cert_der).map_err(|e| Error::CaKey(e.to_string()))?;
            let crl = self.store()?.crl(role)?;
            let serial = Serial::parse(&summary.serial).map_err(|e| Error::CaKey(e.to_string()))?;
            let revocation = self.store()?.revocation(&serial)?.filter(|r| r.ca != role);
            out.push(CaStatus {
                serial: serial.clone(),
                role,
                subject: summary.subject,
                fingerprint: summary.fingerprint,
                key: summary.key.description,
                key_fingerprint: summary.key_fingerprint,
                key_online: record.sealed_key.is_some(),
                not_after: summary.not_after,
                crl_number: crl.as_ref().map(|c| c.number),
                crl_next_update: crl.map(|c| c.next_update),
                revocation,
            });
        }
        Ok(out)
    }

    /// The issuing CA certificate's serial.
    pub fn issuing_ca_serial(&self) -> Result<Serial> {
        if let Some(serial) = self.issuing_serial.get() {
            return Ok(serial.clone());
        }
        let der = self.ca_cert(CaRole::Issuing)?;
        let summary = x509::summarize(&der).map_err(|e| Error::CaKey(e.to_string()))?;
        let serial = Serial::parse(&summary.serial).map_err(|e| Error::CaKey(e.to_string()))?;
        Ok(self.issuing_serial.get_or_init(|| serial).clone())
    }

    /// Refuses to sign with an issuing CA whose certificate the root has revoked: relying
    /// parties would reject everything it signs.
    pub fn ensure_issuing_ca_valid(&self) -> Result<()> {
        let serial = self.issuing_ca_serial()?;
        match self.store()?.revocation(&serial)? {
            Some(r) if r.ca == CaRole::Root => Err(Error::IssuingCaRevoked(format!(
                "its certificate {serial} was revoked by the root on {} ({}); nothing more can be \
                 issued from this data directory (see ops/runbooks/emergency-revocation.md)",
                r.revoked_at,
                r.reason.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Revokes the issuing CA's certificate: records it for the root's CRL and re-signs that
    /// CRL at once, so relying parties reject every certificate the issuing CA signed once
    /// they fetch it. Needs the root key online. `confirm` must repeat the issuing CA's
    /// serial, so a slip cannot stop all issuance.
    pub fn revoke_issuing_ca(
        &self,
        confirm: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<(Revocation, CrlRecord)> {
        self.ensure_unlocked()?;
        let serial = self.issuing_ca_serial()?;
        if *confirm != serial {
            return Err(Error::InvalidInput(format!(
                "{confirm} is not the issuing CA's serial; give --serial {serial} to revoke it"
            )));
        }
        if self.signers()?.root.is_none() {
            return Err(Error::CaKey(format!(
                "the root CA key is offline, so its CRL cannot be signed here: have the root's \
                 owner publish a root CRL naming serial {serial}"
            )));
        }
        let revocation = Revocation {
            record_version: RECORD_VERSION,
            revision: 0,
            serial: serial.clone(),
            ca: CaRole::Root,
            reason,
            revoked_at: self.now(),
            revoked_by: actor.to_string(),
        };
        let stored = self.store()?.revoke(
            &revocation,
            AuditDraft::new(
                actor,
                "ca.revoke",
                serial.to_string(),
                json!({"ca": CaRole::Issuing.as_str(), "reason": reason.as_str()}),
            ),
            &|_, _| true,
        )?;
        self.store()?.flush()?;
        let crl = self.publish_crl(CaRole::Root)?;
        Ok((stored, crl))
    }

    /// True when the stored CRL of `role` misses a revocation or is due for re-signing.
    pub fn crl_is_stale(&self, role: CaRole) -> Result<bool> {
        let Some(crl) = self.store()?.crl(role)? else {
            return Ok(true);
        };
        let refresh_at =
            crl.next_update - Duration::hours(i64::from(self.config.crl.refresh_before_hours));
        Ok(
            crl.revision < self.store()?.latest_revocation_revision(role)?
                || self.now() >= refresh_at,
        )
    }

    /// Signs and stores a new CRL for `role` from the current revocations.
    pub fn publish_crl(&self, role: CaRole) -> Result<CrlRecord> {
        let signers = self.signers()?;
        let ca = match role {
            CaRole::Issuing => &signers.issuing,
            CaRole::Root => signers.root.as_ref().ok_or_else(|| {
                Error::CaKey("the root CA key is offline; its CRL is published elsewhere".into())
            })?,
        };
        let revision = self.store()?.revision()?;
        let revoked: Vec<RevokedEntry> = self
            .store()?
            .revocations(role)?
            .into_iter()
            .map(|r| RevokedEntry {
                serial: r.serial,
                revoked_at: r.revoked_at,
                reason: r.reason,
            })
            .collect();
        let number = self.store()?.reserve_crl_number(role)?;
        let this_update = self.now();
        let next_update = (this_update
            + Duration::hours(i64::from(self.config.crl.next_update_hours)))
        .min(ca.not_after());
        let der = ca.sign_crl(number, this_update, next_update, &revoked)?;
        let record = CrlRecord {
            record_version: RECORD_VERSION,
            ca: role,
            number,
            this_update,
            next_update,
            revision,
            der,
        };
        self.store()?.put_crl(&record)?;
        self.published();
        self.store()?.audit(
            this_update,
            AuditDraft::new(
                "system",
                "crl.publish",
                role.as_str(),
                json!({"number": number, "entries": revoked.len()}),
            ),
        )?;
        Ok(record)
    }

    /// The current CRL of `role`, re-signed first when stale (needs the key).
    pub fn current_crl(&self, role: CaRole) -> Result<CrlRecord> {
        if self.crl_is_stale(role)? {
            self.ensure_unlocked()?;
            return self.publish_crl(role);
        }
        self.store()?
            .crl(role)?
            .ok_or_else(|| Error::NotFound(format!("no CRL for the {} CA", role.as_str())))
    }

    /// The stored CRL without re-signing (for serving).
    pub fn stored_crl(&self, role: CaRole) -> Result<Option<CrlRecord>> {
        self.store()?.crl(role)
    }

    /// Re-signs every CRL whose CA key is online and which is stale.
    pub fn refresh_crls(&self) -> Result<Vec<CrlRecord>> {
        let signers = self.signers()?;
        let mut out = Vec::new();
        for role in [CaRole::Issuing, CaRole::Root] {
            if role == CaRole::Root && signers.root.is_none() {
                continue;
            }
            if self.crl_is_stale(role)? {
                out.push(self.publish_crl(role)?);
            }
        }
        Ok(out)
    }
}
