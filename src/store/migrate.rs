//! Store schema migrations. Schema 1 (up to the first wave) knew organisations only as free
//! text on certificates and in registrar scopes; schema 2 makes them records and binds every
//! holder to one. The migration binds each holder to the organisation written on its newest
//! certificate, flags holders whose certificates disagree (admins resolve them with
//! `anchorage holder transfer`; `anchorage org check` lists them), indexes every certified key,
//! and rewrites user and token scopes from names to organisation ids. Each step is idempotent
//! and the schema number is written last, so a crash half-way re-runs it. Schema 3 adds the
//! organisation index and certificate counters that make listings pages (`cert_index`); its
//! step, `build_cert_index`, rebuilds both from the certificates and bindings. Schema 4 adds
//! the zone indexes (`zone_index`: holder buckets and the validity time index), built from
//! the domain index by [`Store::build_zone_indexes`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::OffsetDateTime;

use super::{encode, Store, TokenRecord, RECORD_VERSION};
use crate::audit::AuditDraft;
use crate::error::Result;
use crate::model::accounts::{Scope, UserRecord};
use crate::model::organisations::{self, HolderBinding, OrganisationRecord};
use crate::model::Holder;

/// The schema this build writes.
pub const SCHEMA: u64 = 5;
const SCHEMA_KEY: &[u8] = b"schema";
/// The organisation that holders without any organisation name are bound to until resolved.
pub const UNASSIGNED: &str = "unassigned";
/// What the migration records for a certificate without an organisation.
const NO_NAME: &str = "(no organisation named)";

/// What a migration did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationReport {
    pub from: u64,
    pub to: u64,
    pub organisations: usize,
    pub holders: usize,
    pub unresolved: usize,
    pub keys: usize,
    pub scopes_rewritten: usize,
    /// Certificates entered in the organisation index (schema 3).
    pub indexed: u64,
    /// Certificates added to the zone indexes (schema 4).
    pub zone_indexed: usize,
    /// Unresolved holder bindings entered in their index (schema 5).
    pub unresolved_indexed: usize,
}

impl Store {
    pub fn schema(&self) -> Result<u64> {
        Ok(super::u64_of(self.meta.get(SCHEMA_KEY)?))
    }

