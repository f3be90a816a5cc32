//! Signatures: naming a signature algorithm (and whether its digest can be forged), and
//! verifying that one object was signed by a given key, which is the link every chain check
//! follows. The OID tables live here so that CSR checks, anchor admission and the Direct lint
//! all name algorithms the same way.

use serde::Serialize;
use x509_parser::prelude::*;

use super::key::{OID_P256, OID_P384};

/// The signature algorithms an admission policy can allow, as written in policy files. MD5 and
/// SHA-1 have no variant on purpose: a policy file cannot allow a forgeable signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    RsaSha256,
    RsaSha384,
    RsaSha512,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
}

impl SignatureAlgorithm {
    /// The name policy files use.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "rsa-sha256",
            SignatureAlgorithm::RsaSha384 => "rsa-sha384",
            SignatureAlgorithm::RsaSha512 => "rsa-sha512",
            SignatureAlgorithm::RsaPssSha256 => "rsa-pss-sha256",
            SignatureAlgorithm::RsaPssSha384 => "rsa-pss-sha384",
            SignatureAlgorithm::RsaPssSha512 => "rsa-pss-sha512",
            SignatureAlgorithm::EcdsaSha256 => "ecdsa-sha256",
            SignatureAlgorithm::EcdsaSha384 => "ecdsa-sha384",
            SignatureAlgorithm::EcdsaSha512 => "ecdsa-sha512",
        }
    }
}

/// What a certificate's signature algorithm is, as far as policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// `None` for MD5, SHA-1, SHA-224, DSA, Ed25519 and anything unknown.
    pub algorithm: Option<SignatureAlgorithm>,
    /// The conventional name (`sha256WithRSAEncryption`), or the OID when unknown.
    pub description: String,
    /// MD2, MD4, MD5, SHA-0 or SHA-1: collisions can be made, so such signatures can be forged.
    pub broken: bool,
}

/// Classifies the signatureAlgorithm of a certificate (or CSR, CRL).
pub fn signature_info(alg: &AlgorithmIdentifier<'_>) -> SignatureInfo {
    let oid = alg.algorithm.to_id_string();
    match signature_scheme(alg) {
        Some((scheme, digest, description)) => {
            use SignatureAlgorithm as A;
            let algorithm = match (scheme, digest) {
                (Scheme::RsaPkcs1, Some(Digest::Sha256)) => Some(A::RsaSha256),
                (Scheme::RsaPkcs1, Some(Digest::Sha384)) => Some(A::RsaSha384),
                (Scheme::RsaPkcs1, Some(Digest::Sha512)) => Some(A::RsaSha512),
                (Scheme::RsaPss, Some(Digest::Sha256)) => Some(A::RsaPssSha256),
                (Scheme::RsaPss, Some(Digest::Sha384)) => Some(A::RsaPssSha384),
                (Scheme::RsaPss, Some(Digest::Sha512)) => Some(A::RsaPssSha512),
                (Scheme::Ecdsa, Some(Digest::Sha256)) => Some(A::EcdsaSha256),
                (Scheme::Ecdsa, Some(Digest::Sha384)) => Some(A::EcdsaSha384),
                (Scheme::Ecdsa, Some(Digest::Sha512)) => Some(A::EcdsaSha512),
                _ => None,
            };
            SignatureInfo {
                algorithm,
                description,
                broken: digest.is_some_and(Digest::is_broken),
            }
        }
        None => SignatureInfo {
            algorithm: None,
            description: format!("unknown signature algorithm {oid}"),
            broken: false,
        },
    }
}

/// Whether `cert`'s signature verifies with `issuer`'s public key. Legacy algorithms and RSA
/// keys under 2048 bits are verified too, on purpose: this answers "who signed it", and the
/// caller judges strength separately, so a weak CA is reported as weak, not as a stranger.
pub fn verify_signed_by(
    cert: &X509Certificate<'_>,
    issuer: &SubjectPublicKeyInfo<'_>,
) -> Result<(), Unverified> {
    verify_signature_of(
        cert.tbs_certificate.as_ref(),
        &cert.signature_algorithm,
        &cert.signature_value.data,
        issuer,
    )
}

const OID_P521: &str = "1.3.132.0.35";

/// Why a signature was not verified. The text completes a sentence about the signed object
/// ("it names the anchor as its issuer, but ..."), as admission reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unverified {
    /// The signature algorithm OID is not one anchorage knows.
    #[error("its signature algorithm {0} is unknown")]
    UnknownAlgorithm(String),
    /// No verifier for this algorithm (its conventional name) with this kind of key.
    #[error("a {0} signature by this kind of key cannot be verified")]
    Unsupported(String),
    /// The signature does not match the data and the key.
    #[error("its signature does not verify with the issuer's public key")]
    Mismatch,
}

