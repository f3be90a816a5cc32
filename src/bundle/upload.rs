//! What a member uploaded as an anchor: certificates (PEM, or one DER certificate), a trust
//! bundle (`.p7b` or signed `.p7m`, DER, BER or PEM-armoured, read by the same
//! [`read_bundle`] as external sources), or something sent by mistake (a private key, a
//! PKCS#12 file, a CSR), refused with its own code so the member learns what went wrong and
//! nothing of its content reaches a message.
//!
//! Pure byte classification, no policy: `policy::admission` turns the refusals into its
//! reasons and then applies the admission rules to the certificates returned here. A file is
//! judged by its PEM labels or its first few DER/BER elements (the lenient view of
//! [`super::der`]) before any decoding, so a damaged key is still recognised as a key.

use std::collections::HashSet;

use der::Decode;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

use super::der::{
    children, tlv, Tlv, CONTEXT_0, CONTEXT_1, INTEGER, OCTET_STRING, OID, SEQUENCE, SET,
};
use super::read::{read_bundle, ReadError, PKCS7_PEM_LABELS};
use super::verify::{verify_unpinned, VerifyError};
use super::MAX_CERTIFICATES;

/// One reason an upload is refused: a stable code (`upload_*`) and a sentence for the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// Collects refusals while an upload is classified.
#[derive(Debug, Default)]
struct Refusals(Vec<Refusal>);

impl Refusals {
    fn add(&mut self, code: &'static str, message: impl Into<String>) {
        self.0.push(Refusal {
            code,
            message: message.into(),
        });
    }
}

/// Says what an uploaded anchor file is and returns its DER certificates, in file order
/// without duplicates: a PEM file (one or several CERTIFICATE blocks, text around them
/// allowed), a DER certificate (.cer/.crt), or a PKCS#7 bundle: a `.p7b` or a signed `.p7m`,
/// DER or BER, bare or PEM-armoured (`PKCS7`, `CMS`, `PKCS #7 SIGNED DATA`). Private keys, PKCS#12 files and CSRs are refused with their own codes so the member learns
/// what went wrong; nothing of their content reaches a message. The size is checked first, so
/// nothing parses an oversized input.
pub fn classify(bytes: &[u8], max_bytes: usize) -> Result<Vec<Vec<u8>>, Vec<Refusal>> {
    let mut r = Refusals::default();
    if bytes.len() > max_bytes {
        r.add(
            "upload_too_large",
            format!(
                "the upload is {} bytes; the limit is {max_bytes} bytes",
                bytes.len()
            ),
        );
        return Err(r.0);
    }
    if bytes.trim_ascii().is_empty() {
        r.add(
            "upload_empty",
            "the upload is empty; choose the CA certificate file (.pem, .cer, .crt or .p7b)",
        );
        return Err(r.0);
    }
    let certs = if find(bytes, b"-----BEGIN ").is_some() {
        read_pem(bytes, &mut r)
    } else {
        read_der(bytes, &mut r)
    };
    let mut seen = HashSet::new();
    let unique: Vec<Vec<u8>> = certs
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect();
    if r.0.is_empty() && !unique.is_empty() {
        return Ok(unique);
    }
    Err(r.0)
}

// ---------------------------------------------------------------------------------------------
// Classification

/// 1.2.840.113549.1.7: the PKCS#7 content types (data, signedData, ...).
const PKCS7_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07];
/// 1.2.840.113549.1.7.2 signedData.
const PKCS7_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

const NEVER_KEYS: &str = "Never upload private keys: keep the key where it is and upload only \
                          the CA certificate (.pem, .cer, .crt or .p7b)";

