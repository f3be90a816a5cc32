//! Anchor admission: whether a member's CA certificate may join a trust bundle. Trust is
//! all-or-nothing per bundle (spec §1): one weak, expired or mistaken anchor exposes the mail of
//! every member, so this is the community's gate. Two pure steps: [`read_anchor_upload`] turns
//! what `bundle::upload` makes of an uploaded file (certificates, or a private key, PKCS#12
//! file or CSR refused with a reason a member can act on) into this policy's terms; [`admit`]
//! checks one anchor against the [`AdmissionPolicy`] of
//! `policies/anchor-admission.toml`. A refusal lists every failed rule. The policy is a plain
//! value, so the same check can run in report-only mode over the anchors of external bundles.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::profile::KeyKind;
use super::{Denial, Reasons};
use crate::bundle;
use crate::error::{Error, Result};
use crate::model::Fingerprint;
use crate::x509::{self, SignatureAlgorithm};

mod rules;
mod samples;

use rules::{check_ca, check_duplicates, check_key, check_signature, check_validity};
use samples::check_samples;

/// The policy's file name, in `policies_dir` or embedded.
pub const POLICY_FILE: &str = "anchor-admission.toml";

const EMBEDDED_POLICY: &str = include_str!("../../policies/anchor-admission.toml");

/// Bounds beyond which a policy value is a mistake rather than a choice.
const MAX_RSA_BITS: u32 = 16384;
const MAX_DAYS_REMAINING: u32 = 3650;
const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The `field` of a reason: the uploaded anchor, or the sample certificates.
const ANCHOR: &str = "anchor";
const SAMPLES: &str = "samples";

/// The admission rules, as loaded from `policies/anchor-admission.toml`. A key left out of the
/// file takes the value of [`AdmissionPolicy::default`], which the shipped file spells out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionPolicy {
    /// Days the anchor must stay valid after admission.
    pub min_days_remaining: u32,
    pub key_types: Vec<KeyKind>,
    pub min_rsa_bits: u32,
    /// The anchor's own signature algorithm.
    pub signature_algorithms: Vec<SignatureAlgorithm>,
    pub require_basic_constraints_ca: bool,
    pub require_key_cert_sign: bool,
    /// Check the sample end-entity certificates a member gives (samples are optional).
    pub check_samples: bool,
    pub max_upload_bytes: usize,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        use SignatureAlgorithm as S;
        AdmissionPolicy {
            min_days_remaining: 30,
            key_types: vec![KeyKind::Rsa, KeyKind::P256, KeyKind::P384],
            min_rsa_bits: 2048,
            signature_algorithms: vec![
                S::RsaSha256,
                S::RsaSha384,
                S::RsaSha512,
                S::RsaPssSha256,
                S::RsaPssSha384,
                S::RsaPssSha512,
                S::EcdsaSha256,
                S::EcdsaSha384,
                S::EcdsaSha512,
            ],
            require_basic_constraints_ca: true,
            require_key_cert_sign: true,
            check_samples: true,
            max_upload_bytes: 1024 * 1024,
        }
    }
}

impl AdmissionPolicy {
    /// Loads `anchor-admission.toml` from `dir`, or the copy embedded at build time when no
    /// directory is configured.
    pub fn load(dir: Option<&Path>) -> Result<AdmissionPolicy> {
        match dir {
            None => AdmissionPolicy::parse(EMBEDDED_POLICY, &format!("(embedded) {POLICY_FILE}")),
            Some(dir) => {
                let path = dir.join(POLICY_FILE);
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                AdmissionPolicy::parse(&text, &path.display().to_string())
            }
        }
    }

