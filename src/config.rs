//! One typed configuration with defaults that run out of the box. Files are strict (unknown
//! keys are refused), secrets come from files or the environment, never from values on the
//! command line, and `check` lists every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ca::{IssuingKeyAlgorithm, RootKeyAlgorithm};
use crate::error::{Error, Result};
use crate::model::HealthDomain;

mod publish;

pub use publish::{
    check_base_dn, hostmaster_name, DomainPublish, DomainSettings, LdapConfig, PublishConfig,
    SoaConfig, SrvRecord, ZoneMode,
};

/// The file `init` writes inside the data directory and later commands read.
pub const DATA_DIR_CONFIG: &str = "anchorage.toml";
/// The evaluation passphrase file written on a zero-config start.
pub const EVALUATION_PASSPHRASE: &str = "evaluation-passphrase";
/// Environment variable holding the CA passphrase.
pub const PASSPHRASE_ENV: &str = "ANCHORAGE_PASSPHRASE";
/// The managed domain a zero-config evaluation start uses.
pub const EVALUATION_DOMAIN: &str = "direct.example.com";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store and generated files live.
    pub data_dir: PathBuf,
    /// HTTP listener (plain HTTP: CRLs and CA certificates must be reachable without TLS).
    pub listen: SocketAddr,
    /// Base URL written into certificates' CRL distribution point and AIA.
    pub public_url: String,
    /// Directory with the certificate profiles; the copies built into the binary when unset.
    pub policies_dir: Option<PathBuf>,
    /// File holding the CA passphrase (else ANCHORAGE_PASSPHRASE).
    pub passphrase_file: Option<PathBuf>,
    /// Health domains this CA issues for.
    pub managed_domains: Vec<HealthDomain>,
    /// The trust-bundle inventory (`<name>.toml` declarations); a missing directory is empty.
    pub bundles_dir: PathBuf,
    /// HTTPS listener for trust bundles; plain HTTP only when absent.
    pub tls: Option<TlsConfig>,
    pub ca: CaConfig,
    pub crl: CrlConfig,
    pub api: ApiConfig,
    pub web: WebConfig,
    /// Issuance controls: rate limits per user or token.
    pub issuance: IssuanceConfig,
    /// Connection limits of the HTTP(S) listeners.
    pub server: ServerConfig,
    /// Discovery publication: DNS CERT zone files and LDIF.
    pub publish: PublishConfig,
}

/// What one client may hold of the server: slow or idle connections are closed so CRLs, CA
/// certificates and bundles stay reachable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// A connection without a request in flight is closed after this long.
    pub idle_timeout_secs: u64,
    /// Time to send a request's body.
    pub body_read_timeout_secs: u64,
    /// Open connections at most (never more than the descriptor limit allows); when reached,
    /// the connection idle the longest is closed to admit a new one.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 30,
            max_connections: 4096,
        }
    }
}

/// Limits on how fast one user or token may issue (the operator's CLI is not limited).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuanceConfig {
    /// Certificates per user or token in any 60 seconds (a pair counts 2); 0 = no limit.
    pub rate_limit_per_minute: u32,
    /// Certificates per user or token in any 24 hours; 0 = no limit.
    pub rate_limit_per_day: u32,
}

impl Default for IssuanceConfig {
    fn default() -> Self {
        IssuanceConfig {
            rate_limit_per_minute: 60,
            rate_limit_per_day: 2000,
        }
    }
}

/// TLS for the bundle endpoints (rustls; PEM files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Public base URL of the HTTPS listener, used in bundle metadata and links.
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Organisation name in the CA subjects.
    pub organization: String,
    pub root_key: RootKeyAlgorithm,
    pub issuing_key: IssuingKeyAlgorithm,
    pub root_validity_days: u32,
    pub issuing_validity_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrlConfig {
    /// nextUpdate - thisUpdate.
    pub next_update_hours: u32,
    /// A new CRL is signed once fewer than this many hours remain before nextUpdate.
    pub refresh_before_hours: u32,
    /// Revocations arriving within this window are published in one CRL.
    pub coalesce_millis: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Whole-request timeout.
    pub request_timeout_secs: u64,
}

/// Browser sessions and the sign-in throttle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// A session ends after this long without a request.
    pub session_idle_minutes: u32,
    /// And after this long in any case.
    pub session_absolute_hours: u32,
    /// Failed sign-ins (per account and per client address) before delays start.
    pub login_free_failures: u32,
    /// First delay after the free failures; it doubles with each further failure.
    pub login_delay_secs: u32,
    /// The longest delay.
    pub login_max_delay_secs: u32,
    /// Largest upload through the web forms (anchors with samples, CSRs).
    pub max_form_bytes: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            session_idle_minutes: 30,
            session_absolute_hours: 8,
            login_free_failures: 5,
            login_delay_secs: 30,
            login_max_delay_secs: 900,
            max_form_bytes: 2 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("anchorage-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            policies_dir: None,
            passphrase_file: None,
            managed_domains: Vec::new(),
            bundles_dir: PathBuf::from("bundles"),
            tls: None,
            ca: CaConfig::default(),
            crl: CrlConfig::default(),
            api: ApiConfig::default(),
            web: WebConfig::default(),
            issuance: IssuanceConfig::default(),
            server: ServerConfig::default(),
            publish: PublishConfig::default(),
        }
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            organization: "anchorage evaluation".into(),
            root_key: RootKeyAlgorithm::P384,
            issuing_key: IssuingKeyAlgorithm::Rsa2048,
            root_validity_days: 20 * 365,
            issuing_validity_days: 10 * 365,
        }
    }
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            next_update_hours: 7 * 24,
            refresh_before_hours: 5 * 24,
            coalesce_millis: 2000,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
        }
    }
}

