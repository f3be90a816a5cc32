//! The `[source]` table of an external bundle declaration: where the bundle comes from, whom
//! it must be signed by, how often and how patiently to fetch it, and how old the last good
//! copy may get. Everything but `url` has a default, so a minimal declaration is one line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bundle::verify::Pins;
use crate::error::{Error, Result};
use crate::model::Fingerprint;

/// Daily at 04:17 UTC (cron with seconds first); off the hour so many installations do not
/// hit a publisher in the same second.
pub const DEFAULT_SCHEDULE: &str = "0 17 4 * * *";

/// Whether the admission policy's verdict removes an anchor or is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionMode {
    #[default]
    Enforce,
    ReportOnly,
}

/// An external source as declared. `Debug` shows the URL redacted (see [`redact_url`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSource {
    /// HTTPS URL of the bundle (plain HTTP needs `danger_allow_http`).
    pub url: String,
    /// Certificates (PEM or DER), relative to the declaration file: the publisher's signing
    /// certificate, or a CA its signing certificate must chain to.
    #[serde(default)]
    pub signers: Vec<PathBuf>,
    /// SHA-256 fingerprints (hex, colons allowed) of acceptable signing certificates.
    #[serde(default)]
    pub signer_fingerprints: Vec<String>,
    /// Extra CA (PEM) for the publisher's TLS server, relative to the declaration file.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Six-field cron (seconds first), UTC.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub danger_allow_http: bool,
    #[serde(default = "connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Longest silence while reading.
    #[serde(default = "read_timeout")]
    pub read_timeout_secs: u64,
    /// The whole download, retries excluded.
    #[serde(default = "total_timeout")]
    pub total_timeout_secs: u64,
    #[serde(default = "max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "max_anchors")]
    pub max_anchors: usize,
    #[serde(default = "max_redirects")]
    pub max_redirects: usize,
    /// Extra tries within one run after a network failure.
    #[serde(default = "retries")]
    pub retries: u32,
    /// First back-off; doubled for each retry.
    #[serde(default = "retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Age of the last good copy that flags the source stale.
    #[serde(default = "stale_warn_hours")]
    pub stale_warn_hours: u64,
    /// Age past which `/healthz` reports degraded.
    #[serde(default = "stale_fail_hours")]
    pub stale_fail_hours: u64,
    /// Keep republishing the last good copy past `stale_fail_hours` (else its anchors are
    /// withdrawn from the bundles that include it until a refresh succeeds).
    #[serde(default = "yes")]
    pub publish_when_stale: bool,
    #[serde(default)]
    pub admission: AdmissionMode,
    /// Resolved at load: the pinned certificates and the TLS CA, read from their files.
    #[serde(skip)]
    pub pins: Pins,
    #[serde(skip)]
    pub tls_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ExternalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSource")
            .field("url", &self.redacted_url())
            .field("signers", &self.signers)
            .field("signer_fingerprints", &self.signer_fingerprints)
            .field("schedule", &self.schedule)
            .field("enabled", &self.enabled)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

fn default_schedule() -> String {
    DEFAULT_SCHEDULE.into()
}
fn yes() -> bool {
    true
}
fn connect_timeout() -> u64 {
    10
}
fn read_timeout() -> u64 {
    30
}
fn total_timeout() -> u64 {
    300
}
fn max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn max_anchors() -> usize {
    50_000
}
fn max_redirects() -> usize {
    5
}
fn retries() -> u32 {
    2
}
fn retry_backoff_ms() -> u64 {
    2000
}
fn stale_warn_hours() -> u64 {
    36
}
fn stale_fail_hours() -> u64 {
    72
}