    /// Parses a policy; `origin` names the file in errors. Unknown keys and impossible values
    /// are refused, so a typo stops the service instead of silently admitting something else.
    pub fn parse(text: &str, origin: &str) -> Result<AdmissionPolicy> {
        let policy: AdmissionPolicy = toml::from_str(text).map_err(|e| Error::Profile {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        let problems = policy.problems();
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(Error::Profile {
                file: origin.to_string(),
                message: problems.join("; "),
            })
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.key_types.is_empty() {
            out.push("key_types is empty: no anchor could be admitted".into());
        }
        if self.signature_algorithms.is_empty() {
            out.push("signature_algorithms is empty: no anchor could be admitted".into());
        }
        if self.min_rsa_bits < 2048 || self.min_rsa_bits > MAX_RSA_BITS {
            out.push(format!(
                "min_rsa_bits = {} is outside 2048..={MAX_RSA_BITS} (RSA below 2048 bits is breakable)",
                self.min_rsa_bits
            ));
        }
        if !self.min_rsa_bits.is_multiple_of(8) {
            out.push(format!(
                "min_rsa_bits = {} is not a multiple of 8 (RSA moduli are whole bytes)",
                self.min_rsa_bits
            ));
        }
        if self.min_days_remaining > MAX_DAYS_REMAINING {
            out.push(format!(
                "min_days_remaining = {} is more than {MAX_DAYS_REMAINING} (10 years): it would refuse almost every CA",
                self.min_days_remaining
            ));
        }
        if self.max_upload_bytes == 0 || self.max_upload_bytes > MAX_UPLOAD_BYTES {
            out.push(format!(
                "max_upload_bytes = {} is outside 1..={MAX_UPLOAD_BYTES}",
                self.max_upload_bytes
            ));
        }
        out
    }
}

/// Says what an uploaded anchor file is and returns its DER certificates, in file order
/// without duplicates ([`bundle::upload::classify`]); what it refuses (keys, PKCS#12 files,
/// CSRs, unreadable files) becomes this policy's reasons, about the `anchor` field.
pub fn read_anchor_upload(bytes: &[u8], max_bytes: usize) -> Result<Vec<Vec<u8>>, Denial> {
    let mut r = Reasons::default();
    match bundle::upload::classify(bytes, max_bytes) {
        Ok(certs) => return Ok(certs),
        Err(refusals) => {
            for refusal in refusals {
                r.add(refusal.code, ANCHOR, refusal.message);
            }
        }
    }
    r.into_result(|| None)
}

/// An anchor already in the target bundle, as far as duplicate detection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingAnchor {
    /// The stored anchor's id; `None` for one that is not stored yet (an earlier anchor of the
    /// same upload).
    pub id: Option<u64>,
    pub fingerprint: Fingerprint,
    pub subject_raw: Vec<u8>,
    /// Its key identifier ([`AnchorFacts::key_id`]); `None` when unknown.
    pub key_id: Option<Vec<u8>>,
    /// Its SubjectPublicKeyInfo (DER): what "the same key" means when known; without it keys
    /// are compared by their identifiers.
    pub spki: Option<Vec<u8>>,
}

impl ExistingAnchor {
    /// The anchor certificate `der`, stored as `id`; `None` when it is not a certificate.
    pub fn of_certificate(id: Option<u64>, der: &[u8]) -> Option<ExistingAnchor> {
        let cert = parse_certificate(der)?;
        Some(ExistingAnchor {
            id,
            fingerprint: Fingerprint::of(der),
            subject_raw: cert.subject().as_raw().to_vec(),
            key_id: Some(
                x509::subject_key_id(&cert)
                    .unwrap_or_else(|| x509::key_identifier(cert.public_key())),
            ),
            spki: Some(cert.public_key().raw.to_vec()),
        })
    }
}

impl From<&AnchorFacts> for ExistingAnchor {
    fn from(facts: &AnchorFacts) -> Self {
        ExistingAnchor {
            id: None,
            fingerprint: facts.fingerprint.clone(),
            subject_raw: facts.subject_raw.clone(),
            key_id: Some(facts.key_id.clone()),
            spki: None,
        }
    }
}

/// What admission learned about an anchor it accepted: what a store record and a listing need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorFacts {
    /// SHA-256 of the DER certificate.
    pub fingerprint: Fingerprint,
    /// RFC 4514 text ([`x509::rfc4514`]).
    pub subject: String,
    /// The subject name's DER: names chain byte for byte, never by their text.
    #[serde(with = "crate::model::base64_bytes")]
    pub subject_raw: Vec<u8>,
    /// The subjectKeyIdentifier, or the RFC 7093 method 1 identifier of the key when absent.
    #[serde(with = "hex_bytes")]
    pub key_id: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Such as `RSA-2048` or `ECDSA P-384`.
    pub key: String,
    /// Such as `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
    /// The stored anchors of the bundle this one replaces: the same subject with another key,
    /// admitted because the submission declared a key rollover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollover_of: Vec<u64>,
}

/// Checks one anchor (DER) against `policy`. `samples` are end-entity certificates (DER) the
/// member says the CA issued, numbered from 1 in messages; a CA among them that the anchor
/// issued counts as an intermediate for the others (one level). `existing` are the anchors
/// already in the target bundle. An anchor with the subject of one of them but another key is
/// refused (`anchor_same_subject_different_key`) unless `rollover` says the submission is the
/// CA's key rollover; then the facts list the anchors it replaces. Returns the anchor's facts,
/// or every rule it failed.
pub fn admit(
    anchor_der: &[u8],
    samples: &[Vec<u8>],
    existing: &[ExistingAnchor],
    policy: &AdmissionPolicy,
    now: OffsetDateTime,
    rollover: bool,
) -> Result<AnchorFacts, Denial> {
    let mut r = Reasons::default();
    let Some(anchor) = parse_certificate(anchor_der) else {
        r.add(
            "anchor_unreadable",
            ANCHOR,
            "the anchor is not a DER X.509 certificate",
        );
        return r.into_result(|| None);
    };
    check_ca(&anchor, policy, &mut r);
    check_validity(&anchor, policy, now, &mut r);
    let key = x509::key_info(anchor.public_key());
    check_key(&key, policy, &mut r);
    let signature = x509::signature_info(&anchor.signature_algorithm);
    check_signature(&signature, policy, &mut r);
    let mut facts = AnchorFacts {
        fingerprint: Fingerprint::of(anchor_der),
        subject: x509::rfc4514(anchor.subject().as_raw()),
        subject_raw: anchor.subject().as_raw().to_vec(),
        key_id: x509::subject_key_id(&anchor)
            .unwrap_or_else(|| x509::key_identifier(anchor.public_key())),
        not_before: anchor.validity().not_before.to_datetime(),
        not_after: anchor.validity().not_after.to_datetime(),
        key: key.description,
        signature_algorithm: signature.description,
        rollover_of: Vec::new(),
    };
    facts.rollover_of = check_duplicates(&anchor, &facts, existing, rollover, &mut r);
    if policy.check_samples {
        check_samples(&anchor, samples, now, &mut r);
    }
    r.into_result(move || Some(facts))
}

/// The certificate in `der`, when it is exactly one DER certificate.
fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

/// Key identifiers as lower-case hex in stored JSON, as CA tools print them.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
