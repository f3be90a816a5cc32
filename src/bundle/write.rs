//! Writing trust bundles: the unsigned `.p7b` (a degenerate CMS SignedData holding the
//! anchors), its optional metadata XML, and the signed `.p7m` around it. Pure functions: no
//! I/O, no clock.
//!
//! Everything is assembled TLV by TLV (spec §5, design/crates.md "cms: build bundles
//! yourself"): the `cms` crate's SET OF handling re-encodes certificates on every comparison and
//! its order is not X.690's, so a 1,000-anchor bundle took over a minute and was not strict DER.
//! Here a SET OF is sorted by the plain bytes of its DER elements, which is exactly the X.690
//! §11.6 order (complete TLVs are never prefixes of one another), and byte-equal elements are
//! written once. The same membership therefore always gives the same bytes.

use const_oid::db::rfc5911::{
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
};
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ID_SHA_256, SHA_256_WITH_RSA_ENCRYPTION};
use const_oid::ObjectIdentifier;
use der::Decode;
use rcgen::SigningKey;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{
    push_header, tlv_len, CONTEXT_0, GENERALIZED_TIME, INTEGER, NULL, OCTET_STRING, OID, SEQUENCE,
    SET, UTC_TIME,
};
use super::BundleError;
// ---------------------------------------------------------------------------------------------
// DER writing (tags and headers from `der`; `[0]` constructed is the EXPLICIT content of ContentInfo
// and encapContentInfo, the IMPLICIT `certificates` of SignedData and `signedAttrs` of
// SignerInfo)

/// One TLV whose value is the concatenation of `parts`.
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(tlv_len(len));
    push_header(&mut out, tag, len);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn oid(o: &ObjectIdentifier) -> Vec<u8> {
    tlv(OID, &[o.as_bytes()])
}

/// AlgorithmIdentifier with absent parameters (SHA-2 digests per RFC 5754, ECDSA per RFC 5758).
fn algorithm(o: &ObjectIdentifier) -> Vec<u8> {
    tlv(SEQUENCE, &[&oid(o)])
}

/// AlgorithmIdentifier with NULL parameters (RSA PKCS#1 v1.5 per RFC 4055).
fn algorithm_null(o: &ObjectIdentifier) -> Vec<u8> {
    tlv(SEQUENCE, &[&oid(o), &[NULL, 0x00]])
}

/// SET OF members in DER order, byte-equal members once.
fn der_set_order<'a>(members: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut members: Vec<&[u8]> = members.into_iter().collect();
    members.sort_unstable();
    members.dedup();
    members
}

/// The parts of a SignedData that differ between the unsigned and the signed bundle.
struct SignedDataParts<'a> {
    /// The complete `digestAlgorithms` SET TLV.
    digest_algorithms: &'a [u8],
    /// id-data content, absent for a certificates-only bundle.
    content: Option<&'a [u8]>,
    /// Certificates in DER SET OF order, already de-duplicated.
    certificates: &'a [&'a [u8]],
    /// The complete `signerInfos` SET TLV.
    signer_infos: &'a [u8],
}

impl SignedDataParts<'_> {
    /// ContentInfo { id-signedData, [0] EXPLICIT SignedData }, written into one buffer sized
    /// up front: large bundles are copied exactly once.
    fn encode(&self) -> Vec<u8> {
        let id_data = oid(&ID_DATA);
        let id_signed_data = oid(&ID_SIGNED_DATA);
        let version: &[u8] = &[INTEGER, 0x01, 0x01];

        let octets_len = self.content.map(|c| tlv_len(c.len()));
        let explicit_len = octets_len.map(tlv_len);
        let encap_len = id_data.len() + explicit_len.unwrap_or(0);
        let certs_len: usize = self.certificates.iter().map(|c| c.len()).sum();
        let signed_data_len = version.len()
            + self.digest_algorithms.len()
            + tlv_len(encap_len)
            + tlv_len(certs_len)
            + self.signer_infos.len();
        let content_info_len = id_signed_data.len() + tlv_len(tlv_len(signed_data_len));

        let mut out = Vec::with_capacity(tlv_len(content_info_len));
        push_header(&mut out, SEQUENCE, content_info_len);
        out.extend_from_slice(&id_signed_data);
        push_header(&mut out, CONTEXT_0, tlv_len(signed_data_len));
        push_header(&mut out, SEQUENCE, signed_data_len);
        out.extend_from_slice(version);
        out.extend_from_slice(self.digest_algorithms);
        push_header(&mut out, SEQUENCE, encap_len);
        out.extend_from_slice(&id_data);
        if let (Some(content), Some(octets_len)) = (self.content, octets_len) {
            push_header(&mut out, CONTEXT_0, octets_len);
            push_header(&mut out, OCTET_STRING, content.len());
            out.extend_from_slice(content);
        }
        push_header(&mut out, CONTEXT_0, certs_len);
        for cert in self.certificates {
            out.extend_from_slice(cert);
        }
        out.extend_from_slice(self.signer_infos);
        out
    }
}