/// Verifies `signature` over `signed` with `signer`'s public key, by the algorithm named in
/// `signature_algorithm`. Legacy algorithms and RSA keys from 1024 bits are verified too, on
/// purpose: callers judge strength separately and report it as such.
pub(super) fn verify_signature_of(
    signed: &[u8],
    signature_algorithm: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    signer: &SubjectPublicKeyInfo<'_>,
) -> Result<(), Unverified> {
    use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
    let Some((scheme, digest, description)) = signature_scheme(signature_algorithm) else {
        return Err(Unverified::UnknownAlgorithm(
            signature_algorithm.algorithm.to_id_string(),
        ));
    };
    let curve = signer
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
        .unwrap_or_default();
    let algorithm: Option<&'static dyn VerificationAlgorithm> = match (scheme, digest) {
        (Scheme::RsaPkcs1, Some(Digest::Sha1)) => {
            Some(&sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY)
        }
        (Scheme::RsaPkcs1, Some(Digest::Sha256)) => {
            Some(&sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY)
        }
        (Scheme::RsaPkcs1, Some(Digest::Sha384)) => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        (Scheme::RsaPkcs1, Some(Digest::Sha512)) => {
            Some(&sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY)
        }
        (Scheme::RsaPss, Some(Digest::Sha256)) => Some(&sig::RSA_PSS_2048_8192_SHA256),
        (Scheme::RsaPss, Some(Digest::Sha384)) => Some(&sig::RSA_PSS_2048_8192_SHA384),
        (Scheme::RsaPss, Some(Digest::Sha512)) => Some(&sig::RSA_PSS_2048_8192_SHA512),
        (Scheme::Ecdsa, Some(d)) => match (curve.as_str(), d) {
            (OID_P256, Digest::Sha1) => Some(&sig::ECDSA_P256_SHA1_ASN1),
            (OID_P256, Digest::Sha256) => Some(&sig::ECDSA_P256_SHA256_ASN1),
            (OID_P256, Digest::Sha384) => Some(&sig::ECDSA_P256_SHA384_ASN1),
            (OID_P256, Digest::Sha512) => Some(&sig::ECDSA_P256_SHA512_ASN1),
            (OID_P384, Digest::Sha256) => Some(&sig::ECDSA_P384_SHA256_ASN1),
            (OID_P384, Digest::Sha384) => Some(&sig::ECDSA_P384_SHA384_ASN1),
            (OID_P384, Digest::Sha512) => Some(&sig::ECDSA_P384_SHA512_ASN1),
            (OID_P521, Digest::Sha1) => Some(&sig::ECDSA_P521_SHA1_ASN1),
            (OID_P521, Digest::Sha224) => Some(&sig::ECDSA_P521_SHA224_ASN1),
            (OID_P521, Digest::Sha256) => Some(&sig::ECDSA_P521_SHA256_ASN1),
            (OID_P521, Digest::Sha384) => Some(&sig::ECDSA_P521_SHA384_ASN1),
            (OID_P521, Digest::Sha512) => Some(&sig::ECDSA_P521_SHA512_ASN1),
            _ => None,
        },
        (Scheme::Ed25519, None) => Some(&sig::ED25519),
        _ => None,
    };
    let Some(algorithm) = algorithm else {
        return Err(Unverified::Unsupported(description));
    };
    UnparsedPublicKey::new(algorithm, &signer.subject_public_key.data)
        .verify(signed, signature)
        .map_err(|_| Unverified::Mismatch)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    RsaPkcs1,
    RsaPss,
    Ecdsa,
    Dsa,
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md2,
    Md4,
    Md5,
    /// The withdrawn first SHA (FIPS 180), only in old OIW identifiers.
    Sha0,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn is_broken(self) -> bool {
        matches!(
            self,
            Digest::Md2 | Digest::Md4 | Digest::Md5 | Digest::Sha0 | Digest::Sha1
        )
    }
}

