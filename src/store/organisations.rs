//! Organisation records, holder bindings (which organisation an address or domain belongs to),
//! the public-key index (which holder a key was certified for) and idempotency records. The
//! bindings, key index entries and idempotency records are written inside the certificate
//! insert transaction (`Store::insert_certs`), so a race between two registrars cannot bind one
//! holder twice or issue one request twice.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::{append_audit, decode, encode, next_revision, tx_error, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::organisations::{HolderBinding, OrganisationRecord};
use crate::model::Serial;

/// The first result of a request sent with an idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub record_version: u32,
    /// SHA-256 of the request (without secrets), to tell a replay from a different request.
    pub fingerprint: String,
    pub serials: Vec<Serial>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Key of the idempotency tree: who sent it, NUL, the key.
pub fn idempotency_key(who: &str, key: &str) -> Vec<u8> {
    let mut k = who.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    // ---- organisations -----------------------------------------------------------------

    /// Creates an organisation; refuses an existing id.
    pub fn insert_organisation(
        &self,
        org: &OrganisationRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(org)?;
        let created = (&self.organisations, &self.meta, &self.audit)
            .transaction(|(orgs, meta, audit)| {
                if orgs.get(org.id.as_bytes())?.is_some() {
                    return Ok(false);
                }
                orgs.insert(org.id.as_bytes(), bytes.clone())?;
                next_revision(meta)?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if !created {
            return Err(Error::Conflict(format!(
                "an organisation with id '{}' already exists",
                org.id
            )));
        }
        self.flush()
    }

    /// Replaces an existing organisation (name, contacts, domains, disabling).
    pub fn update_organisation(
        &self,
        org: &OrganisationRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(org)?;
        (&self.organisations, &self.meta, &self.audit)
            .transaction(|(orgs, meta, audit)| {
                if orgs.get(org.id.as_bytes())?.is_none() {
                    return super::abort(Error::NotFound(format!(
                        "no organisation with id '{}'",
                        org.id
                    )));
                }
                orgs.insert(org.id.as_bytes(), bytes.clone())?;
                next_revision(meta)?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    pub fn organisation(&self, id: &str) -> Result<Option<OrganisationRecord>> {
        self.organisations
            .get(id.as_bytes())?
            .map(|b| decode(&b, "organisation"))
            .transpose()
    }

    /// Every organisation, by id.
    pub fn organisations(&self) -> Result<Vec<OrganisationRecord>> {
        self.organisations
            .iter()
            .values()
            .map(|v| decode(&v?, "organisation"))
            .collect()
    }

    // ---- holder bindings ---------------------------------------------------------------

    pub fn holder_binding(&self, holder: &str) -> Result<Option<HolderBinding>> {
        self.holders
            .get(holder.as_bytes())?
            .map(|b| decode(&b, "holder binding"))
            .transpose()
    }

    /// Every binding, by holder.
    pub fn holder_bindings(&self) -> impl Iterator<Item = Result<HolderBinding>> + '_ {
        self.holders.iter().values().map(|v| {
            v.map_err(Error::from)
                .and_then(|b| decode(&b, "holder binding"))
        })
    }

    /// Sets a holder's organisation (a transfer or a resolution), with its audit entry, and
    /// moves the holder's certificates in the organisation index in the same transaction.
    /// A certificate issued for the holder while its serials were being read is caught by
    /// reading them again (the move is idempotent) until nothing new appears.
    pub fn put_holder_binding(
        &self,
        binding: &HolderBinding,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(binding)?;
        let domain = crate::model::Holder::parse(&binding.holder)
            .map(|h| h.domain().to_string())
            .map_err(|e| Error::Store(e.to_string()))?;
        let mut serials = self.serials_of_holder(&domain, &binding.holder)?;
        let mut first = true;
        // The organisation the holder leaves, read inside the first transaction.
        let mut previous: Option<String> = None;
        loop {
            let moved = serials.clone();
            let old = (&self.holders, &self.meta, &self.audit, &self.org_certs)
                .transaction(|(holders, meta, audit, org_certs)| {
                    let old = if first {
                        match holders.get(binding.holder.as_bytes())? {
                            Some(b) => match decode::<HolderBinding>(&b, "holder binding") {
                                Ok(b) => Some(b.organisation),
                                Err(e) => return super::abort(e),
                            },
                            None => None,
                        }
                    } else {
                        previous.clone()
                    };
                    for serial in &moved {
                        super::cert_index::move_cert(
                            org_certs,
                            meta,
                            old.as_deref(),
                            &binding.organisation,
                            serial,
                        )?;
                    }
                    if first {
                        holders.insert(binding.holder.as_bytes(), bytes.clone())?;
                        next_revision(meta)?;
                        append_audit(&self.keying, meta, audit, at, draft.clone())?;
                    }
                    Ok(old)
                })
                .map_err(tx_error)?;
            if first {
                previous = old;
            }
            first = false;
            let again = self.serials_of_holder(&domain, &binding.holder)?;
            if again.len() == serials.len() {
                break;
            }
            serials = again;
        }
        if binding.resolved() {
            self.forget_unresolved(&binding.holder)?;
        }
        self.flush()
    }

    // ---- keys and idempotency ----------------------------------------------------------

    /// The holder a public key (SHA-256 of its SubjectPublicKeyInfo) was first certified for.
    pub fn key_holder(&self, spki_sha256: &[u8]) -> Result<Option<String>> {
        Ok(self
            .key_holders
            .get(spki_sha256)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn idempotency_record(&self, who: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.idempotency
            .get(idempotency_key(who, key))?
            .map(|b| decode(&b, "idempotency"))
            .transpose()
    }

    /// Forgets idempotency records created before `before`.
    pub fn purge_idempotency(&self, before: OffsetDateTime) -> Result<usize> {
        let mut removed = 0;
        for item in self.idempotency.iter() {
            let (key, value) = item?;
            let record: IdempotencyRecord = decode(&value, "idempotency")?;
            if record.created_at < before {
                self.idempotency.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