impl ExternalSource {
    /// Checks the declaration and reads the files it names (relative to `dir`). A disabled
    /// source may keep placeholder pins; an enabled one must be complete.
    pub fn resolve(&mut self, dir: &Path, origin: &str) -> Result<()> {
        let fail = |m: String| Error::Config(format!("{origin}: [source] {m}"));
        let scheme = self.url.split("://").next().unwrap_or_default();
        match scheme {
            "https" => {}
            "http" if self.danger_allow_http => {}
            "http" => {
                return Err(fail(
                    "url must be https (set danger_allow_http = true to accept plain HTTP)".into(),
                ))
            }
            _ => {
                return Err(fail(format!(
                    "url '{}' is not an https URL",
                    self.redacted_url()
                )))
            }
        }
        if self.url.parse::<url::Url>().is_err() {
            return Err(fail(format!(
                "url '{}' cannot be parsed",
                self.redacted_url()
            )));
        }
        if interval_of(&self.schedule).is_none() {
            return Err(fail(format!(
                "schedule '{}' is not a six-field cron expression (seconds first)",
                self.schedule
            )));
        }
        if self.stale_fail_hours < self.stale_warn_hours {
            return Err(fail(
                "stale_fail_hours must not be below stale_warn_hours".into(),
            ));
        }
        if self.max_bytes == 0 || self.max_anchors == 0 || self.total_timeout_secs == 0 {
            return Err(fail(
                "max_bytes, max_anchors and total_timeout_secs must be positive".into(),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        let mut pins = Pins::default();
        for file in &self.signers {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let certs = crate::x509::certificates_from_pem_or_der(&bytes)
                .map_err(|e| fail(format!("signer {}: {e}", path.display())))?;
            for der in certs {
                pins.fingerprints.push(Fingerprint::of(&der).0);
                pins.certificates.push(der);
            }
        }
        for text in &self.signer_fingerprints {
            let hex: String = text
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(fail(format!(
                    "signer_fingerprints entry '{text}' is not a SHA-256 fingerprint (64 hex digits)"
                )));
            }
            pins.fingerprints.push(hex);
        }
        self.pins = pins;
        if let Some(file) = &self.tls_ca_file {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if crate::x509::certificates_from_pem_or_der(&bytes).is_err() {
                return Err(fail(format!(
                    "tls_ca_file {} holds no certificate",
                    path.display()
                )));
            }
            self.tls_ca_pem = Some(bytes);
        }
        Ok(())
    }

    /// The URL as it may be shown or logged: see [`redact_url`].
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// `text` (an error message that may embed the URL) with the URL's secrets replaced:
    /// the whole URL by its redacted form, then any remaining user-info or query string.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.redacted_url());
        if let Ok(parsed) = url::Url::parse(&self.url) {
            if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
                out = out.replace(password, "***");
            }
            if !parsed.username().is_empty() {
                out = out.replace(&format!("{}@", parsed.username()), "***@");
            }
            if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
                out = out.replace(query, "…");
            }
        }
        out
    }

    /// The usual gap between two scheduled runs.
    pub fn interval(&self) -> Duration {
        interval_of(&self.schedule).unwrap_or(Duration::from_secs(24 * 3600))
    }
}

/// A source URL without its secrets, as every status output, page and log line shows it:
/// user-info becomes `***@` and a query string `?…` (publishers hand out URLs with a
/// password or an access token in them), so `https://u:p@host/b.p7m?token=t` reads
/// `https://***@host/b.p7m?…`. Text that does not parse as a URL is shown as `<unparsable
/// url>`, since it could hold anything.
pub fn redact_url(text: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(text) else {
        return "<unparsable url>".into();
    };
    let had_user = !parsed.username().is_empty() || parsed.password().is_some();
    let had_query = parsed.query().is_some();
    // Hosts that cannot carry user-info cannot have had any either, so errors are moot.
    let _ = parsed.set_password(None);
    let _ = parsed.set_username(if had_user { "***" } else { "" });
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut out = parsed.to_string();
    if had_query {
        out.push_str("?…");
    }
    out
}

/// The gap between the next two runs of a cron schedule, `None` when it does not parse.
pub fn interval_of(schedule: &str) -> Option<Duration> {
    // Parsed as tokio-cron-scheduler parses it, so what loads here also schedules.
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(schedule)
        .ok()?;
    let now = chrono::Utc::now();
    let first = cron.find_next_occurrence(&now, false).ok()?;
    let second = cron.find_next_occurrence(&first, false).ok()?;
    (second - first).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        let cases = [
            ("ok/plain", "https://host/b.p7m", "https://host/b.p7m"),
            (
                "ok/user-and-password",
                "https://user:secret@host/b.p7m",
                "https://***@host/b.p7m",
            ),
            (
                "ok/user-only",
                "https://user@host/b.p7m",
                "https://***@host/b.p7m",
            ),
            (
                "ok/query",
                "https://host:8443/b.p7m?token=secret&x=1",
                "https://host:8443/b.p7m?…",
            ),
            (
                "ok/both",
                "https://u:secret@host/b.p7m?token=secret#frag",
                "https://***@host/b.p7m?…",
            ),
            ("fail/unparsable", "not a url secret", "<unparsable url>"),
        ];
        for (name, input, want) in cases {
            assert_eq!(redact_url(input), want, "{name}");
        }
    }

    #[test]
    fn messages_are_scrubbed() {
        let source: ExternalSource =
            toml::from_str("url = \"https://u:pw-secret@host/b.p7m?token=tok-secret\"").unwrap();
        let text = format!(
            "error sending request for url ({}): connection refused; token=tok-secret",
            source.url
        );
        let scrubbed = source.scrub(&text);
        assert!(!format!("{source:?}").contains("secret"));
        assert!(!scrubbed.contains("secret"), "{scrubbed}");
        assert!(scrubbed.contains("https://***@host/b.p7m?…"), "{scrubbed}");
    }
}