/// Signature OIDs (RFC 3279, 4055, 5758, 8410, and the old OIW arc that openssl still
/// names) with their conventional names.
const SIGNATURE_OIDS: &[(&str, Scheme, Option<Digest>, &str)] = &[
    (
        "1.3.14.3.2.2",
        Scheme::RsaPkcs1,
        Some(Digest::Md4),
        "md4WithRSA",
    ),
    (
        "1.3.14.3.2.3",
        Scheme::RsaPkcs1,
        Some(Digest::Md5),
        "md5WithRSA",
    ),
    (
        "1.3.14.3.2.15",
        Scheme::RsaPkcs1,
        Some(Digest::Sha0),
        "shaWithRSASignature",
    ),
    (
        "1.3.14.3.2.13",
        Scheme::Dsa,
        Some(Digest::Sha0),
        "dsaWithSHA",
    ),
    (
        "1.3.14.3.2.27",
        Scheme::Dsa,
        Some(Digest::Sha1),
        "dsaWithSHA1",
    ),
    (
        "1.2.840.113549.1.1.2",
        Scheme::RsaPkcs1,
        Some(Digest::Md2),
        "md2WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.3",
        Scheme::RsaPkcs1,
        Some(Digest::Md4),
        "md4WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.4",
        Scheme::RsaPkcs1,
        Some(Digest::Md5),
        "md5WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.5",
        Scheme::RsaPkcs1,
        Some(Digest::Sha1),
        "sha1WithRSAEncryption",
    ),
    (
        "1.3.14.3.2.29",
        Scheme::RsaPkcs1,
        Some(Digest::Sha1),
        "sha1WithRSASignature",
    ),
    (
        "1.2.840.113549.1.1.14",
        Scheme::RsaPkcs1,
        Some(Digest::Sha224),
        "sha224WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.11",
        Scheme::RsaPkcs1,
        Some(Digest::Sha256),
        "sha256WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.12",
        Scheme::RsaPkcs1,
        Some(Digest::Sha384),
        "sha384WithRSAEncryption",
    ),
    (
        "1.2.840.113549.1.1.13",
        Scheme::RsaPkcs1,
        Some(Digest::Sha512),
        "sha512WithRSAEncryption",
    ),
    (
        "1.2.840.10045.4.1",
        Scheme::Ecdsa,
        Some(Digest::Sha1),
        "ecdsa-with-SHA1",
    ),
    (
        "1.2.840.10045.4.3.1",
        Scheme::Ecdsa,
        Some(Digest::Sha224),
        "ecdsa-with-SHA224",
    ),
    (
        "1.2.840.10045.4.3.2",
        Scheme::Ecdsa,
        Some(Digest::Sha256),
        "ecdsa-with-SHA256",
    ),
    (
        "1.2.840.10045.4.3.3",
        Scheme::Ecdsa,
        Some(Digest::Sha384),
        "ecdsa-with-SHA384",
    ),
    (
        "1.2.840.10045.4.3.4",
        Scheme::Ecdsa,
        Some(Digest::Sha512),
        "ecdsa-with-SHA512",
    ),
    (
        "1.2.840.10040.4.3",
        Scheme::Dsa,
        Some(Digest::Sha1),
        "dsa-with-SHA1",
    ),
    (
        "2.16.840.1.101.3.4.3.1",
        Scheme::Dsa,
        Some(Digest::Sha224),
        "dsa-with-SHA224",
    ),
    (
        "2.16.840.1.101.3.4.3.2",
        Scheme::Dsa,
        Some(Digest::Sha256),
        "dsa-with-SHA256",
    ),
    ("1.3.101.112", Scheme::Ed25519, None, "Ed25519"),
];

const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// (scheme, digest, conventional name) of a signature AlgorithmIdentifier; RSASSA-PSS takes
/// its digest from the parameters (SHA-1 when they name none, RFC 4055).
fn signature_scheme(alg: &AlgorithmIdentifier<'_>) -> Option<(Scheme, Option<Digest>, String)> {
    let oid = alg.algorithm.to_id_string();
    if oid == OID_RSASSA_PSS {
        use x509_parser::signature_algorithm::RsaSsaPssParams;
        let params = alg
            .parameters
            .as_ref()
            .and_then(|p| RsaSsaPssParams::try_from(p).ok())?;
        let (digest, name) = match params.hash_algorithm_oid().to_id_string().as_str() {
            "1.3.14.3.2.26" => (Digest::Sha1, "SHA-1"),
            "2.16.840.1.101.3.4.2.4" => (Digest::Sha224, "SHA-224"),
            "2.16.840.1.101.3.4.2.1" => (Digest::Sha256, "SHA-256"),
            "2.16.840.1.101.3.4.2.2" => (Digest::Sha384, "SHA-384"),
            "2.16.840.1.101.3.4.2.3" => (Digest::Sha512, "SHA-512"),
            _ => return None,
        };
        return Some((
            Scheme::RsaPss,
            Some(digest),
            format!("RSASSA-PSS with {name}"),
        ));
    }
    SIGNATURE_OIDS
        .iter()
        .find(|(o, ..)| *o == oid)
        .map(|(_, scheme, digest, name)| (*scheme, *digest, (*name).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_named_and_verified() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let info = signature_info(&cert.signature_algorithm);
        assert_eq!(info.algorithm, Some(SignatureAlgorithm::EcdsaSha384));
        assert_eq!(info.description, "ecdsa-with-SHA384");
        assert!(!info.broken);
        assert!(verify_signed_by(&cert, cert.public_key()).is_ok());
        let other_der = params.self_signed(&other).unwrap().der().to_vec();
        let (_, other_cert) = X509Certificate::from_der(&other_der).unwrap();
        assert!(verify_signed_by(&cert, other_cert.public_key()).is_err());
    }
}
