//! Parsed domain types. A value of one of these types has already been checked, so code that
//! receives a `DirectAddress` never re-validates it, and raw strings stop at the edges.

pub mod accounts;
pub mod ca;
pub mod denial;
pub mod external;
pub mod issuance;
pub mod organisations;
mod parse_error;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use parse_error::{LabelProblem, ParseError};

/// Characters allowed in a local part: RFC 5322 atext minus those that would need escaping in
/// a DNS master file label (RFC 1035 §5.1: `$`, `"`, `(`, `)`, `;`, `@`, `\`) - because the
/// local part becomes DNS labels of the CERT owner name (spec §3).
const LOCAL_EXTRA: &str = "!#%&'*+/=?^_`{|}~-";

/// A lower-case health domain name (the part after `@` of a Direct address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HealthDomain(String);

impl HealthDomain {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let name = input
            .strip_suffix('.')
            .unwrap_or(input)
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(ParseError::DomainEmpty);
        }
        if !name.is_ascii() {
            return Err(ParseError::DomainNotAscii(input.to_string()));
        }
        if name.len() > 253 {
            return Err(ParseError::DomainTooLong(input.to_string()));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(ParseError::DomainNotQualified(input.to_string()));
        }
        for label in &labels {
            check_hostname_label(label).map_err(|problem| ParseError::DomainLabel {
                input: input.to_string(),
                problem,
            })?;
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ParseError::DomainIsIpAddress(input.to_string()));
        }
        Ok(HealthDomain(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` is `other` or a subdomain of it.
    pub fn is_within(&self, other: &HealthDomain) -> bool {
        self.0 == other.0 || self.0.ends_with(&format!(".{}", other.0))
    }
}

fn check_hostname_label(label: &str) -> Result<(), LabelProblem> {
    if label.is_empty() {
        return Err(LabelProblem::Empty);
    }
    if label.len() > 63 {
        return Err(LabelProblem::TooLong(label.to_string()));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(LabelProblem::Hyphen(label.to_string()));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(LabelProblem::Character {
            label: label.to_string(),
            character: c,
        });
    }
    Ok(())
}

impl TryFrom<String> for HealthDomain {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        HealthDomain::parse(&s)
    }
}

impl From<HealthDomain> for String {
    fn from(d: HealthDomain) -> String {
        d.0
    }
}

impl fmt::Display for HealthDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lower-case Direct address `local@domain` whose owner name can be written in DNS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DirectAddress {
    local: String,
    domain: HealthDomain,
}

impl DirectAddress {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let lower = input.trim().to_ascii_lowercase();
        let (local, domain) = lower
            .rsplit_once('@')
            .ok_or_else(|| ParseError::AddressNoAt(input.to_string()))?;
        if local.is_empty() {
            return Err(ParseError::LocalEmpty(input.to_string()));
        }
        if !local.is_ascii() {
            return Err(ParseError::LocalNotAscii(input.to_string()));
        }
        for label in local.split('.') {
            if label.is_empty() {
                return Err(ParseError::LocalEmptyLabel(input.to_string()));
            }
            if label.len() > 63 {
                return Err(ParseError::LocalLabelTooLong {
                    input: input.to_string(),
                    label: label.to_string(),
                });
            }
            if label == "*" {
                return Err(ParseError::LocalWildcard(input.to_string()));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || LOCAL_EXTRA.contains(*c)))
            {
                return Err(ParseError::LocalCharacter {
                    input: input.to_string(),
                    character: c,
                });
            }
        }
        let domain = HealthDomain::parse(domain)?;
        let address = DirectAddress {
            local: local.to_string(),
            domain,
        };
        if address.dns_owner().len() > 253 {
            return Err(ParseError::OwnerNameTooLong(input.to_string()));
        }
        Ok(address)
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &HealthDomain {
        &self.domain
    }

    /// RFC 4398 / Direct owner name without the final dot: `local@domain` -> `local.domain`.
    pub fn dns_owner(&self) -> String {
        format!("{}.{}", self.local, self.domain)
    }
}

impl TryFrom<String> for DirectAddress {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        DirectAddress::parse(&s)
    }
}

impl From<DirectAddress> for String {
    fn from(a: DirectAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for DirectAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// What a certificate is bound to: one Direct address, or a whole health domain.
/// Serialised as the plain name: an address has an `@`, a domain never does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Holder {
    Address(DirectAddress),
    Domain(HealthDomain),
}

impl Holder {
    pub fn domain(&self) -> &HealthDomain {
        match self {
            Holder::Address(a) => a.domain(),
            Holder::Domain(d) => d,
        }
    }

    /// The DNS owner name (without the final dot) under which the certificate is published.
    pub fn dns_owner(&self) -> String {
        match self {
            Holder::Address(a) => a.dns_owner(),
            Holder::Domain(d) => d.to_string(),
        }
    }

    pub fn binding(&self) -> Binding {
        match self {
            Holder::Address(_) => Binding::Address,
            Holder::Domain(_) => Binding::Domain,
        }
    }
}

impl Holder {
    pub fn parse(input: &str) -> Result<Holder, ParseError> {
        if input.contains('@') {
            DirectAddress::parse(input).map(Holder::Address)
        } else {
            HealthDomain::parse(input).map(Holder::Domain)
        }
    }
}

impl TryFrom<String> for Holder {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Holder::parse(&s)
    }
}

impl From<Holder> for String {
    fn from(h: Holder) -> String {
        h.to_string()
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Address(a) => a.fmt(f),
            Holder::Domain(d) => d.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    Address,
    Domain,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Address => "address",
            Binding::Domain => "domain",
        }
    }
}

/// The usage a registrar asks for; `Pair` yields one signing and one encryption certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    Dual,
    Signing,
    Encryption,
    Pair,
}

impl Usage {
    pub const ALL: [Usage; 4] = [Usage::Dual, Usage::Signing, Usage::Encryption, Usage::Pair];

    pub fn parse(s: &str) -> Option<Usage> {
        Usage::ALL.into_iter().find(|u| u.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Dual => "dual",
            Usage::Signing => "signing",
            Usage::Encryption => "encryption",
            Usage::Pair => "pair",
        }
    }

    /// The certificates one request of this usage produces, in output order (signing first).
    pub fn certificate_usages(self) -> &'static [CertUsage] {
        match self {
            Usage::Dual => &[CertUsage::Dual],
            Usage::Signing => &[CertUsage::Signing],
            Usage::Encryption => &[CertUsage::Encryption],
            Usage::Pair => &[CertUsage::Signing, CertUsage::Encryption],
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The usage of one issued certificate (a pair is two certificates of different usages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertUsage {
    Dual,
    Signing,
    Encryption,
}

impl CertUsage {
    pub fn as_str(self) -> &'static str {
        match self {
            CertUsage::Dual => "dual",
            CertUsage::Signing => "signing",
            CertUsage::Encryption => "encryption",
        }
    }
}

/// A certificate serial number: 16 bytes from the CSPRNG, positive, kept as lower-case hex.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "5e1c0a39d2f04b7a8c6e2f1d3b4a5968")]
pub struct Serial(String);

impl Serial {
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        Serial(hex::encode(bytes))
    }

    /// Accepts hex with optional colons and `0x`, any case (as openssl and browsers print it).
    pub fn parse(input: &str) -> Result<Serial, ParseError> {
        let cleaned: String = input
            .trim()
            .trim_start_matches("0x")
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if cleaned.is_empty() || cleaned.len() > 40 || !cleaned.len().is_multiple_of(2) {
            return Err(ParseError::SerialShape(input.to_string()));
        }
        if hex::decode(&cleaned).is_err() {
            return Err(ParseError::SerialNotHex(input.to_string()));
        }
        Ok(Serial(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        hex::decode(&self.0).unwrap_or_default()
    }
}

impl TryFrom<String> for Serial {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Serial::parse(&s)
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a DER object, lower-case hex.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[schema(value_type = String)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        Fingerprint(hex::encode(digest.as_ref()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 5280 §5.3.1 revocation reasons that a CA may assert for an end-entity certificate.
/// certificateHold is deliberately absent: anchorage revocations are permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 7] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    pub fn parse(s: &str) -> Result<RevocationReason, ParseError> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted || r.rfc5280_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseError::RevocationReason(s.to_string()))
    }

    /// The names [`RevocationReason::parse`] accepts, comma-separated, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
        names.join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    pub fn rfc5280_name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }
}

/// A subscriber key algorithm a profile allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
}

/// Key algorithm of the root CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKeyAlgorithm {
    Rsa4096,
    P384,
}

/// Key algorithm of the issuing CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuingKeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "ok/simple",
                "Jones@Direct.Example.com",
                Some("jones.direct.example.com"),
            ),
            ("ok/dotted-local", "a.b@c.example", Some("a.b.c.example")),
            ("ok/plus", "dr+x@d.example", Some("dr+x.d.example")),
            ("fail/no-at", "jones.direct.example.com", None),
            ("fail/empty-local", "@direct.example.com", None),
            ("fail/double-dot", "a..b@c.example", None),
            ("fail/dollar", "$x@c.example", None),
            ("fail/space", "a b@c.example", None),
            ("fail/quote", "\"a\"@c.example", None),
            ("fail/single-label-domain", "a@localhost", None),
            ("fail/ip-domain", "a@10.0.0.1", None),
            ("fail/bad-domain-char", "a@exa_mple.com", None),
            ("fail/utf8", "jörg@c.example", None),
        ];
        for (name, input, want) in cases {
            let got = DirectAddress::parse(input).map(|a| a.dns_owner()).ok();
            assert_eq!(got.as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn holders_serialise_as_plain_names() {
        let a: Holder = serde_json::from_str("\"Jones@Direct.Example.com\"").unwrap();
        assert_eq!(a.binding(), Binding::Address);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"jones@direct.example.com\""
        );
        let d: Holder = serde_json::from_str("\"direct.example.com\"").unwrap();
        assert_eq!(d.binding(), Binding::Domain);
        assert!(serde_json::from_str::<Holder>("\"not a name\"").is_err());
    }

    #[test]
    fn serials_and_reasons() {
        assert_eq!(Serial::parse("0A:bC").map(|s| s.0), Ok("0abc".into()));
        assert!(Serial::parse("xyz1").is_err());
        assert!(Serial::parse("abc").is_err());
        assert_eq!(
            RevocationReason::parse("key-compromise"),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            RevocationReason::parse("keyCompromise"),
            Ok(RevocationReason::KeyCompromise)
        );
        assert!(RevocationReason::parse("hold").is_err());
    }

    /// The typed errors print the sentences users have always seen.
    #[test]
    fn parse_errors_keep_their_text() {
        let cases: &[(&str, std::result::Result<(), ParseError>, &str)] = &[
            ("fail/empty-domain", HealthDomain::parse(".").map(drop), "the domain is empty"),
            (
                "fail/domain-label",
                HealthDomain::parse("exa_mple.com").map(drop),
                "'exa_mple.com': label 'exa_mple' contains the character '_'",
            ),
            (
                "fail/domain-empty-label",
                HealthDomain::parse("a..example").map(drop),
                "'a..example': has an empty label",
            ),
            (
                "fail/ip",
                HealthDomain::parse("10.0.0.1").map(drop),
                "'10.0.0.1' looks like an IP address, not a domain",
            ),
            (
                "fail/no-at",
                DirectAddress::parse("x.example").map(drop),
                "'x.example' is not an address: it has no '@'",
            ),
            (
                "fail/local-char",
                DirectAddress::parse("$x@c.example").map(drop),
                "'$x@c.example': the character '$' is not allowed in a Direct local part that is published in DNS",
            ),
            (
                "fail/address-domain",
                Holder::parse("a@localhost").map(drop),
                "'localhost' is not a fully qualified domain name (it needs at least two labels)",
            ),
            (
                "fail/serial",
                Serial::parse("abc").map(drop),
                "'abc' is not a certificate serial (even-length hex, at most 20 bytes)",
            ),
            ("fail/serial-hex", Serial::parse("xyz1").map(drop), "'xyz1' is not hexadecimal"),
            (
                "fail/reason",
                RevocationReason::parse("hold").map(drop),
                "unknown revocation reason 'hold'; use one of unspecified, key-compromise, \
                 ca-compromise, affiliation-changed, superseded, cessation-of-operation, \
                 privilege-withdrawn",
            ),
        ];
        for (name, result, want) in cases {
            let got = result.as_ref().map_err(ToString::to_string).err();
            assert_eq!(got.as_deref(), Some(*want), "{name}");
        }
    }
}

/// Serde adapter: binary fields (DER) as standard base64 strings in stored JSON records.
pub mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// A time as RFC 3339 text, as every JSON answer writes times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
