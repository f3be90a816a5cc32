//! Trust bundles as bytes (`anchorage::bundle`), read back by other people's code: OpenSSL
//! (`pkcs7 -print_certs`, `cms -verify`, `cms -cmsout -print`), pyca/cryptography with
//! warnings as errors, and pyasn1-fasder, a pedantic DER decoder that rejects any non-DER
//! encoding (an unsorted SET OF, a non-minimal length...), whose result pyasn1's DER encoder
//! must re-encode to the identical bytes. Also `certificates_in` on what OpenSSL writes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ::time::{Duration, OffsetDateTime};
use anchorage::bundle::{
    build_p7b, build_p7b_with_metadata, certificates_in, issuer_and_serial, metadata_xml, sign_p7m,
    MAX_CERTIFICATES,
};
use anchorage::ca::{
    self, CaRole, EndEntitySpec, HierarchyOptions, IssuingKeyAlgorithm, RootKeyAlgorithm,
};
use anchorage::keyseal::Passphrase;
use anchorage::model::{CertUsage, HealthDomain, Holder};
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use serde_json::Value;
use tempfile::TempDir;
use x509_parser::prelude::*;

use crate::tools::{run, run_in, venv_bin, ToolOutput};

/// Distinct CA certificates standing in for members' trust anchors: two keys (P-256 and
/// RSA-2048) shared between many certificates with distinct subjects and serials. One
/// organisation name needs escaping both in RFC 4514 and in XML.
fn anchors() -> &'static [Vec<u8>] {
    static ANCHORS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        let keys = [
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap(),
        ];
        (0..50u32)
            .map(|i| {
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CountryName, "US");
                let org = if i == 7 {
                    "Smith, Jones & <Partners> \"HIE\"".to_string()
                } else {
                    format!("Community Member {}", i % 9)
                };
                dn.push(DnType::OrganizationName, org);
                dn.push(DnType::CommonName, format!("Member Anchor {i}"));
                params.distinguished_name = dn;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
                let mut serial = ca::random_serial().unwrap().to_bytes();
                if i % 10 == 3 {
                    serial = vec![0x01, i as u8]; // short serials too
                }
                params.serial_number = Some(SerialNumber::from_slice(&serial));
                let now = OffsetDateTime::now_utc();
                params.not_before = now - Duration::days(1);
                params.not_after = now + Duration::days(3650);
                let key = &keys[(i % 2) as usize];
                params.self_signed(key).unwrap().der().to_vec()
            })
            .collect()
    })
}

/// The anchors in DER SET OF order, each once: what every bundle must contain, in this order.
fn sorted_unique(certs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = certs.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The same anchors in another order (by their last bytes: the signature, random), with every
/// fourth one repeated twice.
fn shuffled_with_duplicates(certs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = certs.to_vec();
    v.sort_by_key(|c| c.iter().rev().take(8).copied().collect::<Vec<u8>>());
    let dups: Vec<Vec<u8>> = certs.iter().step_by(4).cloned().collect();
    let middle = v.len() / 2;
    v.splice(middle..middle, dups.iter().cloned());
    v.extend(dups);
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn pem_of(der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn subject_of(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.subject().to_string()
}

/// The certificates `openssl pkcs7 -print_certs` prints, as DER, in its order.
fn openssl_print_certs(p7b: &Path, inform: &str) -> Vec<Vec<u8>> {
    let out = run(
        "openssl",
        &[
            "pkcs7",
            "-inform",
            inform,
            "-print_certs",
            "-in",
            p7b.to_str().unwrap(),
        ],
    );
    out.assert_success("openssl pkcs7 -print_certs");
    let subjects = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("subject="))
        .count();
    let certs: Vec<Vec<u8>> = ::pem::parse_many(out.stdout.as_bytes())
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE");
            p.into_contents()
        })
        .collect();
    assert_eq!(subjects, certs.len(), "{}", out.describe());
    certs
}

/// Reads a bundle with pyca/cryptography (warnings are errors: a non-DER SET OF warns) and
/// pyasn1-fasder (rejects any DER violation), re-encodes with pyasn1's DER encoder (must give
/// the same bytes), and reports what it found as JSON.
const PY_CHECK: &str = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from pyasn1.codec.der.encoder import encode
from pyasn1_alt_modules import rfc5652
from pyasn1_fasder import decode_der