fn read_pem(bytes: &[u8], r: &mut Refusals) -> Vec<Vec<u8>> {
    // Labels are read before any decoding, so a key is recognised even when its body is
    // damaged, and nothing of it is decoded at all.
    let labels = pem_labels(bytes);
    let mut refused = false;
    if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
        r.add(
            "upload_is_private_key",
            format!("the upload contains a private key. {NEVER_KEYS}"),
        );
        refused = true;
    }
    if labels
        .iter()
        .any(|l| l == "CERTIFICATE REQUEST" || l == "NEW CERTIFICATE REQUEST")
    {
        r.add(
            "upload_is_csr",
            "the upload contains a certificate signing request (CSR), not a certificate; upload the CA certificate itself",
        );
        refused = true;
    }
    if refused {
        return Vec::new();
    }
    let Ok(blocks) = ::pem::parse_many(bytes) else {
        r.add(
            "upload_unreadable",
            "the PEM armour is malformed (a block is not base64, or BEGIN and END lines do not match)",
        );
        return Vec::new();
    };
    let mut certs = Vec::new();
    let mut others = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let n = i + 1;
        match block.tag() {
            "CERTIFICATE" | "X509 CERTIFICATE" => {
                if parse_certificate(block.contents()).is_some() {
                    certs.push(block.contents().to_vec());
                } else {
                    r.add(
                        "upload_unreadable",
                        format!("PEM block {n} (CERTIFICATE) is not a readable X.509 certificate"),
                    );
                }
            }
            label if PKCS7_PEM_LABELS.contains(&label) => {
                match pkcs7_certificates(block.contents()) {
                    Ok(found) => certs.extend(found),
                    Err(why) => r.add("upload_unreadable", format!("PEM block {n}: {why}")),
                }
            }
            other => others.push(other.to_string()),
        }
    }
    if blocks.is_empty() {
        r.add(
            "upload_unreadable",
            "the PEM file holds no complete BEGIN/END block",
        );
    } else if certs.is_empty() && !others.is_empty() {
        r.add(
            "upload_unreadable",
            format!(
                "the PEM file holds no CERTIFICATE or PKCS7 block (found: {})",
                others.join(", ")
            ),
        );
    }
    certs
}

fn read_der(bytes: &[u8], r: &mut Refusals) -> Vec<Vec<u8>> {
    if let Ok((rest, _)) = X509Certificate::from_der(bytes) {
        if rest.is_empty() {
            return vec![bytes.to_vec()];
        }
        r.add(
            "upload_unreadable",
            format!(
                "the file holds a DER certificate followed by {} more bytes; upload a PEM file or a .p7b for several certificates",
                rest.len()
            ),
        );
        return Vec::new();
    }
    match der_kind(bytes) {
        DerKind::Cms { .. } => match pkcs7_certificates(bytes) {
            Ok(certs) => return certs,
            Err(why) => r.add("upload_unreadable", why.to_string()),
        },
        DerKind::Pkcs12 => r.add(
            "upload_is_pkcs12",
            format!(
                "the upload is a PKCS#12 file (.p12/.pfx), which carries a private key. {NEVER_KEYS}; \
                 `openssl pkcs12 -in FILE -nokeys -out ca.pem` takes the certificates out of it"
            ),
        ),
        DerKind::PrivateKey(form) => r.add(
            "upload_is_private_key",
            format!("the upload is a private key ({form}). {NEVER_KEYS}"),
        ),
        DerKind::Unknown if X509CertificationRequest::from_der(bytes).is_ok() => r.add(
            "upload_is_csr",
            "the upload is a certificate signing request (CSR), not a certificate; upload the CA certificate itself",
        ),
        DerKind::Unknown => r.add(
            "upload_unreadable",
            "the upload is neither a certificate (PEM or DER) nor a PKCS#7 bundle (.p7b)",
        ),
    }
    Vec::new()
}

/// The anchors of a PKCS#7 bundle, read by the reader external sources go through
/// ([`read_bundle`]): DER or BER, a `.p7b` or a signed bundle (`.p7m`). The anchors of a signed
/// bundle are those of its content, never its signer's chain, and its signature must verify
/// (nobody pins a member's signer, so that is all [`verify_unpinned`] can check; the anchors
/// still go through every admission rule). Each anchor must decode as an X.509 certificate.
fn pkcs7_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Pkcs7Problem> {
    let parsed = read_bundle(bytes, MAX_CERTIFICATES).map_err(|e| match e {
        ReadError::TooManyAnchors { limit } => Pkcs7Problem::TooMany { limit },
        ReadError::Invalid(why) => Pkcs7Problem::Unreadable(why),
    })?;
    if parsed.signed.is_some() {
        verify_unpinned(&parsed).map_err(Pkcs7Problem::SignedUnusable)?;
    }
    if parsed.anchors.is_empty() {
        return Err(Pkcs7Problem::Empty);
    }
    for (i, cert) in parsed.anchors.iter().enumerate() {
        if let Err(source) = x509_cert::Certificate::from_der(cert) {
            return Err(Pkcs7Problem::NotCertificate { n: i + 1, source });
        }
    }
    Ok(parsed.anchors)
}

