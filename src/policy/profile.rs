//! Certificate profiles as data: the TOML files under `policies/` say what anchorage issues
//! (validity, keys, usages, policy OIDs, CRL/AIA URLs). Loading is strict so that a typo in a
//! reviewed policy file stops the service instead of silently issuing something else.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use crate::model::KeyKind;
use crate::model::{Binding, Usage};

/// The longest end-entity validity the Direct community accepts (3 years).
pub const MAX_VALIDITY_DAYS: u32 = 1095;

const EMBEDDED_ADDRESS: &str = include_str!("../../policies/address-cert.toml");
const EMBEDDED_DOMAIN: &str = include_str!("../../policies/domain-cert.toml");
const EMBEDDED_SIGNER: &str = include_str!("../../policies/bundle-signer.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileBinding {
    Address,
    Domain,
    BundleSigner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratedKey {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    pub allowed: Vec<KeyKind>,
    pub min_rsa_bits: u32,
    pub max_rsa_bits: u32,
    pub generate: GeneratedKey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOids {
    pub certificate_policy: String,
    pub default_level_of_assurance: String,
    pub default_category: String,
    pub levels_of_assurance: BTreeMap<String, String>,
    pub categories: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlTemplates {
    pub crl: String,
    pub ca_issuers: String,
}

/// One certificate profile, as loaded from `policies/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertProfile {
    pub name: String,
    pub description: String,
    pub binding: ProfileBinding,
    pub validity_days: u32,
    pub usages: Vec<Usage>,
    pub keys: KeyPolicy,
    #[serde(default)]
    pub policies: Option<PolicyOids>,
    pub urls: UrlTemplates,
    /// Whether one public key may be certified for several holders (default: no; a second
    /// holder's request with a known key is refused with `key_reused`).
    #[serde(default)]
    pub allow_key_reuse: bool,
}

impl CertProfile {
    pub fn parse(text: &str, file: &str) -> Result<CertProfile> {
        let profile: CertProfile = toml::from_str(text).map_err(|e| Error::Profile {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let problems = profile.problems();
        if problems.is_empty() {
            Ok(profile)
        } else {
            Err(Error::Profile {
                file: file.to_string(),
                message: problems.join("; "),
            })
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.validity_days == 0 || self.validity_days > MAX_VALIDITY_DAYS {
            out.push(format!(
                "validity_days = {} is outside 1..={MAX_VALIDITY_DAYS} (Direct allows at most 3 years)",
                self.validity_days
            ));
        }
        if self.usages.is_empty() {
            out.push("usages is empty: the profile could issue nothing".into());
        }
        if self.keys.allowed.is_empty() {
            out.push("keys.allowed is empty".into());
        }
        if self.keys.min_rsa_bits < 2048 {
            out.push(format!(
                "keys.min_rsa_bits = {} is below 2048",
                self.keys.min_rsa_bits
            ));
        }
        if self.keys.max_rsa_bits < self.keys.min_rsa_bits || self.keys.max_rsa_bits > 16384 {
            out.push(format!(
                "keys.max_rsa_bits = {} must lie between min_rsa_bits and 16384",
                self.keys.max_rsa_bits
            ));
        }
        match (&self.binding, &self.policies) {
            (ProfileBinding::Address | ProfileBinding::Domain, None) => {
                out.push("[policies] is required for Direct end-entity profiles".into())
            }
            (_, Some(p)) => out.extend(p.problems()),
            _ => {}
        }
        for (field, template) in [
            ("urls.crl", &self.urls.crl),
            ("urls.ca_issuers", &self.urls.ca_issuers),
        ] {
            if !template.starts_with("{public_url}") && !template.starts_with("http://") {
                out.push(format!(
                    "{field} = '{template}' must be an http:// URL or start with {{public_url}} (relying parties fetch it without TLS)"
                ));
            }
        }
        out
    }

    pub fn binding(&self) -> Option<Binding> {
        match self.binding {
            ProfileBinding::Address => Some(Binding::Address),
            ProfileBinding::Domain => Some(Binding::Domain),
            ProfileBinding::BundleSigner => None,
        }
    }

    pub fn crl_url(&self, public_url: &str, ca: &str) -> String {
        expand(&self.urls.crl, public_url, ca)
    }

    pub fn ca_issuers_url(&self, public_url: &str, ca: &str) -> String {
        expand(&self.urls.ca_issuers, public_url, ca)
    }
}

impl PolicyOids {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, oid: &str| {
            if const_oid::ObjectIdentifier::new(oid).is_err() {
                out.push(format!("{what} = '{oid}' is not a dotted OID"));
            }
        };
        check("policies.certificate_policy", &self.certificate_policy);
        for (k, v) in &self.levels_of_assurance {
            check(&format!("policies.levels_of_assurance.{k}"), v);
        }
        for (k, v) in &self.categories {
            check(&format!("policies.categories.{k}"), v);
        }
        if !self
            .levels_of_assurance
            .contains_key(&self.default_level_of_assurance)
        {
            out.push(format!(
                "policies.default_level_of_assurance = '{}' is not one of levels_of_assurance",
                self.default_level_of_assurance
            ));
        }
        if !self.categories.contains_key(&self.default_category) {
            out.push(format!(
                "policies.default_category = '{}' is not one of categories",
                self.default_category
            ));
        }
        out
    }
}

fn expand(template: &str, public_url: &str, ca: &str) -> String {
    template
        .replace("{public_url}", public_url.trim_end_matches('/'))
        .replace("{ca}", ca)
}

/// The three profiles the CA issues under.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub address: CertProfile,
    pub domain: CertProfile,
    pub bundle_signer: CertProfile,
}

impl Profiles {
    /// Loads `address-cert.toml`, `domain-cert.toml` and `bundle-signer.toml` from `dir`, or
    /// the copies embedded at build time when no directory is configured.
    pub fn load(dir: Option<&Path>) -> Result<Profiles> {
        let read = |file: &str, embedded: &str| -> Result<CertProfile> {
            match dir {
                None => CertProfile::parse(embedded, &format!("(embedded) {file}")),
                Some(dir) => {
                    let path = dir.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                    CertProfile::parse(&text, &path.display().to_string())
                }
            }
        };
        let profiles = Profiles {
            address: read("address-cert.toml", EMBEDDED_ADDRESS)?,
            domain: read("domain-cert.toml", EMBEDDED_DOMAIN)?,
            bundle_signer: read("bundle-signer.toml", EMBEDDED_SIGNER)?,
        };
        let expect = [
            (
                &profiles.address,
                ProfileBinding::Address,
                "address-cert.toml",
            ),
            (&profiles.domain, ProfileBinding::Domain, "domain-cert.toml"),
            (
                &profiles.bundle_signer,
                ProfileBinding::BundleSigner,
                "bundle-signer.toml",
            ),
        ];
        for (profile, binding, file) in expect {
            if profile.binding != binding {
                return Err(Error::Profile {
                    file: file.into(),
                    message: format!("binding must be {binding:?}, found {:?}", profile.binding),
                });
            }
        }
        Ok(profiles)
    }

    pub fn for_binding(&self, binding: Binding) -> &CertProfile {
        match binding {
            Binding::Address => &self.address,
            Binding::Domain => &self.domain,
        }
    }

    /// Finds a profile by its `name` field (what API callers and the CLI pass).
    pub fn by_name(&self, name: &str) -> Option<&CertProfile> {
        [&self.address, &self.domain, &self.bundle_signer]
            .into_iter()
            .find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_and_repository_profiles_load() {
        Profiles::load(None).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        Profiles::load(Some(&dir)).unwrap();
    }

    #[test]
    fn strict_loading() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "fail/unknown-key",
                "validity_days = 825",
                "validity_days = 825\ncolour = \"red\"",
            ),
            (
                "fail/too-long",
                "validity_days = 825",
                "validity_days = 2000",
            ),
            (
                "fail/weak-rsa",
                "min_rsa_bits = 2048",
                "min_rsa_bits = 1024",
            ),
            (
                "fail/bad-oid",
                "\"1.3.6.1.4.1.41179.0.1.3\"",
                "\"not-an-oid\"",
            ),
            (
                "fail/https-crl",
                "\"{public_url}/crl/{ca}.crl\"",
                "\"ftp://x/crl\"",
            ),
            (
                "fail/default-loa",
                "default_level_of_assurance = \"loa3\"",
                "default_level_of_assurance = \"loa9\"",
            ),
            (
                "fail/unknown-usage",
                "\"dual\", \"signing\"",
                "\"dual\", \"sign\"",
            ),
        ];
        for (name, from, to) in cases {
            let text = EMBEDDED_ADDRESS.replace(from, to);
            assert_ne!(text, EMBEDDED_ADDRESS, "{name}: replacement did not apply");
            let err = CertProfile::parse(&text, "x.toml").unwrap_err();
            assert_eq!(err.code(), "profile_invalid", "{name}");
        }
    }

    #[test]
    fn urls_expand() {
        let p = Profiles::load(None).unwrap();
        assert_eq!(
            p.address.crl_url("http://ca.example/", "issuing"),
            "http://ca.example/crl/issuing.crl"
        );
    }
}
