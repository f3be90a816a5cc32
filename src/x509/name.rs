//! Distinguished names as text (RFC 4514), for every subject and issuer anchorage shows. The
//! text of a name must never let one attribute pass for several: x509-parser's `Display` writes
//! a single CN of `Evil CA, O=DirectTrust` as `CN=Evil CA, O=DirectTrust`, which reads as a
//! two-attribute name. x509-cert's `AttributeTypeAndValue` `Display` escapes values as RFC 4514
//! §2.4 asks (`,` `+` `"` `\` `<` `>` `;`, a leading `#` or space, a trailing space, and ASCII
//! control characters as `\XX`) and writes an attribute it has no string form for as
//! `OID=#<hex of its DER>`; this module only orders the RDNs and adds two things it leaves out:
//!
//! - Order: RDNs last-first, as RFC 4514 §2.1 says, and within a multi-valued RDN also
//!   last-first of the encoded order, as `openssl x509 -nameopt RFC2253` does (RFC 4514 gives
//!   the attributes of one RDN no order), so our text equals openssl's for the same certificate.
//!   The name is read with BER rules so a SET OF that is not in DER order keeps its encoded
//!   order instead of being sorted (or refused) by the decoder.
//! - Invisible characters: C1 controls and the Unicode format characters that reorder or hide
//!   text (bidi overrides and isolates, zero-width characters, the BOM) are written as `\XX`
//!   escapes of their UTF-8 bytes (RFC 4514 allows escaping any character), so a name cannot
//!   look like another on a page. Other non-ASCII text stays UTF-8, as with openssl's
//!   `-nameopt RFC2253,-esc_msb`.
//!
//! Attribute types outside RFC 4514's table (CN, L, ST, O, OU, C, STREET, DC, UID) are written
//! with x509-cert's shortest registered name in upper case (`EMAIL`, `SERIALNUMBER`), where
//! openssl writes its own short names (`emailAddress`, `serialNumber`): attribute type names
//! are case-insensitive, and both are registered LDAP descriptors. A name that does not decode
//! at all is shown as `#` and the hex of its DER, which never passes for a readable name.

use std::fmt::Write;

use der::Decode;
use x509_cert::name::Name;

/// The RFC 4514 text of a DER-encoded Name (a certificate's subject or issuer).
pub fn rfc4514(name_der: &[u8]) -> String {
    let Ok(name) = Name::from_ber(name_der) else {
        return format!("#{}", hex::encode(name_der));
    };
    let rdns: Vec<Vec<_>> = name.iter_rdn().map(|rdn| rdn.iter().collect()).collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            escape_invisible(&atv.to_string(), &mut out);
        }
    }
    out
}

