//! Reading a trust bundle as real publishers serve it (spec §5): DER, BER with indefinite
//! lengths (the Java reference bundler, `openssl cms -stream`), PEM armour, content that is
//! metadata or arbitrary bytes (kept opaque), and signed bundles whose inner content is the
//! unsigned bundle as DER or as PEM text. Every step is a single pass over the input, so the
//! cost is linear in its size; certificates are kept exactly as encoded, never re-encoded.

use std::borrow::Cow;
use std::collections::HashSet;

use der::{Decode, Header, Reader, SliceReader, Tag};

use super::{Failure, RefreshStatus};
use crate::der_tags::{
    CONSTRUCTED_OCTET_STRING, CONTEXT_0, CONTEXT_1, OCTET_STRING, OID, SEQUENCE,
};
use crate::model::Fingerprint;

/// id-signedData (RFC 5652).
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// Nesting deeper than this is refused rather than followed (stack safety).
const MAX_DEPTH: usize = 32;

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
/// is read in place; each anchor and the signed content are copied once.
pub fn parse_bundle(body: &[u8], max_anchors: usize) -> Result<ParsedBundle, Failure> {
    let blocks = der_blocks(body)?;
    let mut layers = Vec::with_capacity(blocks.len());
    for block in &blocks {
        layers.push(read_layer(block)?);
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
) -> Result<(), Failure> {
    let blocks = der_blocks(content).map_err(|f| {
        invalid(&format!(
            "the signed content is not a PKCS#7 bundle ({})",
            f.reason
        ))
    })?;
    for block in &blocks {
        let layer = read_layer(block)?;
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
) -> Result<(), Failure> {
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
            return Err(Failure::new(
                RefreshStatus::TooLarge,
                format!("the bundle holds more than max_anchors = {max_anchors} anchors"),
            ));
        }
        out.anchors.push(cert.to_vec());
    }
    Ok(())
}

pub(super) fn invalid(reason: &str) -> Failure {
    Failure::new(RefreshStatus::InvalidFormat, reason.to_string())
}