with open(sys.argv[1], 'rb') as f:
    data = f.read()
report = {}
report['pyca'] = [c.public_bytes(Encoding.DER).hex() for c in pkcs7.load_der_pkcs7_certificates(data)]

def same(what, got, want):
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise AssertionError(f'{what} re-encodes differently at {at} ({len(got)} vs {len(want)} bytes): '
                             f'{got[max(0, at - 16):at + 16].hex()} vs {want[max(0, at - 16):at + 16].hex()}')

def signed_data(der):
    ci, rest = decode_der(der, asn1Spec=rfc5652.ContentInfo())
    assert rest == b''
    same('ContentInfo', encode(ci), der)
    assert ci['contentType'] == rfc5652.id_signedData, ci['contentType']
    inner = ci['content'].asOctets()
    sd, rest = decode_der(inner, asn1Spec=rfc5652.SignedData())
    assert rest == b''
    # pyasn1's encoder leaves out an empty OPTIONAL SET OF: compare only when there is content
    if not sd['certificates'].isValue or len(sd['certificates']) > 0:
        same('SignedData', encode(sd), inner)
    return sd

sd = signed_data(data)
report['version'] = int(sd['version'])
report['digest_algorithms'] = [str(a['algorithm']) for a in sd['digestAlgorithms']]
eci = sd['encapContentInfo']
report['econtent_type'] = str(eci['eContentType'])
report['econtent'] = eci['eContent'].asOctets().hex() if eci['eContent'].hasValue() else None
report['certificates'] = None
if sd['certificates'].isValue:
    report['certificates'] = [encode(c['certificate']).hex() for c in sd['certificates']]
report['crls'] = sd['crls'].hasValue()
signers = []
for si in sd['signerInfos']:
    attrs = si['signedAttrs']
    signers.append({
        'version': int(si['version']),
        'issuer_serial': str(int(si['sid']['issuerAndSerialNumber']['serialNumber'])),
        'digest': str(si['digestAlgorithm']['algorithm']),
        'digest_params': si['digestAlgorithm']['parameters'].hasValue(),
        'signature_algorithm': str(si['signatureAlgorithm']['algorithm']),
        'signature_params': si['signatureAlgorithm']['parameters'].asOctets().hex() if si['signatureAlgorithm']['parameters'].hasValue() else None,
        'attributes': [str(a['attrType']) for a in attrs],
        'unsigned': si['unsignedAttrs'].hasValue(),
    })
report['signers'] = signers
print(json.dumps(report))
"#;

