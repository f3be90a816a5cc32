//! The rules the authority runs under: the certificate profiles, the bundle inventory and
//! every admission policy a declaration names. They are loaded together when the authority
//! opens, and a declaration naming a policy that does not load stops the start, not a
//! member's submission later. Use cases read them from memory (a submission or a refresh
//! reads no policy file). [`Authority::reload_rules`] loads them all anew and swaps them in
//! only when every one loads, so a typo in one file never leaves the service running half on
//! the old rules and half on the new; a use case keeps the set it started with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::Authority;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::external::source::ExternalSource;
use crate::inventory::{DeclaredBundle, Inventory};
use crate::policy::admission::AdmissionPolicy;
use crate::policy::profile::Profiles;

/// The admission policy embedded at build time, used under this name when no policies
/// directory is configured (`policies/anchor-admission.toml`).
const BUILT_IN_ADMISSION: &str = "anchor-admission";

/// One consistent set of rules, loaded together.
#[derive(Debug, Clone)]
pub struct Rules {
    pub profiles: Arc<Profiles>,
    pub inventory: Arc<Inventory>,
    /// Every admission policy a declaration names, by name.
    pub admission: BTreeMap<String, AdmissionPolicy>,
}

/// What [`Authority::reload_rules`] swapped in.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The declared bundles now.
    pub bundles: Vec<String>,
    /// The admission policies loaded now, by name.
    pub admission_policies: Vec<String>,
    /// The admission policies whose content differs from the ones running before (new names
    /// included).
    pub changed_admission_policies: Vec<String>,
}

impl Rules {
    /// Loads the profiles and the inventory, then each admission policy the declarations
    /// name: `anchor-admission` is built in when no policies directory is configured; every
    /// other name is `<policies_dir>/<name>.toml`.
    pub fn load(config: &Config) -> Result<Rules> {
        let dir = config.policies_dir.as_deref();
        let profiles = Profiles::load(dir)?;
        let inventory = Inventory::load(&config.bundles_dir)?;
        let mut admission = BTreeMap::new();
        for (bundle, declared) in &inventory.bundles {
            let name = &declared.declaration.admission_policy;
            if !admission.contains_key(name) {
                admission.insert(name.clone(), load_admission(bundle, name, dir)?);
            }
        }
        Ok(Rules {
            profiles: Arc::new(profiles),
            inventory: Arc::new(inventory),
            admission,
        })
    }

    /// The declaration of `bundle`.
    pub fn declared(&self, bundle: &str) -> Result<&DeclaredBundle> {
        self.inventory.get(bundle)
    }

    /// The admission policy `bundle`'s declaration names.
    pub fn admission_policy(&self, bundle: &str) -> Result<&AdmissionPolicy> {
        let name = &self.declared(bundle)?.declaration.admission_policy;
        self.admission.get(name).ok_or_else(|| {
            Error::Config(format!(
                "bundle '{bundle}' names admission policy '{name}', which is not loaded"
            ))
        })
    }

    /// The source of the external bundle `name`.
    pub fn external_source(&self, name: &str) -> Result<&ExternalSource> {
        self.declared(name)?.declaration.external().ok_or_else(|| {
            Error::NotFound(format!(
                "'{name}' is a local bundle, not an external source"
            ))
        })
    }
}

