//! The use cases, and the only place that orders their steps: request -> policy -> CA ->
//! store -> publication. The CLI and the HTTP layer call these functions and nothing deeper.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rcgen::{KeyPair, PublicKeyData};
use serde::Serialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::audit::AuditDraft;
use crate::ca::{
    self, CaRecord, CaRole, EndEntitySpec, HierarchyOptions, ImportedCa, RevokedEntry, UnlockedCa,
};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::keyseal::{self, Passphrase, PassphraseSource};
use crate::model::{CertUsage, Fingerprint, RevocationReason, Serial};
use crate::pkcs12;
use crate::policy::issuance::{self, Approved, IssueRequest, PlannedKey};
use crate::policy::profile::Profiles;
use crate::store::{CertRecord, CrlRecord, Store, StoreHandle, RECORD_VERSION};
use crate::x509;

mod accounts;
mod audit;
mod backup;
mod bundles;
mod certs;
mod external;
mod health;
mod lifecycle;
mod organisations;
mod publish;
pub mod views;

/// The records use cases answer with (front ends name them from here, never from `store`).
pub use crate::store::{
    AnchorEvent, AnchorRecord, AnchorState, BundleVersion, Healing, Revocation, Snapshot,
    TokenRecord,
};
pub use accounts::{audit_page, token_principal, NewUser, SignedIn};
pub use audit::{checkpoint_destinations, send_checkpoint, write_checkpoint};
pub use backup::{restore, RestoreReport};
pub use bundles::{Built, BundleSummary, Decision, Submission};
pub use certs::{OrganisationRef, Ownership, IDEMPOTENCY_WINDOW};
pub use external::{RefreshReport, SourceView, Staleness};
pub use health::HealthProblem;
pub use lifecycle::{BroughtUp, Created};
pub use organisations::{OrganisationChange, UnresolvedHolder};
pub use publish::{next_serial, LdifOutcome, ZoneOutcome, ZoneQueue};

/// The organisation `init` creates, owning every managed domain until the operator divides
/// them among the organisations it serves.
pub const DEFAULT_ORGANISATION: &str = "default";

/// API roles (see `accounts::Role`).
pub const ROLES: [&str; 4] = ["admin", "registrar", "member", "dns_operator"];

/// The unlocked CAs. The root may be offline (imported without its key).
pub struct Signers {
    pub root: Option<UnlockedCa>,
    pub issuing: UnlockedCa,
    pub root_cert_der: Vec<u8>,
}

/// The service core shared by the CLI and the HTTP server.
pub struct Authority {
    config: Config,
    /// The store; use cases take it with [`Authority::store`] for their duration.
    store: StoreHandle,
    profiles: Profiles,
    inventory: Inventory,
    clock: Arc<dyn Clock>,
    signers: RwLock<Option<Arc<Signers>>>,
    bundle_signer: RwLock<Option<Arc<bundles::BundleSigner>>>,
    /// One zone publication at a time (serials, temp files).
    publish_lock: std::sync::Mutex<()>,
    /// One LDIF export at a time (the directory view and its log).
    ldif_lock: std::sync::Mutex<()>,
    /// Zones to rewrite after issuance and revocation when `serve` batches them.
    zone_queue: publish::ZoneQueue,
    /// The issuing CA certificate's serial, read once (checked before every issuance).
    issuing_serial: std::sync::OnceLock<Serial>,
    /// Recent issuances per principal, for the rate limits.
    rate: certs::RateLimiter,
}

/// How `init` creates or imports the hierarchy.
#[derive(Default)]
pub struct InitOptions {
    pub import_root: Option<ImportedCa>,
    pub import_issuing: Option<ImportedCa>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub root_subject: String,
    pub root_fingerprint: Fingerprint,
    pub root_key: String,
    pub issuing_subject: String,
    pub issuing_fingerprint: Fingerprint,
    pub issuing_key: String,
    pub managed_domains: Vec<String>,
    pub public_url: String,
    pub origin: String,
}

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
enum Issued {
    Fresh(IssueOutcome),
    Replay(crate::store::IdempotencyRecord),
}

/// Status of a certificate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    Valid,
    Revoked,
    Expired,
    NotYetValid,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertView {
    #[serde(flatten)]
    pub record: CertRecord,
    pub binding: crate::model::Binding,
    /// The organisation the holder belongs to (absent only for records without one).
    pub organisation: Option<OrganisationRef>,
    pub status: CertStatus,
    pub revocation: Option<Revocation>,
}

