//! Reading trust bundles. [`read_bundle`] is the one reader for bundles someone else wrote,
//! whether a member uploaded them or an external source served them (spec §5): DER, BER with
//! indefinite lengths (the Java reference bundler, `openssl cms -stream`), PEM armour, content
//! that is metadata or arbitrary bytes (kept opaque), and signed bundles whose inner content is
//! the unsigned bundle as DER or as PEM text. [`certificates_in`] is the strict reader for
//! what anchorage wrote itself (its output must be DER, so BER there is an error).
//!
//! BER is rewritten to definite lengths by [`super::der::normalise`] (the `der` crate refuses
//! it); the SignedData fields are then walked with `der::SliceReader`, and the strict reader
//! takes the ContentInfo from `cms`. Every step is a single pass over the input, so the cost is
//! linear in its size; certificates are kept exactly as encoded, never re-encoded.

use std::borrow::Cow;
use std::collections::HashSet;

use der::{Decode, ErrorKind, Header, Reader, SliceReader, Tag, Tagged};

use super::der::{normalise, CONTEXT_0, CONTEXT_1, INTEGER, OCTET_STRING, OID, SEQUENCE, SET};
use super::{BundleError, MAX_CERTIFICATES};
use crate::model::Fingerprint;

/// id-signedData (RFC 5652).
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// Why a foreign bundle cannot be read. The texts are the reasons operators and members see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Not a readable PKCS#7 trust bundle; the reason says what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// More distinct anchors than the caller allows.
    #[error("the bundle holds more than max_anchors = {limit} anchors")]
    TooManyAnchors { limit: usize },
}

/// The signed layer of a signed bundle: what verification needs.
#[derive(Debug, Clone)]
pub struct SignedLayer {
    /// The encapsulated content type (DER of the OID's value).
    pub content_type: Vec<u8>,
    /// The encapsulated content octets, as signed.
    pub content: Vec<u8>,
    /// The outer `certificates` (the signer and its chain), DER as received.
    pub certificates: Vec<Vec<u8>>,
    /// Each SignerInfo's complete TLV as received.
    pub signer_infos: Vec<Vec<u8>>,
}

/// A bundle as read, before verification and admission.
#[derive(Debug, Clone, Default)]
pub struct ParsedBundle {
    /// The anchors, in file order, duplicates removed.
    pub anchors: Vec<Vec<u8>>,
    /// How many duplicate certificates were dropped.
    pub duplicates: usize,
    /// The unsigned bundle's content (metadata XML or anything else), opaque.
    pub metadata: Option<Vec<u8>>,
    /// Present when the bundle is signed.
    pub signed: Option<SignedLayer>,
}

/// Reads `body` as a trust bundle holding at most `max_anchors` distinct anchors. DER input
/// is read in place; each anchor and the signed content are copied once. The anchors of a
/// signed bundle are those of its content (its outer certificates are the signer's chain and
/// go to [`SignedLayer::certificates`]); the signature is not checked here (see
/// [`super::verify`]).
pub fn read_bundle(body: &[u8], max_anchors: usize) -> Result<ParsedBundle, ReadError> {
    let blocks = der_blocks(body)?;
    let mut layers = Vec::with_capacity(blocks.len());
    for block in &blocks {
        layers.push(read_layer(block, usize::MAX)?);
    }
    let signed = layers.iter().filter(|l| !l.signer_infos.is_empty()).count();
    if signed > 0 && layers.len() > 1 {
        return Err(invalid(
            "a signed bundle must be a single PKCS#7 object, not one of several PEM blocks",
        ));
    }
    let mut out = ParsedBundle::default();
    let mut seen = HashSet::new();
    for layer in layers {
        if layer.signer_infos.is_empty() {
            out.metadata = layer.content.map(<[u8]>::to_vec).or(out.metadata);
            add_anchors(&mut out, &mut seen, &layer.certificates, max_anchors)?;
            continue;
        }
        let Some(content) = layer.content else {
            return Err(invalid(
                "the signed bundle has no encapsulated content (a detached signature)",
            ));
        };
        add_inner(&mut out, &mut seen, content, max_anchors)?;
        out.signed = Some(SignedLayer {
            content_type: layer.content_type.to_vec(),
            content: content.to_vec(),
            certificates: layer.certificates.iter().map(|c| c.to_vec()).collect(),
            signer_infos: layer.signer_infos.iter().map(|s| s.to_vec()).collect(),
        });
    }
    Ok(out)
}

