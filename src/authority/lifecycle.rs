//! Creating a CA and bringing the service up: the two use cases that come before any other.
//! Each is one call, so the CLI (`init`, `serve`) orders nothing: `create` makes the
//! hierarchy, keeps the configuration beside the store and publishes the first CRLs;
//! `bring_up` is everything `serve` does before it listens (an evaluation CA on a first start,
//! refusing dangerous configuration values, unlocking the keys, fresh CRLs, seed anchors and
//! bundles). The steps both are made of live here too: `init` creates or imports the
//! hierarchy, `unlock` decrypts the CA keys and checks each against its certificate.

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Authority, OrganisationChange, DEFAULT_ORGANISATION};
use crate::accounts::Principal;
use crate::audit::AuditDraft;
use crate::ca::CaRole;
use crate::ca::{self, CaRecord, HierarchyOptions, ImportedCa, UnlockedCa};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::keyseal::PassphraseSource;
use crate::keyseal::{self, Passphrase};
use crate::model::Fingerprint;
use crate::model::HealthDomain;
use crate::store::RECORD_VERSION;
use crate::x509;

/// What `create` made.
pub struct Created {
    pub authority: Authority,
    pub report: InitReport,
    pub passphrase_source: PassphraseSource,
}

/// What `bring_up` did, for the operator to read.
pub struct BroughtUp {
    pub authority: Authority,
    /// Set on a first start: the evaluation CA created in an empty data directory.
    pub created: Option<(InitReport, PassphraseSource)>,
    pub passphrase_source: PassphraseSource,
    /// One line per notable step (an evaluation organisation, seed anchors, bundles).
    pub notes: Vec<String>,
}

/// The organisation a first start creates so the issuance form works out of the box.
const EVALUATION_ORGANISATION: &str = "evaluation";

/// The unlocked CAs. The root may be offline (imported without its key).
pub struct Signers {
    pub root: Option<UnlockedCa>,
    pub issuing: UnlockedCa,
    pub root_cert_der: Vec<u8>,
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

impl Authority {
    /// Creates (or imports) the CA hierarchy in `config.data_dir`; with `write_config` keeps
    /// the configuration there (`anchorage.toml`, 0600) for every later command; publishes the
    /// issuing CA's CRL, and the root's when its key is online.
    pub fn create(
        config: Config,
        clock: Arc<dyn Clock>,
        options: InitOptions,
        actor: &str,
        write_config: bool,
    ) -> Result<Created> {
        if config.managed_domains.is_empty() {
            return Err(Error::InvalidInput(
                "name at least one health domain with --managed-domain (or managed_domains in \
                 the configuration)"
                    .into(),
            ));
        }
        let authority = Authority::open(config, clock)?;
        let (passphrase, passphrase_source) = authority.passphrase(true)?;
        let report = authority.init(options, &passphrase, actor)?;
        drop(passphrase);
        if write_config {
            crate::private_files::write_atomic(
                &authority.config.data_dir.join(config::DATA_DIR_CONFIG),
                authority.config.to_toml()?.as_bytes(),
                true,
            )?;
        }
        authority.publish_crl(CaRole::Issuing)?;
        let root_online = authority
            .ca_status()?
            .iter()
            .any(|s| s.role == CaRole::Root && s.key_online);
        if report.origin == "generated" || root_online {
            authority.publish_crl(CaRole::Root)?;
        }
        Ok(Created {
            authority,
            report,
            passphrase_source,
        })
    }

    /// Everything `serve` does before it listens. On a first start (no CA in the data
    /// directory) creates an evaluation CA, for the evaluation domain unless domains are
    /// configured, and an organisation owning that domain. Then refuses the configuration
    /// values `config check` refuses, unlocks the CA keys, re-signs CRLs that need it, loads
    /// seed anchors once and publishes every declared bundle.
    pub fn bring_up(
        mut config: Config,
        clock: Arc<dyn Clock>,
        actor: &str,
        write_config: bool,
    ) -> Result<BroughtUp> {
        let mut notes = Vec::new();
        let opened = Authority::open(config.clone(), clock.clone())?;
        let (authority, created) = match opened.is_initialised()? {
            true => (opened, None),
            false => {
                // `create` opens the store again: it is locked while `opened` lives.
                drop(opened);
                if config.managed_domains.is_empty() {
                    config.managed_domains = vec![HealthDomain::parse(config::EVALUATION_DOMAIN)
                        .map_err(|e| Error::Config(e.to_string()))?];
                }
                let evaluation_only = config
                    .managed_domains
                    .iter()
                    .map(|d| d.as_str())
                    .eq([config::EVALUATION_DOMAIN]);
                let made = Authority::create(
                    config.clone(),
                    clock,
                    InitOptions::default(),
                    actor,
                    write_config,
                )?;
                if evaluation_only {
                    made.authority.add_organisation(
                        &Principal::operator("system"),
                        EVALUATION_ORGANISATION,
                        OrganisationChange {
                            name: Some("Evaluation organisation".into()),
                            contacts: None,
                            domains: Some(vec![config::EVALUATION_DOMAIN.into()]),
                        },
                    )?;
                    notes.push(format!(
                        "created the organisation '{EVALUATION_ORGANISATION}', owning {}",
                        config::EVALUATION_DOMAIN
                    ));
                }
                (made.authority, Some((made.report, made.passphrase_source)))
            }
        };
        // The same value errors `config check` and `init` refuse: never serve with them.
        let problems = authority.config.problems();
        if !problems.is_empty() {
            return Err(Error::Config(problems.join("; ")));
        }
        let (passphrase, passphrase_source) = authority.passphrase(false)?;
        authority.unlock(&passphrase)?;
        drop(passphrase);
        authority.refresh_crls()?;
        notes.extend(authority.load_seeds()?);
        let names: Vec<String> = authority.inventory().bundles.keys().cloned().collect();
        for name in names {
            if let Some(v) = authority.rebuild_bundle(&name, "system")? {
                notes.push(format!(
                    "published bundle {name} version {} ({} anchors)",
                    v.version,
                    v.anchors.len()
                ));
            }
        }
        Ok(BroughtUp {
            authority,
            created,
            passphrase_source,
            notes,
        })
    }
}
impl Authority {
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
        self.published();
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

    pub(in crate::authority) fn signers(&self) -> Result<Arc<Signers>> {
        self.signers
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::CaKey("the CA keys are locked".into()))
    }
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