    /// Brings the store to `SCHEMA`; returns what was done when anything was.
    /// `spki_sha256` reads a certificate's SubjectPublicKeyInfo hash (for the key index); the
    /// store parses no certificates itself.
    pub fn migrate(
        &self,
        now: OffsetDateTime,
        spki_sha256: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Option<MigrationReport>> {
        let from = self.schema()?;
        if from >= SCHEMA {
            return Ok(None);
        }
        let fresh = self.certs.is_empty() && self.users.is_empty() && self.tokens.is_empty();
        if fresh {
            self.meta.insert(SCHEMA_KEY, &SCHEMA.to_be_bytes())?;
            self.flush()?;
            return Ok(None);
        }
        let mut report = if from < 2 {
            self.migrate_to_2(from, now, &spki_sha256)?
        } else {
            MigrationReport {
                from,
                to: SCHEMA,
                ..MigrationReport::default()
            }
        };
        // Schema 3: the organisation index and certificate counters (`cert_index`).
        if from < 3 {
            report.indexed = self.build_cert_index()?;
        }
        // Schema 4: the zone indexes (`zone_index`).
        if from < 4 {
            report.zone_indexed = self.build_zone_indexes()?;
            self.flush()?;
        }
        // Schema 5: the unresolved holders as keys (`cert_index`).
        if from < 5 {
            report.unresolved_indexed = self.build_unresolved_index()?;
        }
        self.audit(
            now,
            AuditDraft::new(
                "system",
                "store.migrate",
                format!("schema {from} -> {SCHEMA}"),
                serde_json::to_value(&report).unwrap_or_default(),
            ),
        )?;
        self.meta.insert(SCHEMA_KEY, &SCHEMA.to_be_bytes())?;
        self.flush()?;
        Ok(Some(report))
    }

    fn migrate_to_2(
        &self,
        from: u64,
        now: OffsetDateTime,
        spki_sha256: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<MigrationReport> {
        let mut report = MigrationReport {
            from,
            to: SCHEMA,
            ..MigrationReport::default()
        };
        // Per holder: every organisation name seen, and the newest certificate's.
        struct Seen {
            names: BTreeSet<String>,
            /// (issued at, store revision): the revision orders certificates of one second.
            newest: ((OffsetDateTime, u64), String),
            holder: Holder,
        }
        let mut holders: BTreeMap<String, Seen> = BTreeMap::new();
        let mut keys: Vec<(Vec<u8>, String, OffsetDateTime)> = Vec::new();
        for record in self.certs() {
            let record = record?;
            let name = record
                .subscriber
                .organization
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .unwrap_or(NO_NAME)
                .to_string();
            let key = record.holder.to_string();
            if let Some(hash) = spki_sha256(&record.der) {
                keys.push((hash, key.clone(), record.issued_at));
            }
            let seen = holders.entry(key).or_insert_with(|| Seen {
                names: BTreeSet::new(),
                newest: ((record.issued_at, record.revision), name.clone()),
                holder: record.holder.clone(),
            });
            // Names compare without case: "Good Clinic" and "good clinic" are one.
            seen.names.insert(name.to_lowercase());
            if (record.issued_at, record.revision) >= seen.newest.0 {
                seen.newest = ((record.issued_at, record.revision), name);
            }
        }

        // One organisation per distinct name (first spelling seen wins), ids from the names.
        let mut orgs: BTreeMap<String, OrganisationRecord> = self
            .organisations()?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut by_name: BTreeMap<String, String> = orgs
            .values()
            .map(|o| (o.name.to_lowercase(), o.id.clone()))
            .collect();
        let mut org_for = |name: &str, orgs: &mut BTreeMap<String, OrganisationRecord>| {
            if let Some(id) = by_name.get(&name.to_lowercase()) {
                return id.clone();
            }
            let (base, display) = if name == NO_NAME {
                (UNASSIGNED.to_string(), "Unassigned (migrated)".to_string())
            } else {
                (organisations::slug(name), name.to_string())
            };
            let mut id = base.clone();
            let mut n = 2;
            while orgs.contains_key(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            orgs.insert(
                id.clone(),
                OrganisationRecord {
                    record_version: RECORD_VERSION,
                    id: id.clone(),
                    name: display,
                    contacts: Vec::new(),
                    domains: Vec::new(),
                    created_at: now,
                    disabled_at: None,
                },
            );
            by_name.insert(name.to_lowercase(), id.clone());
            id
        };

        let mut bindings = Vec::new();
        for (holder, seen) in &holders {
            let org = org_for(&seen.newest.1, &mut orgs);
            let unresolved = seen.names.len() > 1 || seen.newest.1 == NO_NAME;
            let mut names: Vec<String> = Vec::new();
            if unresolved {
                names = seen.names.iter().cloned().collect();
            }
            bindings.push((
                seen.holder.clone(),
                HolderBinding {
                    record_version: RECORD_VERSION,
                    holder: holder.clone(),
                    organisation: org,
                    bound_at: now,
                    bound_by: "migration".into(),
                    conflicting_names: names,
                },
            ));
        }

        // What each organisation may hold: a whole domain when it holds that domain and nobody
        // else holds anything in it; else the addresses it holds there.
        let mut domain_orgs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (holder, b) in &bindings {
            domain_orgs
                .entry(holder.domain().to_string())
                .or_default()
                .insert(b.organisation.clone());
        }
        for (holder, b) in &bindings {
            let domain = holder.domain().to_string();
            let alone = domain_orgs.get(&domain).is_some_and(|o| o.len() == 1);
            let claim = match holder {
                Holder::Domain(_) if alone && b.organisation != UNASSIGNED => domain,
                _ => format!("*@{domain}"),
            };
            if let Some(org) = orgs.get_mut(&b.organisation) {
                if !org.domains.contains(&claim) {
                    org.domains.push(claim);
                }
            }
        }
        for org in orgs.values_mut() {
            // A whole-domain entry covers the addresses too.
            let whole: Vec<String> = org
                .domains
                .iter()
                .filter(|d| !d.contains('@'))
                .cloned()
                .collect();
            org.domains.retain(|d| {
                d.strip_prefix("*@")
                    .is_none_or(|domain| !whole.iter().any(|w| w == domain))
            });
            org.domains.sort();
        }

        // Scopes named organisations by their text; they now name ids. A name that no
        // certificate carried becomes an organisation with no domains yet, so the
        // restriction it expressed survives.
        let mut users: Vec<UserRecord> = self.users()?;
        let mut tokens: Vec<TokenRecord> = self.tokens()?;
        let mut rewrite = |scope: &mut Scope, orgs: &mut BTreeMap<String, OrganisationRecord>| {
            if scope.organisations.is_empty() {
                return false;
            }
            let ids: Vec<String> = scope
                .organisations
                .iter()
                .map(|name| {
                    if orgs.contains_key(name.as_str()) {
                        name.clone()
                    } else {
                        org_for(name.trim(), orgs)
                    }
                })
                .collect();
            let changed = ids != scope.organisations;
            scope.organisations = ids;
            changed
        };
        for u in users.iter_mut() {
            if rewrite(&mut u.scope, &mut orgs) {
                self.users.insert(u.username.as_bytes(), encode(u)?)?;
                report.scopes_rewritten += 1;
            }
        }
        for t in tokens.iter_mut() {
            if rewrite(&mut t.scope, &mut orgs) {
                self.tokens.insert(t.hash.as_bytes(), encode(t)?)?;
                report.scopes_rewritten += 1;
            }
        }

        for org in orgs.values() {
            self.organisations.insert(org.id.as_bytes(), encode(org)?)?;
        }
        report.organisations = orgs.len();
        for (_, b) in &bindings {
            if self.holders.get(b.holder.as_bytes())?.is_none() {
                self.holders.insert(b.holder.as_bytes(), encode(b)?)?;
            }
            report.holders += 1;
            if !b.resolved() {
                report.unresolved += 1;
            }
        }
        keys.sort_by_key(|k| k.2);
        for (hash, holder, _) in keys {
            if self.key_holders.get(&hash)?.is_none() {
                self.key_holders.insert(hash, holder.as_bytes())?;
                report.keys += 1;
            }
        }
        self.flush()?;
        Ok(report)
    }

    /// For tests of the migration: the stored schema number, set by hand.
    #[doc(hidden)]
    pub fn danger_set_schema(&self, schema: u64) -> Result<()> {
        self.meta.insert(SCHEMA_KEY, &schema.to_be_bytes())?;
        self.flush()
    }
}
