//! The `[publish]` section: how certificates are published for discovery (DNS CERT zone files
//! for the operator's authoritative server, LDIF for their directory). Defaults apply to every
//! managed domain; `[publish.domains."<domain>"]` tables override them one domain at a time.
//! Names are kept as strings here so `config check` can name a bad one instead of failing to
//! parse the whole file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{HealthDomain, ParseError};

/// Whether a zone file is complete (SOA + NS) or records only, for `$INCLUDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneMode {
    Fragment,
    Zone,
}

impl ZoneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneMode::Fragment => "fragment",
            ZoneMode::Zone => "zone",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Where zone files go; `<data_dir>/published/dns` when unset.
    pub dir: Option<PathBuf>,
    pub mode: ZoneMode,
    /// TTL of every record written (deployed values: 300 to 1800 s).
    pub ttl: u32,
    /// Run after a zone file changed; `{domain}` and `{file}` are substituted. No shell.
    pub reload_command: Vec<String>,
    pub reload_timeout_secs: u64,
    /// How often `serve` sweeps the zones: certificates that expired or became valid since
    /// the last sweep leave or enter their zone (found by the time index, not a scan).
    pub sweep_interval_secs: u64,
    /// In `serve`, zone rewrites after issuance or revocation wait at least this long, so a
    /// burst of changes in one domain is written once (longer when the last rewrite was slow:
    /// four times its duration, at most 60 s).
    pub coalesce_millis: u64,
    /// A zone with more CERT records than this is written as shard files that its zone file
    /// `$INCLUDE`s, so a change rewrites one shard instead of the whole zone; smaller zones
    /// stay one file.
    pub shard_above: usize,
    /// How many shard files a sharded zone has (2..=4096); an owner's records stay in one.
    /// 0 (the default): chosen from the zone's size, a power of two giving ~256 records
    /// (~400 KB) per shard, so a change rewrites and syncs a small file at any size.
    pub shards: u32,
    /// SOA and NS records for `mode = "zone"`.
    pub soa: SoaConfig,
    pub ldap: LdapConfig,
    /// Per-domain overrides, keyed by the health domain.
    pub domains: BTreeMap<String, DomainPublish>,
    /// Mode of published files (zone files, LDIF), octal, whatever the process umask: the
    /// DNS or LDAP server's own user must read them.
    pub file_mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoaConfig {
    /// MNAME: the primary name server.
    pub primary: String,
    /// RNAME written as a mailbox (`hostmaster@example.com`) or a DNS name.
    pub hostmaster: String,
    /// NS records at the apex; `[primary]` when empty.
    pub nameservers: Vec<String>,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Negative-caching TTL.
    pub minimum: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// Base DN of the export; its first RDN is `dc=`, `o=` or `ou=`.
    pub base_dn: String,
    /// Full export file for `publish ldif` without `--out`; `<data_dir>/published/directory.ldif`.
    pub file: Option<PathBuf>,
}

/// One `_ldap._tcp` SRV record (clients try the lowest priority, then the highest weight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrvRecord {
    pub target: String,
    #[serde(default = "default_ldap_port")]
    pub port: u16,
    #[serde(default)]
    pub priority: u16,
    #[serde(default)]
    pub weight: u16,
}

fn default_ldap_port() -> u16 {
    389
}

/// Overrides for one domain; unset keys take the `[publish]` values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainPublish {
    pub dir: Option<PathBuf>,
    pub mode: Option<ZoneMode>,
    pub ttl: Option<u32>,
    pub reload_command: Option<Vec<String>>,
    pub reload_timeout_secs: Option<u64>,
    pub soa: Option<SoaConfig>,
    #[serde(default)]
    pub ldap_srv: Vec<SrvRecord>,
}

/// The effective settings of one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSettings {
    pub domain: HealthDomain,
    pub dir: PathBuf,
    pub mode: ZoneMode,
    pub ttl: u32,
    pub reload_command: Vec<String>,
    pub reload_timeout_secs: u64,
    pub soa: SoaConfig,
    pub ldap_srv: Vec<SrvRecord>,
    /// `publish.shard_above` and `publish.shards` (see [`PublishConfig`]); `shards` 0: chosen
    /// from the zone's size.
    pub shard_above: usize,
    pub shards: u32,
}

/// The most shard files a zone may have (`publish.shards`).
pub const MAX_SHARDS: u32 = 4096;

