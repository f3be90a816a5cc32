//! What a public key is: the key kind and size that policy judges, RFC 7093 key identifiers,
//! and the SPKI hash that indexes keys. Kept apart from certificates because CSRs, anchors and
//! the CA's own keys all reduce to a SubjectPublicKeyInfo read here.

use serde::Serialize;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::model::KeyKind;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
pub(super) const OID_P256: &str = "1.2.840.10045.3.1.7";
pub(super) const OID_P384: &str = "1.3.132.0.34";

/// What a public key is, as far as policy cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `None` for algorithms anchorage never accepts (DSA, Ed25519, other curves...).
    #[serde(skip)]
    pub kind: Option<KeyKind>,
    pub description: String,
    pub bits: usize,
    /// RSA public exponent, when RSA.
    #[serde(skip)]
    pub rsa_exponent: Option<u64>,
}

/// Inspects a SubjectPublicKeyInfo.
pub fn key_info(spki: &SubjectPublicKeyInfo<'_>) -> KeyInfo {
    let alg = spki.algorithm.algorithm.to_id_string();
    if alg == OID_RSA {
        if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
            return KeyInfo {
                kind: Some(KeyKind::Rsa),
                description: format!("RSA-{}", rsa.key_size()),
                bits: rsa.key_size(),
                rsa_exponent: rsa.try_exponent().ok(),
            };
        }
    } else if alg == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let (kind, description, bits) = match curve.as_deref() {
            Some(OID_P256) => (Some(KeyKind::P256), "ECDSA P-256".to_string(), 256),
            Some(OID_P384) => (Some(KeyKind::P384), "ECDSA P-384".to_string(), 384),
            Some(other) => (None, format!("ECDSA on curve {}", named(CURVES, other)), 0),
            None => (
                None,
                "ECDSA without a named curve (explicit or missing parameters)".to_string(),
                0,
            ),
        };
        return KeyInfo {
            kind,
            description,
            bits,
            rsa_exponent: None,
        };
    }
    let description = match KEY_ALGORITHMS.iter().find(|(oid, _)| *oid == alg) {
        Some(_) => named(KEY_ALGORITHMS, &alg),
        None if alg == OID_RSA => "an unreadable RSA key".to_string(),
        None => format!("unsupported key algorithm {alg}"),
    };
    KeyInfo {
        kind: None,
        description,
        bits: 0,
        rsa_exponent: None,
    }
}

/// RFC 7093 method 1: SHA-256 over the subjectPublicKey BIT STRING value, first 160 bits.
pub fn key_identifier(spki: &SubjectPublicKeyInfo<'_>) -> Vec<u8> {
    key_identifier_of_bits(&spki.subject_public_key.data)
}

pub fn key_identifier_of_bits(public_key_bits: &[u8]) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key_bits);
    digest.as_ref().iter().take(20).copied().collect()
}

/// SHA-256 of a SubjectPublicKeyInfo (DER): the key index's key.
pub fn spki_hash(spki_der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der)
        .as_ref()
        .to_vec()
}

/// Elliptic curves met in requests and anchors (SEC 2, RFC 5639, GB/T 32918), for messages;
/// P-256 and P-384, the curves anchorage certifies, are named by [`key_info`] itself.
const CURVES: &[(&str, &str)] = &[
    ("1.3.132.0.35", "secp521r1"),
    ("1.3.132.0.33", "secp224r1"),
    ("1.2.840.10045.3.1.1", "prime192v1"),
    ("1.3.132.0.10", "secp256k1"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
    ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ("1.2.156.10197.1.301", "SM2"),
];

/// Key algorithms anchorage never certifies (RFC 3279, 4055, 8410), for messages.
const KEY_ALGORITHMS: &[(&str, &str)] = &[
    ("1.3.101.112", "Ed25519"),
    ("1.3.101.113", "Ed448"),
    ("1.3.101.110", "X25519"),
    ("1.3.101.111", "X448"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.10046.2.1", "Diffie-Hellman"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
];

/// `name (oid)` when the table knows the OID, else the OID alone.
fn named(table: &[(&str, &str)], oid: &str) -> String {
    match table.iter().find(|(o, _)| *o == oid) {
        Some((_, name)) => format!("{name} ({oid})"),
        None => oid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7093_identifier_is_160_bits() {
        assert_eq!(key_identifier_of_bits(b"abc").len(), 20);
    }
}
