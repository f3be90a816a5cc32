//! The certificates flow in the store: the CA hierarchy, issued certificates with their owner,
//! holder, key and idempotency indexes (written in one transaction with the audit entry),
//! revocations and CRLs. What `authority` issues and revokes lands here.

use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;
use sled::Transactional;
use time::OffsetDateTime;

use super::{
    abort, append_audit, cert_index, decode, discovery, encode, next_revision, tx_error, u64_of,
    zone_index, IdempotencyRecord, Store, TxResult, RECORD_VERSION,
};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::ca::{CaRecord, CaRole};
use crate::model::issuance::{Proofing, Subscriber};
use crate::model::organisations::HolderBinding;
use crate::model::{CertUsage, Fingerprint, Holder, RevocationReason, Serial, Usage};

/// An issued certificate and everything recorded about its request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertRecord {
    pub record_version: u32,
    pub revision: u64,
    pub serial: Serial,
    /// Shared by the two halves of a pair.
    pub request_id: String,
    /// The Direct address (`local@domain`) or health domain the certificate is bound to.
    #[schema(value_type = String)]
    pub holder: Holder,
    pub dns_owner: String,
    pub usage: CertUsage,
    pub requested_usage: Usage,
    pub profile: String,
    pub level_of_assurance: String,
    pub category: String,
    pub subscriber: Subscriber,
    pub registrar: String,
    pub proofing: Proofing,
    pub key: String,
    /// `csr` or `generated`.
    pub key_origin: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub fingerprint: Fingerprint,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The certificate, base64 of DER.
    #[serde(with = "crate::model::base64_bytes")]
    #[schema(value_type = String, format = Byte)]
    pub der: Vec<u8>,
}

/// A revocation. Permanent: there is no un-revoke.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revocation {
    pub record_version: u32,
    pub revision: u64,
    pub serial: Serial,
    pub ca: CaRole,
    pub reason: RevocationReason,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    pub revoked_by: String,
}

/// The latest CRL of one CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrlRecord {
    pub record_version: u32,
    pub ca: CaRole,
    pub number: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    /// Store revision the CRL reflects; a newer revocation makes it stale.
    pub revision: u64,
    #[serde(with = "crate::model::base64_bytes")]
    pub der: Vec<u8>,
}

/// What the issuance transaction checks and writes beside the certificates.
#[derive(Debug, Clone)]
pub struct IssueWrite {
    /// The holder's organisation: stored when the holder has none yet, compared otherwise.
    pub binding: HolderBinding,
    /// SHA-256 of each certified SubjectPublicKeyInfo.
    pub key_hashes: Vec<Vec<u8>>,
    /// The profile allows one key for several holders.
    pub allow_key_reuse: bool,
    /// The idempotency tree key and the record to keep.
    pub idempotency: Option<(Vec<u8>, IdempotencyRecord)>,
}

impl IssueWrite {
    /// A write that binds `holder` to `organisation` and indexes no key: for bulk loads
    /// (benchmarks, imports) whose keys are checked elsewhere.
    pub fn bulk(holder: &Holder, organisation: &str, at: OffsetDateTime) -> IssueWrite {
        IssueWrite {
            binding: HolderBinding {
                record_version: RECORD_VERSION,
                holder: holder.to_string(),
                organisation: organisation.to_string(),
                bound_at: at,
                bound_by: "bulk".into(),
                conflicting_names: Vec::new(),
            },
            key_hashes: Vec::new(),
            allow_key_reuse: true,
            idempotency: None,
        }
    }
}

/// What `insert_certs` did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored at this revision.
    Stored(u64),
    /// The idempotency key was used before: nothing stored; the first result.
    Replay(IdempotencyRecord),
}

/// One issuance to store: its certificates, its audit entry and what the transaction checks
/// and writes beside them.
#[derive(Debug, Clone)]
pub struct IssueJob {
    pub records: Vec<CertRecord>,
    pub at: OffsetDateTime,
    pub draft: AuditDraft,
    pub write: IssueWrite,
}

/// The trees the issuance transaction touches.
pub(super) struct IssueTrees<'a> {
    certs: &'a TransactionalTree,
    owners: &'a TransactionalTree,
    owner_certs: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    domain_certs: &'a TransactionalTree,
    holders: &'a TransactionalTree,
    key_holders: &'a TransactionalTree,
    idempotent: &'a TransactionalTree,
    org_certs: &'a TransactionalTree,
    zone_buckets: &'a TransactionalTree,
    time_index: &'a TransactionalTree,
    zone_changes: &'a TransactionalTree,
}

