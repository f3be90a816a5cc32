//! RFC 4398 CERT records in RFC 1035 master-file form, as spec §3 decides: owner `local.domain.`
//! (escaped only where a master file requires it), type PKIX, key tag per RFC 4034 Appendix B
//! over the key in DNSKEY form (flags 0, protocol 3), algorithm 8 (RSA/SHA-256) or 13 (ECDSA
//! P-256). Every name is written absolute, so a fragment reads the same under any `$ORIGIN`.

use std::io::{self, Write};

use base64::Engine;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::bundle::der::{tlv, CONTEXT_0, SEQUENCE};
use crate::config::{hostmaster_name, DomainSettings, ZoneMode};

/// DNSSEC algorithm numbers (IANA) for the keys Direct certificates carry.
const ALG_RSASHA256: u8 = 8;
const ALG_ECDSAP256SHA256: u8 = 13;
/// Key tag and algorithm for keys without a DNSSEC algorithm; consumers ignore both.
const UNKNOWN: (u16, u8) = (0, 0);

/// The master-file form of an owner name (without the final dot) plus the final dot.
/// Letters, digits, `-` and `_` are written as they are; any other octet of a label is
/// written `\DDD`. RFC 1035 would allow more unescaped, but Knot's zone parser refuses
/// characters such as `'` and `+` in names, and the escape names the same wire label, so
/// the owner a sender queries (`local.domain.`) is unchanged (spec §3).
pub fn owner_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        match c {
            // Label separators stay: `a.b@c.d` is published as `a.b.c.d.` (spec §3).
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03}"));
                }
            }
        }
    }
    out.push('.');
    out
}

/// (key tag, algorithm) of the certificate's public key; (0, 0) when it has no DNSSEC form.
pub fn key_tag_and_algorithm(der: &[u8]) -> (u16, u8) {
    // Only the key is needed: find it without parsing names and extensions (this runs for
    // every record of every zone written).
    let Some(Ok((_, spki))) = spki_bytes(der).map(SubjectPublicKeyInfo::from_der) else {
        return UNKNOWN;
    };
    let spki = &spki;
    let (algorithm, key) = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => (ALG_RSASHA256, rsa_dnskey(rsa.exponent, rsa.modulus)),
        Ok(PublicKey::EC(point)) if is_p256(spki) => match point.data() {
            [0x04, xy @ ..] if xy.len() == 64 => (ALG_ECDSAP256SHA256, xy.to_vec()),
            _ => return UNKNOWN,
        },
        _ => return UNKNOWN,
    };
    let mut rdata = vec![0, 0, 3, algorithm];
    rdata.extend_from_slice(&key);
    (key_tag(&rdata), algorithm)
}

/// The DER of `tbsCertificate.subjectPublicKeyInfo`: Certificate and TBSCertificate are
/// SEQUENCEs; skip the optional [0] version, serial, signature, issuer, validity, subject.
/// Walked with the bundle wing's DER walker, definite lengths only (a stored certificate is
/// DER).
fn spki_bytes(cert: &[u8]) -> Option<&[u8]> {
    let definite = |input| tlv(input).filter(|t| !t.indefinite);
    let certificate = definite(cert).filter(|t| t.tag == SEQUENCE)?;
    let tbs = definite(certificate.contents).filter(|t| t.tag == SEQUENCE)?;
    let mut rest = tbs.contents;
    if rest.first() == Some(&CONTEXT_0) {
        rest = definite(rest)?.rest;
    }
    for _ in 0..5 {
        rest = definite(rest)?.rest;
    }
    let spki = definite(rest).filter(|t| t.tag == SEQUENCE)?;
    rest.get(..rest.len() - spki.rest.len())
}

fn is_p256(spki: &SubjectPublicKeyInfo<'_>) -> bool {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == x509_parser::oid_registry::OID_EC_P256)
}