/// Why the certificates of an uploaded PKCS#7 file cannot be used; the text is the refusal's
/// message (after `PEM block N: ` for an armoured bundle).
#[derive(Debug, thiserror::Error)]
enum Pkcs7Problem {
    #[error("the PKCS#7 file holds more than {limit} certificates")]
    TooMany { limit: usize },
    #[error("the PKCS#7 file cannot be read: {0}")]
    Unreadable(String),
    #[error("the signed bundle (.p7m) cannot be used: {0}")]
    SignedUnusable(#[source] VerifyError),
    #[error("the PKCS#7 file holds no certificates")]
    Empty,
    #[error("certificate {n} of the PKCS#7 file is not an X.509 certificate: {source}")]
    NotCertificate { n: usize, source: der::Error },
}

/// What a DER (or BER) file that is not a certificate looks like, judged by its first elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DerKind {
    /// A PKCS#7/CMS ContentInfo; `signed` when it is SignedData with signerInfos.
    Cms {
        signed: bool,
    },
    Pkcs12,
    /// The form of the key, for the message.
    PrivateKey(&'static str),
    Unknown,
}

fn der_kind(bytes: &[u8]) -> DerKind {
    let Some(outer) = tlv(bytes).filter(|t| t.tag == SEQUENCE) else {
        return DerKind::Unknown;
    };
    let int = |t: &Tlv<'_>, v: u8| t.tag == INTEGER && t.contents == [v];
    let starts_with_oid =
        |t: &Tlv<'_>| t.tag == SEQUENCE && tlv(t.contents).is_some_and(|o| o.tag == OID);
    match children(outer.contents, 16).as_slice() {
        // RFC 5652 ContentInfo: contentType, [0] EXPLICIT content.
        [oid, content, ..]
            if oid.tag == OID
                && oid.contents.starts_with(PKCS7_ARC)
                && content.tag == CONTEXT_0 =>
        {
            let signed = oid.contents == PKCS7_SIGNED_DATA
                && tlv(content.contents)
                    .filter(|t| t.tag == SEQUENCE)
                    .is_some_and(|signed_data| {
                        // SignedData ends with signerInfos, a SET that is empty in a .p7b.
                        let fields = children(signed_data.contents, 16);
                        fields.len() >= 4
                            && fields
                                .last()
                                .is_some_and(|t| t.tag == SET && !t.contents.is_empty())
                    });
            DerKind::Cms { signed }
        }
        // RFC 7292 PFX: version 3, authSafe ContentInfo (data or signedData), macData.
        [version, auth_safe, ..]
            if int(version, 3)
                && auth_safe.tag == SEQUENCE
                && tlv(auth_safe.contents)
                    .is_some_and(|o| o.tag == OID && o.contents.starts_with(PKCS7_ARC)) =>
        {
            DerKind::Pkcs12
        }
        // RFC 5958 OneAsymmetricKey (PKCS#8): version, privateKeyAlgorithm, privateKey.
        [version, algorithm, key, ..]
            if (int(version, 0) || int(version, 1))
                && starts_with_oid(algorithm)
                && key.tag == OCTET_STRING =>
        {
            DerKind::PrivateKey("PKCS#8")
        }
        // RFC 5958 EncryptedPrivateKeyInfo: encryptionAlgorithm, encryptedData.
        [algorithm, data] if starts_with_oid(algorithm) && data.tag == OCTET_STRING => {
            DerKind::PrivateKey("encrypted PKCS#8")
        }
        // RFC 5915 ECPrivateKey: version 1, privateKey, [0] parameters, [1] publicKey.
        [version, key, optional @ ..]
            if int(version, 1)
                && key.tag == OCTET_STRING
                && optional.len() <= 2
                && optional
                    .iter()
                    .all(|t| t.tag == CONTEXT_0 || t.tag == CONTEXT_1) =>
        {
            DerKind::PrivateKey("SEC1 EC")
        }
        // RFC 8017 RSAPrivateKey: version, n, e, d, p, q, dP, dQ, qInv (+ other primes).
        [version, fields @ ..]
            if (int(version, 0) || int(version, 1))
                && fields.len() >= 8
                && fields.iter().take(8).all(|t| t.tag == INTEGER) =>
        {
            DerKind::PrivateKey("PKCS#1 RSA")
        }
        _ => DerKind::Unknown,
    }
}

/// The labels of every `-----BEGIN LABEL-----` line.
fn pem_labels(bytes: &[u8]) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find(rest, b"-----BEGIN ") {
        rest = rest.get(at + 11..).unwrap_or_default();
        let end = find(rest, b"-----").unwrap_or(rest.len());
        labels.push(String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned());
        rest = rest.get(end..).unwrap_or_default();
    }
    labels
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;
    use crate::x509;

