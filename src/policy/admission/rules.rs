//! The rules an anchor itself must pass: a CA that may sign certificates, valid long enough,
//! with a key and a signature the policy allows, and not a duplicate (or an undeclared second
//! key) of an anchor the bundle already holds. Each rule adds its reasons and goes on, so a
//! refusal lists every failed rule.

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::X509Certificate;

use super::{AdmissionPolicy, AnchorFacts, ExistingAnchor, ANCHOR};
use crate::policy::profile::KeyKind;
use crate::policy::Reasons;
use crate::x509::{self, KeyInfo, SignatureInfo};

pub(super) fn check_ca(anchor: &X509Certificate<'_>, policy: &AdmissionPolicy, r: &mut Reasons) {
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

pub(super) fn check_validity(
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

pub(super) fn check_key(key: &KeyInfo, policy: &AdmissionPolicy, r: &mut Reasons) {
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

pub(super) fn check_signature(
    signature: &SignatureInfo,
    policy: &AdmissionPolicy,
    r: &mut Reasons,
) {
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
pub(super) fn check_duplicates(
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