/// The admission policy `name`, which the declaration of `bundle` names.
fn load_admission(bundle: &str, name: &str, dir: Option<&Path>) -> Result<AdmissionPolicy> {
    match dir {
        None if name == BUILT_IN_ADMISSION => AdmissionPolicy::load(None),
        None => Err(Error::Config(format!(
            "bundle '{bundle}' names admission policy '{name}', which needs policies_dir"
        ))),
        Some(dir) => {
            let path = dir.join(format!("{name}.toml"));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!(
                    "bundle '{bundle}' names admission policy '{name}', but {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            AdmissionPolicy::parse(&text, &path.display().to_string())
        }
    }
}

/// The running rules: read by every use case, replaced whole by a reload.
pub(super) struct RulesCell(RwLock<Arc<Rules>>);

impl RulesCell {
    pub(super) fn new(rules: Rules) -> RulesCell {
        RulesCell(RwLock::new(Arc::new(rules)))
    }

    /// The current set (a reader never sees a poisoned lock: the value is swapped whole).
    pub(super) fn current(&self) -> Arc<Rules> {
        match self.0.read() {
            Ok(rules) => rules.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, rules: Rules) {
        let rules = Arc::new(rules);
        match self.0.write() {
            Ok(mut current) => *current = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
    }
}

impl Authority {
    /// The rules running now. A use case takes them once and keeps them for its duration.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.current()
    }

    /// The certificate profiles running now.
    pub fn profiles(&self) -> Arc<Profiles> {
        self.rules().profiles.clone()
    }

    /// The declared bundles and external sources running now.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.rules().inventory.clone()
    }

    /// Loads the profiles, the inventory and the admission policies anew and swaps them in
    /// when all of them load; otherwise returns the error and keeps the running rules.
    pub fn reload_rules(&self) -> Result<ReloadReport> {
        let new = Rules::load(&self.config)?;
        let old = self.rules();
        let report = ReloadReport {
            bundles: new.inventory.bundles.keys().cloned().collect(),
            admission_policies: new.admission.keys().cloned().collect(),
            changed_admission_policies: new
                .admission
                .iter()
                .filter(|(name, policy)| old.admission.get(*name) != Some(*policy))
                .map(|(name, _)| name.clone())
                .collect(),
        };
        self.rules.replace(new);
        tracing::info!(
            bundles = report.bundles.len(),
            changed_admission_policies = ?report.changed_admission_policies,
            "rules reloaded"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::clock::FixedClock;

    /// A data, bundles and policies directory: the shipped policies, a `strict` admission
    /// policy and one bundle, `member`, admitting under it.
    fn setup(dir: &Path) -> Config {
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for entry in std::fs::read_dir(shipped).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
        std::fs::write(strict(&policies), "min_days_remaining = 30\n").unwrap();
        let bundles = dir.join("bundles");
        std::fs::create_dir_all(&bundles).unwrap();
        std::fs::write(
            bundles.join("member.toml"),
            "title = \"Member\"\nadmission_policy = \"strict\"\n",
        )
        .unwrap();
        Config {
            data_dir: dir.join("data"),
            policies_dir: Some(policies),
            bundles_dir: bundles,
            ..Config::default()
        }
    }

    fn strict(policies: &Path) -> PathBuf {
        policies.join("strict.toml")
    }

    fn open(config: Config) -> Result<Authority> {
        Authority::open(
            config,
            Arc::new(FixedClock(datetime!(2026-12-07 12:00 UTC))),
        )
    }

    fn min_days(authority: &Authority) -> u32 {
        authority
            .rules()
            .admission_policy("member")
            .unwrap()
            .min_days_remaining
    }

    #[test]
    fn reload_picks_up_a_changed_admission_policy() {
        let dir = tempfile::tempdir().unwrap();
        let config = setup(dir.path());
        let policies = config.policies_dir.clone().unwrap();
        let authority = open(config).unwrap();
        assert_eq!(min_days(&authority), 30);

        // Loaded once: the file changing on disk changes nothing until a reload.
        std::fs::write(strict(&policies), "min_days_remaining = 90\n").unwrap();
        assert_eq!(min_days(&authority), 30);

        let report = authority.reload_rules().unwrap();
        assert_eq!(min_days(&authority), 90);
        assert_eq!(report.bundles, ["member"]);
        assert_eq!(report.admission_policies, ["strict"]);
        assert_eq!(report.changed_admission_policies, ["strict"]);

        let report = authority.reload_rules().unwrap();
        assert!(report.changed_admission_policies.is_empty(), "{report:?}");
    }

    #[test]
    fn reload_refuses_an_invalid_policy_and_keeps_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = setup(dir.path());
        let policies = config.policies_dir.clone().unwrap();
        let authority = open(config).unwrap();
        let cases = [
            (
                "fail/unknown-key",
                Some("min_days_remaining = 90\nmin_days = 1\n"),
            ),
            ("fail/wrong-type", Some("min_days_remaining = \"soon\"\n")),
            ("fail/impossible-value", Some("min_rsa_bits = 1024\n")),
            ("fail/missing-file", None),
        ];
        for (name, text) in cases {
            match text {
                Some(text) => std::fs::write(strict(&policies), text).unwrap(),
                None => std::fs::remove_file(strict(&policies)).unwrap(),
            }
            let error = authority.reload_rules().err();
            assert!(error.is_some(), "{name}: reloaded");
            assert_eq!(
                min_days(&authority),
                30,
                "{name}: the running policy changed"
            );
        }
    }

    #[test]
    fn open_refuses_a_declaration_naming_a_missing_policy() {
        let dir = tempfile::tempdir().unwrap();
        let config = setup(dir.path());
        std::fs::remove_file(strict(config.policies_dir.as_deref().unwrap())).unwrap();
        let message = open(config).err().expect("opened").to_string();
        assert!(
            message.contains("bundle 'member'") && message.contains("admission policy 'strict'"),
            "{message}"
        );
    }
}