/// What the checks of one issuance decided, before anything of it is written.
enum Checked {
    /// Write it; `bind_holder` when the holder has no organisation binding yet.
    Write { bind_holder: bool },
    /// The idempotency key was used before: the first result, nothing written.
    Replay(IdempotencyRecord),
    /// Refused: nothing written, the other issuances of the batch go on.
    Refused(Error),
}

/// The checks of one issuance inside the batch transaction: reads only, so a refusal
/// leaves nothing behind.
fn check_issue(
    t: &IssueTrees<'_>,
    job: &IssueJob,
    idempotency: Option<&(&[u8], Vec<u8>)>,
) -> TxResult<Checked> {
    if let Some((key, _)) = idempotency {
        if let Some(first) = t.idempotent.get(key)? {
            return Ok(match decode::<IdempotencyRecord>(&first, "idempotency") {
                Ok(first) => Checked::Replay(first),
                Err(e) => Checked::Refused(e),
            });
        }
    }
    let write = &job.write;
    let holder = write.binding.holder.as_str();
    let bind_holder = match t.holders.get(holder.as_bytes())? {
        Some(found) => match decode::<HolderBinding>(&found, "holder binding") {
            Ok(b) if b.organisation != write.binding.organisation => {
                return Ok(Checked::Refused(Error::HolderOwnedElsewhere(format!(
                    "{holder} belongs to another organisation"
                ))))
            }
            Ok(_) => false,
            Err(e) => return Ok(Checked::Refused(e)),
        },
        None => true,
    };
    for key in &write.key_hashes {
        if let Some(other) = t.key_holders.get(key.as_slice())? {
            if other.as_ref() != holder.as_bytes() && !write.allow_key_reuse {
                return Ok(Checked::Refused(Error::Denied(
                    crate::model::denial::Denial::single(
                        "key_reused",
                        "csr",
                        format!(
                            "this public key is already certified for '{}'; each holder needs \
                             its own key",
                            String::from_utf8_lossy(&other)
                        ),
                    ),
                )));
            }
        }
    }
    for record in &job.records {
        if t.certs.get(record.serial.to_bytes())?.is_some() {
            return Ok(Checked::Refused(Error::Conflict(format!(
                "serial {} is already in use",
                record.serial
            ))));
        }
        if let Some(existing) = t.owners.get(record.dns_owner.as_bytes())? {
            if existing.as_ref() != record.holder.to_string().as_bytes() {
                return Ok(Checked::Refused(Error::Conflict(format!(
                    "DNS owner name '{}.' already belongs to '{}'",
                    record.dns_owner,
                    String::from_utf8_lossy(&existing)
                ))));
            }
        }
    }
    Ok(Checked::Write { bind_holder })
}

/// Meta key of the newest revocation revision of one CA.
fn revoked_revision_key(ca: CaRole) -> String {
    format!("revoked_revision/{}", ca.as_str())
}

/// Key of the owner-to-certificate index: `dns_owner NUL serial`.
fn owner_cert_key(dns_owner: &str, serial: &Serial) -> Vec<u8> {
    let mut key = owner_prefix(dns_owner);
    key.extend_from_slice(serial.as_str().as_bytes());
    key
}

fn owner_prefix(dns_owner: &str) -> Vec<u8> {
    let mut key = dns_owner.as_bytes().to_vec();
    key.push(0);
    key
}

impl Store {
    // ---- CA ----------------------------------------------------------------------------

    pub fn ca_record(&self, role: CaRole) -> Result<Option<CaRecord>> {
        self.ca
            .get(role.as_str())?
            .map(|b| decode(&b, "CA"))
            .transpose()
    }

