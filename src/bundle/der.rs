//! The one hand-written ASN.1 walker of the crate: tag octets, TLV headers in DER and BER
//! form, a lenient element view for classifying unknown files, BER-to-DER length rewriting,
//! and the DER header writer the bundle assembly uses. Bundle reading, upload classification,
//! signed-bundle verification and `discovery::dns` all walk bytes through here.
//!
//! Why it exists at all: the `der` crate (0.8) is DER-only by design. It refuses BER
//! indefinite lengths (`ErrorKind::IndefiniteLength`) and constructed OCTET STRINGs, and
//! those are exactly what the Java reference bundler and `openssl cms -stream` write, so a
//! foreign bundle must be rewritten to definite lengths before `der`, `cms` or `x509-cert`
//! can read it. Upload classification must also judge a file (a PKCS#12 or a key written by
//! Java in BER) by its first elements without decoding it, which no crate offers. Everything
//! that is DER after this step is read with `der::SliceReader`, `cms` and `x509-cert`.
//!
//! Every function here is a single pass (the rewrite two passes) over its input, recursion is
//! capped at [`MAX_DEPTH`], and each header read is counted per thread ([`work`]) so the
//! property tests can check that the work stays linear in the input size.

use std::borrow::Cow;
use std::cell::Cell;

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTC_TIME: u8 = 0x17;
pub const GENERALIZED_TIME: u8 = 0x18;
/// An OCTET STRING in constructed form (BER segments).
pub const CONSTRUCTED_OCTET_STRING: u8 = 0x24;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` primitive, context-specific (SignerInfo's subjectKeyIdentifier).
pub const CONTEXT_0_PRIMITIVE: u8 = 0x80;
/// `[0]` constructed, context-specific.
pub const CONTEXT_0: u8 = 0xa0;
/// `[1]` constructed, context-specific.
pub const CONTEXT_1: u8 = 0xa1;

/// Nesting deeper than this is refused rather than followed (stack safety).
pub const MAX_DEPTH: usize = 32;

/// Why bytes are not a readable BER/DER element. The texts are the reasons operators see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    #[error("the encoding is truncated")]
    Truncated,
    #[error("multi-byte ASN.1 tags do not occur in PKCS#7")]
    MultiByteTag,
    #[error("an ASN.1 length above 4 GiB")]
    LengthTooLarge,
    #[error("ASN.1 nesting is too deep")]
    TooDeep,
    #[error("a primitive element with an indefinite length")]
    PrimitiveIndefinite,
    #[error("trailing bytes after the PKCS#7 object")]
    Trailing,
    #[error("a constructed OCTET STRING holds something else")]
    OctetStringHoldsOther,
}

thread_local! {
    static WORK: Cell<u64> = const { Cell::new(0) };
}

/// Headers read by this module on the current thread since it started: a measure of parsing
/// work that does not depend on the machine's speed or load (the property tests compare it
/// with the input size).
pub fn work() -> u64 {
    WORK.with(Cell::get)
}

fn count() {
    WORK.with(|w| w.set(w.get().wrapping_add(1)));
}

// ---------------------------------------------------------------------------------------------
// Headers

/// A BER/DER element header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    pub constructed: bool,
    /// `None` for the indefinite form.
    pub length: Option<usize>,
    /// Bytes of the tag and length fields.
    pub size: usize,
}

/// Reads the header at the start of `input` (single-byte tags, lengths up to 4 bytes).
pub fn read_header(input: &[u8]) -> Result<Header, DerError> {
    count();
    let (&tag, rest) = input.split_first().ok_or(DerError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::MultiByteTag);
    }
    let (&first, rest) = rest.split_first().ok_or(DerError::Truncated)?;
    let constructed = tag & 0x20 != 0;
    if first < 0x80 {
        return Ok(Header {
            tag,
            constructed,
            length: Some(usize::from(first)),
            size: 2,
        });
    }
    if first == 0x80 {
        return Ok(Header {
            tag,
            constructed,
            length: None,
            size: 2,
        });
    }
    let count = usize::from(first & 0x7f);
    if count > 4 {
        return Err(DerError::LengthTooLarge);
    }
    let bytes = rest.get(..count).ok_or(DerError::Truncated)?;
    let length = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok(Header {
        tag,
        constructed,
        length: Some(length),
        size: 2 + count,
    })
}

/// The end offset of a definite-length element whose header is `header`.
fn element_end(input: &[u8], header: &Header) -> Result<usize, DerError> {
    let end = header
        .size
        .checked_add(header.length.unwrap_or(0))
        .ok_or(DerError::Truncated)?;
    if end > input.len() {
        return Err(DerError::Truncated);
    }
    Ok(end)
}

// ---------------------------------------------------------------------------------------------
// A lenient element view

/// One element: tag byte, contents, and the bytes after it. With an indefinite length (BER,
/// as Java writes PKCS#12 and PKCS#7) the contents run to the end of the input: enough to
/// look at the first children, which is all classifying a file needs.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    pub rest: &'a [u8],
    /// The length was indefinite (and `contents` is the rest of the input).
    pub indefinite: bool,
}

/// The element at the start of `input`, or `None` when it is not one.
pub fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let header = read_header(input).ok()?;
    let body = input.get(header.size..)?;
    let Some(length) = header.length else {
        return header.constructed.then_some(Tlv {
            tag: header.tag,
            contents: body,
            rest: &[],
            indefinite: true,
        });
    };
    let (contents, rest) = body.split_at_checked(length)?;
    Some(Tlv {
        tag: header.tag,
        contents,
        rest,
        indefinite: false,
    })
}

/// The elements of `contents`, up to the first that does not parse or an end-of-contents
/// marker; at most `max`.
pub fn children(mut contents: &[u8], max: usize) -> Vec<Tlv<'_>> {
    let mut out = Vec::new();
    while out.len() < max {
        match tlv(contents) {
            Some(t) if t.tag != 0 => {
                contents = t.rest;
                out.push(t);
            }
            _ => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// BER to DER lengths

/// Rewrites indefinite lengths as definite ones and flattens constructed OCTET STRINGs, the two
/// BER forms streaming encoders use. Definite-length elements are copied as they are (real
/// encoders only stream the outer wrappers; certificates stay byte-exact, which their
/// signatures need). Input already in definite form is returned without copying. The input
/// must be exactly one element.
pub fn normalise(input: &[u8]) -> Result<Cow<'_, [u8]>, DerError> {
    let header = read_header(input)?;
    if header.length.is_some() && header.tag != CONSTRUCTED_OCTET_STRING {
        let end = element_end(input, &header)?;
        if end != input.len() {
            return Err(DerError::Trailing);
        }
        return Ok(Cow::Borrowed(input));
    }
    // Two passes: measure every rewritten element's content length (pre-order), then write
    // once into a buffer of the exact size. Nothing is copied twice.
    let mut lengths = Vec::new();
    let (used, total) = measure(input, 0, &mut lengths)?;
    if used != input.len() {
        return Err(DerError::Trailing);
    }
    let mut out = Vec::with_capacity(total);
    write(input, &mut lengths.into_iter(), &mut out)?;
    Ok(Cow::Owned(out))
}

/// Pass 1: (bytes consumed, bytes written) for the element at the start of `input`; pushes
/// the content length of each element that gets rewritten, in pre-order.
fn measure(
    input: &[u8],
    depth: usize,
    lengths: &mut Vec<usize>,
) -> Result<(usize, usize), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError::TooDeep);
    }
    let header = read_header(input)?;
    if header.tag == CONSTRUCTED_OCTET_STRING {
        let (used, octets) = octets(input, &header, depth, &mut |_| ())?;
        lengths.push(octets);
        return Ok((used, header_len(octets) + octets));
    }
    if header.length.is_some() {
        let end = element_end(input, &header)?;
        return Ok((end, end));
    }
    if !header.constructed {
        return Err(DerError::PrimitiveIndefinite);
    }
    let slot = lengths.len();
    lengths.push(0);
    let (mut pos, mut content) = (header.size, 0usize);
    loop {
        let rest = input.get(pos..).ok_or(DerError::Truncated)?;
        if rest.starts_with(&[0, 0]) {
            pos += 2;
            break;
        }
        if rest.is_empty() {
            return Err(DerError::Truncated);
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
) -> Result<usize, DerError> {
    let header = read_header(input)?;
    if header.tag == CONSTRUCTED_OCTET_STRING {
        push_header(
            out,
            OCTET_STRING,
            lengths.next().ok_or(DerError::Truncated)?,
        );
        let (used, _) = octets(input, &header, 0, &mut |part| out.extend_from_slice(part))?;
        return Ok(used);
    }
    if header.length.is_some() {
        let end = element_end(input, &header)?;
        out.extend_from_slice(input.get(..end).ok_or(DerError::Truncated)?);
        return Ok(end);
    }
    push_header(out, header.tag, lengths.next().ok_or(DerError::Truncated)?);
    let mut pos = header.size;
    loop {
        let rest = input.get(pos..).ok_or(DerError::Truncated)?;
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
    header: &Header,
    depth: usize,
    part: &mut dyn FnMut(&[u8]),
) -> Result<(usize, usize), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError::TooDeep);
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
        let rest = input.get(pos..).ok_or(DerError::Truncated)?;
        if end.is_none() && rest.starts_with(&[0, 0]) {
            return Ok((pos + 2, count));
        }
        let inner = read_header(rest)?;
        match (inner.tag, inner.length) {
            (OCTET_STRING, Some(_)) => {
                let inner_end = element_end(rest, &inner)?;
                let bytes = rest.get(inner.size..inner_end).ok_or(DerError::Truncated)?;
                part(bytes);
                pos += inner_end;
                count += bytes.len();
            }
            (CONSTRUCTED_OCTET_STRING, _) => {
                let (used, n) = octets(rest, &inner, depth + 1, part)?;
                pos += used;
                count += n;
            }
            _ => return Err(DerError::OctetStringHoldsOther),
        }
        if end.is_some_and(|e| pos > e) {
            return Err(DerError::Truncated);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing DER headers

/// Bytes of a DER length field for `len` content bytes.
pub fn length_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        1 + (usize::BITS - len.leading_zeros()).div_ceil(8) as usize
    }
}

/// Bytes of a DER header (single-byte tag) for `len` content bytes.
pub fn header_len(len: usize) -> usize {
    1 + length_len(len)
}

/// Total size of a TLV whose value is `len` bytes (single-byte tags only).
pub fn tlv_len(len: usize) -> usize {
    header_len(len) + len
}

/// Appends a DER header: `tag`, then the minimal length field for `len`.
pub fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = (len.leading_zeros() / 8) as usize;
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal() {
        for (len, want) in [
            (0usize, vec![0x30, 0x00]),
            (0x7f, vec![0x30, 0x7f]),
            (0x80, vec![0x30, 0x81, 0x80]),
            (0xff, vec![0x30, 0x81, 0xff]),
            (0x100, vec![0x30, 0x82, 0x01, 0x00]),
            (0x01_0000, vec![0x30, 0x83, 0x01, 0x00, 0x00]),
            (0x0100_0000, vec![0x30, 0x84, 0x01, 0x00, 0x00, 0x00]),
        ] {
            let mut out = Vec::new();
            push_header(&mut out, SEQUENCE, len);
            assert_eq!(out, want, "{len:#x}");
            assert_eq!(tlv_len(len), want.len() + len);
            assert_eq!(header_len(len), want.len());
        }
    }

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
    fn broken_inputs_are_refused() {
        let cases: &[(&str, &[u8], DerError)] = &[
            ("fail/truncated", &[0x30, 0x05, 0x02], DerError::Truncated),
            (
                "fail/no-eoc",
                &[0x30, 0x80, 0x05, 0x00],
                DerError::Truncated,
            ),
            (
                "fail/primitive-indefinite",
                &[0x04, 0x80, 0x00, 0x00],
                DerError::PrimitiveIndefinite,
            ),
            ("fail/trailing", &[0x30, 0x00, 0x00], DerError::Trailing),
            (
                "fail/multi-byte-tag",
                &[0x1f, 0x01, 0x00],
                DerError::MultiByteTag,
            ),
            (
                "fail/huge-length",
                &[0x30, 0x85, 1, 0, 0, 0, 0],
                DerError::LengthTooLarge,
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(normalise(input).unwrap_err(), *want, "{name}");
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
        assert_eq!(normalise(&ber).unwrap_err(), DerError::TooDeep);
    }

    #[test]
    fn lenient_view_reads_indefinite_contents_to_the_end() {
        let t = tlv(&[0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00]).unwrap();
        assert!(t.indefinite);
        assert_eq!(t.contents, &[0x02, 0x01, 0x05, 0x00, 0x00]);
        let kids = children(t.contents, 16);
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].contents, &[0x05]);
        assert!(tlv(&[0x04, 0x80, 0x00, 0x00]).is_none());
        assert!(tlv(&[0x30, 0x05, 0x02]).is_none());
    }
}