/// RFC 3110 §2: exponent length (1 octet, or 0 and 2 octets), exponent, modulus; no leading
/// zero octets.
fn rsa_dnskey(exponent: &[u8], modulus: &[u8]) -> Vec<u8> {
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().skip_while(|x| **x == 0).copied().collect() };
    let (e, n) = (strip(exponent), strip(modulus));
    let mut out = Vec::with_capacity(e.len() + n.len() + 3);
    match u8::try_from(e.len()) {
        Ok(len) => out.push(len),
        Err(_) => {
            out.push(0);
            out.extend_from_slice(&u16::try_from(e.len()).unwrap_or(u16::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(&e);
    out.extend_from_slice(&n);
    out
}

/// RFC 4034 Appendix B.
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// The head of a zone file: a comment, and SOA + NS in zone mode.
pub fn write_header(w: &mut dyn Write, settings: &DomainSettings, serial: u32) -> io::Result<()> {
    let apex = owner_name(settings.domain.as_str());
    writeln!(
        w,
        "; Direct certificate discovery (RFC 4398 CERT) for {}, written by anchorage.",
        settings.domain
    )?;
    writeln!(
        w,
        "; mode {}, serial {serial}. Do not edit: the file is regenerated.",
        settings.mode.as_str()
    )?;
    if settings.mode == ZoneMode::Zone {
        let soa = &settings.soa;
        let rname = hostmaster_name(&soa.hostmaster)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        writeln!(
            w,
            "{apex} {} IN SOA {} {rname}. {serial} {} {} {} {}",
            settings.ttl,
            owner_name(&soa.primary),
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        )?;
        let primary = [soa.primary.clone()];
        let nameservers = if soa.nameservers.is_empty() {
            &primary[..]
        } else {
            &soa.nameservers[..]
        };
        for ns in nameservers {
            writeln!(w, "{apex} {} IN NS {}", settings.ttl, owner_name(ns))?;
        }
    }
    for srv in &settings.ldap_srv {
        writeln!(
            w,
            "_ldap._tcp.{apex} {} IN SRV {} {} {} {}",
            settings.ttl,
            srv.priority,
            srv.weight,
            srv.port,
            owner_name(&srv.target)
        )?;
    }
    Ok(())
}

/// One CERT record: `OWNER TTL IN CERT PKIX KEYTAG ALGORITHM BASE64`.
pub fn write_cert(w: &mut dyn Write, owner: &str, ttl: u32, der: &[u8]) -> io::Result<()> {
    let (tag, algorithm) = key_tag_and_algorithm(der);
    write!(w, "{owner} {ttl} IN CERT PKIX {tag} {algorithm} ")?;
    w.write_all(
        base64::engine::general_purpose::STANDARD
            .encode(der)
            .as_bytes(),
    )?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names() {
        let cases = [
            (
                "ok/plain",
                "jones.direct.example.com",
                "jones.direct.example.com.",
            ),
            (
                "escaped/atext",
                "o'brien+x.d.example",
                "o\\039brien\\043x.d.example.",
            ),
            ("escaped/special", "a;b.d.example", "a\\059b.d.example."),
            ("kept/underscore", "a_b-c.d.example", "a_b-c.d.example."),
        ];
        for (name, input, want) in cases {
            assert_eq!(owner_name(input), want, "{name}");
        }
    }

    #[test]
    fn spki_is_found_without_a_full_parse() {
        for alg in [&rcgen::PKCS_RSA_SHA256, &rcgen::PKCS_ECDSA_P256_SHA256] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(spki_bytes(&der).unwrap(), cert.public_key().raw);
            let (tag, algorithm) = key_tag_and_algorithm(&der);
            assert!(algorithm == 8 || algorithm == 13);
            assert_ne!((tag, algorithm), UNKNOWN);
        }
        assert_eq!(key_tag_and_algorithm(b"\x30\x03\x02\x01"), UNKNOWN);
    }

    #[test]
    fn key_tag_matches_rfc4034_example() {
        // RFC 4034 §5.4 DS example: the DNSKEY of dskey.example.com has key tag 60485.
        let key = base64::engine::general_purpose::STANDARD
            .decode(concat!(
                "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxe",
                "YCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2",
                "wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw=="
            ))
            .unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&key);
        assert_eq!(key_tag(&rdata), 60485);
    }
}