fn py_check(dir: &Path, file: &Path) -> Value {
    let script = write(dir, "check_bundle.py", PY_CHECK.as_bytes());
    let out = run(
        venv_bin("python"),
        &[
            "-W",
            "error",
            script.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    out.assert_success("pyca/pyasn1-fasder bundle check");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

fn hex_list(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn p7b_lists_exactly_the_anchors_and_is_canonical() {
    let dir = TempDir::new().unwrap();
    for n in [0usize, 1, 3, 50] {
        let anchors = &anchors()[..n];
        let expected = sorted_unique(anchors);
        let p7b = build_p7b(anchors);
        let other_order = build_p7b(&shuffled_with_duplicates(anchors));
        assert_eq!(
            p7b, other_order,
            "{n} anchors: order or duplicates changed the bytes"
        );
        if n > 0 {
            assert!(
                shuffled_with_duplicates(anchors).len() > n,
                "the test adds duplicates"
            );
        }
        if n > 2 {
            let unsorted = |v: &[Vec<u8>]| v.windows(2).any(|w| w[0] > w[1]);
            assert!(unsorted(anchors) && unsorted(&shuffled_with_duplicates(anchors)));
        }
        let file = write(dir.path(), &format!("b{n}.p7b"), &p7b);

        let printed = openssl_print_certs(&file, "DER");
        assert_eq!(printed, expected, "{n} anchors: openssl pkcs7 -print_certs");
        let mut subjects: Vec<String> = printed.iter().map(|c| subject_of(c)).collect();
        let mut want: Vec<String> = anchors.iter().map(|c| subject_of(c)).collect();
        subjects.sort();
        want.sort();
        assert_eq!(subjects, want);

        let report = py_check(dir.path(), &file);
        assert_eq!(hex_list(&report["pyca"]), expected, "{n} anchors: pyca");
        assert_eq!(
            hex_list(&report["certificates"]),
            expected,
            "{n} anchors: fasder"
        );
        assert_eq!(report["version"], 1);
        assert_eq!(report["digest_algorithms"], serde_json::json!([]));
        assert_eq!(report["econtent_type"], "1.2.840.113549.1.7.1");
        assert_eq!(report["econtent"], Value::Null);
        assert_eq!(report["crls"], false);
        assert_eq!(report["signers"], serde_json::json!([]));

        // RustCrypto's cms types decode it too. (Not re-encoded for comparison: der 0.8.3 sorts
        // a CertificateSet with a comparison that disagrees with X.690 byte order for about
        // half of all certificate pairs, which is why bundles are assembled by hand.)
        let ci = cms::content_info::ContentInfo::from_der(&p7b).unwrap();
        assert_eq!(ci.to_der().unwrap(), p7b);
        let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
        let mut decoded: Vec<Vec<u8>> = sd
            .certificates
            .map(|set| set.0.iter().map(|c| c.to_der().unwrap()).collect())
            .unwrap_or_default();
        decoded.sort();
        assert_eq!(decoded, expected);

        assert_eq!(certificates_in(&p7b).unwrap(), expected, "{n}: round trip");
        let pem_text = ::pem::encode(&::pem::Pem::new("PKCS7", p7b.clone()));
        assert_eq!(certificates_in(pem_text.as_bytes()).unwrap(), expected);
    }
}

#[test]
fn metadata_variant_carries_the_xml_and_still_lists_the_anchors() {
    let dir = TempDir::new().unwrap();
    let anchors = &anchors()[..12];
    let expected = sorted_unique(anchors);
    let ids: Vec<(Vec<u8>, Vec<u8>)> = shuffled_with_duplicates(anchors)
        .iter()
        .map(|c| issuer_and_serial(c).unwrap())
        .collect();
    let id_refs: Vec<(&[u8], &[u8])> = ids
        .iter()
        .map(|(i, s)| (i.as_slice(), s.as_slice()))
        .collect();
    let from = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(); // 2026-01-01
    let to = from + Duration::days(30) + Duration::milliseconds(250);
    let xml = metadata_xml(
        "Provider <Test> & Staging",
        "https://bundles.example.com/provider-test.p7b?x=1&y=2",
        from,
        to,
        &id_refs,
    )
    .unwrap();
    // deterministic: anchor order and duplicates do not matter
    let one_each: Vec<(Vec<u8>, Vec<u8>)> = anchors
        .iter()
        .map(|c| issuer_and_serial(c).unwrap())
        .collect();
    let one_each: Vec<(&[u8], &[u8])> = one_each
        .iter()
        .map(|(i, s)| (i.as_slice(), s.as_slice()))
        .collect();
    assert_eq!(
        xml,
        metadata_xml(
            "Provider <Test> & Staging",
            "https://bundles.example.com/provider-test.p7b?x=1&y=2",
            from,
            to,
            &one_each
        )
        .unwrap()
    );

    let p7b = build_p7b_with_metadata(&shuffled_with_duplicates(anchors), xml.as_bytes());
    assert_eq!(p7b, build_p7b_with_metadata(anchors, xml.as_bytes()));
    let file = write(dir.path(), "meta.p7b", &p7b);
    assert_eq!(openssl_print_certs(&file, "DER"), expected);
    let report = py_check(dir.path(), &file);
    assert_eq!(hex_list(&report["pyca"]), expected);
    assert_eq!(
        hex::decode(report["econtent"].as_str().unwrap()).unwrap(),
        xml.as_bytes()
    );
    assert_eq!(certificates_in(&p7b).unwrap(), expected);

    // The XML as a consumer reads it: well-formed, the schema's element order, issuer names
    // as pyca renders them in RFC 4514, serials as decimal integers.
    let pems: String = anchors.iter().map(|c| pem_of(c)).collect();
    let pem_file = write(dir.path(), "anchors.pem", pems.as_bytes());
    let xml_file = write(dir.path(), "meta.xml", xml.as_bytes());
    let script = r#"
import sys
import xml.etree.ElementTree as ET
from cryptography import x509
with open(sys.argv[1], 'rb') as f:
    root = ET.fromstring(f.read())
with open(sys.argv[2], 'rb') as f:
    certs = x509.load_pem_x509_certificates(f.read())
assert root.tag == 'TrustBundle', root.tag
assert [c.tag for c in root] == ['Profile', 'DistributionPoint', 'ValidFrom', 'ValidTo', 'Anchors'], [c.tag for c in root]
assert root.find('Profile').text == 'Provider <Test> & Staging'
assert root.find('DistributionPoint').text == 'https://bundles.example.com/provider-test.p7b?x=1&y=2'
assert root.find('ValidFrom').text == '2026-01-01T00:00:00Z', root.find('ValidFrom').text
assert root.find('ValidTo').text == '2026-01-31T00:00:00Z', root.find('ValidTo').text
got = set()
for a in root.find('Anchors'):
    assert a.tag == 'Anchor'
    (ids,) = list(a)
    assert [c.tag for c in ids] == ['X509IssuerName', 'X509SerialNumber']
    got.add((ids[0].text, int(ids[1].text)))
want = {(c.issuer.rfc4514_string(), c.serial_number) for c in certs}
assert got == want, (sorted(got - want), sorted(want - got))
assert len(root.find('Anchors')) == len(want)
print(len(got))
"#;
    let script = write(dir.path(), "check_xml.py", script.as_bytes());
    let out = run(
        venv_bin("python"),
        &[
            "-W",
            "error",
            script.to_str().unwrap(),
            xml_file.to_str().unwrap(),
            pem_file.to_str().unwrap(),
        ],
    );
    out.assert_success("metadata XML check");
    assert_eq!(out.stdout.trim(), "12");

    // no anchors: the Anchors element is left out (the schema wants at least one Anchor in it)
    let empty = metadata_xml("P", "https://x.example/b.p7b", from, to, &[]).unwrap();
    assert!(!empty.contains("Anchors"), "{empty}");
    assert_eq!(
        metadata_xml("P", "u", to, from, &[]).unwrap_err().code(),
        "bundle_metadata_invalid"
    );
    assert_eq!(
        metadata_xml("P\u{7}", "u", from, to, &[])
            .unwrap_err()
            .code(),
        "bundle_metadata_invalid"
    );
}

/// A root and an issuing CA made by anchorage itself, and a bundle signer issued by the
/// issuing CA with the Direct "signing" usage (digitalSignature, EKU emailProtection).
struct SignerSetup {
    dir: TempDir,
    root_pem: PathBuf,
    issuing_der: Vec<u8>,
    signer_der: Vec<u8>,
    signer_key: KeyPair,
}

fn signer_setup(signer_key: KeyPair) -> SignerSetup {
    let dir = TempDir::new().unwrap();
    let passphrase = Passphrase::new("bundle-format test passphrase 0123".into()).unwrap();
    let now = OffsetDateTime::now_utc() - Duration::minutes(5);
    let (root, issuing) = ca::create_hierarchy(
        &HierarchyOptions {
            organization: "Bundle Test".into(),
            root_key: RootKeyAlgorithm::P384,
            issuing_key: IssuingKeyAlgorithm::Rsa2048,
            root_validity_days: 3650,
            issuing_validity_days: 1825,
            public_url: "http://pki.direct.example.com".into(),
        },
        now,
        &passphrase,
    )
    .unwrap();
    let issuing_ca = ca::unlock(&issuing, &passphrase).unwrap();
    assert_eq!(issuing_ca.role, CaRole::Issuing);
    let spec = EndEntitySpec {
        serial: ca::random_serial().unwrap(),
        holder: Holder::Domain(HealthDomain::parse("bundles.direct.example.com").unwrap()),
        usage: CertUsage::Signing,
        organization: Some("Bundle Test".into()),
        not_before: now,
        not_after: now + Duration::days(397),
        policy_oids: vec![],
        crl_url: "http://pki.direct.example.com/crl/issuing.crl".into(),
        ca_issuers_url: "http://pki.direct.example.com/ca/issuing.cer".into(),
    };
    let signer_der = issuing_ca.issue(&spec, &signer_key).unwrap();
    let root_pem = write(dir.path(), "root.pem", pem_of(&root.cert_der).as_bytes());
    SignerSetup {
        dir,
        root_pem,
        issuing_der: issuing.cert_der,
        signer_der,
        signer_key,
    }
}

fn cms_verify(dir: &Path, p7m: &Path, root: &Path, out: &str) -> ToolOutput {
    run_in(
        dir,
        "openssl",
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-CAfile",
            root.to_str().unwrap(),
            "-in",
            p7m.to_str().unwrap(),
            "-out",
            out,
        ],
    )
}

fn check_signed_bundle(setup: &SignerSetup, signature_oid: &str, signature_params: Value) {
    let dir = setup.dir.path();
    let p7b = build_p7b(&anchors()[..20]);
    let signing_time = OffsetDateTime::now_utc();
    let p7m = sign_p7m(
        &p7b,
        &setup.signer_der,
        &[&setup.issuing_der],
        &setup.signer_key,
        signing_time,
    )
    .unwrap();
    let file = write(dir, "bundle.p7m", &p7m);

    // OpenSSL verifies the signature and the chain to the root for S/MIME signing, and hands
    // back exactly the .p7b
    cms_verify(dir, &file, &setup.root_pem, "out.p7b").assert_success("openssl cms -verify");
    assert_eq!(std::fs::read(dir.join("out.p7b")).unwrap(), p7b);
    assert_eq!(
        openssl_print_certs(&dir.join("out.p7b"), "DER"),
        sorted_unique(&anchors()[..20])
    );

    // the three signed attributes, as OpenSSL reads them
    let print = run(
        "openssl",
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            file.to_str().unwrap(),
        ],
    );
    print.assert_success("openssl cms -cmsout -print");
    let attrs = print
        .stdout
        .split_once("signedAttrs:")
        .and_then(|(_, rest)| rest.split_once("signatureAlgorithm:"))
        .map(|(attrs, _)| attrs)
        .unwrap_or_else(|| panic!("no signedAttrs:\n{}", print.stdout));
    let objects: Vec<&str> = attrs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("object: "))
        .collect();
    assert_eq!(
        objects,
        [
            "contentType (1.2.840.113549.1.9.3)",
            "signingTime (1.2.840.113549.1.9.5)",
            "messageDigest (1.2.840.113549.1.9.4)"
        ],
        "{attrs}"
    );
    assert!(
        attrs.contains("OBJECT:pkcs7-data (1.2.840.113549.1.7.1)"),
        "{attrs}"
    );
    let utc = signing_time
        .to_offset(::time::UtcOffset::UTC)
        .format(::time::macros::format_description!(
            "UTCTIME:[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
        ))
        .unwrap();
    assert!(attrs.contains(&utc), "{utc} not found:\n{attrs}");

    // strict DER throughout, and the SignerInfo as specified
    let report = py_check(dir, &file);
    let mut chain = vec![setup.signer_der.clone(), setup.issuing_der.clone()];
    chain.sort();
    assert_eq!(hex_list(&report["certificates"]), chain);
    assert_eq!(hex_list(&report["pyca"]), chain);
    assert_eq!(report["version"], 1);
    assert_eq!(
        report["digest_algorithms"],
        serde_json::json!(["2.16.840.1.101.3.4.2.1"])
    );
    assert_eq!(report["econtent_type"], "1.2.840.113549.1.7.1");
    assert_eq!(
        hex::decode(report["econtent"].as_str().unwrap()).unwrap(),
        p7b
    );
    let (_, signer) = X509Certificate::from_der(&setup.signer_der).unwrap();
    let serial = signer.tbs_certificate.serial.to_string();
    assert_eq!(report["signers"].as_array().unwrap().len(), 1);
    let si = &report["signers"][0];
    assert_eq!(si["version"], 1);
    assert_eq!(si["issuer_serial"], serial.as_str());
    assert_eq!(si["digest"], "2.16.840.1.101.3.4.2.1");
    assert_eq!(si["digest_params"], false);
    assert_eq!(si["signature_algorithm"], signature_oid);
    assert_eq!(si["signature_params"], signature_params);
    assert_eq!(
        si["attributes"],
        serde_json::json!([
            "1.2.840.113549.1.9.3",
            "1.2.840.113549.1.9.5",
            "1.2.840.113549.1.9.4"
        ])
    );
    assert_eq!(si["unsigned"], false);
    assert_eq!(certificates_in(&p7m).unwrap(), chain);

    // tampering is caught: one bit of an anchor inside the content, or of the signature
    let anchor_at = p7m
        .windows(64)
        .position(|w| w == &anchors()[0][100..164])
        .unwrap();
    for (what, at) in [("content", anchor_at + 10), ("signature", p7m.len() - 5)] {
        let mut bad = p7m.clone();
        bad[at] ^= 0x01;
        let bad_file = write(dir, &format!("tampered-{what}.p7m"), &bad);
        let out = cms_verify(dir, &bad_file, &setup.root_pem, "bad.p7b");
        assert!(
            !out.status.success(),
            "tampered {what} verified: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("Verification failure") || out.stderr.contains("verify error"),
            "{what}: {}",
            out.describe()
        );
    }
    // a root that did not issue the chain is not accepted
    let stranger = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_root = params.self_signed(&stranger).unwrap();
    let other_root = write(dir, "other-root.pem", other_root.pem().as_bytes());
    let out = cms_verify(dir, &file, &other_root, "other.p7b");
    assert!(!out.status.success(), "verified under a foreign root");
}

#[test]
fn signed_bundle_rsa_signer_verifies_with_openssl() {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    check_signed_bundle(
        &signer_setup(key),
        "1.2.840.113549.1.1.11",
        Value::String("0500".into()),
    );
}

#[test]
fn signed_bundle_p256_signer_verifies_with_openssl() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    check_signed_bundle(&signer_setup(key), "1.2.840.10045.4.3.2", Value::Null);
}