impl DomainSettings {
    /// The zone file of this domain in its output directory.
    pub fn file(&self) -> PathBuf {
        let ext = match self.mode {
            ZoneMode::Zone => "zone",
            ZoneMode::Fragment => "fragment",
        };
        self.dir.join(format!("{}.{ext}", self.domain))
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            dir: None,
            mode: ZoneMode::Fragment,
            ttl: 3600,
            reload_command: Vec::new(),
            reload_timeout_secs: 30,
            sweep_interval_secs: 300,
            coalesce_millis: 200,
            shard_above: 10_000,
            shards: 0,
            soa: SoaConfig::default(),
            ldap: LdapConfig::default(),
            domains: BTreeMap::new(),
            file_mode: "0644".into(),
        }
    }
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig {
            primary: "ns1.example.net".into(),
            hostmaster: "hostmaster@example.net".into(),
            nameservers: Vec::new(),
            refresh: 3600,
            retry: 900,
            expire: 1_209_600,
            minimum: 300,
        }
    }
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            base_dn: "dc=direct,dc=example".into(),
            file: None,
        }
    }
}

impl PublishConfig {
    /// Effective settings of `domain`; relative directories are under `data_dir`.
    pub fn for_domain(&self, domain: &HealthDomain, data_dir: &Path) -> DomainSettings {
        let over = self
            .domains
            .get(domain.as_str())
            .cloned()
            .unwrap_or_default();
        let dir = over
            .dir
            .or_else(|| self.dir.clone())
            .unwrap_or_else(|| PathBuf::from("published/dns"));
        DomainSettings {
            domain: domain.clone(),
            dir: if dir.is_absolute() {
                dir
            } else {
                data_dir.join(dir)
            },
            mode: over.mode.unwrap_or(self.mode),
            ttl: over.ttl.unwrap_or(self.ttl),
            reload_command: over
                .reload_command
                .unwrap_or_else(|| self.reload_command.clone()),
            reload_timeout_secs: over.reload_timeout_secs.unwrap_or(self.reload_timeout_secs),
            soa: over.soa.unwrap_or_else(|| self.soa.clone()),
            ldap_srv: over.ldap_srv,
            shard_above: self.shard_above,
            shards: match self.shards {
                0 => 0,
                n => n.clamp(2, MAX_SHARDS),
            },
        }
    }

    /// The full LDIF export path.
    /// The permission bits of published files; 0644 when `file_mode` is invalid (`config
    /// check` and start-up report it).
    pub fn file_mode_bits(&self) -> u32 {
        parse_file_mode(&self.file_mode).unwrap_or(0o644)
    }

    pub fn ldif_file(&self, data_dir: &Path) -> PathBuf {
        let file = self
            .ldap
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from("published/directory.ldif"));
        if file.is_absolute() {
            file
        } else {
            data_dir.join(file)
        }
    }

    /// Where a change file from directory revision `since` to `revision` goes by default:
    /// beside the full export, named by both revisions so successive files never collide.
    pub fn ldif_changes_file(&self, data_dir: &Path, since: u64, revision: u64) -> PathBuf {
        self.ldif_file(data_dir)
            .with_file_name(format!("directory-changes-{since}-{revision}.ldif"))
    }

    /// Every problem of the section, as sentences naming the offending key and value.
    pub fn problems(&self, managed: &[HealthDomain]) -> Vec<String> {
        let mut out = Vec::new();
        check_common("publish", self.ttl, self.reload_timeout_secs, &mut out);
        check_soa("publish.soa", &self.soa, &mut out);
        if self.sweep_interval_secs == 0 {
            out.push("publish.sweep_interval_secs must be at least 1".into());
        }
        if self.shards != 0 && !(2..=MAX_SHARDS).contains(&self.shards) {
            out.push(format!(
                "publish.shards = {} is outside 2..{MAX_SHARDS} (0: chosen from the zone's size)",
                self.shards
            ));
        }
        if let Err(why) = parse_file_mode(&self.file_mode) {
            out.push(why.to_string());
        }
        if let Err(why) = check_base_dn(&self.ldap.base_dn) {
            out.push(format!(
                "publish.ldap.base_dn = '{}': {why}",
                self.ldap.base_dn
            ));
        }
        for (name, over) in &self.domains {
            let key = format!("publish.domains.\"{name}\"");
            match HealthDomain::parse(name) {
                Err(why) => out.push(format!("{key}: not a valid DNS name: {why}")),
                Ok(d) if !managed.contains(&d) => {
                    out.push(format!("{key}: '{name}' is not in managed_domains"))
                }
                Ok(_) => {}
            }
            check_common(
                &key,
                over.ttl.unwrap_or(self.ttl),
                over.reload_timeout_secs.unwrap_or(self.reload_timeout_secs),
                &mut out,
            );
            if let Some(soa) = &over.soa {
                check_soa(&format!("{key}.soa"), soa, &mut out);
            }
            for srv in &over.ldap_srv {
                if let Err(why) = HealthDomain::parse(&srv.target) {
                    out.push(format!(
                        "{key}.ldap_srv target '{}' is not a valid DNS name: {why}",
                        srv.target
                    ));
                }
                if srv.port == 0 {
                    out.push(format!("{key}.ldap_srv target '{}': port 0", srv.target));
                }
            }
        }
        out
    }
}

