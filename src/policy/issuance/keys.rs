//! The key rules of issuance: which key each certificate of the plan gets (from the CSRs or
//! generated), whether it fits the usage and is strong enough for the profile, and that a key
//! certified for one holder is not certified again for another. Kept apart from the holder and
//! profile rules because every CSR problem is reported here, with the field it came from.

use super::{Context, KeySource, PlannedCert, PlannedKey};
use crate::model::{CertUsage, Holder, Usage};
use crate::policy::profile::{CertProfile, KeyKind};
use crate::policy::Reasons;
use crate::x509::{self, KeyInfo};

/// One key, one holder: a key certified for another holder is refused unless the profile
/// allows reuse (a stolen CSR cannot make a second holder's certificate).
pub(super) fn check_key_reuse(
    certs: &[PlannedCert],
    holder: &Holder,
    p: &CertProfile,
    ctx: &Context<'_>,
    r: &mut Reasons,
) {
    if p.allow_key_reuse {
        return;
    }
    let holder = holder.to_string();
    for (i, planned) in certs.iter().enumerate() {
        if let PlannedKey::FromCsr(csr) = &planned.key {
            if let Some(other) = (ctx.key_holder_of)(&csr.spki_der) {
                if other != holder {
                    r.add(
                        "key_reused",
                        if i == 0 { "csr" } else { "encryption_csr" },
                        format!(
                            "this public key is already certified for '{other}'; each holder \
                             needs its own key pair"
                        ),
                    );
                }
            }
        }
    }
}

pub(super) fn check_keys(
    key: &KeySource,
    usage: Usage,
    p: &CertProfile,
    r: &mut Reasons,
) -> Option<Vec<PlannedCert>> {
    let wanted = usage.certificate_usages();
    match key {
        KeySource::Generate => Some(
            wanted
                .iter()
                .map(|u| PlannedCert {
                    usage: *u,
                    key: PlannedKey::Generate(p.keys.generate),
                })
                .collect(),
        ),
        KeySource::Csr {
            signing,
            encryption,
        } => {
            let csrs: Vec<(&'static str, &Vec<u8>)> = match (usage, encryption) {
                (Usage::Pair, Some(enc)) => vec![("csr", signing), ("encryption_csr", enc)],
                (Usage::Pair, None) => {
                    r.add(
                        "pair_needs_two_keys",
                        "encryption_csr",
                        "a pair needs two CSRs (signing and encryption) or a server-generated key",
                    );
                    vec![("csr", signing)]
                }
                (_, Some(_)) => {
                    r.add(
                        "encryption_csr_unexpected",
                        "encryption_csr",
                        "a second CSR is only used with usage 'pair'",
                    );
                    vec![("csr", signing)]
                }
                (_, None) => vec![("csr", signing)],
            };
            let mut keys = Vec::new();
            for (field, csr) in csrs {
                match x509::parse_csr(csr) {
                    Ok(k) => {
                        check_key_strength(&k.key, p, field, r);
                        keys.push(k);
                    }
                    Err(problems) => {
                        for e in problems {
                            let message = if e.code == "key_type_unsupported" {
                                format!(
                                    "{}; profile '{}' accepts {}",
                                    e.message,
                                    p.name,
                                    allowed_text(p)
                                )
                            } else {
                                e.message
                            };
                            r.add(e.code, field, message);
                        }
                    }
                }
            }
            if let [a, b] = keys.as_slice() {
                if a.spki_der == b.spki_der {
                    r.add(
                        "pair_same_key",
                        "encryption_csr",
                        "the signing and encryption certificates of a pair need different keys",
                    );
                }
            }
            if keys.len() != wanted.len() {
                return None;
            }
            for (usage, key) in wanted.iter().zip(&keys) {
                check_key_fits_usage(&key.key, *usage, p, r);
            }
            Some(
                wanted
                    .iter()
                    .zip(keys)
                    .map(|(u, k)| PlannedCert {
                        usage: *u,
                        key: PlannedKey::FromCsr(k),
                    })
                    .collect(),
            )
        }
    }
}

/// RFC 8813 forbids keyEncipherment for EC keys, and Direct STAs encrypt with RSA only, so a
/// certificate that encrypts needs an RSA key.
fn check_key_fits_usage(key: &KeyInfo, usage: CertUsage, p: &CertProfile, r: &mut Reasons) {
    let encrypts = matches!(usage, CertUsage::Dual | CertUsage::Encryption);
    // A key type the profile refuses outright is already reported by check_key_strength.
    let allowed_ec = key
        .kind
        .is_some_and(|k| k != KeyKind::Rsa && p.keys.allowed.contains(&k));
    if encrypts && allowed_ec {
        let field = if usage == CertUsage::Encryption {
            "encryption_csr"
        } else {
            "csr"
        };
        r.add(
            "key_type_not_for_usage",
            field,
            format!(
                "a {} certificate encrypts, which needs an RSA key; {} keys can sign only (ask for usage 'signing', or a pair with an RSA encryption key)",
                usage.as_str(),
                key.description
            ),
        );
    }
}

fn check_key_strength(key: &KeyInfo, p: &CertProfile, field: &'static str, r: &mut Reasons) {
    let Some(kind) = key.kind.filter(|k| p.keys.allowed.contains(k)) else {
        r.add(
            "key_type_unsupported",
            field,
            format!(
                "the CSR key is {}; profile '{}' accepts {}",
                key.description,
                p.name,
                allowed_text(p)
            ),
        );
        return;
    };
    if kind == KeyKind::Rsa {
        let bits = key.bits as u32;
        if bits < p.keys.min_rsa_bits {
            r.add(
                "key_too_weak",
                field,
                format!(
                    "the CSR key is RSA-{bits}; at least RSA-{} is required",
                    p.keys.min_rsa_bits
                ),
            );
        } else if bits > p.keys.max_rsa_bits {
            r.add(
                "key_too_large",
                field,
                format!(
                    "the CSR key is RSA-{bits}; at most RSA-{} is accepted",
                    p.keys.max_rsa_bits
                ),
            );
        }
        if key.rsa_exponent.is_none_or(|e| e < 65537 || e % 2 == 0) {
            r.add(
                "key_exponent_weak",
                field,
                "the RSA public exponent must be odd and at least 65537",
            );
        }
    }
}

fn allowed_text(p: &CertProfile) -> String {
    p.keys
        .allowed
        .iter()
        .map(|k| match k {
            KeyKind::Rsa => {
                format!("RSA {}-{}", p.keys.min_rsa_bits, p.keys.max_rsa_bits)
            }
            KeyKind::P256 => "ECDSA P-256".to_string(),
            KeyKind::P384 => "ECDSA P-384".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}