/// Adds the anchors of a signed bundle's inner content: DER, BER or PEM text of an unsigned
/// bundle.
fn add_inner(
    out: &mut ParsedBundle,
    seen: &mut HashSet<String>,
    content: &[u8],
    max_anchors: usize,
) -> Result<(), ReadError> {
    let blocks = der_blocks(content)
        .map_err(|e| invalid(&format!("the signed content is not a PKCS#7 bundle ({e})")))?;
    for block in &blocks {
        let layer = read_layer(block, usize::MAX)?;
        if !layer.signer_infos.is_empty() {
            return Err(invalid(
                "the signed content is itself signed; one signed layer is supported",
            ));
        }
        add_anchors(out, seen, &layer.certificates, max_anchors)?;
        out.metadata = layer.content.map(<[u8]>::to_vec).or(out.metadata.take());
    }
    Ok(())
}

fn add_anchors(
    out: &mut ParsedBundle,
    seen: &mut HashSet<String>,
    certificates: &[&[u8]],
    max_anchors: usize,
) -> Result<(), ReadError> {
    for &cert in certificates {
        // CertificateChoices: only X.509 certificates (a SEQUENCE) are anchors.
        if cert.first() != Some(&SEQUENCE) {
            continue;
        }
        if !seen.insert(Fingerprint::of(cert).0) {
            out.duplicates += 1;
            continue;
        }
        if out.anchors.len() == max_anchors {
            return Err(ReadError::TooManyAnchors { limit: max_anchors });
        }
        out.anchors.push(cert.to_vec());
    }
    Ok(())
}

pub(super) fn invalid(reason: &str) -> ReadError {
    ReadError::Invalid(reason.to_string())
}

/// The PEM labels a PKCS#7 object is armoured with.
pub const PKCS7_PEM_LABELS: [&str; 3] = ["PKCS7", "CMS", "PKCS #7 SIGNED DATA"];

/// The binary objects in `body`: the DER/BER body itself, or the contents of its PEM blocks
/// ([`PKCS7_PEM_LABELS`]), each normalised to definite lengths (borrowed when the body is DER
/// already).
fn der_blocks(body: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, ReadError> {
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(invalid("the response body is empty"));
    }
    if trimmed.starts_with(b"-----BEGIN ") {
        let blocks = pem::parse_many(trimmed)
            .map_err(|e| invalid(&format!("PEM armour cannot be read: {e}")))?;
        let mut out = Vec::new();
        for block in blocks {
            if !PKCS7_PEM_LABELS.contains(&block.tag()) {
                return Err(invalid(&format!(
                    "a PEM \"{}\" block where PKCS7 was expected",
                    block.tag()
                )));
            }
            out.push(Cow::Owned(ber_to_der(block.contents())?.into_owned()));
        }
        if out.is_empty() {
            return Err(invalid("no PEM block found"));
        }
        return Ok(out);
    }
    if trimmed.first() == Some(&b'<') {
        return Err(invalid(
            "the body is HTML or XML, not a PKCS#7 bundle (an error page served with a success status?)",
        ));
    }
    if body.first() != Some(&SEQUENCE) {
        return Err(invalid(
            "the body is neither DER/BER PKCS#7 nor PEM-armoured PKCS#7",
        ));
    }
    Ok(vec![ber_to_der(body)?])
}

fn ber_to_der(input: &[u8]) -> Result<Cow<'_, [u8]>, ReadError> {
    normalise(input).map_err(|e| invalid(&e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// SignedData fields

/// One ContentInfo(signedData), its fields borrowed from the DER.
struct Layer<'a> {
    content_type: &'a [u8],
    content: Option<&'a [u8]>,
    certificates: Vec<&'a [u8]>,
    signer_infos: Vec<&'a [u8]>,
    /// Bytes follow signerInfos (tolerated from others, refused in what anchorage wrote).
    trailing: bool,
}

pub(super) fn malformed(e: der::Error) -> ReadError {
    invalid(&format!("not a well-formed PKCS#7 SignedData: {e}"))
}

/// Reads the header at the reader and returns the element's contents.
pub(super) fn contents<'a>(
    r: &mut SliceReader<'a>,
    tag: u8,
    what: &str,
) -> Result<&'a [u8], ReadError> {
    if r.peek_byte() != Some(tag) {
        return Err(invalid(&format!(
            "SignedData {what}: expected tag {tag:#04x}, found {}",
            r.peek_byte()
                .map_or("the end".to_string(), |b| format!("{b:#04x}"))
        )));
    }
    let header = Header::decode(r).map_err(malformed)?;
    r.read_slice(header.length()).map_err(malformed)
}

