//! Read-only views of X.509 objects: key inspection, RFC 7093 key identifiers, CSR
//! proof-of-possession, summaries for records, and the DER of the two extensions rcgen cannot
//! write (certificatePolicies, authorityInfoAccess), and names as RFC 4514 text ([`rfc4514`]).
//! No signing happens here.

use der::Encode;
use serde::Serialize;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::model::Fingerprint;
use crate::model::KeyKind;

mod name;

pub use name::rfc4514;

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

/// The fields of an issued certificate that records and listings show.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub serial: String,
    /// RFC 4514 text ([`rfc4514`]), as is `issuer`.
    pub subject: String,
    pub issuer: String,
    pub not_before: ::time::OffsetDateTime,
    pub not_after: ::time::OffsetDateTime,
    pub fingerprint: Fingerprint,
    pub key: KeyInfo,
    pub subject_key_id: Option<String>,
    /// SHA-256 of the SubjectPublicKeyInfo DER: the key's fingerprint, stable across
    /// re-issued certificates of the same key.
    pub key_fingerprint: Fingerprint,
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
        subject: rfc4514(cert.subject().as_raw()),
        issuer: rfc4514(cert.issuer().as_raw()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        fingerprint: Fingerprint::of(der),
        key: key_info(cert.public_key()),
        subject_key_id: ski,
        key_fingerprint: Fingerprint::of(cert.public_key().raw),
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
        // DER as given: trimming would cut a final signature byte that happens to be 0x20.
        X509Certificate::from_der(input).map_err(|e| format!("not a DER certificate: {e}"))?;
        Ok(vec![input.to_vec()])
    }
}

