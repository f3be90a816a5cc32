//! One typed configuration with defaults that run out of the box. Files are strict (unknown
//! keys are refused), secrets come from files or the environment, never from values on the
//! command line, and `check` lists every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::model::{IssuingKeyAlgorithm, RootKeyAlgorithm};

mod bundles;
mod publish;

pub use bundles::BundlesConfig;

pub use publish::{
    check_base_dn, hostmaster_name, BaseDnError, DomainPublish, DomainSettings, FileModeError,
    HostmasterError, LdapConfig, PublishConfig, SoaConfig, SrvRecord, ZoneMode, MAX_SHARDS,
};

/// The file `init` writes inside the data directory and later commands read.
pub const DATA_DIR_CONFIG: &str = "anchorage.toml";
/// The evaluation passphrase file written on a zero-config start.
pub const EVALUATION_PASSPHRASE: &str = "evaluation-passphrase";
/// Environment variable holding the CA passphrase.
pub use crate::keyseal::PASSPHRASE_ENV;
/// The managed domain a zero-config evaluation start uses.
pub const EVALUATION_DOMAIN: &str = "direct.example.com";
/// Longest sensible whole-request timeout: beyond it one slow client holds a connection and a
/// worker for over an hour.
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 3600;
/// Longest sensible idle time of a browser session (one day).
pub const MAX_SESSION_IDLE_MINUTES: u32 = 24 * 60;
/// Longest sensible absolute lifetime of a browser session (30 days).
pub const MAX_SESSION_ABSOLUTE_HOURS: u32 = 30 * 24;
/// More free sign-in failures than this and the throttle never slows a password guesser.
pub const MAX_LOGIN_FREE_FAILURES: u32 = 100;
/// How often `serve`'s CRL publisher looks at nextUpdate, in milliseconds (its tick).
pub const CRL_PUBLISHER_TICK_MILLIS: u64 = 600_000;

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
    /// Retention of published bundle versions.
    pub bundles: BundlesConfig,
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
    /// Audit log checkpoints kept outside the data directory.
    pub audit: AuditConfig,
}

/// Where and how often `serve` writes audit checkpoints (`anchorage audit checkpoint` takes
/// the same destinations when given no `--out`/`--url`). A checkpoint only protects when it
/// is kept where the store's writers cannot change it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Seconds between the checkpoints `serve` writes (the first at start); 0 = none.
    pub checkpoint_interval_secs: u64,
    /// File each checkpoint replaces (atomically).
    pub checkpoint_path: Option<PathBuf>,
    /// http(s) URL each checkpoint is POSTed to as JSON.
    pub checkpoint_url: Option<String>,
}