/// The binary objects in `body`: the DER/BER body itself, or the contents of its PEM blocks
/// (`PKCS7`, `CMS`, `PKCS #7 SIGNED DATA`), each normalised to definite lengths (borrowed
/// when the body is DER already).
fn der_blocks(body: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, Failure> {
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(invalid("the response body is empty"));
    }
    if trimmed.starts_with(b"-----BEGIN ") {
        let blocks = pem::parse_many(trimmed)
            .map_err(|e| invalid(&format!("PEM armour cannot be read: {e}")))?;
        let mut out = Vec::new();
        for block in blocks {
            match block.tag() {
                "PKCS7" | "CMS" | "PKCS #7 SIGNED DATA" => {
                    out.push(Cow::Owned(normalise(block.contents())?.into_owned()))
                }
                other => {
                    return Err(invalid(&format!(
                        "a PEM \"{other}\" block where PKCS7 was expected"
                    )))
                }
            }
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
    Ok(vec![normalise(body)?])
}

// ---------------------------------------------------------------------------------------------
// BER to DER lengths

/// Rewrites indefinite lengths as definite ones and flattens constructed OCTET STRINGs, the two
/// BER forms streaming encoders use. Definite-length elements are copied as they are (real
/// encoders only stream the outer wrappers; certificates stay byte-exact, which their
/// signatures need). Input already in definite form is returned without copying.
pub fn normalise(input: &[u8]) -> Result<Cow<'_, [u8]>, Failure> {
    let header = read_header(input)?;
    if header.length.is_some() && header.tag != CONSTRUCTED_OCTET_STRING {
        let end = element_end(input, &header)?;
        if end != input.len() {
            return Err(invalid("trailing bytes after the PKCS#7 object"));
        }
        return Ok(Cow::Borrowed(input));
    }
    // Two passes: measure every rewritten element's content length (pre-order), then write
    // once into a buffer of the exact size. Nothing is copied twice.
    let mut lengths = Vec::new();
    let (used, total) = measure(input, 0, &mut lengths)?;
    if used != input.len() {
        return Err(invalid("trailing bytes after the PKCS#7 object"));
    }
    let mut out = Vec::with_capacity(total);
    write(input, &mut lengths.into_iter(), &mut out)?;
    Ok(Cow::Owned(out))
}

struct BerHeader {
    tag: u8,
    constructed: bool,
    /// `None` for the indefinite form.
    length: Option<usize>,
    size: usize,
}

fn truncated() -> Failure {
    invalid("the encoding is truncated")
}

fn read_header(input: &[u8]) -> Result<BerHeader, Failure> {
    let (&tag, rest) = input.split_first().ok_or_else(truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(invalid("multi-byte ASN.1 tags do not occur in PKCS#7"));
    }
    let (&first, rest) = rest.split_first().ok_or_else(truncated)?;
    let constructed = tag & 0x20 != 0;
    if first < 0x80 {
        return Ok(BerHeader {
            tag,
            constructed,
            length: Some(usize::from(first)),
            size: 2,
        });
    }
    if first == 0x80 {
        return Ok(BerHeader {
            tag,
            constructed,
            length: None,
            size: 2,
        });
    }
    let count = usize::from(first & 0x7f);
    if count > 4 {
        return Err(invalid("an ASN.1 length above 4 GiB"));
    }
    let bytes = rest.get(..count).ok_or_else(truncated)?;
    let length = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok(BerHeader {
        tag,
        constructed,
        length: Some(length),
        size: 2 + count,
    })
}

fn element_end(input: &[u8], header: &BerHeader) -> Result<usize, Failure> {
    let end = header
        .size
        .checked_add(header.length.unwrap_or(0))
        .ok_or_else(truncated)?;
    if end > input.len() {
        return Err(truncated());
    }
    Ok(end)
}

/// Pass 1: (bytes consumed, bytes written) for the element at the start of `input`; pushes
/// the content length of each element that gets rewritten, in pre-order.
fn measure(
    input: &[u8],
    depth: usize,
    lengths: &mut Vec<usize>,
) -> Result<(usize, usize), Failure> {
    if depth > MAX_DEPTH {
        return Err(invalid("ASN.1 nesting is too deep"));
    }
    let header = read_header(input)?;
    if header.tag == CONSTRUCTED_OCTET_STRING {
        let (used, octets) = octets(input, &header, depth, &mut |_| Ok(()))?;
        lengths.push(octets);
        return Ok((used, header_len(octets) + octets));
    }
    if header.length.is_some() {
        let end = element_end(input, &header)?;
        return Ok((end, end));
    }
    if !header.constructed {
        return Err(invalid("a primitive element with an indefinite length"));
    }
    let slot = lengths.len();
    lengths.push(0);
    let (mut pos, mut content) = (header.size, 0usize);
    loop {
        let rest = input.get(pos..).ok_or_else(truncated)?;
        if rest.starts_with(&[0, 0]) {
            pos += 2;
            break;
        }
        if rest.is_empty() {
            return Err(truncated());
        }
        let (used, written) = measure(rest, depth + 1, lengths)?;
        pos += used;
        content += written;
    }
    if let Some(l) = lengths.get_mut(slot) {
        *l = content;
    }
    Ok((pos, header_len(content) + content))
}

/// Pass 2: writes the element at the start of `input` with the lengths pass 1 measured;
/// returns the bytes consumed.
fn write(
    input: &[u8],
    lengths: &mut impl Iterator<Item = usize>,
    out: &mut Vec<u8>,
) -> Result<usize, Failure> {
    let header = read_header(input)?;
    if header.tag == CONSTRUCTED_OCTET_STRING {
        push_header(out, OCTET_STRING, lengths.next().ok_or_else(truncated)?);
        let (used, _) = octets(input, &header, 0, &mut |part| {
            out.extend_from_slice(part);
            Ok(())
        })?;
        return Ok(used);
    }
    if header.length.is_some() {
        let end = element_end(input, &header)?;
        out.extend_from_slice(input.get(..end).ok_or_else(truncated)?);
        return Ok(end);
    }
    push_header(out, header.tag, lengths.next().ok_or_else(truncated)?);
    let mut pos = header.size;
    loop {
        let rest = input.get(pos..).ok_or_else(truncated)?;
        if rest.starts_with(&[0, 0]) {
            return Ok(pos + 2);
        }
        pos += write(rest, lengths, out)?;
    }
}

/// Walks a constructed OCTET STRING (definite or not, nested or not), handing each primitive
/// part's octets to `part`; returns (bytes consumed, octets).
fn octets(
    input: &[u8],
    header: &BerHeader,
    depth: usize,
    part: &mut dyn FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(usize, usize), Failure> {
    if depth > MAX_DEPTH {
        return Err(invalid("ASN.1 nesting is too deep"));
    }
    let end = match header.length {
        Some(_) => Some(element_end(input, header)?),
        None => None,
    };
    let (mut pos, mut count) = (header.size, 0usize);
    loop {
        if Some(pos) == end {
            return Ok((pos, count));
        }
        let rest = input.get(pos..).ok_or_else(truncated)?;
        if end.is_none() && rest.starts_with(&[0, 0]) {
            return Ok((pos + 2, count));
        }
        let inner = read_header(rest)?;
        match (inner.tag, inner.length) {
            (OCTET_STRING, Some(_)) => {
                let inner_end = element_end(rest, &inner)?;
                let bytes = rest.get(inner.size..inner_end).ok_or_else(truncated)?;
                part(bytes)?;
                pos += inner_end;
                count += bytes.len();
            }
            (CONSTRUCTED_OCTET_STRING, _) => {
                let (used, n) = octets(rest, &inner, depth + 1, part)?;
                pos += used;
                count += n;
            }
            _ => return Err(invalid("a constructed OCTET STRING holds something else")),
        }
        if end.is_some_and(|e| pos > e) {
            return Err(truncated());
        }
    }
}

/// Size of a DER header for `len` content bytes.
fn header_len(len: usize) -> usize {
    let mut out = Vec::with_capacity(10);
    push_header(&mut out, 0, len);
    out.len()
}

fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

// ---------------------------------------------------------------------------------------------
// SignedData fields

/// One ContentInfo(signedData), its fields borrowed from the DER.
struct Layer<'a> {
    content_type: &'a [u8],
    content: Option<&'a [u8]>,
    certificates: Vec<&'a [u8]>,
    signer_infos: Vec<&'a [u8]>,
}

pub(super) fn malformed(e: der::Error) -> Failure {
    invalid(&format!("not a well-formed PKCS#7 SignedData: {e}"))
}

/// Reads the header at the reader and returns the element's contents.
pub(super) fn contents<'a>(
    r: &mut SliceReader<'a>,
    tag: u8,
    what: &str,
) -> Result<&'a [u8], Failure> {
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