#[test]
fn signing_refuses_a_foreign_or_unsupported_key() {
    let setup = signer_setup(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
    let p7b = build_p7b(&anchors()[..2]);
    let now = OffsetDateTime::now_utc();
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err = sign_p7m(&p7b, &setup.signer_der, &[], &other, now).unwrap_err();
    assert_eq!(err.code(), "bundle_signer_key_mismatch");
    // a P-384 signer of its own (self-signed) is refused for its algorithm
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = CertificateParams::new(vec!["x.example".into()])
        .unwrap()
        .self_signed(&p384)
        .unwrap();
    let err = sign_p7m(&p7b, cert.der(), &[], &p384, now).unwrap_err();
    assert_eq!(err.code(), "bundle_signer_key_unsupported");
    let err = sign_p7m(&p7b, b"not a certificate", &[], &other, now).unwrap_err();
    assert_eq!(err.code(), "bundle_signer_certificate_invalid");
}

#[test]
fn certificates_in_reads_what_openssl_writes() {
    let dir = TempDir::new().unwrap();
    let anchors = &anchors()[..9];
    // file order, with a duplicate, as a member might upload it
    let mut upload: Vec<Vec<u8>> = anchors.to_vec();
    upload.push(anchors[2].clone());
    let pems: String = upload.iter().map(|c| pem_of(c)).collect();
    write(dir.path(), "all.pem", pems.as_bytes());
    for (outform, file) in [("DER", "o.p7b"), ("PEM", "o.pem")] {
        run_in(
            dir.path(),
            "openssl",
            &[
                "crl2pkcs7",
                "-nocrl",
                "-certfile",
                "all.pem",
                "-outform",
                outform,
                "-out",
                file,
            ],
        )
        .assert_success("openssl crl2pkcs7");
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let got = certificates_in(&bytes).unwrap();
        // what OpenSSL itself lists, in its order, duplicates kept
        let listed = openssl_print_certs(&dir.path().join(file), outform);
        assert_eq!(got, listed, "{outform}");
        assert_eq!(got.len(), 10, "{outform}: duplicates are kept");
        assert_eq!(sorted_unique(&got), sorted_unique(anchors), "{outform}");
    }
    // PEM with CRLF line ends and text before it
    let pem_text = std::fs::read_to_string(dir.path().join("o.pem")).unwrap();
    let crlf = format!("\r\n  {}", pem_text.replace('\n', "\r\n"));
    assert_eq!(certificates_in(crlf.as_bytes()).unwrap().len(), 10);

    // a signed bundle from OpenSSL: its SignedData's certificates are the signer's
    let key = dir.path().join("k.pem");
    run_in(
        dir.path(),
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=signer",
            "-days",
            "2",
            "-out",
            "signer.pem",
        ],
    )
    .assert_success("openssl req");
    assert!(key.exists());
    let signer = ::pem::parse(std::fs::read(dir.path().join("signer.pem")).unwrap())
        .unwrap()
        .into_contents();
    run_in(
        dir.path(),
        "openssl",
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
            "o.p7b",
            "-signer",
            "signer.pem",
            "-inkey",
            "k.pem",
            "-out",
            "signed.p7m",
        ],
    )
    .assert_success("openssl cms -sign");
    let signed = std::fs::read(dir.path().join("signed.p7m")).unwrap();
    assert_eq!(certificates_in(&signed).unwrap(), vec![signer]);

    // BER with indefinite lengths (`-stream`, as the Java reference bundler writes) is refused
    // with its own code for now
    run_in(
        dir.path(),
        "openssl",
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-stream",
            "-outform",
            "DER",
            "-in",
            "o.p7b",
            "-signer",
            "signer.pem",
            "-inkey",
            "k.pem",
            "-out",
            "streamed.p7m",
        ],
    )
    .assert_success("openssl cms -sign -stream");
    let streamed = std::fs::read(dir.path().join("streamed.p7m")).unwrap();
    assert_eq!(
        certificates_in(&streamed).unwrap_err().code(),
        "bundle_ber_unsupported"
    );
}

