//! Why a text is not a domain value: the one error of every `parse` (and serde `try_from`) in
//! [`crate::model`]. Its text is the sentence users have always seen (the CLI, the API and the
//! web forms show it, and tests check it), so each variant keeps the text as given.

use super::RevocationReason;

/// Why a text is not a [`super::HealthDomain`], [`super::DirectAddress`], [`super::Holder`],
/// [`super::Serial`] or [`super::RevocationReason`]. `input` is the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    // ---- health domains
    #[error("the domain is empty")]
    DomainEmpty,
    #[error("'{0}' contains non-ASCII characters; use the A-label (xn--) form")]
    DomainNotAscii(String),
    #[error("'{0}' is longer than 253 characters")]
    DomainTooLong(String),
    #[error("'{0}' is not a fully qualified domain name (it needs at least two labels)")]
    DomainNotQualified(String),
    #[error("'{input}': {problem}")]
    DomainLabel {
        input: String,
        problem: LabelProblem,
    },
    #[error("'{0}' looks like an IP address, not a domain")]
    DomainIsIpAddress(String),

    // ---- Direct addresses (a bad domain part is one of the domain errors above)
    #[error("'{0}' is not an address: it has no '@'")]
    AddressNoAt(String),
    #[error("'{0}' has an empty local part")]
    LocalEmpty(String),
    #[error("'{0}': the local part must be ASCII (SMTPUTF8 addresses cannot be published in DNS)")]
    LocalNotAscii(String),
    #[error("'{0}': the local part has a leading, trailing or doubled dot")]
    LocalEmptyLabel(String),
    #[error("'{input}': '{label}' would be a DNS label longer than 63 characters")]
    LocalLabelTooLong { input: String, label: String },
    #[error(
        "'{0}': a '*' label would publish the certificate as a DNS wildcard for every address"
    )]
    LocalWildcard(String),
    #[error("'{input}': the character '{character}' is not allowed in a Direct local part that is published in DNS")]
    LocalCharacter { input: String, character: char },
    #[error("'{0}': its DNS owner name would be longer than 253 characters")]
    OwnerNameTooLong(String),

    // ---- serials and revocation reasons
    #[error("'{0}' is not a certificate serial (even-length hex, at most 20 bytes)")]
    SerialShape(String),
    #[error("'{0}' is not hexadecimal")]
    SerialNotHex(String),
    #[error("unknown revocation reason '{0}'; use one of {names}", names = RevocationReason::names())]
    RevocationReason(String),
}

/// What is wrong with one label of a host name (the text after `'domain': `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelProblem {
    #[error("has an empty label")]
    Empty,
    #[error("label '{0}' is longer than 63 characters")]
    TooLong(String),
    #[error("label '{0}' starts or ends with a hyphen")]
    Hyphen(String),
    #[error("label '{label}' contains the character '{character}'")]
    Character { label: String, character: char },
}