/// The ContentInfo(signedData) in `der`, with at most `limit` certificates.
fn read_layer(der: &[u8], limit: usize) -> Result<Layer<'_>, ReadError> {
    let mut outer = SliceReader::new(der).map_err(malformed)?;
    let info = contents(&mut outer, SEQUENCE, "ContentInfo")?;
    let mut r = SliceReader::new(info).map_err(malformed)?;
    let content_type = contents(&mut r, OID, "contentType")?;
    if content_type != SIGNED_DATA {
        return Err(invalid(
            "the PKCS#7 content type is not signedData (a trust bundle is a SignedData)",
        ));
    }
    let explicit = contents(&mut r, CONTEXT_0, "content")?;
    let mut e = SliceReader::new(explicit).map_err(malformed)?;
    signed_data(contents(&mut e, SEQUENCE, "SignedData")?, limit)
}

/// The fields of a SignedData's contents (RFC 5652 §5.1).
fn signed_data(signed_data: &[u8], limit: usize) -> Result<Layer<'_>, ReadError> {
    let mut s = SliceReader::new(signed_data).map_err(malformed)?;
    contents(&mut s, INTEGER, "version")?;
    contents(&mut s, SET, "digestAlgorithms")?;
    let encap = contents(&mut s, SEQUENCE, "encapContentInfo")?;
    let (content_type, content) = encap_content(encap)?;
    let mut certificates = Vec::new();
    if s.peek_byte() == Some(CONTEXT_0) {
        certificates = members(contents(&mut s, CONTEXT_0, "certificates")?, limit)?;
    }
    if s.peek_byte() == Some(CONTEXT_1) {
        contents(&mut s, CONTEXT_1, "crls")?;
    }
    let signer_infos = members(contents(&mut s, SET, "signerInfos")?, usize::MAX)?;
    Ok(Layer {
        content_type,
        content,
        certificates,
        signer_infos,
        trailing: !s.is_finished(),
    })
}

/// (eContentType, eContent octets): the OCTET STRING's contents, or for PKCS#7 v1.5 content
/// of another type, that element's whole TLV.
fn encap_content(encap: &[u8]) -> Result<(&[u8], Option<&[u8]>), ReadError> {
    let mut r = SliceReader::new(encap).map_err(malformed)?;
    let content_type = contents(&mut r, OID, "eContentType")?;
    if r.peek_byte() != Some(CONTEXT_0) {
        return Ok((content_type, None));
    }
    let explicit = contents(&mut r, CONTEXT_0, "eContent")?;
    let mut e = SliceReader::new(explicit).map_err(malformed)?;
    if Tag::peek(&e).ok() == Some(Tag::OctetString) {
        return Ok((
            content_type,
            Some(contents(&mut e, OCTET_STRING, "eContent")?),
        ));
    }
    Ok((content_type, Some(explicit)))
}