fn check_common(key: &str, ttl: u32, timeout: u64, out: &mut Vec<String>) {
    if ttl == 0 || ttl > 2_147_483_647 {
        out.push(format!("{key}.ttl = {ttl} is outside 1..2147483647"));
    }
    if timeout == 0 {
        out.push(format!("{key}.reload_timeout_secs must be at least 1"));
    }
}

fn check_soa(key: &str, soa: &SoaConfig, out: &mut Vec<String>) {
    if let Err(why) = HealthDomain::parse(&soa.primary) {
        out.push(format!(
            "{key}.primary '{}' is not a valid DNS name: {why}",
            soa.primary
        ));
    }
    if let Err(why) = hostmaster_name(&soa.hostmaster) {
        out.push(format!("{key}.hostmaster '{}': {why}", soa.hostmaster));
    }
    for ns in &soa.nameservers {
        if let Err(why) = HealthDomain::parse(ns) {
            out.push(format!(
                "{key}.nameservers '{ns}' is not a valid DNS name: {why}"
            ));
        }
    }
}

/// Why `publish.file_mode` is refused; the text names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileModeError {
    #[error("publish.file_mode '{0}' is not an octal mode such as \"0644\"")]
    NotOctal(String),
    #[error("publish.file_mode '{0}' must give the owner read and write and no execute, set-id or sticky bits (e.g. \"0644\" or \"0640\")")]
    Bits(String),
}

/// Why an SOA hostmaster is refused; the text follows the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostmasterError {
    /// The domain (after `@`), or the whole value when it has no `@`.
    #[error(transparent)]
    Domain(#[from] ParseError),
    #[error("'{0}' is not a usable mailbox name")]
    Mailbox(String),
}

/// Why an LDAP base DN is refused; the text follows `publish.ldap.base_dn = '...': `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaseDnError {
    #[error("is empty")]
    Empty,
    #[error("use plain ASCII RDNs without escapes or multi-valued RDNs")]
    NotPlain,
    #[error("'{0}' is not an attribute=value RDN")]
    NotAttributeValue(String),
    #[error("'{0}' has an empty or padded type or value")]
    EmptyOrPadded(String),
    #[error("'{0}' is not an attribute type")]
    AttributeType(String),
    #[error("the first RDN must be dc=, o= or ou= (anchorage creates that entry), not {0}=")]
    NotContainer(String),
}

/// Parses an octal file mode such as "0644"; refuses set-id, sticky and execute bits and a
/// file its owner cannot read and write.
pub fn parse_file_mode(value: &str) -> Result<u32, FileModeError> {
    let bits =
        u32::from_str_radix(value, 8).map_err(|_| FileModeError::NotOctal(value.to_string()))?;
    if bits & !0o666 != 0 || bits & 0o600 != 0o600 {
        return Err(FileModeError::Bits(value.to_string()));
    }
    Ok(bits)
}

/// The SOA RNAME in master-file form: `hostmaster@example.net` -> `hostmaster.example.net`.
/// A dot inside the mailbox's local part is escaped, as RFC 1035 asks.
pub fn hostmaster_name(value: &str) -> Result<String, HostmasterError> {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = HealthDomain::parse(domain)?;
            if local.is_empty()
                || local.len() > 63
                || !local
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
            {
                return Err(HostmasterError::Mailbox(local.to_string()));
            }
            Ok(format!("{}.{domain}", local.replace('.', "\\.")))
        }
        None => Ok(HealthDomain::parse(value)?.to_string()),
    }
}

