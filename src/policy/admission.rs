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
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::profile::KeyKind;
use super::{Denial, Reasons};
use crate::bundle;
use crate::error::{Error, Result};
use crate::model::Fingerprint;
use crate::x509::{self, KeyInfo, SignatureAlgorithm, SignatureInfo};

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

// ---------------------------------------------------------------------------------------------
// Anchor rules

fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn check_ca(anchor: &X509Certificate<'_>, policy: &AdmissionPolicy, r: &mut Reasons) {
    if policy.require_basic_constraints_ca {
        let problem = match anchor.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => None,
            Ok(Some(_)) => Some("its basicConstraints says CA:FALSE (an end-entity certificate)"),
            Ok(None) => Some("it has no basicConstraints extension"),
            Err(_) => Some("its basicConstraints extension is malformed or repeated"),
        };
        if let Some(problem) = problem {
            r.add(
                "not_ca",
                ANCHOR,
                format!("the anchor is not a CA certificate: {problem}; a trust anchor needs basicConstraints CA:TRUE"),
            );
        }
    }
    if policy.require_key_cert_sign {
        let problem = match anchor.key_usage() {
            Ok(Some(ku)) if ku.value.key_cert_sign() => None,
            Ok(Some(ku)) => Some(format!("its keyUsage is {}", ku.value)),
            Ok(None) => Some("it has no keyUsage extension".to_string()),
            Err(_) => Some("its keyUsage extension is malformed or repeated".to_string()),
        };
        if let Some(problem) = problem {
            r.add(
                "no_key_cert_sign",
                ANCHOR,
                format!("the anchor may not sign certificates: {problem}; a trust anchor needs keyUsage keyCertSign"),
            );
        }
    }
}

fn check_validity(
    anchor: &X509Certificate<'_>,
    policy: &AdmissionPolicy,
    now: OffsetDateTime,
    r: &mut Reasons,
) {
    let not_before = anchor.validity().not_before.to_datetime();
    let not_after = anchor.validity().not_after.to_datetime();
    if now > not_after {
        r.add(
            "expired",
            ANCHOR,
            format!("the anchor expired on {}", moment(not_after)),
        );
        return;
    }
    if now < not_before {
        r.add(
            "not_yet_valid",
            ANCHOR,
            format!("the anchor is not valid before {}", moment(not_before)),
        );
    }
    let left = not_after - now;
    if left < Duration::days(i64::from(policy.min_days_remaining)) {
        r.add(
            "validity_too_short",
            ANCHOR,
            format!(
                "the anchor expires on {}, in {} days; the policy requires at least {} days left",
                moment(not_after),
                left.whole_days(),
                policy.min_days_remaining
            ),
        );
    }
}

/// RFC 3339, as the API and the audit log write times.
fn moment(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn check_key(key: &KeyInfo, policy: &AdmissionPolicy, r: &mut Reasons) {
    if !key.kind.is_some_and(|k| policy.key_types.contains(&k)) {
        let allowed: Vec<&str> = policy.key_types.iter().map(|k| key_kind_name(*k)).collect();
        r.add(
            "key_type_unsupported",
            ANCHOR,
            format!(
                "the anchor's key ({}) is not a type the policy allows ({})",
                key.description,
                allowed.join(", ")
            ),
        );
    }
    if key.kind == Some(KeyKind::Rsa) && key.bits < policy.min_rsa_bits as usize {
        r.add(
            "key_too_weak",
            ANCHOR,
            format!(
                "the anchor's key is RSA-{}; the policy requires at least {} bits",
                key.bits, policy.min_rsa_bits
            ),
        );
    }
}

fn key_kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Rsa => "rsa",
        KeyKind::P256 => "p256",
        KeyKind::P384 => "p384",
    }
}

fn check_signature(signature: &SignatureInfo, policy: &AdmissionPolicy, r: &mut Reasons) {
    if signature
        .algorithm
        .is_some_and(|a| policy.signature_algorithms.contains(&a))
    {
        return;
    }
    let why = if signature.broken {
        " (MD5 and SHA-1 signatures can be forged)"
    } else {
        ""
    };
    let allowed: Vec<&str> = policy
        .signature_algorithms
        .iter()
        .map(|a| a.as_str())
        .collect();
    r.add(
        "signature_algorithm_weak",
        ANCHOR,
        format!(
            "the anchor is signed with {}{why}; the policy allows {}",
            signature.description,
            allowed.join(", ")
        ),
    );
}

