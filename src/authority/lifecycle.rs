//! Creating a CA and bringing the service up: the two use cases that come before any other.
//! Each is one call, so the CLI (`init`, `serve`) orders nothing: `create` makes the
//! hierarchy, keeps the configuration beside the store and publishes the first CRLs;
//! `bring_up` is everything `serve` does before it listens (an evaluation CA on a first start,
//! refusing dangerous configuration values, unlocking the keys, fresh CRLs, seed anchors and
//! bundles).

use std::sync::Arc;

use super::{Authority, InitOptions, InitReport, OrganisationChange};
use crate::accounts::Principal;
use crate::ca::CaRole;
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::keyseal::PassphraseSource;
use crate::model::HealthDomain;

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
        let names: Vec<String> = authority.inventory.bundles.keys().cloned().collect();
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