/// The complete TLVs of a SET's members, in order; more than `limit` is an error.
fn members(set: &[u8], limit: usize) -> Result<Vec<&[u8]>, ReadError> {
    let mut r = SliceReader::new(set).map_err(malformed)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        if out.len() == limit {
            return Err(ReadError::TooManyAnchors { limit });
        }
        out.push(r.tlv_bytes().map_err(malformed)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Strict DER: what anchorage wrote

/// The certificates of a PKCS#7/CMS SignedData, as DER, in file order, duplicates kept: a
/// `.p7b` (degenerate SignedData) or the outer SignedData of a signed bundle (whose
/// certificates are the signer's chain; the anchors of a `.p7m` are inside its content).
/// Accepts DER, or PEM with `PKCS7` or `CMS` blocks (the certificates of every block, in
/// order).
///
/// Each certificate is returned exactly as encoded in the input, after checking that it
/// decodes as an X.509 certificate. Certificate choices that are not X.509 certificates
/// (attribute certificates, `other`) are skipped. More than [`MAX_CERTIFICATES`] are refused
/// before any certificate is decoded.
///
/// Strict DER, for reading back what anchorage wrote (stored versions, tests of its output):
/// BER with indefinite lengths is refused with [`BundleError::IndefiniteLength`]. Bundles from
/// members and external sources go through [`read_bundle`], which reads BER.
pub fn certificates_in(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    let trimmed = bytes.trim_ascii_start();
    let infos = if trimmed.starts_with(b"-----BEGIN ") {
        let blocks = pem::parse_many(trimmed).map_err(|e| BundleError::Pem(e.to_string()))?;
        if blocks.is_empty() {
            return Err(BundleError::Pem("no PEM block found".into()));
        }
        blocks
            .iter()
            .map(|block| match block.tag() {
                "PKCS7" | "CMS" => signed_data_of(block.contents()),
                other => Err(BundleError::Pem(format!(
                    "a \"{other}\" block where PKCS7 was expected"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![signed_data_of(bytes)?]
    };
    // Count everything first, then decode.
    let mut raw: Vec<&[u8]> = Vec::new();
    for info in &infos {
        let limit = MAX_CERTIFICATES.saturating_sub(raw.len());
        let layer = signed_data(info.content.value(), limit).map_err(|e| match e {
            ReadError::TooManyAnchors { .. } => BundleError::TooManyCertificates {
                limit: MAX_CERTIFICATES,
            },
            ReadError::Invalid(why) => BundleError::Malformed(why),
        })?;
        if layer.trailing {
            return Err(BundleError::Malformed(
                "unexpected data after SignedData signerInfos".into(),
            ));
        }
        raw.extend(layer.certificates);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, cert) in raw.iter().enumerate() {
        // CertificateChoices: a Certificate is a SEQUENCE; the alternatives are [0]..[3].
        if cert.first() != Some(&SEQUENCE) {
            continue;
        }
        x509_cert::Certificate::from_der(cert).map_err(|e| {
            BundleError::Malformed(format!(
                "certificate {} is not an X.509 certificate: {e}",
                i + 1
            ))
        })?;
        out.push(cert.to_vec());
    }
    Ok(out)
}

/// The ContentInfo of a DER SignedData.
fn signed_data_of(der: &[u8]) -> Result<cms::content_info::ContentInfo, BundleError> {
    let info = cms::content_info::ContentInfo::from_der(der).map_err(decode_error)?;
    if info.content_type.as_bytes() != SIGNED_DATA {
        return Err(BundleError::NotSignedData(info.content_type.to_string()));
    }
    if info.content.tag() != Tag::Sequence {
        return Err(BundleError::Malformed(
            "the signedData content is not a SEQUENCE".into(),
        ));
    }
    Ok(info)
}

fn decode_error(e: der::Error) -> BundleError {
    match e.kind() {
        ErrorKind::IndefiniteLength => BundleError::IndefiniteLength,
        _ => BundleError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_inputs_are_invalid() {
        let cases: &[(&str, &[u8])] = &[
            ("fail/truncated", &[0x30, 0x05, 0x02]),
            ("fail/no-eoc", &[0x30, 0x80, 0x05, 0x00]),
            ("fail/primitive-indefinite", &[0x04, 0x80, 0x00, 0x00]),
            ("fail/trailing", &[0x30, 0x00, 0x00]),
            (
                "fail/html",
                b"<html><body>Service unavailable</body></html>",
            ),
            ("fail/empty", b""),
            ("fail/not-signed-data", &[0x30, 0x03, 0x06, 0x01, 0x2a]),
        ];
        for (name, input) in cases {
            let err = read_bundle(input, 10).unwrap_err();
            assert!(matches!(err, ReadError::Invalid(_)), "{name}: {err}");
        }
    }

    #[test]
    fn metadata_content_is_kept_opaque_and_duplicates_dropped() {
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec();
        let xml = b"<TrustBundle><Profile>x</Profile></TrustBundle>";
        let p7b = crate::bundle::build_p7b_with_metadata(std::slice::from_ref(&cert), xml);
        let parsed = read_bundle(&p7b, 10).unwrap();
        assert_eq!(parsed.metadata.as_deref(), Some(&xml[..]));
        assert_eq!(parsed.anchors, vec![cert]);
        assert!(parsed.signed.is_none());
        // The same object twice as PEM blocks: one anchor, one duplicate.
        let block = pem::encode(&pem::Pem::new("PKCS7", p7b.clone()));
        let parsed = read_bundle(format!("{block}{block}").as_bytes(), 10).unwrap();
        assert_eq!((parsed.anchors.len(), parsed.duplicates), (1, 1));
        assert_eq!(
            read_bundle(&p7b, 0).unwrap_err(),
            ReadError::TooManyAnchors { limit: 0 }
        );
    }
}