/// An exact copy is reported as such; otherwise the same subject with the same key (a CA
/// certificate re-issued for the same key) is a duplicate too. The key is compared by its
/// SubjectPublicKeyInfo when the existing anchor's is known, else by the anchor's SKI and by
/// its RFC 7093 identifier, since the copy in the bundle may carry either.
///
/// The same subject (DER, byte for byte) with another key is a second CA claiming the same
/// name: refused, unless the member declared a key rollover. Returns the ids of the stored
/// anchors a declared rollover replaces.
fn check_duplicates(
    anchor: &X509Certificate<'_>,
    facts: &AnchorFacts,
    existing: &[ExistingAnchor],
    rollover: bool,
    r: &mut Reasons,
) -> Vec<u64> {
    if existing.iter().any(|e| e.fingerprint == facts.fingerprint) {
        r.add(
            "duplicate_fingerprint",
            ANCHOR,
            format!(
                "this certificate (SHA-256 {}) is already an anchor of the bundle",
                facts.fingerprint
            ),
        );
        return Vec::new();
    }
    let rfc7093 = x509::key_identifier(anchor.public_key());
    let same_key = |e: &ExistingAnchor| match &e.spki {
        Some(spki) => spki.as_slice() == anchor.public_key().raw,
        None => e
            .key_id
            .as_ref()
            .is_some_and(|id| *id == facts.key_id || *id == rfc7093),
    };
    let same_subject: Vec<&ExistingAnchor> = existing
        .iter()
        .filter(|e| e.subject_raw == facts.subject_raw)
        .collect();
    if let Some(e) = same_subject.iter().find(|e| same_key(e)) {
        r.add(
            "duplicate_subject_key",
            ANCHOR,
            format!(
                "the bundle already holds an anchor with this subject and key (SHA-256 {}); replace that anchor instead of adding a second certificate for the same CA key",
                e.fingerprint
            ),
        );
        return Vec::new();
    }
    let mut replaced = Vec::new();
    for e in same_subject {
        if rollover {
            replaced.extend(e.id);
            continue;
        }
        let which = match e.id {
            Some(id) => format!("anchor #{id} of the bundle (SHA-256 {})", e.fingerprint),
            None => format!("another anchor of this upload (SHA-256 {})", e.fingerprint),
        };
        r.add(
            "anchor_same_subject_different_key",
            ANCHOR,
            format!(
                "{which} has the same subject '{}' with a different key. If this certificate carries the CA's new key, submit it marked as a key rollover (`rollover: true` in the API, `--rollover` on the CLI, the key rollover box on the form); otherwise the existing anchor must be retired first",
                facts.subject
            ),
        );
    }
    replaced
}

fn check_samples(
    anchor: &X509Certificate<'_>,
    samples: &[Vec<u8>],
    now: OffsetDateTime,
    r: &mut Reasons,
) {
    let parsed: Vec<Option<X509Certificate<'_>>> =
        samples.iter().map(|der| parse_certificate(der)).collect();
    // A CA among the samples that the anchor issued is an intermediate the end-entity samples
    // may chain through. One level only: an intermediate's intermediate is not followed.
    let intermediates: Vec<&X509Certificate<'_>> = parsed
        .iter()
        .flatten()
        .filter(|c| is_ca(c) && issued_by(c, anchor).is_ok())
        .collect();
    for (i, (der, cert)) in samples.iter().zip(&parsed).enumerate() {
        let n = i + 1;
        let Some(cert) = cert else {
            r.add(
                "sample_unreadable",
                SAMPLES,
                format!("sample {n} is not a DER X.509 certificate"),
            );
            continue;
        };
        if is_ca(cert) {
            if let Err(why) = issued_by(cert, anchor) {
                r.add(
                    "sample_is_ca",
                    SAMPLES,
                    format!(
                        "sample {n} ({}) is a CA certificate, not an end-entity certificate",
                        x509::rfc4514(cert.subject().as_raw())
                    ),
                );
                r.add(
                    "sample_not_issued_by_anchor",
                    SAMPLES,
                    format!("sample {n}: {why}"),
                );
            }
            continue;
        }
        if let Err(why) = chains_to_anchor(cert, anchor, &intermediates) {
            r.add(
                "sample_not_issued_by_anchor",
                SAMPLES,
                format!("sample {n}: {why}"),
            );
        }
        for (code, message) in x509::direct_profile_problems(der, now) {
            r.add(
                "sample_profile",
                SAMPLES,
                format!("sample {n} does not follow the Direct profile: {message} [{code}]"),
            );
        }
    }
}