/// RDN attribute types a container entry can be made for.
pub const BASE_DN_TYPES: [&str; 3] = ["dc", "o", "ou"];

/// Checks the base DN: `type=value` RDNs separated by commas, the first of a container type.
pub fn check_base_dn(dn: &str) -> Result<(), BaseDnError> {
    if dn.trim().is_empty() {
        return Err(BaseDnError::Empty);
    }
    if dn.contains(['\\', '"', '+', ';', '<', '>', '#']) || !dn.is_ascii() {
        return Err(BaseDnError::NotPlain);
    }
    for (i, rdn) in dn.split(',').enumerate() {
        let (kind, value) = rdn
            .split_once('=')
            .ok_or_else(|| BaseDnError::NotAttributeValue(rdn.to_string()))?;
        let kind = kind.trim();
        if value.trim().is_empty() || kind.is_empty() || value != value.trim() {
            return Err(BaseDnError::EmptyOrPadded(rdn.to_string()));
        }
        if !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BaseDnError::AttributeType(kind.to_string()));
        }
        if i == 0 && !BASE_DN_TYPES.contains(&kind.to_ascii_lowercase().as_str()) {
            return Err(BaseDnError::NotContainer(kind.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> Vec<HealthDomain> {
        vec![HealthDomain::parse("direct.example.com").unwrap()]
    }

    #[test]
    fn defaults_are_valid() {
        assert!(PublishConfig::default().problems(&managed()).is_empty());
    }

    #[test]
    fn names_are_checked() {
        let cases: &[(&str, &str)] = &[
            ("fail/domain", "[domains.\"bad_name.example\"]\n"),
            ("fail/unmanaged", "[domains.\"other.example\"]\n"),
            (
                "fail/srv-target",
                "[[domains.\"direct.example.com\".ldap_srv]]\ntarget = \"ldap server.example\"\n",
            ),
            ("fail/ns", "[soa]\nnameservers = [\"ns_1.example\"]\n"),
            ("fail/base-dn", "[ldap]\nbase_dn = \"cn=x,dc=example\"\n"),
            ("fail/ttl", "ttl = 0\n"),
        ];
        for (name, text) in cases {
            let config: PublishConfig = toml::from_str(text).unwrap();
            let problems = config.problems(&managed());
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        }
        let config: PublishConfig = toml::from_str("[domains.\"bad_name.example\"]\n").unwrap();
        assert!(config.problems(&managed())[0].contains("bad_name.example"));
    }

    #[test]
    fn domain_overrides_apply() {
        let config: PublishConfig = toml::from_str(
            "ttl = 600\n[domains.\"direct.example.com\"]\nmode = \"zone\"\n[[domains.\"direct.example.com\".ldap_srv]]\ntarget = \"ldap.example.com\"\npriority = 10\n",
        )
        .unwrap();
        let d = config.for_domain(&managed()[0], Path::new("/data"));
        assert_eq!(d.mode, ZoneMode::Zone);
        assert_eq!(d.ttl, 600);
        assert_eq!(d.ldap_srv[0].port, 389);
        assert_eq!(
            d.file(),
            Path::new("/data/published/dns/direct.example.com.zone")
        );
        assert_eq!(
            hostmaster_name("dns.admin@example.net").unwrap(),
            "dns\\.admin.example.net"
        );
    }

    #[test]
    fn file_modes() {
        for (name, value, want) in [
            ("ok/world-readable", "0644", Some(0o644)),
            ("ok/group-readable", "0640", Some(0o640)),
            ("ok/private", "600", Some(0o600)),
            ("fail/not-octal", "rw-r--r--", None),
            ("fail/executable", "0755", None),
            ("fail/owner-cannot-write", "0444", None),
            ("fail/setuid", "4644", None),
        ] {
            assert_eq!(parse_file_mode(value).ok(), want, "{name}");
        }
        let config = PublishConfig {
            file_mode: "0777".into(),
            ..PublishConfig::default()
        };
        assert!(config
            .problems(&managed())
            .iter()
            .any(|p| p.contains("publish.file_mode")));
        assert_eq!(config.file_mode_bits(), 0o644);
    }
}