pub fn to_pem(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(tag, der.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

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
) -> Result<(), String> {
    verify_signature_of(
        cert.tbs_certificate.as_ref(),
        &cert.signature_algorithm,
        &cert.signature_value.data,
        issuer,
    )
    .map_err(|e| match e {
        Unverified::UnknownAlgorithm(oid) => format!("its signature algorithm {oid} is unknown"),
        Unverified::Unsupported(description) => {
            format!("a {description} signature by this kind of key cannot be verified")
        }
        Unverified::Mismatch => {
            "its signature does not verify with the issuer's public key".to_string()
        }
    })
}

/// The subjectKeyIdentifier of a certificate, when it has one.
pub fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// The longest validity [`direct_profile_problems`] accepts: three calendar years, which span
/// 1096 days when they include a 29 February (anchorage itself issues at most 1095).
pub const DIRECT_MAX_VALIDITY_DAYS: i64 = 1096;

/// Lints an end-entity certificate against the Direct profile (spec §2): exactly one SAN that
/// is the address (rfc822Name) or the domain (dNSName), keyUsage, emailProtection, not a CA,
/// a current validity of at most three years, an http CRL distribution point and caIssuers,
/// SHA-256 or stronger, an RSA-2048+ or P-256 key, CN, key identifiers. Returns every problem as
/// (stable code, sentence); empty means conforming. Used on the sample certificates of a
/// member's anchor, to show that the CA issues what Direct relying parties accept.
pub fn direct_profile_problems(
    der: &[u8],
    now: ::time::OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        _ => {
            out.push(("unreadable", "it is not a DER X.509 certificate".into()));
            return out;
        }
    };
    if cert.version() != X509Version::V3 {
        out.push(("not_v3", "it is not an X.509 v3 certificate".into()));
    }
    if cert.subject().iter_common_name().next().is_none() {
        out.push((
            "subject_cn_missing",
            "its subject has no common name (CN)".into(),
        ));
    }
    lint_subject_alt_name(&cert, &mut out);
    lint_usages(&cert, &mut out);
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before {
        out.push((
            "not_yet_valid",
            format!("it is not valid before {}", not_before.date()),
        ));
    }
    if now > not_after {
        out.push(("expired", format!("it expired on {}", not_after.date())));
    }
    let days = (not_after - not_before).whole_days();
    if days > DIRECT_MAX_VALIDITY_DAYS {
        out.push((
            "validity_too_long",
            format!("it is valid for {days} days; Direct allows at most 3 years ({DIRECT_MAX_VALIDITY_DAYS} days)"),
        ));
    }
    lint_locations(&cert, &mut out);
    let signature = signature_info(&cert.signature_algorithm);
    if signature.algorithm.is_none() {
        out.push((
            "signature_algorithm_weak",
            format!(
                "it is signed with {}; Direct requires SHA-256 or stronger with RSA or ECDSA",
                signature.description
            ),
        ));
    }
    let key = key_info(cert.public_key());
    let key_ok = match key.kind {
        Some(KeyKind::Rsa) => key.bits >= 2048,
        Some(KeyKind::P256) => true,
        _ => false,
    };
    if !key_ok {
        out.push((
            "key_unsupported",
            format!(
                "its key is {}; Direct requires RSA of at least 2048 bits or ECDSA P-256",
                key.description
            ),
        ));
    }
    let has =
        |oid: &x509_parser::oid_registry::Oid<'_>| cert.iter_extensions().any(|e| &e.oid == oid);
    if !has(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        || !has(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
    {
        out.push((
            "key_identifier_missing",
            "it lacks the subjectKeyIdentifier or authorityKeyIdentifier extension".into(),
        ));
    }
    out
}

fn lint_subject_alt_name(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => &san.value.general_names,
        Ok(None) => {
            out.push((
                "san_missing",
                "it has no subjectAltName; Direct requires the address (rfc822Name) or the domain (dNSName)".into(),
            ));
            return;
        }
        Err(_) => {
            out.push((
                "san_malformed",
                "its subjectAltName is malformed or repeated".into(),
            ));
            return;
        }
    };
    let [name] = names.as_slice() else {
        out.push((
            "san_not_single",
            format!(
                "its subjectAltName has {} entries; Direct requires exactly one (the address or the domain)",
                names.len()
            ),
        ));
        return;
    };
    let value = match name {
        GeneralName::RFC822Name(v) | GeneralName::DNSName(v) => *v,
        other => {
            out.push((
                "san_type",
                format!("its subjectAltName entry {other} is neither an rfc822Name nor a dNSName"),
            ));
            return;
        }
    };
    if value.contains('*') {
        out.push((
            "san_wildcard",
            format!("its subjectAltName '{value}' is a wildcard"),
        ));
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        out.push((
            "san_not_lower_case",
            format!("its subjectAltName '{value}' is not lower-case"),
        ));
    }
}

fn lint_usages(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    match cert.key_usage() {
        Ok(Some(ku)) => {
            if !(ku.value.digital_signature() || ku.value.key_encipherment()) {
                out.push((
                    "key_usage_wrong",
                    format!(
                        "its keyUsage ({}) has neither digitalSignature nor keyEncipherment",
                        ku.value
                    ),
                ));
            }
            if !ku.critical {
                out.push((
                    "key_usage_not_critical",
                    "its keyUsage is not marked critical".into(),
                ));
            }
        }
        Ok(None) => out.push(("key_usage_missing", "it has no keyUsage extension".into())),
        Err(_) => out.push((
            "key_usage_missing",
            "its keyUsage is malformed or repeated".into(),
        )),
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.email_protection => {}
        _ => out.push((
            "eku_email_protection_missing",
            "its extKeyUsage does not include emailProtection (1.3.6.1.5.5.7.3.4)".into(),
        )),
    }
    if !matches!(
        cert.basic_constraints(),
        Ok(None)
            | Ok(Some(BasicExtension {
                value: BasicConstraints { ca: false, .. },
                ..
            }))
    ) {
        out.push((
            "is_ca",
            "it is a CA certificate (basicConstraints CA:TRUE), not an end-entity certificate"
                .into(),
        ));
    }
}

/// The plain-http locations relying parties fetch: CRL distribution point and caIssuers.
fn lint_locations(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    let is_http = |name: &GeneralName<'_>| matches!(name, GeneralName::URI(uri) if uri.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")));
    let mut crl = false;
    let mut ca_issuers = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                crl |= points.iter().any(|p| {
                    matches!(&p.distribution_point, Some(DistributionPointName::FullName(names)) if names.iter().any(is_http))
                });
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                ca_issuers |= aia.iter().any(|d| {
                    d.access_method
                        == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                        && is_http(&d.access_location)
                });
            }
            _ => {}
        }
    }
    if !crl {
        out.push((
            "crl_distribution_point_missing",
            "it has no http:// URI in cRLDistributionPoints, so relying parties cannot check revocation".into(),
        ));
    }
    if !ca_issuers {
        out.push((
            "ca_issuers_missing",
            "it has no http:// caIssuers URI in authorityInfoAccess, so relying parties cannot fetch the issuer".into(),
        ));
    }
}

const OID_P521: &str = "1.3.132.0.35";

/// Why a signature was not verified.
enum Unverified {
    /// The signature algorithm OID is not one anchorage knows.
    UnknownAlgorithm(String),
    /// No verifier for this algorithm (its conventional name) with this kind of key.
    Unsupported(String),
    /// The signature does not match the data and the key.
    Mismatch,
}