/// Filters for listings.
#[derive(Debug, Clone, Default)]
pub struct CertFilter {
    /// Text contained in the holder, the subscriber name or organisation, or the serial.
    pub search: Option<String>,
    pub holder: Option<String>,
    pub domain: Option<String>,
    pub status: Option<CertStatus>,
    pub expiring_within_days: Option<u32>,
    /// Only holders bound to this organisation id.
    pub organisation: Option<String>,
}

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
    /// Opens the store and loads the profiles; does not touch CA keys.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Authority> {
        // Not private: published outputs under it are read by a DNS or web server's user.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
            .create(&config.data_dir)
            .map_err(|e| Error::io(&config.data_dir, e))?;
        let profiles = Profiles::load(config.policies_dir.as_deref())?;
        let inventory = Inventory::load(&config.bundles_dir)?;
        let store = StoreHandle::open(&config.data_dir)?;
        let upgrading = store.get()?.schema()? < crate::store::SCHEMA;
        let authority = Authority {
            config,
            store,
            profiles,
            inventory,
            clock,
            signers: RwLock::new(None),
            bundle_signer: RwLock::new(None),
            publish_lock: std::sync::Mutex::new(()),
            ldif_lock: std::sync::Mutex::new(()),
            zone_queue: publish::ZoneQueue::default(),
            issuing_serial: std::sync::OnceLock::new(),
            rate: certs::RateLimiter::default(),
        };
        // Before the migration, so that its audit entries are keyed too.
        authority.load_audit_key()?;
        if let Some(report) = authority
            .store()?
            .migrate(authority.clock.now(), |der| x509::spki_sha256(der).ok())?
        {
            tracing::warn!(
                organisations = report.organisations,
                holders = report.holders,
                unresolved = report.unresolved,
                "store migrated to schema {}; run `anchorage org check` to settle holders whose \
                 certificates named different organisations",
                report.to
            );
        }
        if upgrading && authority.is_initialised()? {
            authority.adopt_unclaimed_domains()?;
        }
        Ok(authority)
    }

    /// The store for one use case (see `store::StoreHandle`): hold it only while it runs.
    /// Only use cases reach the store; front ends call use cases.
    pub(in crate::authority) fn store(&self) -> Result<Arc<Store>> {
        self.store.get()
    }

    /// The store itself, for tests, benchmarks and fault injection: never for a front end.
    #[doc(hidden)]
    pub fn danger_store(&self) -> Result<Arc<Store>> {
        self.store.get()
    }

    /// The configuration this authority runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The certificate profiles, loaded once at start.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The declared bundles and external sources, loaded once at start.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Every audit entry from the oldest, each handed to `visit` (an export streams them).
    pub fn each_audit_entry(
        &self,
        mut visit: impl FnMut(crate::audit::AuditEntry) -> Result<()>,
    ) -> Result<()> {
        for entry in self.store()?.audit_entries() {
            visit(entry?)?;
        }
        Ok(())
    }

    /// Removes expired browser sessions and idempotency records older than their window;
    /// returns how many sessions went.
    pub fn purge_expired(&self) -> Result<usize> {
        let now = self.now();
        let store = self.store()?;
        store.purge_idempotency(now - IDEMPOTENCY_WINDOW)?;
        store.purge_sessions(now, None)
    }

    /// Why the store cannot be written now, if it cannot.
    pub fn store_fault(&self) -> Option<crate::store::StoreFault> {
        self.store.fault()
    }

    /// Reopens the store once writes can succeed again after a failure (see
    /// `store::StoreHandle::heal`); `serve` calls it every second.
    pub fn heal_store(&self) -> crate::store::Healing {
        self.store.heal()
    }

    /// After an upgrade: managed domains no organisation holds anything in go, whole, to the
    /// default organisation, as `init` does for a new CA, so issuance keeps working.
    fn adopt_unclaimed_domains(&self) -> Result<()> {
        let orgs = self.store()?.organisations()?;
        let claimed = |d: &crate::model::HealthDomain| {
            orgs.iter()
                .any(|o| o.claims().iter().any(|c| c.domain() == d))
        };
        let free: Vec<String> = self
            .config
            .managed_domains
            .iter()
            .filter(|d| !claimed(d))
            .map(|d| d.to_string())
            .collect();
        if free.is_empty() {
            return Ok(());
        }
        let operator = crate::accounts::Principal::operator("system (upgrade)");
        match orgs.iter().find(|o| o.id == DEFAULT_ORGANISATION) {
            Some(org) => {
                let mut domains = org.domains.clone();
                domains.extend(free);
                self.edit_organisation(
                    &operator,
                    DEFAULT_ORGANISATION,
                    OrganisationChange {
                        domains: Some(domains),
                        ..OrganisationChange::default()
                    },
                )?;
            }
            None => {
                self.add_organisation(
                    &operator,
                    DEFAULT_ORGANISATION,
                    OrganisationChange {
                        name: Some(self.config.ca.organization.clone()),
                        contacts: None,
                        domains: Some(free),
                    },
                )?;
            }
        }
        Ok(())
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn is_initialised(&self) -> Result<bool> {
        Ok(self.store()?.ca_record(CaRole::Issuing)?.is_some())
    }

    fn evaluation_passphrase_path(&self) -> std::path::PathBuf {
        self.config.data_dir.join(config::EVALUATION_PASSPHRASE)
    }

    /// The configured passphrase, or a new evaluation one when `create` and none exists.
    pub fn passphrase(&self, create: bool) -> Result<(Passphrase, PassphraseSource)> {
        let found = keyseal::find_passphrase(
            std::env::var(config::PASSPHRASE_ENV).ok(),
            self.config.passphrase_file.as_deref(),
            &self.evaluation_passphrase_path(),
        )?;
        match found {
            Some(found) => Ok(found),
            None if create => {
                keyseal::create_evaluation_passphrase(&self.evaluation_passphrase_path())
            }
            None => Err(Error::Passphrase(format!(
                "no CA passphrase: set {} or passphrase_file in the configuration",
                config::PASSPHRASE_ENV
            ))),
        }
    }

    // ---- initialisation ----------------------------------------------------------------

    /// Creates (or imports) the CA hierarchy. Refuses when one exists.
    pub fn init(
        &self,
        options: InitOptions,
        passphrase: &Passphrase,
        actor: &str,
    ) -> Result<InitReport> {
        if self.is_initialised()? {
            return Err(Error::Conflict(format!(
                "{} already holds a CA hierarchy",
                self.config.data_dir.display()
            )));
        }
        let problems = self.config.problems();
        if !problems.is_empty() {
            return Err(Error::Config(problems.join("; ")));
        }
        let now = self.now();
        let (root, issuing, origin) = match (options.import_root, options.import_issuing) {
            (None, None) => {
                let (r, i) = ca::create_hierarchy(&self.hierarchy_options(), now, passphrase)?;
                (r, i, "generated")
            }
            (Some(root), None) => {
                let (r, i) = self.import_root_only(root, now, passphrase)?;
                (r, i, "imported root, generated issuing CA")
            }
            (root, Some(issuing)) => {
                let root = root.ok_or_else(|| {
                    Error::InvalidInput(
                        "importing an issuing CA needs its root certificate too".into(),
                    )
                })?;
                let (r, i) = import_both(root, issuing, now, passphrase)?;
                (r, i, "imported")
            }
        };
        let signers = unlock_records(&root, &issuing, passphrase)?;
        let report = self.init_report(&signers, origin)?;
        self.key_new_audit_log(passphrase)?;
        self.store()?.put_hierarchy(
            &root,
            &issuing,
            now,
            AuditDraft::new(
                actor,
                "ca.init",
                "hierarchy",
                serde_json::to_value(&report).unwrap_or_default(),
            ),
        )?;
        *self
            .signers
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))? = Some(Arc::new(signers));
        self.ensure_bundle_signer(passphrase)?;
        // Every holder belongs to an organisation: until the operator divides the domains,
        // the CA's own organisation owns them all (`anchorage org edit default ...`).
        self.add_organisation(
            &crate::accounts::Principal::operator(actor),
            DEFAULT_ORGANISATION,
            OrganisationChange {
                name: Some(self.config.ca.organization.clone()),
                contacts: None,
                domains: Some(
                    self.config
                        .managed_domains
                        .iter()
                        .map(|d| d.to_string())
                        .collect(),
                ),
            },
        )?;
        Ok(report)
    }

    fn hierarchy_options(&self) -> HierarchyOptions {
        HierarchyOptions {
            organization: self.config.ca.organization.clone(),
            root_key: self.config.ca.root_key,
            issuing_key: self.config.ca.issuing_key,
            root_validity_days: self.config.ca.root_validity_days,
            issuing_validity_days: self.config.ca.issuing_validity_days,
            public_url: self.config.public_url.clone(),
        }
    }

    fn import_root_only(
        &self,
        root: ImportedCa,
        now: OffsetDateTime,
        passphrase: &Passphrase,
    ) -> Result<(CaRecord, CaRecord)> {
        let pkcs8 = root.pkcs8.ok_or_else(|| {
            Error::InvalidInput(
                "importing only a root needs its private key to sign the issuing CA".into(),
            )
        })?;
        let unlocked = ca::from_parts(CaRole::Root, &root.cert_der, &pkcs8)?;
        let (issuing, issuing_key) =
            ca::create_issuing_under(&unlocked, &self.hierarchy_options(), now)?;
        let root_record = CaRecord {
            record_version: RECORD_VERSION,
            role: CaRole::Root,
            cert_der: root.cert_der,
            sealed_key: Some(keyseal::seal(&pkcs8, passphrase, "root")?),
            created_at: now,
            origin: "imported".into(),
        };
        let issuing_record = CaRecord {
            record_version: RECORD_VERSION,
            role: CaRole::Issuing,
            cert_der: issuing,
            sealed_key: Some(keyseal::seal(&issuing_key, passphrase, "issuing")?),
            created_at: now,
            origin: "generated".into(),
        };
        Ok((root_record, issuing_record))
    }

    fn init_report(&self, signers: &Signers, origin: &str) -> Result<InitReport> {
        let root =
            x509::summarize(&signers.root_cert_der).map_err(|e| Error::CaKey(e.to_string()))?;
        let issuing =
            x509::summarize(&signers.issuing.cert_der).map_err(|e| Error::CaKey(e.to_string()))?;
        Ok(InitReport {
            root_subject: root.subject,
            root_fingerprint: root.fingerprint,
            root_key: root.key.description,
            issuing_subject: issuing.subject,
            issuing_fingerprint: issuing.fingerprint,
            issuing_key: issuing.key.description,
            managed_domains: self
                .config
                .managed_domains
                .iter()
                .map(|d| d.to_string())
                .collect(),
            public_url: self.config.public_url.clone(),
            origin: origin.to_string(),
        })
    }

    /// Decrypts the CA keys and checks each against its certificate. The service refuses to
    /// start when this fails.
    pub fn unlock(&self, passphrase: &Passphrase) -> Result<()> {
        let root = self
            .store()?
            .ca_record(CaRole::Root)?
            .ok_or(Error::NotInitialised)?;
        let issuing = self
            .store()?
            .ca_record(CaRole::Issuing)?
            .ok_or(Error::NotInitialised)?;
        let signers = unlock_records(&root, &issuing, passphrase)?;
        *self
            .signers
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))? = Some(Arc::new(signers));
        self.ensure_audit_key(passphrase)?;
        self.ensure_bundle_signer(passphrase)
    }

    /// Unlocks the CA keys for a use case that signs, unless they are unlocked already
    /// (`serve` unlocks at start; a local CLI command unlocks here).
    pub fn ensure_unlocked(&self) -> Result<()> {
        let unlocked = self
            .signers
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?
            .is_some();
        if unlocked {
            return Ok(());
        }
        let (passphrase, source) = self.passphrase(false)?;
        if let PassphraseSource::Evaluation(_) = source {
            tracing::warn!("using the evaluation passphrase file: not for production");
        }
        self.unlock(&passphrase)
    }

    fn signers(&self) -> Result<Arc<Signers>> {
        self.signers
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::CaKey("the CA keys are locked".into()))
    }

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

    // ---- issuance ----------------------------------------------------------------------

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
    fn issue_owned(
        &self,
        request: &IssueRequest,
        ownership: Option<Ownership>,
        p12_password: Option<Zeroizing<String>>,
        mut idempotency: Option<(Vec<u8>, crate::store::IdempotencyRecord)>,
    ) -> Result<Issued> {
        let mut approved = self.approve(request)?;
        let ownership = ownership.ok_or_else(|| {
            Error::Generation("an approved request without an organisation".into())
        })?;
        // The certificate names the holder's organisation as its record says.
        approved.subscriber.organization = Some(ownership.organisation.name.clone());
        self.ensure_issuing_ca_valid()?;
        let signers = self.signers()?;
        let generated_password = match (&p12_password, has_generated_key(&approved)) {
            (Some(p), _) => {
                pkcs12::check_password(p)?;
                None
            }
            (None, true) => Some(pkcs12::generate_password()?),
            (None, false) => None,
        };
        let (mut records, keys) = self.sign_plan(&approved, &signers.issuing)?;
        let serials: Vec<String> = records.iter().map(|r| r.serial.to_string()).collect();
        let key_hashes = approved
            .certs
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
        let now = self.now();
        let inserted = self.store()?.insert_certs(
            &mut records,
            now,
            AuditDraft::new(
                &approved.registrar,
                "cert.issue",
                approved.holder.to_string(),
                json!({
                    "serials": serials,
                    "usage": approved.usage,
                    "profile": approved.profile.name,
                    "organisation": ownership.organisation.id,
                    "holder_bound": ownership.new,
                    "subscriber": approved.subscriber,
                    "proofing": approved.proofing,
                    "key_origin": if keys.iter().any(Option::is_some) { "generated" } else { "csr" },
                }),
            ),
            &crate::store::IssueWrite {
                binding: ownership.binding.clone(),
                key_hashes,
                allow_key_reuse: approved.profile.allow_key_reuse,
                idempotency,
            },
        )?;
        if let crate::store::Inserted::Replay(first) = inserted {
            return Ok(Issued::Replay(first));
        }
        self.store()?.flush()?;
        self.publish_after_change(approved.holder.domain());
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
        let ctx = issuance::Context {
            profiles: &self.profiles,
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
        let not_after = (now + Duration::days(i64::from(approved.profile.validity_days)))
            .min(issuing.not_after());
        if not_after <= now {
            return Err(Error::CaKey("the issuing CA has expired".into()));
        }
        let public_url = &self.config.public_url;
        let request_id = hex::encode(ca::random_serial()?.to_bytes().get(..8).unwrap_or_default());
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for planned in &approved.certs {
            let spec = EndEntitySpec {
                serial: self.fresh_serial()?,
                holder: approved.holder.clone(),
                usage: planned.usage,
                organization: approved.subscriber.organization.clone(),
                not_before: now,
                not_after,
                policy_oids: approved.policy_oids.clone(),
                crl_url: approved.profile.crl_url(public_url, "issuing"),
                ca_issuers_url: approved.profile.ca_issuers_url(public_url, "issuing"),
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
                dns_owner: approved.holder.dns_owner(),
                holder: approved.holder.clone(),
                usage: planned.usage,
                requested_usage: approved.usage,
                profile: approved.profile.name.clone(),
                level_of_assurance: approved.level_of_assurance.clone(),
                category: approved.category.clone(),
                subscriber: approved.subscriber.clone(),
                registrar: approved.registrar.clone(),
                proofing: approved.proofing.clone(),
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

    // ---- lookup ------------------------------------------------------------------------

    pub fn cert(&self, serial: &Serial) -> Result<CertView> {
        let record = self
            .store()?
            .cert(serial)?
            .ok_or_else(|| Error::NotFound(format!("no certificate with serial {serial}")))?;
        self.view(record)
    }

    fn view(&self, record: CertRecord) -> Result<CertView> {
        self.view_with(record, &mut std::collections::HashMap::new())
    }

    /// A view; `names` caches organisation names across the views of one listing.
    fn view_with(
        &self,
        record: CertRecord,
        names: &mut std::collections::HashMap<String, String>,
    ) -> Result<CertView> {
        let revocation = self.store()?.revocation(&record.serial)?;
        let now = self.now();
        let status = if revocation.is_some() {
            CertStatus::Revoked
        } else if now > record.not_after {
            CertStatus::Expired
        } else if now < record.not_before {
            CertStatus::NotYetValid
        } else {
            CertStatus::Valid
        };
        Ok(CertView {
            binding: record.holder.binding(),
            organisation: self.organisation_ref(&record.holder.to_string(), names)?,
            record,
            status,
            revocation,
        })
    }

    pub fn certs(&self, filter: &CertFilter) -> Result<Vec<CertView>> {
        let now = self.now();
        let holder = filter
            .holder
            .as_ref()
            .map(|h| h.trim().to_ascii_lowercase());
        let domain = filter
            .domain
            .as_ref()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase());
        let search = filter
            .search
            .as_ref()
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        let mut out = Vec::new();
        let mut names = std::collections::HashMap::new();
        for record in self.store()?.certs() {
            let record = record?;
            if holder
                .as_ref()
                .is_some_and(|h| *h != record.holder.to_string())
            {
                continue;
            }
            if domain
                .as_ref()
                .is_some_and(|d| d != record.holder.domain().as_str())
            {
                continue;
            }
            if filter
                .expiring_within_days
                .is_some_and(|days| record.not_after > now + Duration::days(i64::from(days)))
            {
                continue;
            }
            if search.as_ref().is_some_and(|q| !matches_search(&record, q)) {
                continue;
            }
            let view = self.view_with(record, &mut names)?;
            if filter.status.is_some_and(|s| s != view.status) {
                continue;
            }
            if filter.organisation.as_ref().is_some_and(|o| {
                view.organisation
                    .as_ref()
                    .is_none_or(|v| !v.id.eq_ignore_ascii_case(o.trim()))
            }) {
                continue;
            }
            out.push(view);
        }
        out.sort_by(|a, b| {
            (a.record.holder.to_string(), a.record.issued_at)
                .cmp(&(b.record.holder.to_string(), b.record.issued_at))
        });
        Ok(out)
    }

    // ---- revocation and CRLs -----------------------------------------------------------

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

fn matches_search(record: &CertRecord, q: &str) -> bool {
    record.holder.to_string().contains(q)
        || record.serial.as_str().eq_ignore_ascii_case(q)
        || record.subscriber.name.to_lowercase().contains(q)
        || record
            .subscriber
            .organization
            .as_ref()
            .is_some_and(|o| o.to_lowercase().contains(q))
}

fn has_generated_key(approved: &Approved) -> bool {
    approved
        .certs
        .iter()
        .any(|c| matches!(c.key, PlannedKey::Generate(_)))
}

fn describe_key(key: &KeyPair) -> String {
    match x509_parser::prelude::FromDer::from_der(&key.subject_public_key_info()) {
        Ok((_, spki)) => x509::key_info(&spki).description,
        Err(_) => String::new(),
    }
}

/// Tokens carry 256 random bits, so a plain SHA-256 is a sufficient one-way hash.
pub fn token_hash(secret: &str) -> String {
    hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.trim().as_bytes()).as_ref(),
    )
}

fn unlock_records(root: &CaRecord, issuing: &CaRecord, passphrase: &Passphrase) -> Result<Signers> {
    let root_ca = match &root.sealed_key {
        Some(_) => Some(ca::unlock(root, passphrase)?),
        None => None,
    };
    let issuing_ca = ca::unlock(issuing, passphrase)?;
    ca::check_issued_by(&issuing.cert_der, &root.cert_der)?;
    Ok(Signers {
        root: root_ca,
        issuing: issuing_ca,
        root_cert_der: root.cert_der.clone(),
    })
}

fn import_both(
    root: ImportedCa,
    issuing: ImportedCa,
    now: OffsetDateTime,
    passphrase: &Passphrase,
) -> Result<(CaRecord, CaRecord)> {
    let issuing_key = issuing
        .pkcs8
        .ok_or_else(|| Error::InvalidInput("the issuing CA's private key is required".into()))?;
    // Validates key/certificate match and the name round trip before anything is stored.
    ca::from_parts(CaRole::Issuing, &issuing.cert_der, &issuing_key)?;
    if let Some(root_key) = &root.pkcs8 {
        ca::from_parts(CaRole::Root, &root.cert_der, root_key)?;
    }
    ca::check_issued_by(&issuing.cert_der, &root.cert_der)?;
    let sealed_root = match &root.pkcs8 {
        Some(k) => Some(keyseal::seal(k, passphrase, "root")?),
        None => None,
    };
    Ok((
        CaRecord {
            record_version: RECORD_VERSION,
            role: CaRole::Root,
            cert_der: root.cert_der,
            sealed_key: sealed_root,
            created_at: now,
            origin: "imported".into(),
        },
        CaRecord {
            record_version: RECORD_VERSION,
            role: CaRole::Issuing,
            cert_der: issuing.cert_der,
            sealed_key: Some(keyseal::seal(&issuing_key, passphrase, "issuing")?),
            created_at: now,
            origin: "imported".into(),
        },
    ))
}

/// Reads a file that must exist, with a clear error.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
