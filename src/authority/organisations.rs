//! Organisation use cases: create, edit, disable and list organisations; show and transfer
//! holder bindings; list the holders the schema migration could not settle. Every change is
//! audited. Who may do this is decided by the caller's role (admins), checked here too.

use serde::Serialize;
use serde_json::json;

use super::Authority;
use crate::accounts::{Limit, Principal, Role};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::Holder;
use crate::organisations::{self, HolderBinding, OrganisationRecord};
use crate::store::RECORD_VERSION;

/// A new organisation, or the fields of an edit (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct OrganisationChange {
    pub name: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
}

/// A holder whose certificates named different organisations (or none).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnresolvedHolder {
    pub holder: String,
    /// The organisation it is tentatively bound to (its newest certificate's).
    pub organisation: String,
    /// The names its certificates carry.
    pub names: Vec<String>,
}

fn admin_only(principal: &Principal) -> Result<()> {
    if principal.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only administrators manage organisations and holders".into(),
        ))
    }
}

impl Authority {
    pub fn organisations(&self) -> Result<Vec<OrganisationRecord>> {
        self.store()?.organisations()
    }

    /// The organisations a principal may see: admins all, others those in their scope.
    pub fn organisations_for(&self, principal: &Principal) -> Result<Vec<OrganisationRecord>> {
        let all = self.store()?.organisations()?;
        let in_scope = |o: &OrganisationRecord| match &principal.scope.organisations {
            Limit::Only(ids) => ids.contains(&o.id),
            // A registrar for any organisation of some domains sees those working there.
            Limit::Any => {
                principal.scope.domains.is_any()
                    || o.claims()
                        .iter()
                        .any(|c| principal.scope.domains.allows(c.domain().as_str()))
            }
        };
        Ok(match principal.role {
            Role::Admin => all,
            Role::Registrar | Role::Member => all.into_iter().filter(in_scope).collect(),
            Role::DnsOperator => Vec::new(),
        })
    }

    /// Adds the organisation `id`, or edits it when it exists (the admin form does both).
    pub fn save_organisation(
        &self,
        principal: &Principal,
        id: &str,
        change: OrganisationChange,
    ) -> Result<OrganisationRecord> {
        admin_only(principal)?;
        match self.store()?.organisation(id.trim())? {
            Some(_) => self.edit_organisation(principal, id, change),
            None => self.add_organisation(principal, id, change),
        }
    }

    pub fn organisation(&self, id: &str) -> Result<OrganisationRecord> {
        self.store()?
            .organisation(id.trim())?
            .ok_or_else(|| Error::NotFound(format!("no organisation with id '{}'", id.trim())))
    }

    /// One organisation, if the principal may see it ("not found" otherwise).
    pub fn organisation_for(&self, principal: &Principal, id: &str) -> Result<OrganisationRecord> {
        self.organisations_for(principal)?
            .into_iter()
            .find(|o| o.id == id.trim())
            .ok_or_else(|| Error::NotFound(format!("no organisation with id '{}'", id.trim())))
    }

    fn managed(&self) -> Vec<crate::model::HealthDomain> {
        self.config.managed_domains.clone()
    }

    pub fn add_organisation(
        &self,
        principal: &Principal,
        id: &str,
        change: OrganisationChange,
    ) -> Result<OrganisationRecord> {
        admin_only(principal)?;
        let id = id.trim().to_string();
        organisations::check_id(&id)?;
        let others = self.store()?.organisations()?;
        let org = OrganisationRecord {
            record_version: RECORD_VERSION,
            name: organisations::check_name(change.name.as_deref().unwrap_or(&id))?,
            contacts: organisations::check_contacts(&change.contacts.unwrap_or_default())?,
            domains: organisations::check_domains(
                &id,
                &change.domains.unwrap_or_default(),
                &self.managed(),
                &others,
            )?,
            id,
            created_at: self.now(),
            disabled_at: None,
        };
        self.store()?.insert_organisation(
            &org,
            org.created_at,
            AuditDraft::new(
                &principal.actor,
                "org.create",
                &org.id,
                json!({"name": org.name, "contacts": org.contacts, "domains": org.domains}),
            ),
        )?;
        Ok(org)
    }