impl Config {
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Resolves the configuration: an explicit file, else `<data dir>/anchorage.toml` when it
    /// exists, else defaults; `--data-dir` wins over the file's `data_dir`.
    pub fn resolve(explicit: Option<&Path>, data_dir: Option<&Path>) -> Result<Config> {
        let mut config = match explicit {
            Some(path) => Config::load(path)?,
            None => {
                let dir = data_dir
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| Config::default().data_dir);
                let candidate = dir.join(DATA_DIR_CONFIG);
                if candidate.exists() {
                    Config::load(&candidate)?
                } else {
                    Config::default()
                }
            }
        };
        if let Some(dir) = data_dir {
            config.data_dir = dir.to_path_buf();
        }
        Ok(config)
    }

    /// Every problem with the configuration, as sentences. Empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let url = self.public_url.trim_end_matches('/');
        if !url.starts_with("http://") {
            out.push(format!(
                "public_url = '{}' must be an http:// URL: Direct relying parties fetch CRLs and CA certificates over plain HTTP",
                self.public_url
            ));
        } else if url.len() <= "http://".len() || url.contains(char::is_whitespace) {
            out.push(format!("public_url = '{}' is not a URL", self.public_url));
        }
        if self.managed_domains.is_empty() {
            out.push("managed_domains is empty: the CA could issue nothing".into());
        }
        if self.ca.organization.trim().is_empty() {
            out.push("ca.organization is empty".into());
        }
        if self.ca.issuing_validity_days == 0 || self.ca.root_validity_days == 0 {
            out.push("CA validity must be at least one day".into());
        }
        if self.ca.issuing_validity_days > self.ca.root_validity_days {
            out.push("ca.issuing_validity_days exceeds ca.root_validity_days".into());
        }
        if self.crl.next_update_hours < 2 {
            out.push("crl.next_update_hours must be at least 2".into());
        }
        if self.crl.refresh_before_hours >= self.crl.next_update_hours {
            out.push("crl.refresh_before_hours must be smaller than crl.next_update_hours".into());
        }
        if let Some(tls) = &self.tls {
            if !tls.public_url.starts_with("https://") {
                out.push(format!(
                    "tls.public_url = '{}' must be an https:// URL",
                    tls.public_url
                ));
            }
            for (what, path) in [
                ("tls.cert_file", &tls.cert_file),
                ("tls.key_file", &tls.key_file),
            ] {
                if !path.exists() {
                    out.push(format!("{what} {} does not exist", path.display()));
                }
            }
        }
        if self.api.max_body_bytes < 1024 {
            out.push("api.max_body_bytes must be at least 1024".into());
        }
        if self.web.session_idle_minutes == 0 || self.web.session_absolute_hours == 0 {
            out.push("web session lifetimes must be at least one minute / one hour".into());
        }
        if self.web.login_delay_secs == 0
            || self.web.login_max_delay_secs < self.web.login_delay_secs
        {
            out.push("web.login_delay_secs must be > 0 and <= web.login_max_delay_secs".into());
        }
        if self.web.max_form_bytes < 64 * 1024 {
            out.push("web.max_form_bytes must be at least 65536".into());
        }
        out.extend(self.publish.problems(&self.managed_domains));
        out
    }

    /// Base URL under which bundles are published (HTTPS when configured).
    pub fn bundle_base_url(&self) -> String {
        match &self.tls {
            Some(tls) => tls.public_url.trim_end_matches('/').to_string(),
            None => self.public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_config_is_valid_and_strict() {
        let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/anchorage.toml");
        let config = Config::load(&reference).unwrap();
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        assert_eq!(
            Config::parse("colour = 1", "x").unwrap_err().code(),
            "config_invalid"
        );
        assert_eq!(
            Config::parse("[ca]\nroot_key = \"rsa1024\"", "x")
                .unwrap_err()
                .code(),
            "config_invalid"
        );
        let bad = Config::parse(
            "public_url = \"https://x\"\nmanaged_domains = [\"a.example\"]",
            "x",
        )
        .unwrap();
        assert_eq!(bad.problems().len(), 1);
        assert!(Config::parse("managed_domains = [\"not a domain\"]", "x").is_err());
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config {
            managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
            ..Config::default()
        };
        let again = Config::parse(&c.to_toml().unwrap(), "x").unwrap();
        assert_eq!(again.managed_domains, c.managed_domains);
    }
}
