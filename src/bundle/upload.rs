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
use super::read::{read_bundle, ReadError};
use super::verify::verify_unpinned;
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
            "PKCS7" | "CMS" | "PKCS #7 SIGNED DATA" => match pkcs7_certificates(block.contents()) {
                Ok(found) => certs.extend(found),
                Err(why) => r.add("upload_unreadable", format!("PEM block {n}: {why}")),
            },
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
            Err(why) => r.add("upload_unreadable", why),
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
fn pkcs7_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let parsed = read_bundle(bytes, MAX_CERTIFICATES).map_err(|e| match e {
        ReadError::TooManyAnchors { limit } => {
            format!("the PKCS#7 file holds more than {limit} certificates")
        }
        ReadError::Invalid(why) => format!("the PKCS#7 file cannot be read: {why}"),
    })?;
    if parsed.signed.is_some() {
        verify_unpinned(&parsed)
            .map_err(|e| format!("the signed bundle (.p7m) cannot be used: {e}"))?;
    }
    if parsed.anchors.is_empty() {
        return Err("the PKCS#7 file holds no certificates".into());
    }
    for (i, cert) in parsed.anchors.iter().enumerate() {
        if let Err(e) = x509_cert::Certificate::from_der(cert) {
            return Err(format!(
                "certificate {} of the PKCS#7 file is not an X.509 certificate: {e}",
                i + 1
            ));
        }
    }
    Ok(parsed.anchors)
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
