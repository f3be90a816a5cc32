//! Read-only views of X.509 objects: key inspection, RFC 7093 key identifiers, CSR
//! proof-of-possession, summaries for records, and the DER of the two extensions rcgen cannot
//! write (certificatePolicies, authorityInfoAccess). No signing happens here.

use der::Encode;
use serde::Serialize;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::model::Fingerprint;
use crate::policy::profile::KeyKind;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

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
            .map(|o| o.to_id_string())
            .unwrap_or_default();
        let (kind, description, bits) = match curve.as_str() {
            OID_P256 => (Some(KeyKind::P256), "ECDSA P-256".to_string(), 256),
            OID_P384 => (Some(KeyKind::P384), "ECDSA P-384".to_string(), 384),
            other => (None, format!("ECDSA on curve {other}"), 0),
        };
        return KeyInfo {
            kind,
            description,
            bits,
            rsa_exponent: None,
        };
    }
    KeyInfo {
        kind: None,
        description: format!("unsupported key algorithm {alg}"),
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

/// A PKCS#10 request reduced to what anchorage keeps: the verified public key.
#[derive(Debug, Clone)]
pub struct CsrKey {
    pub spki_der: Vec<u8>,
    pub key: KeyInfo,
}

/// Why a CSR cannot be used; `code` is a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrProblem {
    pub code: &'static str,
    pub message: String,
}

impl CsrProblem {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        CsrProblem {
            code,
            message: message.into(),
        }
    }
}

/// Parses a CSR given as PEM or DER and checks its self-signature (proof of possession).
/// Subject and requested extensions are deliberately ignored: the profile decides those.
pub fn parse_csr(input: &[u8]) -> Result<CsrKey, CsrProblem> {
    let der = csr_der(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| {
        if X509Certificate::from_der(&der).is_ok() {
            CsrProblem::new(
                "csr_is_certificate",
                "a certificate was given where a PKCS#10 certificate request (CSR) was expected",
            )
        } else {
            CsrProblem::new(
                "csr_malformed",
                "the input is not a PKCS#10 certificate request (CSR)",
            )
        }
    })?;
    if !rest.is_empty() {
        return Err(CsrProblem::new(
            "csr_malformed",
            "the CSR is followed by trailing bytes",
        ));
    }
    let spki = &csr.certification_request_info.subject_pki;
    if csr.verify_signature().is_err() && !verifies_as_short_rsa(&csr) {
        return Err(CsrProblem::new(
            "csr_signature_invalid",
            "the CSR signature does not verify with its own public key (no proof of possession)",
        ));
    }
    Ok(CsrKey {
        spki_der: spki.raw.to_vec(),
        key: key_info(spki),
    })
}

/// aws-lc-rs refuses RSA keys under 2048 bits in its default verifiers, so a weak-key CSR
/// would be reported as a bad signature. Verify it with the legacy verifier instead, so the
/// policy can name the real problem (the key size); such a key is refused there.
fn verifies_as_short_rsa(csr: &X509CertificationRequest<'_>) -> bool {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    let spki = &csr.certification_request_info.subject_pki;
    let info = key_info(spki);
    if info.kind != Some(KeyKind::Rsa) || info.bits >= 2048 {
        return false;
    }
    let algorithm: &dyn signature::VerificationAlgorithm =
        match csr.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.5" => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            _ => return false,
        };
    UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
        .verify(
            csr.certification_request_info.raw,
            &csr.signature_value.data,
        )
        .is_ok()
}

fn csr_der(input: &[u8]) -> Result<Vec<u8>, CsrProblem> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CsrProblem::new("csr_empty", "the CSR is empty"));
    }
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(trimmed.to_vec());
    }
    let block = ::pem::parse(trimmed)
        .map_err(|e| CsrProblem::new("csr_malformed", format!("the CSR PEM is unreadable: {e}")))?;
    match block.tag() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(block.into_contents()),
        "CERTIFICATE" => Err(CsrProblem::new(
            "csr_is_certificate",
            "a certificate was given where a PKCS#10 certificate request (CSR) was expected",
        )),
        tag if tag.contains("PRIVATE KEY") => Err(CsrProblem::new(
            "csr_is_private_key",
            "a private key was given where a CSR was expected; never send private keys to the CA",
        )),
        tag => Err(CsrProblem::new(
            "csr_malformed",
            format!("PEM block '{tag}' is not a certificate request"),
        )),
    }
}

