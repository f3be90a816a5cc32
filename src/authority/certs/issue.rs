//! Issuance: run the issuance rules, sign every certificate of the plan with the issuing CA,
//! store them with their audit entry in one transaction, then package keys the server
//! generated. Who may issue and for which organisation is decided in `certs` before this runs.

use rcgen::{KeyPair, PublicKeyData};
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::audit::AuditDraft;
use crate::authority::Authority;
use crate::ca::{self, EndEntitySpec, UnlockedCa};
use crate::error::{Error, Result};
use crate::model::{CertUsage, Fingerprint, Serial};
use crate::pkcs12;
use crate::policy::issuance::{self, Approved, IssueRequest, PlannedKey};
use crate::store::{CertRecord, RECORD_VERSION};
use crate::x509;

use super::Ownership;

/// One issued certificate as returned to the caller.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedCert {
    pub serial: Serial,
    pub usage: CertUsage,
    pub holder: String,
    pub fingerprint: Fingerprint,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub pem: String,
    /// The PKCS#12 holding the server-generated key, if any. Never stored.
    #[serde(skip)]
    pub pkcs12: Option<Vec<u8>>,
}

/// The result of an issuance.
pub struct IssueOutcome {
    pub certs: Vec<IssuedCert>,
    /// Present only when the server generated the password; shown once.
    pub generated_password: Option<Zeroizing<String>>,
    /// The first result of an earlier request with the same idempotency key (no secrets).
    pub replayed: bool,
}

/// What the issuance transaction did.
pub(super) enum Issued {
    Fresh(IssueOutcome),
    Replay(crate::store::IdempotencyRecord),
}

impl Authority {
    /// Issues as the operator at the machine (the CLI with the data directory).
    pub fn issue(
        &self,
        request: &IssueRequest,
        p12_password: Option<Zeroizing<String>>,
    ) -> Result<IssueOutcome> {
        let operator = crate::accounts::Principal::operator(&request.registrar);
        self.issue_as(&operator, request, p12_password, None)
    }

    /// Checks, signs, stores (durably) and returns the certificates of one request whose
    /// holder's organisation is decided.
    pub(super) fn issue_owned(
        &self,
        request: &IssueRequest,
        ownership: Option<Ownership>,
        p12_password: Option<Zeroizing<String>>,
        mut idempotency: Option<(Vec<u8>, crate::store::IdempotencyRecord)>,
    ) -> Result<Issued> {
        let approved = self.approve(request)?;
        let ownership = ownership.ok_or_else(|| {
            Error::Generation("an approved request without an organisation".into())
        })?;
        // The certificate names the holder's organisation as its record says.
        let approved = approved.for_organisation(&ownership.organisation.name);
        self.ensure_issuing_ca_valid()?;
        // After the rules: a refused request never needs the passphrase.
        self.ensure_unlocked()?;
        let signers = self.signers()?;
        let generated_password = match (&p12_password, has_generated_key(&approved)) {
            (Some(p), _) => {
                pkcs12::check_password(p)?;
                None
            }
            (None, true) => Some(pkcs12::generate_password()?),
            (None, false) => None,
        };
        let (records, keys) = self.sign_plan(&approved, &signers.issuing)?;
        let serials: Vec<String> = records.iter().map(|r| r.serial.to_string()).collect();
        let key_hashes = approved
            .certs()
            .iter()
            .zip(&keys)
            .map(|(planned, key)| match (&planned.key, key) {
                (PlannedKey::FromCsr(csr), _) => x509::spki_hash(&csr.spki_der),
                (_, Some(key)) => x509::spki_hash(&key.subject_public_key_info()),
                (_, None) => Vec::new(),
            })
            .filter(|h| !h.is_empty())
            .collect();
        if let Some((_, record)) = idempotency.as_mut() {
            record.serials = records.iter().map(|r| r.serial.clone()).collect();
        }
        let job = crate::store::IssueJob {
            records,
            at: self.now(),
            draft: AuditDraft::new(
                approved.registrar(),
                "cert.issue",
                approved.holder().to_string(),
                json!({
                    "serials": serials,
                    "usage": approved.usage(),
                    "profile": approved.profile().name,
                    "organisation": ownership.organisation.id,
                    "holder_bound": ownership.new,
                    "subscriber": approved.subscriber(),
                    "proofing": approved.proofing(),
                    "key_origin": if keys.iter().any(Option::is_some) { "generated" } else { "csr" },
                }),
            ),
            write: crate::store::IssueWrite {
                binding: ownership.binding.clone(),
                key_hashes,
                allow_key_reuse: approved.profile().allow_key_reuse,
                idempotency,
            },
        };
        // Durable before anything is returned; concurrent issuances share the flush.
        let (inserted, records) = self.store()?.issue_durably(job)?;
        if let crate::store::Inserted::Replay(first) = inserted {
            return Ok(Issued::Replay(first));
        }
        self.publish_after_change(approved.holder().domain());
        let password = p12_password.as_ref().or(generated_password.as_ref());
        let chain = [
            signers.issuing.cert_der.as_slice(),
            signers.root_cert_der.as_slice(),
        ];
        let mut certs = Vec::new();
        for (record, key) in records.iter().zip(keys) {
            let pkcs12 = match (key, password) {
                (Some(key), Some(password)) => Some(pkcs12::build(
                    &record.der,
                    &key,
                    &chain,
                    password,
                    &format!("{} ({})", record.holder, record.usage.as_str()),
                )?),
                _ => None,
            };
            certs.push(IssuedCert {
                serial: record.serial.clone(),
                usage: record.usage,
                holder: record.holder.to_string(),
                fingerprint: record.fingerprint.clone(),
                not_after: record.not_after,
                pem: x509::to_pem("CERTIFICATE", &record.der),
                pkcs12,
            });
        }
        Ok(Issued::Fresh(IssueOutcome {
            certs,
            generated_password,
            replayed: false,
        }))
    }