/// Copies `text`, writing each invisible character as `\XX` escapes of its UTF-8 bytes.
fn escape_invisible(text: &str, out: &mut String) {
    for c in text.chars() {
        if is_invisible(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// Control characters (C0, DEL, C1) and the format characters that hide or reorder text.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'              // soft hyphen
            | '\u{061C}'            // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}'            // BOM, zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::{Any, Ia5StringRef, PrintableStringRef, Utf8StringRef};
    use der::{Encode, Tag};
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{RdnSequence, RelativeDistinguishedName};

    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const OU: &str = "2.5.4.11";
    const C: &str = "2.5.4.6";

    fn atv(oid: &str, value: Any) -> AttributeTypeAndValue {
        AttributeTypeAndValue {
            oid: const_oid::ObjectIdentifier::new(oid).unwrap(),
            value,
        }
    }

    fn utf8(oid: &str, text: &str) -> AttributeTypeAndValue {
        atv(oid, Any::from(Utf8StringRef::new(text).unwrap()))
    }

    /// A Name (DER) of RDNs given first-first, as encoded.
    fn name(rdns: Vec<Vec<AttributeTypeAndValue>>) -> Vec<u8> {
        let rdns: Vec<RelativeDistinguishedName> = rdns
            .into_iter()
            .map(|atvs| RelativeDistinguishedName::try_from(atvs).unwrap())
            .collect();
        RdnSequence::from(rdns).to_der().unwrap()
    }

    #[test]
    fn escapes_and_orders_as_rfc_4514() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "ok/rdns-last-first",
                name(vec![
                    vec![atv(C, Any::from(PrintableStringRef::new("US").unwrap()))],
                    vec![utf8(O, "Member")],
                    vec![utf8(CN, "Good CA")],
                ]),
                "CN=Good CA,O=Member,C=US",
            ),
            (
                "escape/comma-in-cn",
                name(vec![vec![utf8(CN, "Evil CA, O=DirectTrust")]]),
                r"CN=Evil CA\, O=DirectTrust",
            ),
            (
                "escape/specials",
                name(vec![vec![utf8(CN, r#"a+b"c\d<e>f;g"#)]]),
                r#"CN=a\+b\"c\\d\<e\>f\;g"#,
            ),
            (
                "escape/leading-hash-and-space-trailing-space",
                name(vec![vec![utf8(CN, "#x")], vec![utf8(O, " y ")]]),
                r"O=\ y\ ,CN=\#x",
            ),
            (
                "ok/inner-hash-and-equals-stay",
                name(vec![vec![utf8(CN, "a#b=c")]]),
                "CN=a#b=c",
            ),
            (
                "escape/c0-control",
                name(vec![vec![utf8(CN, "a\nb")]]),
                r"CN=a\0ab",
            ),
            (
                "escape/c1-control-and-bidi-override",
                name(vec![vec![utf8(CN, "a\u{85}b\u{202E}c")]]),
                r"CN=a\C2\85b\E2\80\AEc",
            ),
            (
                "ok/non-ascii-stays-utf8",
                name(vec![vec![utf8(CN, "Zürich Ärzte")]]),
                "CN=Zürich Ärzte",
            ),
            (
                "ok/multi-valued-rdn-last-first",
                name(vec![vec![utf8(OU, "R&D"), utf8(CN, "Long common name")]]),
                "CN=Long common name+OU=R&D",
            ),
            (
                "ok/ia5-email",
                name(vec![vec![atv(
                    "1.2.840.113549.1.9.1",
                    Any::from(Ia5StringRef::new("a@b.example").unwrap()),
                )]]),
                "EMAIL=a@b.example",
            ),
            (
                "hex/unknown-type",
                name(vec![vec![utf8("1.2.3.4", "x")]]),
                "1.2.3.4=#0c0178",
            ),
            (
                "hex/no-string-form",
                name(vec![vec![atv(
                    CN,
                    Any::new(Tag::BmpString, vec![0, 0x41]).unwrap(),
                )]]),
                "2.5.4.3=#1e020041",
            ),
            ("ok/empty-name", name(vec![]), ""),
        ];
        for (case, der, want) in cases {
            assert_eq!(rfc4514(&der), want, "{case}");
        }
    }

    #[test]
    fn a_set_out_of_der_order_keeps_its_encoded_order() {
        // SET { CN, OU } written by hand in this order; DER would put the shorter OU first.
        let cn = utf8(CN, "Long common name").to_der().unwrap();
        let ou = utf8(OU, "R&D").to_der().unwrap();
        let set: Vec<u8> = [vec![0x31, (cn.len() + ou.len()) as u8], cn, ou].concat();
        let der = [vec![0x30, set.len() as u8], set].concat();
        assert_eq!(rfc4514(&der), "OU=R&D+CN=Long common name");
        // The DER-ordered set of the same attributes is written the other way round.
        let sorted = name(vec![vec![utf8(CN, "Long common name"), utf8(OU, "R&D")]]);
        assert_ne!(sorted, der);
        assert_eq!(rfc4514(&sorted), "CN=Long common name+OU=R&D");
    }

    #[test]
    fn an_undecodable_name_is_hex_never_text() {
        assert_eq!(rfc4514(&[0x30, 0x03, 0x31, 0x01, 0xff]), "#30033101ff");
    }
}
