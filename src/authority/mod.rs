//! The use cases, and the only place that orders their steps: request -> policy -> CA ->
//! store -> publication. The CLI and the HTTP layer call these functions and nothing deeper.

use std::path::Path;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::ca::CaRole;
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::keyseal::{self, Passphrase, PassphraseSource};
use crate::model::Serial;
use crate::store::{Store, StoreHandle};
use crate::x509;

mod accounts;
mod audit;
mod backup;
mod bundles;
mod certs;
mod discovery;
mod downloads;
mod external;
mod health;
mod lifecycle;
mod organisations;
mod rules;
pub mod views;

/// The records use cases answer with (front ends name them from here, never from `store`).
pub use crate::store::{
    AnchorEvent, AnchorRecord, AnchorState, BundleVersion, CrlRecord, Healing, Revocation,
    Snapshot, TokenRecord,
};
pub use accounts::{audit_page, token_principal, NewUser, SignedIn};
pub use audit::{checkpoint_destinations, send_checkpoint, write_checkpoint};
pub use backup::{restore, RestoreReport};
pub use bundles::{BatchDecision, Built, BundleSummary, Decision, Submission, MAX_BATCH};
pub use certs::{
    CaStatus, CertFilter, CertPage, CertStatus, CertView, IssueOutcome, IssuedCert,
    OrganisationRef, Ownership, PageEnd, PageStart, IDEMPOTENCY_WINDOW, SCAN_BUDGET,
};
pub use discovery::{next_serial, LdifOutcome, ZoneOutcome, ZoneQueue};
pub use downloads::PublicFiles;
pub use external::{RefreshReport, SourceView, Staleness};
pub use health::HealthProblem;
pub use lifecycle::{BroughtUp, Created, InitOptions, InitReport, Signers};
pub use organisations::{OrganisationChange, UnresolvedHolder};
pub use rules::{ReloadReport, Rules};

/// The organisation `init` creates, owning every managed domain until the operator divides
/// them among the organisations it serves.
pub const DEFAULT_ORGANISATION: &str = "default";

/// API roles (see `accounts::Role`).
pub const ROLES: [&str; 4] = ["admin", "registrar", "member", "dns_operator"];

/// The service core shared by the CLI and the HTTP server.
pub struct Authority {
    config: Config,
    /// The store; use cases take it with [`Authority::store`] for their duration.
    store: StoreHandle,
    /// The profiles, inventory and admission policies, swapped whole by `reload_rules`.
    rules: rules::RulesCell,
    clock: Arc<dyn Clock>,
    signers: RwLock<Option<Arc<Signers>>>,
    bundle_signer: RwLock<Option<Arc<bundles::BundleSigner>>>,
    /// One zone publication at a time (serials, temp files).
    publish_lock: std::sync::Mutex<()>,
    /// One LDIF export at a time (the directory view and its log).
    ldif_lock: std::sync::Mutex<()>,
    /// Zones to rewrite after issuance and revocation when `serve` batches them.
    zone_queue: discovery::ZoneQueue,
    /// The issuing CA certificate's serial, read once (checked before every issuance).
    issuing_serial: std::sync::OnceLock<Serial>,
    /// Recent issuances per principal, for the rate limits.
    rate: certs::RateLimiter,
    /// Moves whenever this process publishes a bundle version, a CRL or the CA hierarchy: what
    /// is served from memory (see [`Authority::public_files`]) is rebuilt when it moves.
    publications: std::sync::atomic::AtomicU64,
}

impl Authority {
    /// Opens the store and loads the profiles; does not touch CA keys.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Authority> {
        // Not private: published outputs under it are read by a DNS or web server's user.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
            .create(&config.data_dir)
            .map_err(|e| Error::io(&config.data_dir, e))?;
        let rules = Rules::load(&config)?;
        let store = StoreHandle::open(&config.data_dir)?;
        let upgrading = store.get()?.schema()? < crate::store::SCHEMA;
        let authority = Authority {
            config,
            store,
            rules: rules::RulesCell::new(rules),
            clock,
            signers: RwLock::new(None),
            bundle_signer: RwLock::new(None),
            publish_lock: std::sync::Mutex::new(()),
            ldif_lock: std::sync::Mutex::new(()),
            zone_queue: discovery::ZoneQueue::default(),
            issuing_serial: std::sync::OnceLock::new(),
            rate: certs::RateLimiter::default(),
            publications: std::sync::atomic::AtomicU64::new(0),
        };
        // Before the migration, so that its audit entries are keyed too.
        authority.load_audit_key()?;
        if let Some(report) = authority
            .store()?
            .migrate(authority.clock.now(), |der| x509::spki_sha256(der).ok())?
        {
            // The same holders, counted by the step that bound them and by the one indexing them.
            let unsettled = report.unresolved.max(report.unresolved_indexed);
            if unsettled > 0 {
                tracing::warn!(
                    organisations = report.organisations,
                    holders = report.holders,
                    unresolved = unsettled,
                    "store migrated to schema {}; run `anchorage org check` to settle holders \
                     whose certificates named different organisations",
                    report.to
                );
            } else {
                tracing::info!(
                    from = report.from,
                    organisations = report.organisations,
                    holders = report.holders,
                    "store migrated to schema {}",
                    report.to
                );
            }
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
}

/// Tokens carry 256 random bits, so a plain SHA-256 is a sufficient one-way hash.
pub fn token_hash(secret: &str) -> String {
    hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.trim().as_bytes()).as_ref(),
    )
}

/// Reads a file that must exist, with a clear error.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