    /// Runs the issuance rules against the current store.
    pub fn approve(&self, request: &IssueRequest) -> Result<Approved> {
        let store = self.store()?;
        let owner_of = |owner: &str| store.owner_holder(owner).ok().flatten();
        let key_holder_of = |spki: &[u8]| store.key_holder(&x509::spki_hash(spki)).ok().flatten();
        let profiles = self.profiles();
        let ctx = issuance::Context {
            profiles: &profiles,
            managed_domains: &self.config.managed_domains,
            owner_of: &owner_of,
            key_holder_of: &key_holder_of,
        };
        issuance::check(request, &ctx).map_err(Error::Denied)
    }

    /// Signs every certificate of the plan. Returns the records and, per record, the
    /// server-generated key (if any) for packaging.
    fn sign_plan(
        &self,
        approved: &Approved,
        issuing: &UnlockedCa,
    ) -> Result<(Vec<CertRecord>, Vec<Option<KeyPair>>)> {
        let now = self.now();
        let not_after = (now + Duration::days(i64::from(approved.profile().validity_days)))
            .min(issuing.not_after());
        if not_after <= now {
            return Err(Error::CaKey("the issuing CA has expired".into()));
        }
        let public_url = &self.config.public_url;
        let request_id = hex::encode(ca::random_serial()?.to_bytes().get(..8).unwrap_or_default());
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for planned in approved.certs() {
            let spec = EndEntitySpec {
                serial: self.fresh_serial()?,
                holder: approved.holder().clone(),
                usage: planned.usage,
                organization: approved.subscriber().organization.clone(),
                not_before: now,
                not_after,
                policy_oids: approved.policy_oids().to_vec(),
                crl_url: approved.profile().crl_url(public_url, "issuing"),
                ca_issuers_url: approved.profile().ca_issuers_url(public_url, "issuing"),
            };
            let (der, key, key_origin) = match &planned.key {
                PlannedKey::FromCsr(csr) => {
                    let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
                        .map_err(|e| Error::Generation(format!("CSR key: {e}")))?;
                    (issuing.issue(&spec, &spki)?, None, "csr")
                }
                PlannedKey::Generate(kind) => {
                    let key = ca::generate_key(*kind)?;
                    (issuing.issue(&spec, &key)?, Some(key), "generated")
                }
            };
            let key_description = key
                .as_ref()
                .map(describe_key)
                .unwrap_or_else(|| match &planned.key {
                    PlannedKey::FromCsr(csr) => csr.key.description.clone(),
                    PlannedKey::Generate(_) => String::new(),
                });
            records.push(CertRecord {
                record_version: RECORD_VERSION,
                revision: 0,
                serial: spec.serial.clone(),
                request_id: request_id.clone(),
                dns_owner: approved.holder().dns_owner(),
                holder: approved.holder().clone(),
                usage: planned.usage,
                requested_usage: approved.usage(),
                profile: approved.profile().name.clone(),
                level_of_assurance: approved.level_of_assurance().to_string(),
                category: approved.category().to_string(),
                subscriber: approved.subscriber().clone(),
                registrar: approved.registrar().to_string(),
                proofing: approved.proofing().clone(),
                key: key_description,
                key_origin: key_origin.into(),
                not_before: spec.not_before,
                not_after: spec.not_after,
                fingerprint: Fingerprint::of(&der),
                issued_at: now,
                der,
            });
            keys.push(key);
        }
        Ok((records, keys))
    }

    /// A serial not yet in the store (the insert transaction checks again).
    fn fresh_serial(&self) -> Result<Serial> {
        for _ in 0..4 {
            let serial = ca::random_serial()?;
            if self.store()?.cert(&serial)?.is_none() {
                return Ok(serial);
            }
        }
        Err(Error::Generation(
            "could not find an unused serial number".into(),
        ))
    }
}

fn has_generated_key(approved: &Approved) -> bool {
    approved
        .certs()
        .iter()
        .any(|c| matches!(c.key, PlannedKey::Generate(_)))
}

fn describe_key(key: &KeyPair) -> String {
    match x509_parser::prelude::FromDer::from_der(&key.subject_public_key_info()) {
        Ok((_, spki)) => x509::key_info(&spki).description,
        Err(_) => String::new(),
    }
}