/// The fields of an issued certificate that records and listings show.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: ::time::OffsetDateTime,
    pub not_after: ::time::OffsetDateTime,
    pub fingerprint: Fingerprint,
    pub key: KeyInfo,
    pub subject_key_id: Option<String>,
}

pub fn summarize(der: &[u8]) -> Result<CertSummary, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a DER certificate: {e}"))?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(hex::encode(id.0)),
            _ => None,
        });
    Ok(CertSummary {
        serial: hex::encode(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        fingerprint: Fingerprint::of(der),
        key: key_info(cert.public_key()),
        subject_key_id: ski,
    })
}

/// DER of a certificatePolicies extension value listing `oids` (no qualifiers).
pub fn certificate_policies_der(oids: &[String]) -> Result<Vec<u8>, String> {
    use x509_cert::ext::pkix::{certpolicy::PolicyInformation, CertificatePolicies};
    let infos = oids
        .iter()
        .map(|o| {
            Ok(PolicyInformation {
                policy_identifier: const_oid::ObjectIdentifier::new(o)
                    .map_err(|e| format!("policy OID '{o}': {e}"))?,
                policy_qualifiers: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    CertificatePolicies(infos)
        .to_der()
        .map_err(|e| format!("encoding certificatePolicies: {e}"))
}

/// DER of an authorityInfoAccess extension value with one caIssuers URI.
pub fn ca_issuers_der(url: &str) -> Result<Vec<u8>, String> {
    use x509_cert::ext::pkix::{name::GeneralName, AccessDescription, AuthorityInfoAccessSyntax};
    let uri = der::asn1::Ia5String::new(url).map_err(|e| format!("caIssuers URL '{url}': {e}"))?;
    AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_CA_ISSUERS,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }])
    .to_der()
    .map_err(|e| format!("encoding authorityInfoAccess: {e}"))
}

/// Splits a PEM bundle or a single DER certificate into DER certificates.
pub fn certificates_from_pem_or_der(input: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let trimmed = input.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        let blocks = ::pem::parse_many(trimmed).map_err(|e| format!("unreadable PEM: {e}"))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        if certs.is_empty() {
            return Err("the PEM holds no CERTIFICATE block".into());
        }
        Ok(certs)
    } else {
        X509Certificate::from_der(trimmed).map_err(|e| format!("not a DER certificate: {e}"))?;
        Ok(vec![trimmed.to_vec()])
    }
}

pub fn to_pem(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(tag, der.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn csr_inputs() {
        let good = csr_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
        let parsed = parse_csr(good.as_bytes()).unwrap();
        assert_eq!(parsed.key.kind, Some(KeyKind::P256));

        let der = ::pem::parse(&good).unwrap().into_contents();
        assert!(parse_csr(&der).is_ok(), "ok/der");

        let mut tampered = der.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 0x55;
        let cases: &[(&str, &[u8], &str)] = &[
            ("fail/empty", b"", "csr_empty"),
            ("fail/whitespace", b" \n ", "csr_empty"),
            (
                "fail/random",
                &[0x13, 0x37, 0x00, 0xff, 0x42],
                "csr_malformed",
            ),
            ("fail/tampered", &tampered, "csr_signature_invalid"),
            (
                "fail/private-key",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "csr_is_private_key",
            ),
        ];
        for (name, input, code) in cases {
            assert_eq!(parse_csr(input).unwrap_err().code, *code, "{name}");
        }
        let cert = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        assert_eq!(
            parse_csr(cert.cert.pem().as_bytes()).unwrap_err().code,
            "csr_is_certificate"
        );
        assert_eq!(
            parse_csr(cert.cert.der()).unwrap_err().code,
            "csr_is_certificate"
        );
    }

    #[test]
    fn rfc7093_identifier_is_160_bits() {
        assert_eq!(key_identifier_of_bits(b"abc").len(), 20);
    }
}