const EMPTY_SET: &[u8] = &[SET, 0x00];

// ---------------------------------------------------------------------------------------------
// Unsigned bundles

/// The unsigned trust bundle (`.p7b`): ContentInfo(signedData) with SignedData version 1, no
/// digest algorithms, encapContentInfo id-data with the content absent, `certificates` =
/// the anchors in DER order with byte-equal duplicates removed, no CRLs, no signerInfos.
///
/// Any order of the same anchors, with or without duplicates, gives byte-identical output.
/// `certificates` is always present, as an empty SET when there are no anchors. The anchors
/// must each be one complete DER certificate; they are copied as given, not parsed.
pub fn build_p7b(anchors: &[Vec<u8>]) -> Vec<u8> {
    build(anchors, None)
}

/// [`build_p7b`] whose encapContentInfo carries `metadata` (normally [`metadata_xml`]) as
/// id-data content: `[0] EXPLICIT OCTET STRING`. Certificate readers ignore the content.
pub fn build_p7b_with_metadata(anchors: &[Vec<u8>], metadata: &[u8]) -> Vec<u8> {
    build(anchors, Some(metadata))
}

fn build(anchors: &[Vec<u8>], content: Option<&[u8]>) -> Vec<u8> {
    let certificates = der_set_order(anchors.iter().map(Vec::as_slice));
    SignedDataParts {
        digest_algorithms: EMPTY_SET,
        content,
        certificates: &certificates,
        signer_infos: EMPTY_SET,
    }
    .encode()
}

// ---------------------------------------------------------------------------------------------
// Metadata

/// The issuer (DER Name) and serial number (the INTEGER's content octets) of a certificate,
/// as [`metadata_xml`] takes them.
pub fn issuer_and_serial(cert_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), BundleError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| BundleError::Metadata(format!("an anchor is not a certificate: {e}")))?;
    Ok((
        cert.tbs_certificate.issuer.as_raw().to_vec(),
        cert.tbs_certificate.raw_serial().to_vec(),
    ))
}

/// Trust-bundle metadata XML in the form of the Direct Project bundler's
/// `TrustBundleMetadata.xsd` (Trust Bundle Distribution IG v1.0): `TrustBundle` holding
/// `Profile`, `DistributionPoint`, `ValidFrom`, `ValidTo` (xs:dateTime, UTC, whole seconds)
/// and `Anchors/Anchor/X509IssuerSerial` with `X509IssuerName` (RFC 4514) and
/// `X509SerialNumber` (decimal, as in XML-DSig). No namespace, as in that schema.
///
/// `anchors` are (issuer DER Name, serial INTEGER content octets) pairs, see
/// [`issuer_and_serial`]. They are written sorted and de-duplicated, and `Anchors` is omitted
/// when there are none (the schema requires at least one `Anchor` inside it), so the same
/// inputs always give the same text. Text is escaped; characters XML 1.0 cannot carry at all
/// (control characters) are refused.
pub fn metadata_xml(
    profile: &str,
    distribution_point: &str,
    valid_from: OffsetDateTime,
    valid_to: OffsetDateTime,
    anchors: &[(&[u8], &[u8])],
) -> Result<String, BundleError> {
    if valid_from > valid_to {
        return Err(BundleError::Metadata(
            "ValidFrom is later than ValidTo".into(),
        ));
    }
    let mut ids: Vec<(&[u8], &[u8])> = anchors.to_vec();
    ids.sort_unstable();
    ids.dedup();

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TrustBundle>\n");
    element(&mut xml, 1, "Profile", profile)?;
    element(&mut xml, 1, "DistributionPoint", distribution_point)?;
    element(&mut xml, 1, "ValidFrom", &xml_datetime(valid_from)?)?;
    element(&mut xml, 1, "ValidTo", &xml_datetime(valid_to)?)?;
    if !ids.is_empty() {
        xml.push_str("  <Anchors>\n");
        for (issuer, serial) in ids {
            x509_cert::name::Name::from_der(issuer)
                .map_err(|e| BundleError::Metadata(format!("an issuer is not a DER Name: {e}")))?;
            xml.push_str("    <Anchor>\n      <X509IssuerSerial>\n");
            element(&mut xml, 4, "X509IssuerName", &crate::x509::rfc4514(issuer))?;
            element(&mut xml, 4, "X509SerialNumber", &integer_decimal(serial)?)?;
            xml.push_str("      </X509IssuerSerial>\n    </Anchor>\n");
        }
        xml.push_str("  </Anchors>\n");
    }
    xml.push_str("</TrustBundle>\n");
    Ok(xml)
}