    pub fn edit_organisation(
        &self,
        principal: &Principal,
        id: &str,
        change: OrganisationChange,
    ) -> Result<OrganisationRecord> {
        admin_only(principal)?;
        let before = self.organisation(id)?;
        let mut org = before.clone();
        if let Some(name) = &change.name {
            org.name = organisations::check_name(name)?;
        }
        if let Some(contacts) = &change.contacts {
            org.contacts = organisations::check_contacts(contacts)?;
        }
        if let Some(domains) = &change.domains {
            org.domains = organisations::check_domains(
                &org.id,
                domains,
                &self.managed(),
                &self.store()?.organisations()?,
            )?;
        }
        if org == before {
            return Ok(org);
        }
        self.store()?.update_organisation(
            &org,
            self.now(),
            AuditDraft::new(
                &principal.actor,
                "org.edit",
                &org.id,
                json!({
                    "before": {"name": before.name, "contacts": before.contacts, "domains": before.domains},
                    "after": {"name": org.name, "contacts": org.contacts, "domains": org.domains},
                }),
            ),
        )?;
        Ok(org)
    }

    /// Disables (or re-enables) an organisation: nothing more is issued for its holders; its
    /// certificates stay valid until revoked.
    pub fn set_organisation_disabled(
        &self,
        principal: &Principal,
        id: &str,
        disabled: bool,
    ) -> Result<OrganisationRecord> {
        admin_only(principal)?;
        let mut org = self.organisation(id)?;
        if org.disabled_at.is_some() == disabled {
            return Ok(org);
        }
        let now = self.now();
        org.disabled_at = disabled.then_some(now);
        self.store()?.update_organisation(
            &org,
            now,
            AuditDraft::new(
                &principal.actor,
                if disabled {
                    "org.disable"
                } else {
                    "org.enable"
                },
                &org.id,
                json!({}),
            ),
        )?;
        Ok(org)
    }

    /// The binding of one holder, for admins.
    pub fn holder_binding(&self, principal: &Principal, holder: &str) -> Result<HolderBinding> {
        admin_only(principal)?;
        let holder = Holder::parse(holder).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.store()?
            .holder_binding(&holder.to_string())?
            .ok_or_else(|| Error::NotFound(format!("'{holder}' holds no certificate")))
    }

    /// Every binding, optionally only the unsettled ones or one organisation's.
    pub fn holder_bindings(
        &self,
        principal: &Principal,
        unresolved_only: bool,
        organisation: Option<&str>,
    ) -> Result<Vec<HolderBinding>> {
        admin_only(principal)?;
        let mut out = Vec::new();
        for b in self.store()?.holder_bindings() {
            let b = b?;
            if unresolved_only && b.resolved() {
                continue;
            }
            if organisation.is_some_and(|o| o != b.organisation) {
                continue;
            }
            out.push(b);
        }
        Ok(out)
    }

    /// Holders whose organisation the migration could not settle (`anchorage org check`).
    pub fn unresolved_holders(&self, principal: &Principal) -> Result<Vec<UnresolvedHolder>> {
        Ok(self
            .holder_bindings(principal, true, None)?
            .into_iter()
            .map(|b| UnresolvedHolder {
                holder: b.holder,
                organisation: b.organisation,
                names: b.conflicting_names,
            })
            .collect())
    }

    /// Moves a holder (and so all its certificates) to another organisation, or settles an
    /// unresolved one. Admins only; audited with the organisation before and after.
    pub fn transfer_holder(
        &self,
        principal: &Principal,
        holder: &str,
        to: &str,
    ) -> Result<HolderBinding> {
        admin_only(principal)?;
        let mut binding = self.holder_binding(principal, holder)?;
        let org = self.organisation(to)?;
        let parsed = Holder::parse(&binding.holder).map_err(|e| Error::Store(e.to_string()))?;
        if !org.covers(&parsed) {
            return Err(Error::HolderOutsideOrganisation(format!(
                "'{}' may hold identifiers only in {}; add the domain to it first \
                 (anchorage org edit {} --domain ...)",
                org.id,
                if org.domains.is_empty() {
                    "no domain yet".to_string()
                } else {
                    org.domains.join(", ")
                },
                org.id
            )));
        }
        if let Some(whole) = self
            .store()?
            .organisations()?
            .into_iter()
            .find(|o| o.id != org.id && o.owns_domain(parsed.domain()))
        {
            return Err(Error::HolderOwnedElsewhere(format!(
                "the domain {} belongs wholly to organisation '{}'",
                parsed.domain(),
                whole.id
            )));
        }
        let before = binding.clone();
        binding.organisation = org.id.clone();
        binding.conflicting_names.clear();
        binding.bound_at = self.now();
        binding.bound_by = principal.actor.clone();
        self.store()?.put_holder_binding(
            &binding,
            binding.bound_at,
            AuditDraft::new(
                &principal.actor,
                "holder.transfer",
                &binding.holder,
                json!({"from": before.organisation, "to": org.id,
                       "resolved_names": before.conflicting_names}),
            ),
        )?;
        Ok(binding)
    }
}