/// Issuer name byte for byte, then the signature with the issuer's key.
fn issued_by(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> std::result::Result<(), String> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        let (named, subject) = (
            x509::rfc4514(cert.issuer().as_raw()),
            x509::rfc4514(issuer.subject().as_raw()),
        );
        let text_equal = named == subject;
        return Err(format!(
            "its issuer '{named}' is not the anchor's subject '{subject}'{}",
            if text_equal {
                " (the names read alike but are encoded differently)"
            } else {
                ""
            }
        ));
    }
    x509::verify_signed_by(cert, issuer.public_key())
        .map_err(|e| format!("it names the anchor as its issuer, but {e}"))
}

fn chains_to_anchor(
    cert: &X509Certificate<'_>,
    anchor: &X509Certificate<'_>,
    intermediates: &[&X509Certificate<'_>],
) -> std::result::Result<(), String> {
    let named: Vec<&&X509Certificate<'_>> = intermediates
        .iter()
        .filter(|c| c.subject().as_raw() == cert.issuer().as_raw())
        .collect();
    if named.is_empty() || cert.issuer().as_raw() == anchor.subject().as_raw() {
        return issued_by(cert, anchor);
    }
    if named
        .iter()
        .any(|c| x509::verify_signed_by(cert, c.public_key()).is_ok())
    {
        Ok(())
    } else {
        Err(format!(
            "it names the intermediate CA '{}' among the samples as its issuer, but its signature does not verify with that CA's key",
            x509::rfc4514(cert.issuer().as_raw())
        ))
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
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension,
        DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType, SerialNumber,
    };

    use super::*;

    fn now() -> OffsetDateTime {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    /// A CA certificate, its parameters and its key (to issue or re-issue with).
    struct Ca {
        der: Vec<u8>,
        params: CertificateParams,
        key: KeyPair,
    }

    impl Ca {
        fn issuer(&self) -> Issuer<'_, &KeyPair> {
            Issuer::from_params(&self.params, &self.key)
        }
    }

    fn ca(
        name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Ca {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = ca_params(name);
        edit(&mut params);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { der, params, key }
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Member");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now() - Duration::days(1);
        params.not_after = now() + Duration::days(3650);
        params
    }

    /// A CA issued by `parent` (an intermediate).
    fn sub_ca(name: &str, parent: &Ca) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = ca_params(name);
        params.use_authority_key_identifier_extension = true;
        let der = params
            .signed_by(&key, &parent.issuer())
            .unwrap()
            .der()
            .to_vec();
        Ca { der, params, key }
    }

    /// A Direct end-entity certificate (spec §2) issued by `issuer`.
    fn sample(issuer: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "jones@direct.example.com");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::Rfc822Name(
            "jones@direct.example.com".try_into().unwrap(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://ca.example.com/crl/issuing.crl".into()],
        }];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            x509::ca_issuers_der("http://ca.example.com/ca/issuing.cer").unwrap(),
        )];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now() - Duration::days(1);
        params.not_after = now() + Duration::days(365);
        edit(&mut params);
        params
            .signed_by(&key, &issuer.issuer())
            .unwrap()
            .der()
            .to_vec()
    }

    fn codes(result: Result<AnchorFacts, Denial>) -> Vec<&'static str> {
        match result {
            Ok(_) => vec![],
            Err(d) => d.codes(),
        }
    }

    #[test]
    fn embedded_and_repository_policies_load_and_state_every_default() {
        let embedded = AdmissionPolicy::load(None).unwrap();
        assert_eq!(embedded, AdmissionPolicy::default());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        assert_eq!(AdmissionPolicy::load(Some(&dir)).unwrap(), embedded);
        assert_eq!(
            AdmissionPolicy::parse("min_days_remaining = 60", "x.toml")
                .unwrap()
                .min_days_remaining,
            60,
            "a key left out takes its default"
        );
    }

    #[test]
    fn strict_policy_loading() {
        // Keys left out take their defaults, so each case states only what it breaks.
        let cases: &[(&str, &str)] = &[
            ("fail/unknown-key", "check_sample = true"),
            ("fail/rsa-below-2048", "min_rsa_bits = 1024"),
            ("fail/rsa-not-whole-bytes", "min_rsa_bits = 2049"),
            ("fail/rsa-absurd", "min_rsa_bits = 65536"),
            ("fail/no-key-types", "key_types = []"),
            ("fail/unknown-key-type", "key_types = [\"rsa\", \"dsa\"]"),
            ("fail/sha1-allowed", "signature_algorithms = [\"rsa-sha1\"]"),
            ("fail/no-signatures", "signature_algorithms = []"),
            ("fail/days-absurd", "min_days_remaining = 9000"),
            ("fail/no-uploads", "max_upload_bytes = 0"),
            ("fail/wrong-type", "check_samples = \"yes\""),
        ];
        for (name, text) in cases {
            let err = AdmissionPolicy::parse(text, "x.toml").unwrap_err();
            assert_eq!(err.code(), "profile_invalid", "{name}");
            let key = text.split(' ').next().unwrap_or_default();
            let message = err.to_string();
            assert!(
                message.contains("x.toml") && message.contains(key),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn admission_rules() {
        let now = now();
        let days = Duration::days;
        let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
        let good = ca("Good CA", p256, |_| {});
        let p384 = ca("P-384 CA", &rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
        let rsa = ca("RSA CA", &rcgen::PKCS_RSA_SHA256, |_| {});
        let end_entity = ca("End entity", p256, |p| {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        });
        let no_bc = ca("No basicConstraints", p256, |p| p.is_ca = IsCa::NoCa);
        let no_kcs = ca("No keyCertSign", p256, |p| {
            p.key_usages = vec![KeyUsagePurpose::CrlSign]
        });
        let no_ku = ca("No keyUsage", p256, |p| p.key_usages = vec![]);
        let expired = ca("Expired", p256, |p| {
            p.not_before = now - days(400);
            p.not_after = now - days(1);
        });
        let future = ca("Future", p256, |p| {
            p.not_before = now + days(1);
            p.not_after = now + days(400);
        });
        let short = ca("Short", p256, |p| p.not_after = now + days(10));
        let ed25519 = ca("Ed25519 CA", &rcgen::PKCS_ED25519, |_| {});
        // The same CA key re-issued under the same subject (new serial and validity).
        let reissued = {
            let mut params = ca_params("Good CA");
            params.serial_number = Some(SerialNumber::from_slice(&[7; 16]));
            params.self_signed(&good.key).unwrap().der().to_vec()
        };
        let good_facts =
            admit(&good.der, &[], &[], &AdmissionPolicy::default(), now, false).unwrap();
        let in_bundle = vec![ExistingAnchor::from(&good_facts)];

        let other = ca("Other CA", p256, |_| {});
        let impostor = ca("Good CA", p256, |_| {}); // same name, another key
        let intermediate = sub_ca("Intermediate", &good);
        let nested = sub_ca("Nested", &intermediate);

        let good_sample = sample(&good, |_| {});
        let domain_sample = sample(&good, |p| {
            p.subject_alt_names = vec![SanType::DnsName("direct.example.com".try_into().unwrap())]
        });
        let two_sans = sample(&good, |p| {
            p.subject_alt_names
                .push(SanType::DnsName("direct.example.com".try_into().unwrap()))
        });
        let bare = sample(&good, |p| {
            p.crl_distribution_points.clear();
            p.custom_extensions.clear();
            p.extended_key_usages.clear();
        });
        let from_other = sample(&other, |_| {});
        let from_impostor = sample(&impostor, |_| {});
        let via_intermediate = sample(&intermediate, |_| {});
        let via_nested = sample(&nested, |_| {});

        let policy = AdmissionPolicy::default();
        let no_p384 = AdmissionPolicy {
            key_types: vec![KeyKind::Rsa, KeyKind::P256],
            ..AdmissionPolicy::default()
        };
        let rsa_3072 = AdmissionPolicy {
            min_rsa_bits: 3072,
            ..AdmissionPolicy::default()
        };
        let rsa_only_signatures = AdmissionPolicy {
            signature_algorithms: vec![SignatureAlgorithm::RsaSha256],
            ..AdmissionPolicy::default()
        };
        let report_legacy = AdmissionPolicy {
            require_basic_constraints_ca: false,
            require_key_cert_sign: false,
            ..AdmissionPolicy::default()
        };
        let no_samples = AdmissionPolicy {
            check_samples: false,
            ..AdmissionPolicy::default()
        };
        let anchor_cases: &[(&str, &[u8], &AdmissionPolicy, &[&str])] = &[
            ("ok/p256", &good.der, &policy, &[]),
            ("ok/p384", &p384.der, &policy, &[]),
            ("ok/rsa", &rsa.der, &policy, &[]),
            (
                "ok/legacy-report-mode",
                &end_entity.der,
                &report_legacy,
                &[],
            ),
            (
                "fail/not-ca",
                &end_entity.der,
                &policy,
                &["not_ca", "no_key_cert_sign"],
            ),
            (
                "fail/no-basic-constraints",
                &no_bc.der,
                &policy,
                &["not_ca"],
            ),
            (
                "fail/no-key-cert-sign",
                &no_kcs.der,
                &policy,
                &["no_key_cert_sign"],
            ),
            (
                "fail/no-key-usage",
                &no_ku.der,
                &policy,
                &["no_key_cert_sign"],
            ),
            ("fail/expired", &expired.der, &policy, &["expired"]),
            (
                "fail/not-yet-valid",
                &future.der,
                &policy,
                &["not_yet_valid"],
            ),
            (
                "fail/validity-too-short",
                &short.der,
                &policy,
                &["validity_too_short"],
            ),
            (
                "fail/key-type-not-allowed",
                &p384.der,
                &no_p384,
                &["key_type_unsupported"],
            ),
            (
                "fail/ed25519",
                &ed25519.der,
                &policy,
                &["key_type_unsupported", "signature_algorithm_weak"],
            ),
            ("fail/key-too-weak", &rsa.der, &rsa_3072, &["key_too_weak"]),
            (
                "fail/signature-not-allowed",
                &good.der,
                &rsa_only_signatures,
                &["signature_algorithm_weak"],
            ),
            (
                "fail/anchor-unreadable",
                b"junk",
                &policy,
                &["anchor_unreadable"],
            ),
        ];
        for (name, anchor, policy, want) in anchor_cases {
            assert_eq!(
                codes(admit(anchor, &[], &[], policy, now, false)),
                *want,
                "{name}"
            );
        }

        let duplicate_cases: &[(&str, &[u8], &[&str])] = &[
            ("ok/another-anchor", &p384.der, &[]),
            (
                "fail/duplicate-fingerprint",
                &good.der,
                &["duplicate_fingerprint"],
            ),
            (
                "fail/duplicate-subject-key",
                &reissued,
                &["duplicate_subject_key"],
            ),
        ];
        // The same cases against the anchor as stored (id and key known) give the same codes.
        let stored = vec![ExistingAnchor::of_certificate(Some(7), &good.der).unwrap()];
        for (name, anchor, want) in duplicate_cases {
            let got = codes(admit(anchor, &[], &in_bundle, &policy, now, false));
            assert_eq!(got, *want, "{name}");
            let got = codes(admit(anchor, &[], &stored, &policy, now, false));
            assert_eq!(got, *want, "{name} (stored)");
        }

        // The same subject (DER) with another key: refused unless declared as a key rollover,
        // and then the facts name the anchors it replaces. A rollover does not excuse copies.
        let same_subject = "anchor_same_subject_different_key";
        /// Name, anchor, the bundle, rollover declared, codes, the ids it replaces.
        type RolloverCase<'a> = (
            &'a str,
            &'a [u8],
            &'a [ExistingAnchor],
            bool,
            &'a [&'a str],
            &'a [u64],
        );
        let rollover_cases: &[RolloverCase<'_>] = &[
            (
                "fail/same-subject-other-key",
                &impostor.der,
                &stored,
                false,
                &[same_subject],
                &[],
            ),
            (
                "fail/same-subject-other-key-in-upload",
                &impostor.der,
                &in_bundle,
                false,
                &[same_subject],
                &[],
            ),
            ("ok/rollover", &impostor.der, &stored, true, &[], &[7]),
            (
                "ok/rollover-within-upload",
                &impostor.der,
                &in_bundle,
                true,
                &[],
                &[],
            ),
            (
                "ok/rollover-nothing-to-replace",
                &impostor.der,
                &[],
                true,
                &[],
                &[],
            ),
            ("ok/other-subject", &other.der, &stored, false, &[], &[]),
            (
                "fail/rollover-of-same-key",
                &reissued,
                &stored,
                true,
                &["duplicate_subject_key"],
                &[],
            ),
            (
                "fail/rollover-of-copy",
                &good.der,
                &stored,
                true,
                &["duplicate_fingerprint"],
                &[],
            ),
        ];
        for (name, anchor, existing, rollover, want, replaces) in rollover_cases {
            let result = admit(anchor, &[], existing, &policy, now, *rollover);
            if let Ok(facts) = &result {
                assert_eq!(facts.rollover_of, *replaces, "{name}");
            }
            assert_eq!(codes(result), *want, "{name}");
        }
        let denial = admit(&impostor.der, &[], &stored, &policy, now, false).unwrap_err();
        let message = &denial.reasons[0].message;
        assert!(
            message.starts_with("anchor #7 of the bundle")
                && message.contains("'CN=Good CA,O=Member'")
                && message.contains("rollover"),
            "{message}"
        );

        let not_issued = "sample_not_issued_by_anchor";
        type SampleCase<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a str]);
        let sample_cases: &[SampleCase<'_>] = &[
            ("ok/samples", &[&good_sample, &domain_sample], &[]),
            (
                "ok/via-intermediate",
                &[&via_intermediate, &intermediate.der],
                &[],
            ),
            ("ok/intermediate-alone", &[&intermediate.der], &[]),
            ("fail/from-other-ca", &[&from_other], &[not_issued]),
            ("fail/forged-issuer-name", &[&from_impostor], &[not_issued]),
            (
                "fail/without-its-intermediate",
                &[&via_intermediate],
                &[not_issued],
            ),
            (
                "fail/two-levels-down",
                &[&intermediate.der, &nested.der, &via_nested],
                &["sample_is_ca", not_issued, not_issued],
            ),
            (
                "fail/foreign-ca",
                &[&other.der],
                &["sample_is_ca", not_issued],
            ),
            ("fail/two-sans", &[&two_sans], &["sample_profile"]),
            ("fail/bare", &[&bare], &["sample_profile"; 3]),
            ("fail/unreadable", &[b"junk"], &["sample_unreadable"]),
        ];
        for (name, samples, want) in sample_cases {
            let samples: Vec<Vec<u8>> = samples.iter().map(|s| s.to_vec()).collect();
            let got = codes(admit(&good.der, &samples, &[], &policy, now, false));
            assert_eq!(got, *want, "{name}");
            let unchecked = admit(&good.der, &samples, &[], &no_samples, now, false);
            assert!(
                unchecked.is_ok(),
                "{name}: check_samples = false ignores samples"
            );
        }

        // Every failed rule at once.
        let denial = admit(
            &end_entity.der,
            &[from_other.clone(), two_sans.clone()],
            &[],
            &no_p384,
            now,
            false,
        )
        .unwrap_err();
        assert_eq!(
            denial.codes(),
            [
                "not_ca",
                "no_key_cert_sign",
                not_issued,
                not_issued,
                "sample_profile"
            ]
        );
        // Messages number the samples from 1 and carry the lint's code.
        let denial = admit(
            &good.der,
            &[good_sample, two_sans],
            &[],
            &policy,
            now,
            false,
        )
        .unwrap_err();
        assert!(
            denial.reasons[0].message.starts_with("sample 2 ")
                && denial.reasons[0].message.contains("[san_not_single]"),
            "{denial}"
        );
        assert_eq!(denial.reasons[0].field, Some("samples"));
    }

    #[test]
    fn facts_of_an_admitted_anchor() {
        let good = ca("Good CA", &rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
        let facts = admit(
            &good.der,
            &[],
            &[],
            &AdmissionPolicy::default(),
            now(),
            false,
        )
        .unwrap();
        let cert = parse_certificate(&good.der).unwrap();
        assert_eq!(facts.fingerprint, Fingerprint::of(&good.der));
        assert_eq!(facts.subject, "CN=Good CA,O=Member");
        assert_eq!(facts.subject_raw, cert.subject().as_raw());
        assert_eq!(facts.key, "ECDSA P-384");
        assert_eq!(facts.signature_algorithm, "ecdsa-with-SHA384");
        assert_eq!(facts.key_id, x509::subject_key_id(&cert).unwrap());
        // Without an SKI (rcgen writes none without basicConstraints), the RFC 7093 identifier
        // of the key.
        let legacy = AdmissionPolicy {
            require_basic_constraints_ca: false,
            ..AdmissionPolicy::default()
        };
        let no_ski = ca("No SKI", &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
            p.is_ca = IsCa::NoCa
        });
        let cert = parse_certificate(&no_ski.der).unwrap();
        assert_eq!(x509::subject_key_id(&cert), None);
        let no_ski_facts = admit(&no_ski.der, &[], &[], &legacy, now(), false).unwrap();
        assert_eq!(no_ski_facts.key_id, x509::key_identifier(cert.public_key()));
        let json = serde_json::to_value(&facts).unwrap();
        assert_eq!(json["key_id"], hex::encode(&facts.key_id));
        let back: AnchorFacts = serde_json::from_value(json).unwrap();
        assert_eq!(back, facts);
    }
}