fn element(xml: &mut String, depth: usize, name: &str, text: &str) -> Result<(), BundleError> {
    for _ in 0..depth {
        xml.push_str("  ");
    }
    xml.push('<');
    xml.push_str(name);
    xml.push('>');
    for c in text.chars() {
        match c {
            '&' => xml.push_str("&amp;"),
            '<' => xml.push_str("&lt;"),
            '>' => xml.push_str("&gt;"),
            '"' => xml.push_str("&quot;"),
            '\'' => xml.push_str("&apos;"),
            '\t' | '\n' | '\r' => xml.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {
                return Err(BundleError::Metadata(format!(
                    "{name} contains a character XML cannot carry (U+{:04X})",
                    u32::from(c)
                )))
            }
            c => xml.push(c),
        }
    }
    xml.push_str("</");
    xml.push_str(name);
    xml.push_str(">\n");
    Ok(())
}

fn xml_datetime(t: OffsetDateTime) -> Result<String, BundleError> {
    t.to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|e| BundleError::Metadata(e.to_string()))?
        .format(&Rfc3339)
        .map_err(|e| BundleError::Metadata(format!("{t} cannot be written as xs:dateTime: {e}")))
}

/// The decimal text of a DER INTEGER's content octets (two's complement, big-endian).
fn integer_decimal(content: &[u8]) -> Result<String, BundleError> {
    let Some(first) = content.first() else {
        return Err(BundleError::Metadata("an empty serial number".into()));
    };
    let negative = first & 0x80 != 0;
    let mut magnitude: Vec<u8> = content.to_vec();
    if negative {
        // Two's complement: invert and add one.
        let mut carry = true;
        for b in magnitude.iter_mut().rev() {
            *b = !*b;
            if carry {
                let (v, overflow) = b.overflowing_add(1);
                *b = v;
                carry = overflow;
            }
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 10) as u8;
            rem = acc % 10;
        }
        digits.push(char::from(b'0' + rem as u8));
    }
    if digits.is_empty() {
        digits.push('0');
    }
    if negative {
        digits.push('-');
    }
    Ok(digits.iter().rev().collect())
}

// ---------------------------------------------------------------------------------------------
// Signed bundles

/// Signs `content` (the DER `.p7b`) into a `.p7m`: ContentInfo(signedData) with SignedData
/// version 1, digestAlgorithms {sha256}, encapContentInfo id-data carrying `content`,
/// certificates = the signer certificate and `extra_certs` (its chain; DER order, duplicates
/// removed), and one SignerInfo: version 1, issuerAndSerialNumber, sha256, signed attributes
/// content-type (id-data), signing-time and message-digest in DER SET order, and
/// sha256WithRSAEncryption (RSA keys) or ecdsa-with-SHA256 (P-256 keys) over the DER of the
/// signed attributes as a SET.
///
/// signing-time is a UTCTime for 1950 to 2049 and a GeneralizedTime otherwise (RFC 5652
/// §11.3), in whole seconds. The key must be the signer certificate's key.
pub fn sign_p7m(
    content: &[u8],
    signer_cert_der: &[u8],
    extra_certs: &[&[u8]],
    key: &impl SigningKey,
    signing_time: OffsetDateTime,
) -> Result<Vec<u8>, BundleError> {
    let (rest, cert) = X509Certificate::from_der(signer_cert_der)
        .map_err(|e| BundleError::SignerCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BundleError::SignerCertificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err(BundleError::SignerKeyMismatch);
    }
    let signature_algorithm = if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        algorithm_null(&SHA_256_WITH_RSA_ENCRYPTION)
    } else if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        algorithm(&ECDSA_WITH_SHA_256)
    } else {
        return Err(BundleError::UnsupportedKey(format!(
            "{:?}",
            key.algorithm()
        )));
    };
    let sha256 = algorithm(&ID_SHA_256);

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content);
    let attribute = |kind: &ObjectIdentifier, value: Vec<u8>| {
        tlv(SEQUENCE, &[&oid(kind), &tlv(SET, &[&value])])
    };
    let attributes = [
        attribute(&ID_CONTENT_TYPE, oid(&ID_DATA)),
        attribute(&ID_SIGNING_TIME, signing_time_der(signing_time)?),
        attribute(&ID_MESSAGE_DIGEST, tlv(OCTET_STRING, &[digest.as_ref()])),
    ];
    let attributes = der_set_order(attributes.iter().map(Vec::as_slice));
    // RFC 5652 §5.4: the signature covers the attributes encoded as a SET OF (tag 0x31); they
    // are written with the IMPLICIT [0] tag.
    let to_sign = tlv(SET, &attributes);
    let signature = key
        .sign(&to_sign)
        .map_err(|e| BundleError::Signing(e.to_string()))?;

    let issuer_and_serial = tlv(
        SEQUENCE,
        &[
            cert.tbs_certificate.issuer.as_raw(),
            &tlv(INTEGER, &[cert.tbs_certificate.raw_serial()]),
        ],
    );
    let signer_info = tlv(
        SEQUENCE,
        &[
            &[INTEGER, 0x01, 0x01],
            &issuer_and_serial,
            &sha256,
            &tlv(CONTEXT_0, &attributes),
            &signature_algorithm,
            &tlv(OCTET_STRING, &[&signature]),
        ],
    );
    let certificates =
        der_set_order(std::iter::once(signer_cert_der).chain(extra_certs.iter().copied()));
    Ok(SignedDataParts {
        digest_algorithms: &tlv(SET, &[&sha256]),
        content: Some(content),
        certificates: &certificates,
        signer_infos: &tlv(SET, &[&signer_info]),
    }
    .encode())
}