    /// 1.2.840.113549.1.7: the PKCS#7 content types (data, signedData, ...).
    const PKCS7_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07];
    /// 1.2.840.113549.1.7.2 signedData.
    const PKCS7_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

    struct Ca {
        der: Vec<u8>,
        key: KeyPair,
    }

    fn ca(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> Ca {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { der, key }
    }

    fn codes(refusals: &[Refusal]) -> Vec<&'static str> {
        refusals.iter().map(|r| r.code).collect()
    }

    #[test]
    fn upload_classification() {
        let one = ca("One", &rcgen::PKCS_ECDSA_P256_SHA256);
        let two = ca("Two", &rcgen::PKCS_ECDSA_P384_SHA384);
        let pem_one = x509::to_pem("CERTIFICATE", &one.der);
        let pem_two = x509::to_pem("CERTIFICATE", &two.der);
        let key_pem = one.key.serialize_pem();
        let key_der = one.key.serialize_der();
        // The privateKey OCTET STRING of an EC PKCS#8 holds the SEC1 ECPrivateKey.
        let sec1 = {
            let outer = tlv(&key_der).unwrap();
            let fields = children(outer.contents, 16);
            fields[2].contents.to_vec()
        };
        let rsa_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let pkcs1 = {
            let der = rsa_key.serialize_der();
            let outer = tlv(&der).unwrap();
            children(outer.contents, 16)[2].contents.to_vec()
        };
        let csr = CertificateParams::new(vec!["x.example".to_string()])
            .unwrap()
            .serialize_request(&one.key)
            .unwrap();
        let p12 = crate::pkcs12::build(&one.der, &one.key, &[], "a password", "one").unwrap();
        let p7b = crate::bundle::build_p7b(&[one.der.clone(), two.der.clone()]);
        // A SignedData with a signerInfo: the shape of a signed bundle (.p7m).
        let p7m = {
            fn t(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
                let body: Vec<u8> = parts.concat();
                let mut out = vec![tag];
                if body.len() < 0x80 {
                    out.push(body.len() as u8);
                } else {
                    out.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
                }
                out.extend(body);
                out
            }
            let data_oid = t(OID, &[PKCS7_ARC, &[1]]);
            let signed_data = t(
                SEQUENCE,
                &[
                    &t(INTEGER, &[&[1]]),
                    &t(SET, &[]),
                    &t(SEQUENCE, &[&data_oid]),
                    &t(CONTEXT_0, &[&one.der]),
                    &t(SET, &[&t(SEQUENCE, &[&t(INTEGER, &[&[1]])])]),
                ],
            );
            t(
                SEQUENCE,
                &[
                    &t(OID, &[PKCS7_SIGNED_DATA]),
                    &t(CONTEXT_0, &[&signed_data]),
                ],
            )
        };
        let mut trailing = one.der.clone();
        trailing.extend_from_slice(b"\0\0");
        let mut oversized = pem_one.clone().into_bytes();
        oversized.resize(1024 * 1024 + 1, b'\n');

        type Case<'a> = (&'a str, Vec<u8>, Vec<&'a Vec<u8>>);
        let ok: &[Case<'_>] = &[
            ("ok/pem-one", pem_one.clone().into_bytes(), vec![&one.der]),
            ("ok/der", one.der.clone(), vec![&one.der]),
            (
                "ok/pem-with-text-around",
                format!("Subject: One\n{pem_one}\nIssuer: Two\r\n{pem_two}trailer\n").into_bytes(),
                vec![&one.der, &two.der],
            ),
            (
                "ok/pem-duplicates-removed",
                format!("{pem_one}{pem_two}{pem_one}").into_bytes(),
                vec![&one.der, &two.der],
            ),
            ("ok/p7b-der", p7b.clone(), vec![&one.der, &two.der]),
            (
                "ok/p7b-pem",
                x509::to_pem("PKCS7", &p7b).into_bytes(),
                vec![&one.der, &two.der],
            ),
        ];
        for (name, input, want) in ok {
            let mut got = classify(input, 1024 * 1024).unwrap_or_else(|d| panic!("{name}: {d:?}"));
            let mut want: Vec<Vec<u8>> = want.iter().map(|c| c.to_vec()).collect();
            if name.starts_with("ok/p7b") {
                // A .p7b holds a SET OF: its order is not the upload's.
                got.sort();
                want.sort();
            }
            assert_eq!(got, want, "{name}");
        }

        let fail: &[(&str, Vec<u8>, &[&str])] = &[
            ("fail/empty", vec![], &["upload_empty"]),
            ("fail/whitespace", b" \r\n\t".to_vec(), &["upload_empty"]),
            ("fail/too-large", oversized, &["upload_too_large"]),
            ("fail/pem-private-key", key_pem.clone().into_bytes(), &["upload_is_private_key"]),
            (
                "fail/pem-certificate-and-key",
                format!("{pem_one}{key_pem}").into_bytes(),
                &["upload_is_private_key"],
            ),
            (
                "fail/pem-damaged-rsa-key",
                b"-----BEGIN RSA PRIVATE KEY-----\nnot base64!\n-----END RSA PRIVATE KEY-----\n"
                    .to_vec(),
                &["upload_is_private_key"],
            ),
            (
                "fail/pem-encrypted-key",
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                    .to_vec(),
                &["upload_is_private_key"],
            ),
            ("fail/der-pkcs8", key_der.clone(), &["upload_is_private_key"]),
            ("fail/der-sec1", sec1, &["upload_is_private_key"]),
            ("fail/der-pkcs1", pkcs1, &["upload_is_private_key"]),
            ("fail/pkcs12", p12, &["upload_is_pkcs12"]),
            ("fail/csr-pem", csr.pem().unwrap().into_bytes(), &["upload_is_csr"]),
            ("fail/csr-der", csr.der().to_vec(), &["upload_is_csr"]),
            (
                "fail/csr-and-key",
                format!("{}{key_pem}", csr.pem().unwrap()).into_bytes(),
                &["upload_is_private_key", "upload_is_csr"],
            ),
            ("fail/random", vec![0x13, 0x37, 0x00, 0xff, 0x42, 0x99], &["upload_unreadable"]),
            ("fail/trailing-bytes", trailing, &["upload_unreadable"]),
            ("fail/p7m", p7m, &["upload_unreadable"]),
            (
                "fail/empty-p7b",
                crate::bundle::build_p7b(&[]),
                &["upload_unreadable"],
            ),
            (
                "fail/pem-crl-only",
                x509::to_pem("X509 CRL", b"\x30\x00").into_bytes(),
                &["upload_unreadable"],
            ),
            (
                "fail/pem-bad-certificate",
                x509::to_pem("CERTIFICATE", b"\x30\x03\x02\x01\x01").into_bytes(),
                &["upload_unreadable"],
            ),
            (
                "fail/pem-unterminated",
                b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec(),
                &["upload_unreadable"],
            ),
        ];
        for (name, input, want) in fail {
            let refusals = classify(input, 1024 * 1024).unwrap_err();
            assert_eq!(codes(&refusals), *want, "{name}: {refusals:?}");
        }

        // Nothing of a key reaches a message.
        let secret_b64: String = key_pem.lines().nth(1).unwrap().chars().take(16).collect();
        let text = format!(
            "{:?}",
            classify(key_pem.as_bytes(), 1024 * 1024).unwrap_err()
        );
        assert!(!text.contains(&secret_b64));
        assert!(text.contains("Never upload private keys"));
    }
}