#[test]
fn certificates_in_refuses_what_is_not_a_bundle() {
    let anchor = &anchors()[0];
    let code = |bytes: &[u8]| certificates_in(bytes).unwrap_err().code();
    assert_eq!(code(anchor), "bundle_malformed");
    assert_eq!(code(b""), "bundle_malformed");
    assert_eq!(code(b"\x30\x80"), "bundle_ber_unsupported");
    assert_eq!(code(pem_of(anchor).as_bytes()), "bundle_pem_invalid");
    assert_eq!(
        code(b"-----BEGIN PKCS7-----\n!!\n-----END PKCS7-----\n"),
        "bundle_pem_invalid"
    );
    // ContentInfo of another type (id-data)
    let data = [
        0x30, 0x11, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x04,
        0x04, 0x02, 0x68, 0x69,
    ];
    assert_eq!(code(&data), "bundle_not_signed_data");
    // trailing garbage after the bundle
    let mut trailing = build_p7b(&anchors()[..2]);
    trailing.push(0);
    assert_eq!(code(&trailing), "bundle_malformed");
    // something in the certificate set that is not a certificate
    assert_eq!(code(&build_p7b(&[vec![0x30, 0x00]])), "bundle_malformed");
}

#[test]
fn certificates_in_caps_the_count_before_decoding() {
    // tiny placeholder TLVs (not certificates): the cap is checked before any is decoded
    let fake = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let b = (i as u32).to_be_bytes();
                vec![0x30, 0x05, 0x02, 0x03, b[1], b[2], b[3]]
            })
            .collect()
    };
    let too_many = build_p7b(&fake(MAX_CERTIFICATES + 1));
    assert_eq!(
        certificates_in(&too_many).unwrap_err().code(),
        "bundle_too_many_certificates"
    );
    // at the cap the count passes and the first placeholder fails to decode as a certificate
    let at_cap = build_p7b(&fake(MAX_CERTIFICATES));
    let err = certificates_in(&at_cap).unwrap_err();
    assert_eq!(err.code(), "bundle_malformed", "{err}");
    // the cap also spans several PEM blocks
    let half = ::pem::encode(&::pem::Pem::new(
        "PKCS7",
        build_p7b(&fake(MAX_CERTIFICATES / 2 + 1)),
    ));
    assert_eq!(
        certificates_in(format!("{half}{half}").as_bytes())
            .unwrap_err()
            .code(),
        "bundle_too_many_certificates"
    );
}