fn read_layer(der: &[u8]) -> Result<Layer<'_>, Failure> {
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
    let signed_data = contents(&mut e, SEQUENCE, "SignedData")?;
    let mut s = SliceReader::new(signed_data).map_err(malformed)?;
    contents(&mut s, 0x02, "version")?;
    contents(&mut s, 0x31, "digestAlgorithms")?;
    let encap = contents(&mut s, SEQUENCE, "encapContentInfo")?;
    let (content_type, content) = encap_content(encap)?;
    let mut certificates = Vec::new();
    if s.peek_byte() == Some(CONTEXT_0) {
        certificates = members(contents(&mut s, CONTEXT_0, "certificates")?)?;
    }
    if s.peek_byte() == Some(CONTEXT_1) {
        contents(&mut s, CONTEXT_1, "crls")?;
    }
    let signer_infos = members(contents(&mut s, 0x31, "signerInfos")?)?;
    Ok(Layer {
        content_type,
        content,
        certificates,
        signer_infos,
    })
}

/// (eContentType, eContent octets): the OCTET STRING's contents, or for PKCS#7 v1.5 content
/// of another type, that element's whole TLV.
fn encap_content(encap: &[u8]) -> Result<(&[u8], Option<&[u8]>), Failure> {
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

/// The complete TLVs of a SET's members, in order.
fn members(set: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    let mut r = SliceReader::new(set).map_err(malformed)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        out.push(r.tlv_bytes().map_err(malformed)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_lengths_become_definite() {
        // SEQUENCE(indef) { OCTET STRING constructed(indef) { "ab", "c" }, NULL }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x05,
            0x00, 0x00, 0x00,
        ];
        let der = normalise(&ber).unwrap();
        assert_eq!(
            der.as_ref(),
            &[0x30, 0x07, 0x04, 0x03, b'a', b'b', b'c', 0x05, 0x00]
        );
    }

    #[test]
    fn nested_octet_strings_are_flattened() {
        // SEQUENCE(indef) { OCTET STRING constructed(10) { "a", constructed(indef) { "b" } } }
        let ber = [
            0x30, 0x80, 0x24, 0x0a, 0x04, 0x01, b'a', 0x24, 0x80, 0x04, 0x01, b'b', 0x00, 0x00,
            0x00, 0x00,
        ];
        let der = normalise(&ber).unwrap();
        assert_eq!(der.as_ref(), &[0x30, 0x04, 0x04, 0x02, b'a', b'b']);
        // A long content gets a long-form length.
        let mut long = vec![0x30, 0x80, 0x04, 0x81, 0xc8];
        long.extend(std::iter::repeat_n(7u8, 200));
        long.extend([0x00, 0x00]);
        let der = normalise(&long).unwrap();
        assert_eq!(&der[..6], &[0x30, 0x81, 0xcb, 0x04, 0x81, 0xc8]);
        assert_eq!(der.len(), 3 + 203);
    }

    #[test]
    fn definite_input_is_borrowed() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        assert!(matches!(normalise(&der).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn broken_inputs_are_invalid_format() {
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
            let err = parse_bundle(input, 10).unwrap_err();
            assert_eq!(err.status, RefreshStatus::InvalidFormat, "{name}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_followed() {
        let mut ber = Vec::new();
        for _ in 0..100 {
            ber.extend_from_slice(&[0x30, 0x80]);
        }
        for _ in 0..100 {
            ber.extend_from_slice(&[0x00, 0x00]);
        }
        assert_eq!(
            normalise(&ber).unwrap_err().status,
            RefreshStatus::InvalidFormat
        );
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
        let parsed = parse_bundle(&p7b, 10).unwrap();
        assert_eq!(parsed.metadata.as_deref(), Some(&xml[..]));
        assert_eq!(parsed.anchors, vec![cert]);
        assert!(parsed.signed.is_none());
        // The same object twice as PEM blocks: one anchor, one duplicate.
        let block = pem::encode(&pem::Pem::new("PKCS7", p7b.clone()));
        let parsed = parse_bundle(format!("{block}{block}").as_bytes(), 10).unwrap();
        assert_eq!((parsed.anchors.len(), parsed.duplicates), (1, 1));
        assert_eq!(
            parse_bundle(&p7b, 0).unwrap_err().status,
            RefreshStatus::TooLarge
        );
    }

    #[test]
    fn lengths_are_minimal() {
        for (len, want) in [
            (0usize, vec![0x04, 0x00]),
            (0x80, vec![0x04, 0x81, 0x80]),
            (0x1_0000, vec![0x04, 0x83, 0x01, 0x00, 0x00]),
        ] {
            let mut out = Vec::new();
            push_header(&mut out, OCTET_STRING, len);
            assert_eq!(out, want);
        }
    }
}