fn signing_time_der(t: OffsetDateTime) -> Result<Vec<u8>, BundleError> {
    let t = t.to_offset(UtcOffset::UTC);
    let year = t.year();
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&year) {
        Ok(tlv(
            UTC_TIME,
            &[format!("{:02}{rest}", year % 100).as_bytes()],
        ))
    } else if (0..=9999).contains(&year) {
        Ok(tlv(
            GENERALIZED_TIME,
            &[format!("{year:04}{rest}").as_bytes()],
        ))
    } else {
        Err(BundleError::SigningTime(t.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bundle_is_the_fixed_wrapper() {
        let p7b = build_p7b(&[]);
        assert_eq!(
            hex::encode(&p7b),
            "3025\
             06092a864886f70d010702\
             a0183016\
             020101\
             3100\
             300b06092a864886f70d010701\
             a000\
             3100"
        );
    }

    #[test]
    fn serial_numbers_in_decimal() {
        assert_eq!(integer_decimal(&[0x00]).unwrap(), "0");
        assert_eq!(integer_decimal(&[0x7f]).unwrap(), "127");
        assert_eq!(integer_decimal(&[0x00, 0x80]).unwrap(), "128");
        assert_eq!(integer_decimal(&[0x01, 0x00]).unwrap(), "256");
        assert_eq!(integer_decimal(&[0xff]).unwrap(), "-1");
        assert_eq!(integer_decimal(&[0x80]).unwrap(), "-128");
        assert_eq!(integer_decimal(&[0xff, 0x7f]).unwrap(), "-129");
        assert_eq!(
            integer_decimal(&hex::decode("00ffffffffffffffffffffffffffffffff").unwrap()).unwrap(),
            u128::MAX.to_string()
        );
        assert!(integer_decimal(&[]).is_err());
    }

    #[test]
    fn signing_time_switches_to_generalized_time_in_2050() {
        use time::macros::datetime;
        assert_eq!(
            signing_time_der(datetime!(2049-12-31 23:59:59.9 UTC)).unwrap(),
            tlv(UTC_TIME, &[b"491231235959Z"])
        );
        assert_eq!(
            signing_time_der(datetime!(2050-01-01 00:00:00 UTC)).unwrap(),
            tlv(GENERALIZED_TIME, &[b"20500101000000Z"])
        );
        assert_eq!(
            signing_time_der(datetime!(1950-01-01 01:00:00 +02:00)).unwrap(),
            tlv(GENERALIZED_TIME, &[b"19491231230000Z"])
        );
    }

    #[test]
    fn xml_text_is_escaped_and_control_characters_refused() {
        let mut xml = String::new();
        element(&mut xml, 0, "P", "a<b>&\"c'").unwrap();
        assert_eq!(xml, "<P>a&lt;b&gt;&amp;&quot;c&apos;</P>\n");
        assert_eq!(
            element(&mut String::new(), 0, "P", "a\u{1}b")
                .unwrap_err()
                .code(),
            "bundle_metadata_invalid"
        );
    }
}