/// Verifies `signature` over `signed` with `signer`'s public key, by the algorithm named in
/// `signature_algorithm`. Legacy algorithms and RSA keys from 1024 bits are verified too, on
/// purpose: callers judge strength separately and report it as such.
fn verify_signature_of(
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

/// SHA-256 of a SubjectPublicKeyInfo (DER): the key index's key.
pub fn spki_hash(spki_der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der)
        .as_ref()
        .to_vec()
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_sha256(cert_der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| format!("not a DER certificate: {e}"))?;
    Ok(spki_hash(cert.public_key().raw))
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

    #[test]
    fn rfc7093_identifier_is_160_bits() {
        assert_eq!(key_identifier_of_bits(b"abc").len(), 20);
    }

    /// A Direct end-entity certificate (spec §2), changed by `edit`; self-signed, since the
    /// lint does not look at the issuer.
    fn direct_cert(
        alg: &'static rcgen::SignatureAlgorithm,
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Vec<u8> {
        use rcgen::{
            CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
        };
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "direct.example.com");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName("direct.example.com".try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://ca.example.com/crl/issuing.crl".into()],
        }];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            ca_issuers_der("http://ca.example.com/ca/issuing.cer").unwrap(),
        )];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - ::time::Duration::days(1);
        params.not_after = now + ::time::Duration::days(825);
        edit(&mut params);
        let key = KeyPair::generate_for(alg).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn direct_profile_lint() {
        use rcgen::{BasicConstraints, IsCa, KeyUsagePurpose, SanType};
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let days = ::time::Duration::days;
        let email = |s: &str| SanType::Rfc822Name(s.try_into().unwrap());
        type Edit = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;
        let cases: Vec<(&str, Edit, &[&str])> = vec![
            ("ok/domain", Box::new(|_| {}), &[]),
            (
                "ok/address",
                Box::new(move |p| p.subject_alt_names = vec![email("a@d.example")]),
                &[],
            ),
            (
                "ok/1096-days",
                Box::new(move |p| p.not_after = p.not_before + days(1096)),
                &[],
            ),
            (
                "fail/no-san",
                Box::new(|p| p.subject_alt_names.clear()),
                &["san_missing"],
            ),
            (
                "fail/two-sans",
                Box::new(move |p| p.subject_alt_names.push(email("a@d.example"))),
                &["san_not_single"],
            ),
            (
                "fail/uri-san",
                Box::new(|p| {
                    p.subject_alt_names = vec![SanType::URI("http://x.example".try_into().unwrap())]
                }),
                &["san_type"],
            ),
            (
                "fail/upper-case",
                Box::new(move |p| p.subject_alt_names = vec![email("A@d.example")]),
                &["san_not_lower_case"],
            ),
            (
                "fail/wildcard",
                Box::new(|p| {
                    p.subject_alt_names = vec![SanType::DnsName("*.d.example".try_into().unwrap())]
                }),
                &["san_wildcard"],
            ),
            (
                "fail/no-cn",
                Box::new(|p| p.distinguished_name = rcgen::DistinguishedName::new()),
                &["subject_cn_missing"],
            ),
            (
                "fail/no-key-usage",
                Box::new(|p| p.key_usages.clear()),
                &["key_usage_missing"],
            ),
            (
                "fail/key-usage-cert-sign",
                Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign]),
                &["key_usage_wrong"],
            ),
            (
                "fail/no-eku",
                Box::new(|p| p.extended_key_usages.clear()),
                &["eku_email_protection_missing"],
            ),
            (
                "fail/ca",
                Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
                &["is_ca"],
            ),
            (
                "fail/expired",
                Box::new(move |p| {
                    p.not_before = now - days(400);
                    p.not_after = now - days(1);
                }),
                &["expired"],
            ),
            (
                "fail/not-yet-valid",
                Box::new(move |p| p.not_before = now + days(1)),
                &["not_yet_valid"],
            ),
            (
                "fail/1097-days",
                Box::new(move |p| p.not_after = p.not_before + days(1097)),
                &["validity_too_long"],
            ),
            (
                "fail/https-crl",
                Box::new(|p| {
                    p.crl_distribution_points[0].uris = vec!["https://ca.example.com/x.crl".into()]
                }),
                &["crl_distribution_point_missing"],
            ),
            (
                "fail/no-aia",
                Box::new(|p| p.custom_extensions.clear()),
                &["ca_issuers_missing"],
            ),
            (
                "fail/no-key-identifiers",
                Box::new(|p| p.use_authority_key_identifier_extension = false),
                &["key_identifier_missing"],
            ),
        ];
        for (name, edit, want) in cases {
            let got: Vec<&str> =
                direct_profile_problems(&direct_cert(&rcgen::PKCS_ECDSA_P256_SHA256, edit), now)
                    .into_iter()
                    .map(|(code, _)| code)
                    .collect();
            assert_eq!(got, want, "{name}");
        }
        let p384 = direct_cert(&rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
        assert_eq!(direct_profile_problems(&p384, now)[0].0, "key_unsupported");
        assert_eq!(direct_profile_problems(b"junk", now)[0].0, "unreadable");
    }

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