    /// Stores a new hierarchy; refuses when one exists already.
    pub fn put_hierarchy(
        &self,
        root: &CaRecord,
        issuing: &CaRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let (root_bytes, issuing_bytes) = (encode(root)?, encode(issuing)?);
        (&self.ca, &self.meta, &self.audit)
            .transaction(|(ca, meta, audit)| {
                if ca.get("root")?.is_some() || ca.get("issuing")?.is_some() {
                    return abort(Error::Conflict(
                        "this data directory already holds a CA hierarchy".into(),
                    ));
                }
                ca.insert("root", root_bytes.clone())?;
                ca.insert("issuing", issuing_bytes.clone())?;
                next_revision(meta)?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    // ---- certificates ------------------------------------------------------------------

    /// The holder published under a DNS owner name, if any certificate was issued for it.
    pub fn owner_holder(&self, dns_owner: &str) -> Result<Option<String>> {
        Ok(self
            .owners
            .get(dns_owner.as_bytes())?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Serials of every certificate issued under a DNS owner name, in serial order.
    pub fn serials_of_owner(&self, dns_owner: &str) -> Result<Vec<Serial>> {
        let prefix = owner_prefix(dns_owner);
        self.owner_certs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                let serial =
                    String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned();
                Serial::parse(&serial).map_err(|e| Error::Store(e.to_string()))
            })
            .collect()
    }

    /// Stores newly issued certificates (one, or both halves of a pair) with their index and
    /// audit entries atomically, re-checking serial uniqueness, owner collisions, the holder's
    /// organisation, key reuse and the idempotency key. A replay of a stored idempotency key
    /// writes nothing and returns the first result. Not flushed: the service path uses
    /// [`Store::issue_durably`], which groups concurrent issuances into one flush.
    pub fn insert_certs(
        &self,
        records: &mut [CertRecord],
        at: OffsetDateTime,
        draft: AuditDraft,
        issue: &IssueWrite,
    ) -> Result<Inserted> {
        let job = IssueJob {
            records: records.to_vec(),
            at,
            draft,
            write: issue.clone(),
        };
        let outcome = self
            .insert_batch(std::slice::from_ref(&job))?
            .pop()
            .unwrap_or_else(|| {
                Err(Error::Store(
                    "the issuance transaction returned nothing".into(),
                ))
            })?;
        if let Inserted::Stored(revision) = outcome {
            for record in records.iter_mut() {
                record.revision = revision;
            }
        }
        Ok(outcome)
    }

    /// Stores several issuances in one transaction, each checked as if it came alone and in
    /// order (a later one sees what the earlier ones wrote: a second request for the same
    /// holder, key or idempotency key is judged against the first). A refused issuance
    /// writes nothing and does not disturb the others; the outer error is for the
    /// transaction itself (storage, or an audit log that cannot be appended to).
    pub(super) fn insert_batch(&self, jobs: &[IssueJob]) -> Result<Vec<Result<Inserted>>> {
        let encoded = jobs
            .iter()
            .map(|job| {
                let binding = encode(&job.write.binding)?;
                let idempotency = match &job.write.idempotency {
                    Some((key, record)) => Some((key.as_slice(), encode(record)?)),
                    None => None,
                };
                Ok((binding, idempotency))
            })
            .collect::<Result<Vec<_>>>()?;
        (
            &self.certs,
            &self.owners,
            &self.owner_certs,
            &self.meta,
            &self.audit,
            &self.domain_certs,
            &self.holders,
            &self.key_holders,
            &self.idempotency,
            &self.org_certs,
            &self.zone_buckets,
            &self.time_index,
            &self.zone_changes,
        )
            .transaction(
                |(
                    certs,
                    owners,
                    owner_certs,
                    meta,
                    audit,
                    domain_certs,
                    holders,
                    key_holders,
                    idempotent,
                    org_certs,
                    zone_buckets,
                    time_index,
                    zone_changes,
                )| {
                    let trees = IssueTrees {
                        certs,
                        owners,
                        owner_certs,
                        meta,
                        audit,
                        domain_certs,
                        holders,
                        key_holders,
                        idempotent,
                        org_certs,
                        zone_buckets,
                        time_index,
                        zone_changes,
                    };
                    let mut outcomes = Vec::with_capacity(jobs.len());
                    for (job, (binding, idempotency)) in jobs.iter().zip(&encoded) {
                        let checked = check_issue(&trees, job, idempotency.as_ref())?;
                        outcomes.push(match checked {
                            Checked::Write { bind_holder } => {
                                let bytes = bind_holder.then_some(binding.as_slice());
                                self.write_issue(&trees, job, bytes, idempotency.as_ref())?
                            }
                            Checked::Replay(first) => Ok(Inserted::Replay(first)),
                            Checked::Refused(e) => Err(e),
                        });
                    }
                    Ok(outcomes)
                },
            )
            .map_err(tx_error)
    }

    /// Writes one checked issuance inside the batch transaction.
    fn write_issue(
        &self,
        t: &IssueTrees<'_>,
        job: &IssueJob,
        binding: Option<&[u8]>,
        idempotency: Option<&(&[u8], Vec<u8>)>,
    ) -> TxResult<Result<Inserted>> {
        let holder = job.write.binding.holder.as_bytes();
        if let Some(binding) = binding {
            t.holders.insert(holder, binding)?;
        }
        for key in &job.write.key_hashes {
            if t.key_holders.get(key.as_slice())?.is_none() {
                t.key_holders.insert(key.as_slice(), holder)?;
            }
        }
        let revision = next_revision(t.meta)?;
        for record in &job.records {
            let mut stored = record.clone();
            stored.revision = revision;
            let bytes = match encode(&stored) {
                Ok(b) => b,
                Err(e) => return abort(e),
            };
            t.certs.insert(record.serial.to_bytes(), bytes)?;
            t.owners.insert(
                record.dns_owner.as_bytes(),
                record.holder.to_string().as_bytes(),
            )?;
            t.owner_certs
                .insert(owner_cert_key(&record.dns_owner, &record.serial), &[])?;
            t.domain_certs.insert(
                discovery::domain_cert_key(&stored),
                discovery::domain_cert_value(&stored),
            )?;
            cert_index::index_new_cert(
                t.org_certs,
                t.meta,
                &job.write.binding.organisation,
                record.holder.domain().as_str(),
                &record.serial,
            )?;
            let index = zone_index::index_entries(&stored);
            t.zone_buckets.insert(index.bucket.0, &index.bucket.1[..])?;
            for (key, value) in index.times {
                t.time_index.insert(key, value)?;
            }
            t.zone_changes.insert(
                zone_index::change_key(stored.holder.domain().as_str(), revision, &stored.serial),
                stored.holder.to_string().as_bytes(),
            )?;
        }
        if let Some((key, bytes)) = idempotency {
            t.idempotent.insert(*key, bytes.as_slice())?;
        }
        append_audit(&self.keying, t.meta, t.audit, job.at, job.draft.clone())?;
        Ok(Ok(Inserted::Stored(revision)))
    }

    pub fn cert(&self, serial: &Serial) -> Result<Option<CertRecord>> {
        self.certs
            .get(serial.to_bytes())?
            .map(|b| decode(&b, "certificate"))
            .transpose()
    }

    /// Every certificate, in serial order.
    pub fn certs(&self) -> impl Iterator<Item = Result<CertRecord>> + '_ {
        self.certs.iter().values().map(|v| {
            v.map_err(Error::from)
                .and_then(|b| decode(&b, "certificate"))
        })
    }

    pub fn cert_count(&self) -> usize {
        self.certs.len()
    }

    // ---- revocation --------------------------------------------------------------------

    /// Records a revocation; refuses unknown or already revoked serials. An entry for the
    /// root's CRL is the issuing CA's own certificate, which is not in the certificate tree
    /// (the caller has checked the serial), so only issued certificates are looked up.
    /// `visible` decides, inside the transaction, whether the certificate is the caller's to
    /// revoke (its record and its holder's binding); one that is not is "not found".
    pub fn revoke(
        &self,
        revocation: &Revocation,
        draft: AuditDraft,
        visible: &dyn Fn(&CertRecord, Option<&HolderBinding>) -> bool,
    ) -> Result<Revocation> {
        let key = revocation.serial.to_bytes();
        let ca_cert = revocation.ca == CaRole::Root;
        let not_found =
            || Error::NotFound(format!("no certificate with serial {}", revocation.serial));
        let stored = (
            &self.certs,
            &self.revocations,
            &self.meta,
            &self.audit,
            &self.holders,
            &self.zone_changes,
        )
            .transaction(|(certs, revocations, meta, audit, holders, zone_changes)| {
                let mut changed = None;
                if !ca_cert {
                    let Some(bytes) = certs.get(&key)? else {
                        return abort(not_found());
                    };
                    let record: CertRecord = match decode(&bytes, "certificate") {
                        Ok(r) => r,
                        Err(e) => return abort(e),
                    };
                    let binding = match holders.get(record.holder.to_string().as_bytes())? {
                        Some(b) => match decode::<HolderBinding>(&b, "holder binding") {
                            Ok(b) => Some(b),
                            Err(e) => return abort(e),
                        },
                        None => None,
                    };
                    if !visible(&record, binding.as_ref()) {
                        return abort(not_found());
                    }
                    changed = Some(record);
                }
                if revocations.get(&key)?.is_some() {
                    return abort(Error::Conflict(format!(
                        "{} {} is already revoked",
                        if ca_cert {
                            "CA certificate"
                        } else {
                            "certificate"
                        },
                        revocation.serial
                    )));
                }
                let mut stored = revocation.clone();
                stored.revision = next_revision(meta)?;
                let bytes = match encode(&stored) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                revocations.insert(key.clone(), bytes)?;
                // Revisions only grow, so this revocation is the CA's newest.
                meta.insert(
                    revoked_revision_key(revocation.ca).as_bytes(),
                    &stored.revision.to_be_bytes(),
                )?;
                if let Some(record) = &changed {
                    zone_changes.insert(
                        zone_index::change_key(
                            record.holder.domain().as_str(),
                            stored.revision,
                            &record.serial,
                        ),
                        record.holder.to_string().as_bytes(),
                    )?;
                }
                append_audit(
                    &self.keying,
                    meta,
                    audit,
                    revocation.revoked_at,
                    draft.clone(),
                )?;
                Ok(stored)
            })
            .map_err(tx_error)?;
        Ok(stored)
    }

    pub fn revocation(&self, serial: &Serial) -> Result<Option<Revocation>> {
        self.revocations
            .get(serial.to_bytes())?
            .map(|b| decode(&b, "revocation"))
            .transpose()
    }

    /// Revocations of one CA, in serial order.
    pub fn revocations(&self, ca: CaRole) -> Result<Vec<Revocation>> {
        let mut out = Vec::new();
        for item in self.revocations.iter().values() {
            let r: Revocation = decode(&item?, "revocation")?;
            if r.ca == ca {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Newest revision of any revocation of `ca` (0 when none). Kept in the meta tree by
    /// `revoke`, so deciding whether a CRL is stale reads one key, not every revocation; a
    /// store written before that key existed is scanned once and the key filled in.
    pub fn latest_revocation_revision(&self, ca: CaRole) -> Result<u64> {
        let key = revoked_revision_key(ca);
        if let Some(bytes) = self.meta.get(key.as_bytes())? {
            return Ok(u64_of(Some(bytes)));
        }
        let newest = self
            .revocations(ca)?
            .iter()
            .map(|r| r.revision)
            .max()
            .unwrap_or(0);
        // Never lower what a revocation stored meanwhile.
        let kept = self.meta.update_and_fetch(key.as_bytes(), |old| {
            let kept = u64_of(old.map(sled::IVec::from)).max(newest);
            Some(kept.to_be_bytes().to_vec())
        })?;
        Ok(u64_of(kept))
    }

    // ---- CRLs --------------------------------------------------------------------------

    /// Reserves the next CRL number durably, so a number is never reused even after a crash.
    pub fn reserve_crl_number(&self, ca: CaRole) -> Result<u64> {
        let key = format!("crl_number/{}", ca.as_str());
        let next = self.meta.update_and_fetch(key.as_bytes(), |old| {
            let n = u64_of(old.map(sled::IVec::from)) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        self.flush()?;
        Ok(u64_of(next))
    }

    pub fn crl(&self, ca: CaRole) -> Result<Option<CrlRecord>> {
        self.crls
            .get(ca.as_str())?
            .map(|b| decode(&b, "CRL"))
            .transpose()
    }

    /// Saves a CRL unless a newer-numbered one is already stored.
    pub fn put_crl(&self, crl: &CrlRecord) -> Result<()> {
        let bytes = encode(crl)?;
        let number = crl.number;
        (&self.crls,)
            .transaction(|(crls,)| {
                if let Some(old) = crls.get(crl.ca.as_str())? {
                    match decode::<CrlRecord>(&old, "CRL") {
                        Ok(old) if old.number >= number => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return abort(e),
                    }
                }
                crls.insert(crl.ca.as_str(), bytes.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }
}
