//! PKCS#10 requests: reading a CSR given as PEM or DER and checking its proof of possession,
//! with every refusal named by a stable code. The registrar's first contact with the CA, so it
//! lives apart from the certificate views and says in one answer everything that is wrong.

use x509_parser::prelude::*;

use super::key::{key_info, KeyInfo};
use super::signature::{signature_info, verify_signature_of, Unverified};

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
///
/// The signature algorithm and the key type are judged before the signature is verified: a
/// verifier cannot tell a forged signature from one made with an algorithm it refuses to run,
/// and the registrar needs to know which it is. A refusal lists every problem found (at least
/// one): a SHA-1 signature by a secp256k1 key is both `signature_algorithm_weak` and
/// `key_type_unsupported`.
pub fn parse_csr(input: &[u8]) -> Result<CsrKey, Vec<CsrProblem>> {
    let der = csr_der(input).map_err(|p| vec![p])?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| {
        vec![if X509Certificate::from_der(&der).is_ok() {
            CsrProblem::new(
                "csr_is_certificate",
                "a certificate was given where a PKCS#10 certificate request (CSR) was expected",
            )
        } else {
            CsrProblem::new(
                "csr_malformed",
                "the input is not a PKCS#10 certificate request (CSR)",
            )
        }]
    })?;
    if !rest.is_empty() {
        return Err(vec![CsrProblem::new(
            "csr_malformed",
            "the CSR is followed by trailing bytes",
        )]);
    }
    let spki = &csr.certification_request_info.subject_pki;
    let key = key_info(spki);
    let signature = signature_info(&csr.signature_algorithm);
    let mut problems = Vec::new();
    if signature.broken {
        problems.push(CsrProblem::new(
            "signature_algorithm_weak",
            format!(
                "the CSR is signed with {}; MD5 and SHA-1 signatures can be forged (their digests collide), so sign it with SHA-256 or stronger (openssl req -sha256)",
                signature.description
            ),
        ));
    }
    if key.kind.is_none() {
        problems.push(CsrProblem::new(
            "key_type_unsupported",
            format!(
                "the CSR key is {}, which anchorage does not certify",
                key.description
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // RSA keys under 2048 bits are verified too (legacy verifiers), so that the policy names
    // the real problem - the key size - instead of a bad signature.
    match verify_signature_of(
        csr.certification_request_info.raw,
        &csr.signature_algorithm,
        &csr.signature_value.data,
        spki,
    ) {
        Ok(()) => Ok(CsrKey {
            spki_der: spki.raw.to_vec(),
            key,
        }),
        Err(Unverified::UnknownAlgorithm(_) | Unverified::Unsupported(_)) => {
            Err(vec![CsrProblem::new(
                "signature_algorithm_unsupported",
                format!(
                    "the CSR is signed with {}, which anchorage cannot check with its {} key; sign it with SHA-256 (openssl req -sha256)",
                    signature.description, key.description
                ),
            )])
        }
        Err(Unverified::Mismatch) => Err(vec![CsrProblem::new(
            "csr_signature_invalid",
            "the CSR signature does not verify with its own public key (no proof of possession)",
        )]),
    }
}

fn csr_der(input: &[u8]) -> Result<Vec<u8>, CsrProblem> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CsrProblem::new("csr_empty", "the CSR is empty"));
    }
    if !trimmed.starts_with(b"-----BEGIN") {
        // DER as given: trimming would cut a final signature byte that happens to be 0x20.
        return Ok(input.to_vec());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyKind;

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
        let codes = |input: &[u8]| -> Vec<&str> {
            parse_csr(input)
                .unwrap_err()
                .iter()
                .map(|p| p.code)
                .collect()
        };
        for (name, input, code) in cases {
            assert_eq!(codes(input), [*code], "{name}");
        }
        let cert = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        assert_eq!(codes(cert.cert.pem().as_bytes()), ["csr_is_certificate"]);
        assert_eq!(codes(cert.cert.der()), ["csr_is_certificate"]);
    }

    /// `der` with the one occurrence of `from` replaced by `to` (of the same length, so that
    /// no DER length changes).
    fn swap(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at: Vec<usize> = (0..der.len())
            .filter(|i| der[*i..].starts_with(from))
            .collect();
        assert_eq!(at.len(), 1, "{from:02x?} occurs once");
        let mut out = der.to_vec();
        out[at[0]..at[0] + to.len()].copy_from_slice(to);
        out
    }

    /// The algorithms are judged before the signature: a request whose algorithm identifier
    /// was rewritten (so its signature no longer verifies) is refused for the algorithm.
    #[test]
    fn csr_algorithms_are_judged_before_the_signature() {
        let der = |alg| ::pem::parse(csr_pem(alg)).unwrap().into_contents();
        let rsa = der(&rcgen::PKCS_RSA_SHA256);
        let p256 = der(&rcgen::PKCS_ECDSA_P256_SHA256);
        // DER contents of the OIDs: sha256/sha1/md5WithRSAEncryption, ecdsa-with-SHA256 and
        // -SHA224, the P-256 and P-192 curves, Ed25519.
        let rsa_sha256 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let rsa_sha1 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let rsa_md5 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let ecdsa_sha224 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01];
        let p256_curve = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let p192_curve = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01];
        let cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
            (
                "fail/rsa-sha1",
                swap(&rsa, &rsa_sha256, &rsa_sha1),
                &["signature_algorithm_weak"],
                "sha1WithRSAEncryption",
            ),
            (
                "fail/rsa-md5",
                swap(&rsa, &rsa_sha256, &rsa_md5),
                &["signature_algorithm_weak"],
                "md5WithRSAEncryption",
            ),
            (
                "fail/p192",
                swap(&p256, &p256_curve, &p192_curve),
                &["key_type_unsupported"],
                "prime192v1 (1.2.840.10045.3.1.1)",
            ),
            (
                "fail/p192-sha224",
                swap(
                    &swap(&p256, &p256_curve, &p192_curve),
                    &ecdsa_sha256,
                    &ecdsa_sha224,
                ),
                &["key_type_unsupported"],
                "prime192v1",
            ),
            (
                "fail/p256-sha224-unverifiable",
                swap(&p256, &ecdsa_sha256, &ecdsa_sha224),
                &["signature_algorithm_unsupported"],
                "ecdsa-with-SHA224",
            ),
            (
                "fail/ed25519",
                der(&rcgen::PKCS_ED25519),
                &["key_type_unsupported"],
                "Ed25519 (1.3.101.112)",
            ),
        ];
        for (name, input, codes, named) in cases {
            let problems = parse_csr(&input).unwrap_err();
            let got: Vec<&str> = problems.iter().map(|p| p.code).collect();
            assert_eq!(got, codes, "{name}");
            assert!(
                problems.iter().any(|p| p.message.contains(named)),
                "{name}: {problems:?} names {named}"
            );
        }
        assert!(parse_csr(&rsa).is_ok(), "ok/rsa-sha256");
    }
}