impl AuditConfig {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.checkpoint_interval_secs > 0
            && self.checkpoint_path.is_none()
            && self.checkpoint_url.is_none()
        {
            out.push(format!(
                "audit.checkpoint_interval_secs = {} but neither audit.checkpoint_path nor \
                 audit.checkpoint_url is set: the checkpoints would go nowhere",
                self.checkpoint_interval_secs
            ));
        }
        if let Some(url) = &self.checkpoint_url {
            // Not echoed: the URL may carry a credential.
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => out.push("audit.checkpoint_url is not an http:// or https:// URL".into()),
            }
        }
        out
    }

    fn file_problems(&self, data_dir: &Path) -> (Vec<String>, Vec<String>) {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let Some(path) = &self.checkpoint_path else {
            return (errors, warnings);
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            errors.push(format!(
                "audit.checkpoint_path {}: the directory {} does not exist",
                path.display(),
                parent.display()
            ));
        }
        let inside = |p: &Path| std::fs::canonicalize(p).ok();
        if let (Some(dir), Some(data)) = (inside(parent), inside(data_dir)) {
            if dir.starts_with(&data) {
                warnings.push(format!(
                    "audit.checkpoint_path {} is inside the data directory: whoever can rewrite \
                     the store can rewrite the checkpoint too; keep checkpoints elsewhere \
                     (warning: the service still starts)",
                    path.display()
                ));
            }
        }
        (errors, warnings)
    }
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
            bundles: BundlesConfig::default(),
            ca: CaConfig::default(),
            crl: CrlConfig::default(),
            api: ApiConfig::default(),
            web: WebConfig::default(),
            issuance: IssuanceConfig::default(),
            server: ServerConfig::default(),
            publish: PublishConfig::default(),
            audit: AuditConfig::default(),
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
        out.extend(url_problems("public_url", &self.public_url));
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
        // The publisher sleeps the coalescing delay before it re-signs, and looks at
        // nextUpdate once per tick: both must fit in the window before nextUpdate.
        let window_millis = u64::from(self.crl.refresh_before_hours).saturating_mul(3_600_000);
        if self.crl.refresh_before_hours == 0 {
            out.push(
                "crl.refresh_before_hours = 0: CRLs would be re-signed only after they passed \
                 their nextUpdate; set it to at least 1 (default 120)"
                    .into(),
            );
        } else if self
            .crl
            .coalesce_millis
            .saturating_add(CRL_PUBLISHER_TICK_MILLIS)
            >= window_millis
        {
            out.push(format!(
                "crl.coalesce_millis = {} does not fit in the {} h before nextUpdate \
                 (crl.refresh_before_hours, less the 10-minute publisher tick): a CRL could pass \
                 its nextUpdate; lower crl.coalesce_millis (default 2000) or raise \
                 crl.refresh_before_hours",
                self.crl.coalesce_millis, self.crl.refresh_before_hours
            ));
        }
        if let Some(tls) = &self.tls {
            if !tls.public_url.starts_with("https://") {
                out.push(format!(
                    "tls.public_url = '{}' must be an https:// URL",
                    tls.public_url
                ));
            }
            out.extend(url_problems("tls.public_url", &tls.public_url));
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
        let request_timeout = self.api.request_timeout_secs;
        if request_timeout == 0 || request_timeout > MAX_REQUEST_TIMEOUT_SECS {
            out.push(format!(
                "api.request_timeout_secs = {request_timeout} {}; set 1 to \
                 {MAX_REQUEST_TIMEOUT_SECS} (default 30)",
                if request_timeout == 0 {
                    "would time out every request at once"
                } else {
                    "lets one slow client hold a connection for over an hour"
                }
            ));
        }
        let idle = self.web.session_idle_minutes;
        if idle == 0 || idle > MAX_SESSION_IDLE_MINUTES {
            out.push(format!(
                "web.session_idle_minutes = {idle} {}; set 1 to {MAX_SESSION_IDLE_MINUTES} \
                 (default 30)",
                if idle == 0 {
                    "would end every session at once"
                } else {
                    "keeps an abandoned signed-in browser usable for over a day"
                }
            ));
        }
        let absolute = self.web.session_absolute_hours;
        if absolute == 0 || absolute > MAX_SESSION_ABSOLUTE_HOURS {
            out.push(format!(
                "web.session_absolute_hours = {absolute} {}; set 1 to \
                 {MAX_SESSION_ABSOLUTE_HOURS} (default 8)",
                if absolute == 0 {
                    "would end every session at once"
                } else {
                    "keeps a stolen session cookie valid for over 30 days"
                }
            ));
        }
        let free = self.web.login_free_failures;
        if free > MAX_LOGIN_FREE_FAILURES {
            out.push(format!(
                "web.login_free_failures = {free} lets a password guesser try that many times \
                 without delay, so the sign-in throttle does nothing; set 1 to \
                 {MAX_LOGIN_FREE_FAILURES} (default 5)"
            ));
        }
        if self.web.login_delay_secs == 0 {
            out.push(
                "web.login_delay_secs = 0 turns the sign-in throttle off (no delay after the free \
                 failures); set it to at least 1 (default 30)"
                    .into(),
            );
        }
        if self.web.login_max_delay_secs == 0 {
            out.push(
                "web.login_max_delay_secs = 0 caps every sign-in delay at nothing, so the \
                 throttle does nothing; set it to at least web.login_delay_secs (default 900)"
                    .into(),
            );
        } else if self.web.login_max_delay_secs < self.web.login_delay_secs {
            out.push(format!(
                "web.login_max_delay_secs = {} is smaller than web.login_delay_secs = {}; raise \
                 web.login_max_delay_secs (default 900)",
                self.web.login_max_delay_secs, self.web.login_delay_secs
            ));
        }
        if self.web.max_form_bytes < 64 * 1024 {
            out.push("web.max_form_bytes must be at least 65536".into());
        }
        out.extend(self.publish.problems(&self.managed_domains));
        out.extend(self.audit.problems());
        out.extend(self.bundles.problems());
        out
    }

    /// Problems found on disk rather than in the values: `(errors, warnings)`. Errors make
    /// `config check` fail; warnings are reported and do not.
    pub fn file_problems(&self) -> (Vec<String>, Vec<String>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if let Some(file) = &self.passphrase_file {
            match std::fs::metadata(file) {
                Err(_) => errors.push(format!("passphrase_file {} does not exist", file.display())),
                Ok(meta) => {
                    if let Some(mode) = group_or_other_access(&meta) {
                        errors.push(format!(
                            "passphrase_file {} is readable or writable by group or others (mode {mode:04o}): \
                             anyone on the machine who can read it can unseal the CA keys; run \
                             `chmod 600 {}` and make the service user its owner",
                            file.display(),
                            file.display()
                        ));
                    }
                }
            }
        }
        let (audit_errors, audit_warnings) = self.audit.file_problems(&self.data_dir);
        errors.extend(audit_errors);
        warnings.extend(audit_warnings);
        if !self.bundles_dir.is_dir() {
            warnings.push(format!(
                "bundles_dir {} does not exist: the trust-bundle inventory is empty and no \
                 bundle is published; create the directory or correct bundles_dir (warning: \
                 the service still starts)",
                self.bundles_dir.display()
            ));
        }
        (errors, warnings)
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

/// A URL written into certificates or bundle links: no query or fragment (paths are appended
/// to it), and not the wildcard listen address, which no relying party can reach.
fn url_problems(key: &str, url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(at) = url.find(['?', '#']) {
        let what = if url.get(at..).is_some_and(|rest| rest.starts_with('?')) {
            "a query"
        } else {
            "a fragment"
        };
        out.push(format!(
            "{key} = '{url}' has {what} ('{}'): paths such as /crl/issuing.crl are appended to \
             it, so certificates would carry broken URLs; remove everything from '{}' on",
            url.get(at..).unwrap_or_default(),
            url.get(at..at + 1).unwrap_or_default()
        ));
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = if host.starts_with('[') {
        host.split_once(']')
            .and_then(|(h, _)| h.get(1..))
            .unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let wildcard = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if wildcard {
        out.push(format!(
            "{key} = '{url}' names the wildcard listen address {host}: it is written into \
             every certificate (CRL distribution point, AIA) and no relying party can reach it; \
             set the host name relying parties use, e.g. http://ca.example.org"
        ));
    }
    out
}

/// The permission bits granting group or others any access, when there are any.
#[cfg(unix)]
fn group_or_other_access(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_other_access(_meta: &std::fs::Metadata) -> Option<u32> {
    None
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
    fn audit_checkpoint_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &str, usize, usize); 5] = [
            ("ok/off", "", 0, 0),
            (
                "fail/interval-without-destination",
                "checkpoint_interval_secs = 60",
                1,
                0,
            ),
            (
                "fail/not-http",
                "checkpoint_url = \"ftp://u:secret@x/y\"",
                1,
                0,
            ),
            (
                "fail/no-such-directory",
                "checkpoint_path = \"/nonexistent/dir/cp.json\"",
                0,
                1,
            ),
            (
                "ok/url",
                "checkpoint_interval_secs = 60\ncheckpoint_url = \"https://w/x\"",
                0,
                0,
            ),
        ];
        for (name, audit, problems, file_errors) in cases {
            let mut config = Config::parse(&format!("[audit]\n{audit}"), "x").unwrap();
            config.data_dir = dir.path().to_path_buf();
            assert_eq!(config.audit.problems().len(), problems, "{name}");
            assert_eq!(
                config.audit.file_problems(dir.path()).0.len(),
                file_errors,
                "{name}"
            );
            assert!(
                !config.audit.problems().concat().contains("secret"),
                "{name}: no credential echoed"
            );
        }
        let inside = Config::parse(
            &format!(
                "[audit]\ncheckpoint_path = {:?}",
                dir.path().join("cp.json")
            ),
            "x",
        )
        .unwrap();
        assert_eq!(
            inside.audit.file_problems(dir.path()).1.len(),
            1,
            "warn/inside-data-dir"
        );
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
