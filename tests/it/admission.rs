//! Anchor admission against files made by openssl, the way members make them, not by
//! anchorage: every upload form (PEM, DER, `.p7b`) and the wrong files people send instead
//! (PKCS#12, private keys in every encoding, CSRs, noise), every anchor rule, and sample
//! end-entity certificates issued by the anchor, by an intermediate, or by somebody else. Each
//! case asserts the exact reason codes. Finally, what anchorage itself issues must pass the
//! Direct profile lint that samples are held to, and its own hierarchy must be admissible.
//!
//! The fixtures are generated once per test run by the openssl commands in [`make_fixtures`]
//! (openssl 3.0; `openssl ca -selfsign -startdate/-enddate` makes the back-dated CA, since
//! `req -x509` there has no `-not_before`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anchorage::authority::{Authority, InitOptions};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use anchorage::policy::admission::{
    admit, read_anchor_upload, AdmissionPolicy, AnchorFacts, ExistingAnchor,
};
use anchorage::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use anchorage::policy::Denial;
use anchorage::x509::direct_profile_problems;
use time::OffsetDateTime;

use crate::tools::run_in;

/// Extension sections for every fixture: CAs as spec §2 describes them, CAs that break one
/// rule, and Direct end-entity samples (spec §2: one SAN, keyUsage, emailProtection, CDP, AIA).
const OPENSSL_CNF: &str = r#"
[ req ]
distinguished_name = req_dn
[ req_dn ]

[ ca ]
default_ca = ca_default
[ ca_default ]
dir = .
database = index.txt
new_certs_dir = .
serial = serial.txt
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
organizationName = optional

[ v3_ca ]
basicConstraints = critical, CA:TRUE, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ v3_no_key_cert_sign ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, cRLSign
subjectKeyIdentifier = hash

[ v3_end_entity ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash

[ direct ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:jones@direct.member.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://ca.member.example/crl/issuing.crl
authorityInfoAccess = caIssuers;URI:http://ca.member.example/ca/issuing.cer
certificatePolicies = 1.3.6.1.4.1.41179.0.1.3, 1.3.6.1.4.1.41179.1.3, 1.3.6.1.4.1.41179.2.1

[ direct_two_sans ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:jones@direct.member.example, DNS:direct.member.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://ca.member.example/crl/issuing.crl
authorityInfoAccess = caIssuers;URI:http://ca.member.example/ca/issuing.cer
"#;

/// Every fixture file by name, read into memory (the directory is gone).
fn fixtures() -> &'static HashMap<String, Vec<u8>> {
    static FIXTURES: OnceLock<HashMap<String, Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        make_fixtures(dir.path());
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    })
}

fn file(name: &str) -> Vec<u8> {
    fixtures()
        .get(name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .clone()
}

/// The DER of a fixture holding one PEM certificate.
fn der(name: &str) -> Vec<u8> {
    pem::parse(file(name)).unwrap().into_contents()
}

fn make_fixtures(dir: &Path) {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).unwrap();
    // `line` is split on whitespace; the subject, which has spaces, comes separately.
    let openssl = |line: &str, subject: Option<&str>| {
        let mut args: Vec<&str> = line.split_whitespace().collect();
        if let Some(subject) = subject {
            args.extend(["-subj", subject]);
        }
        run_in(dir, "openssl", &args).assert_success(&format!("openssl {line}"));
    };
    let ca = "req -x509 -config openssl.cnf -nodes -extensions v3_ca";
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
    let rsa_subject = "/O=Member One/CN=Member One RSA CA";
    openssl(
        &format!("{ca} -newkey rsa:2048 -keyout rsa-ca.key -days 3650 -sha256 -out rsa-ca.pem"),
        Some(rsa_subject),
    );
    openssl(
        &format!(
            "{ca} -newkey ec -pkeyopt ec_paramgen_curve:P-384 -keyout p384-ca.key -days 3650 \
             -sha384 -out p384-ca.pem"
        ),
        Some("/O=Member Two/CN=Member Two P-384 CA"),
    );
    openssl(
        &format!("{ca} {p256} -keyout p256-ca.key -days 3650 -out p256-ca.pem"),
        Some("/O=Member Three/CN=Member Three CA"),
    );
    openssl(
        &format!("{ca} -newkey rsa:2048 -keyout sha1-ca.key -days 3650 -sha1 -out sha1-ca.pem"),
        Some("/CN=SHA-1 CA"),
    );
    openssl(
        &format!("{ca} -newkey rsa:1024 -keyout rsa1024-ca.key -days 3650 -out rsa1024-ca.pem"),
        Some("/CN=RSA-1024 CA"),
    );
    openssl(
        &format!("{ca} {p256} -keyout short-ca.key -days 10 -out short-ca.pem"),
        Some("/CN=Short-lived CA"),
    );
    openssl(
        &format!(
            "req -x509 -config openssl.cnf -nodes -extensions v3_no_key_cert_sign {p256} \
             -keyout no-key-cert-sign-ca.key -days 3650 -out no-key-cert-sign-ca.pem"
        ),
        Some("/CN=No keyCertSign CA"),
    );
    openssl(
        &format!(
            "req -x509 -config openssl.cnf -nodes -extensions v3_end_entity {p256} \
             -keyout end-entity.key -days 365 -out end-entity.pem"
        ),
        Some("/CN=jones@direct.member.example"),
    );
    // The same subject and key as rsa-ca, re-issued (new serial and validity).
    openssl(
        "req -x509 -config openssl.cnf -extensions v3_ca -key rsa-ca.key -days 1825 \
         -set_serial 0x0f0e -out rsa-ca-reissued.pem",
        Some(rsa_subject),
    );

    // Back-dated: `openssl ca` is the 3.0 way to set both dates.
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial.txt"), "01\n").unwrap();
    openssl(
        &format!(
            "req -new -config openssl.cnf -nodes {p256} -keyout expired-ca.key -out expired-ca.csr"
        ),
        Some("/CN=Expired CA"),
    );
    openssl(
        "ca -batch -config openssl.cnf -selfsign -keyfile expired-ca.key -in expired-ca.csr \
         -startdate 200101000000Z -enddate 210101000000Z -extensions v3_ca -notext \
         -out expired-ca.pem",
        None,
    );

    // An intermediate under rsa-ca.
    openssl(
        &format!(
            "req -new -config openssl.cnf -nodes {p256} -keyout intermediate.key \
             -out intermediate.csr"
        ),
        Some("/O=Member One/CN=Member One Issuing CA"),
    );
    openssl(
        "x509 -req -in intermediate.csr -CA rsa-ca.pem -CAkey rsa-ca.key -set_serial 0x1001 \
         -days 1825 -sha256 -extfile openssl.cnf -extensions v3_intermediate \
         -out intermediate.pem",
        None,
    );

    // Samples: one subscriber key, certified by different issuers and profiles.
    openssl(
        "req -new -config openssl.cnf -nodes -newkey rsa:2048 -keyout jones.key -out jones.csr",
        Some("/CN=jones@direct.member.example"),
    );
    for (out, ca, section, serial) in [
        ("sample-good.pem", "rsa-ca", "direct", "0x2001"),
        ("sample-two-sans.pem", "rsa-ca", "direct_two_sans", "0x2002"),
        ("sample-other-ca.pem", "p384-ca", "direct", "0x2003"),
        (
            "sample-via-intermediate.pem",
            "intermediate",
            "direct",
            "0x2004",
        ),
    ] {
        openssl(
            &format!(
                "x509 -req -in jones.csr -CA {ca}.pem -CAkey {ca}.key -set_serial {serial} \
                 -days 365 -sha256 -extfile openssl.cnf -extensions {section} -out {out}"
            ),
            None,
        );
    }

    // Uploads in every form, right and wrong.
    let bundle: Vec<u8> = ["rsa-ca.pem", "p384-ca.pem", "intermediate.pem"]
        .iter()
        .flat_map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    std::fs::write(dir.join("bundle.pem"), bundle).unwrap();
    for line in [
        "x509 -in rsa-ca.pem -outform DER -out rsa-ca.cer",
        "crl2pkcs7 -nocrl -certfile bundle.pem -outform DER -out bundle.p7b",
        "crl2pkcs7 -nocrl -certfile bundle.pem -outform PEM -out bundle-pem.p7b",
        "pkcs12 -export -in rsa-ca.pem -inkey rsa-ca.key -passout pass:fixture -out rsa-ca.p12",
        // rsa-ca.key is PKCS#8 PEM ("PRIVATE KEY"); the other encodings of the same keys:
        "pkey -in rsa-ca.key -traditional -out rsa-ca-pkcs1.key",
        "pkey -in p384-ca.key -traditional -out p384-ca-sec1.key",
        "pkcs8 -topk8 -in rsa-ca.key -v2 aes-256-cbc -passout pass:fixture \
         -out rsa-ca-encrypted.key",
        "pkcs8 -topk8 -nocrypt -in rsa-ca.key -outform DER -out rsa-ca-pkcs8.der",
        // openssl 3.0 writes RSA and EC keys in DER in their traditional forms (PKCS#1, SEC1).
        "pkey -in rsa-ca.key -outform DER -out rsa-ca-pkcs1.der",
        "pkey -in p384-ca.key -outform DER -out p384-ca-sec1.der",
        "pkcs8 -topk8 -in rsa-ca.key -v2 aes-256-cbc -passout pass:fixture -outform DER \
         -out rsa-ca-encrypted.der",
        "req -in jones.csr -outform DER -out jones-csr.der",
        "rand -out random.bin 4096",
        // openssl agrees with the sample verdicts below.
        "verify -CAfile rsa-ca.pem sample-good.pem",
        "verify -CAfile rsa-ca.pem -untrusted intermediate.pem sample-via-intermediate.pem",
    ] {
        openssl(line, None);
    }
    let stranger = run_in(
        dir,
        "openssl",
        &["verify", "-CAfile", "rsa-ca.pem", "sample-other-ca.pem"],
    );
    assert!(!stranger.status.success(), "{}", stranger.describe());
}

fn codes(result: Result<AnchorFacts, Denial>) -> Vec<&'static str> {
    match result {
        Ok(_) => vec![],
        Err(d) => d.codes(),
    }
}

#[test]
fn uploads_are_classified() {
    let policy = AdmissionPolicy::default();
    let bundle: Vec<Vec<u8>> = pem::parse_many(file("bundle.pem"))
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    assert_eq!(bundle.len(), 3);
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    type Case = (&'static str, Vec<u8>, Vec<Vec<u8>>);
    let ok: &[Case] = &[
        ("ok/pem", file("rsa-ca.pem"), vec![der("rsa-ca.pem")]),
        ("ok/der-cer", file("rsa-ca.cer"), vec![der("rsa-ca.pem")]),
        ("ok/pem-bundle-of-3", file("bundle.pem"), bundle.clone()),
        ("ok/p7b-der", file("bundle.p7b"), bundle.clone()),
        ("ok/p7b-pem", file("bundle-pem.p7b"), bundle.clone()),
    ];
    for (name, input, want) in ok {
        let got = read_anchor_upload(input, policy.max_upload_bytes)
            .unwrap_or_else(|d| panic!("{name}: {d}"));
        // crl2pkcs7 does not keep the file order; the PEM forms do.
        if name.contains("p7b") {
            assert_eq!(sorted(got), sorted(want.clone()), "{name}");
        } else {
            assert_eq!(&got, want, "{name}");
        }
    }

    let mut oversized = file("rsa-ca.pem");
    oversized.resize(policy.max_upload_bytes + 1, b'\n');
    let fail: &[(&str, Vec<u8>, &[&str])] = &[
        ("fail/empty", vec![], &["upload_empty"]),
        ("fail/one-mib-plus-one", oversized, &["upload_too_large"]),
        ("fail/pkcs12", file("rsa-ca.p12"), &["upload_is_pkcs12"]),
        (
            "fail/pem-pkcs8-key",
            file("rsa-ca.key"),
            &["upload_is_private_key"],
        ),
        (
            "fail/pem-rsa-key",
            file("rsa-ca-pkcs1.key"),
            &["upload_is_private_key"],
        ),
        (
            "fail/pem-ec-key",
            file("p384-ca-sec1.key"),
            &["upload_is_private_key"],
        ),
        (
            "fail/pem-encrypted-key",
            file("rsa-ca-encrypted.key"),
            &["upload_is_private_key"],
        ),
        (
            "fail/der-pkcs8-key",
            file("rsa-ca-pkcs8.der"),
            &["upload_is_private_key"],
        ),
        (
            "fail/der-pkcs1-key",
            file("rsa-ca-pkcs1.der"),
            &["upload_is_private_key"],
        ),
        (
            "fail/der-sec1-key",
            file("p384-ca-sec1.der"),
            &["upload_is_private_key"],
        ),
        (
            "fail/der-encrypted-key",
            file("rsa-ca-encrypted.der"),
            &["upload_is_private_key"],
        ),
        (
            "fail/pem-certificate-with-its-key",
            [file("rsa-ca.pem"), file("rsa-ca.key")].concat(),
            &["upload_is_private_key"],
        ),
        ("fail/csr-pem", file("jones.csr"), &["upload_is_csr"]),
        ("fail/csr-der", file("jones-csr.der"), &["upload_is_csr"]),
        (
            "fail/random-bytes",
            file("random.bin"),
            &["upload_unreadable"],
        ),
    ];
    for (name, input, want) in fail {
        let denial = read_anchor_upload(input, policy.max_upload_bytes).unwrap_err();
        assert_eq!(denial.codes(), *want, "{name}: {denial}");
        if want[0] == "upload_is_private_key" || want[0] == "upload_is_pkcs12" {
            assert!(
                denial.to_string().contains("Never upload private keys"),
                "{name}: {denial}"
            );
        }
    }
    // No byte of a key reaches a message, in any encoding a message could carry.
    let key_pem = String::from_utf8(file("rsa-ca.key")).unwrap();
    let key_body: String = key_pem.lines().nth(3).unwrap().to_string();
    let key_der = file("rsa-ca-pkcs8.der");
    for input in [file("rsa-ca.key"), key_der.clone(), file("rsa-ca.p12")] {
        let text = read_anchor_upload(&input, policy.max_upload_bytes)
            .unwrap_err()
            .to_string();
        assert!(!text.contains(&key_body));
        assert!(!text.contains(&hex::encode(&key_der[40..56])));
    }
}

#[test]
fn anchors_and_samples_are_checked() {
    fixtures(); // made before `now`, or the freshest certificates are not yet valid
    let now = OffsetDateTime::now_utc();
    let policy = AdmissionPolicy::default();
    let rsa_facts = admit(&der("rsa-ca.pem"), &[], &[], &policy, now, false).unwrap();
    assert_eq!(rsa_facts.key, "RSA-2048");
    assert_eq!(rsa_facts.signature_algorithm, "sha256WithRSAEncryption");
    assert_eq!(rsa_facts.subject, "CN=Member One RSA CA,O=Member One");
    let in_bundle = [ExistingAnchor::from(&rsa_facts)];

    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [ExistingAnchor],
        &'a [&'a str],
    );
    let cases: &[Case<'_>] = &[
        ("ok/rsa-2048", "rsa-ca.pem", &[], &[], &[]),
        ("ok/p384", "p384-ca.pem", &[], &[], &[]),
        (
            "ok/intermediate-as-anchor",
            "intermediate.pem",
            &[],
            &in_bundle,
            &[],
        ),
        (
            "ok/good-sample",
            "rsa-ca.pem",
            &["sample-good.pem"],
            &[],
            &[],
        ),
        (
            "ok/sample-via-intermediate",
            "rsa-ca.pem",
            &["intermediate.pem", "sample-via-intermediate.pem"],
            &[],
            &[],
        ),
        (
            "fail/end-entity",
            "end-entity.pem",
            &[],
            &[],
            &["not_ca", "no_key_cert_sign"],
        ),
        (
            "fail/no-key-cert-sign",
            "no-key-cert-sign-ca.pem",
            &[],
            &[],
            &["no_key_cert_sign"],
        ),
        ("fail/expired", "expired-ca.pem", &[], &[], &["expired"]),
        (
            "fail/short-lived",
            "short-ca.pem",
            &[],
            &[],
            &["validity_too_short"],
        ),
        (
            "fail/sha1",
            "sha1-ca.pem",
            &[],
            &[],
            &["signature_algorithm_weak"],
        ),
        (
            "fail/rsa-1024",
            "rsa1024-ca.pem",
            &[],
            &[],
            &["key_too_weak"],
        ),
        (
            "fail/duplicate",
            "rsa-ca.pem",
            &[],
            &in_bundle,
            &["duplicate_fingerprint"],
        ),
        (
            "fail/reissued-same-key",
            "rsa-ca-reissued.pem",
            &[],
            &in_bundle,
            &["duplicate_subject_key"],
        ),
        (
            "fail/sample-from-another-ca",
            "rsa-ca.pem",
            &["sample-other-ca.pem"],
            &[],
            &["sample_not_issued_by_anchor"],
        ),
        (
            "fail/sample-two-sans",
            "rsa-ca.pem",
            &["sample-two-sans.pem"],
            &[],
            &["sample_profile"],
        ),
        (
            "fail/sample-without-its-intermediate",
            "rsa-ca.pem",
            &["sample-via-intermediate.pem"],
            &[],
            &["sample_not_issued_by_anchor"],
        ),
        (
            "fail/samples-of-another-anchor",
            "p256-ca.pem",
            &["sample-good.pem", "sample-other-ca.pem"],
            &[],
            &["sample_not_issued_by_anchor", "sample_not_issued_by_anchor"],
        ),
        (
            "fail/sample-is-a-foreign-ca",
            "rsa-ca.pem",
            &["p384-ca.pem"],
            &[],
            &["sample_is_ca", "sample_not_issued_by_anchor"],
        ),
    ];
    for (name, anchor, samples, existing, want) in cases {
        let samples: Vec<Vec<u8>> = samples.iter().map(|s| der(s)).collect();
        let result = admit(&der(anchor), &samples, existing, &policy, now, false);
        assert_eq!(codes(result), *want, "{name}");
    }

    // Every failed rule is reported at once: an end-entity certificate that expires too soon for
    // a stricter policy, with a sample it did not issue and that breaks the profile.
    let denial = admit(
        &der("end-entity.pem"),
        &[der("sample-two-sans.pem")],
        &[],
        &AdmissionPolicy {
            min_days_remaining: 400,
            ..AdmissionPolicy::default()
        },
        now,
        false,
    )
    .unwrap_err();
    assert_eq!(
        denial.codes(),
        [
            "not_ca",
            "no_key_cert_sign",
            "validity_too_short",
            "sample_not_issued_by_anchor",
            "sample_profile"
        ],
        "{denial}"
    );
}

/// The lint that member samples are held to passes on what anchorage issues, and anchorage's
/// own hierarchy is admissible with its certificates as samples (the issuing CA serving as the
/// one intermediate under the root).
#[test]
fn anchorage_issued_certificates_pass_the_direct_lint() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    let passphrase = Passphrase::new("admission-test passphrase 0123".into()).unwrap();
    authority
        .init(InitOptions::default(), &passphrase, "test")
        .unwrap();
    run_in(
        dir.path(),
        "openssl",
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "p256.key",
            "-subj",
            "/CN=x",
            "-out",
            "p256.csr",
        ],
    )
    .assert_success("P-256 CSR");
    let p256_csr = std::fs::read(dir.path().join("p256.csr")).unwrap();

    let request =
        |address: Option<&str>, domain: Option<&str>, usage: &str, key: KeySource| IssueRequest {
            address: address.map(str::to_string),
            domain: domain.map(str::to_string),
            usage: usage.into(),
            profile: None,
            category: None,
            key,
            subscriber: Subscriber {
                name: "Jones Clinic".into(),
                organization: None,
            },
            organisation: None,
            registrar: "test".into(),
            proofing: Proofing {
                method: "in-person".into(),
                level_of_assurance: None,
                evidence_reference: "case 1".into(),
            },
        };
    let address = Some("jones@direct.example.com");
    let domain = Some("direct.example.com");
    let requests = [
        request(address, None, "dual", KeySource::Generate),
        request(address, None, "pair", KeySource::Generate),
        request(None, domain, "dual", KeySource::Generate),
        request(
            Some("smith@direct.example.com"),
            None,
            "signing",
            KeySource::Csr {
                signing: p256_csr,
                encryption: None,
            },
        ),
    ];
    let mut issued = Vec::new();
    for req in &requests {
        for cert in authority.issue(req, None).unwrap().certs {
            issued.push(pem::parse(&cert.pem).unwrap().into_contents());
        }
    }
    assert_eq!(issued.len(), 5);
    let now = authority.now();
    for (i, der) in issued.iter().enumerate() {
        assert_eq!(
            direct_profile_problems(der, now),
            Vec::<(&str, String)>::new(),
            "certificate {i}"
        );
    }

    let chain = authority.ca_chain().unwrap(); // issuing, then root
    let (issuing, root) = (&chain[0], &chain[1]);
    let policy = AdmissionPolicy::default();
    admit(issuing, &issued, &[], &policy, now, false).unwrap();
    let mut samples = vec![issuing.clone()];
    samples.extend(issued.iter().cloned());
    let facts = admit(root, &samples, &[], &policy, now, false).unwrap();
    assert_eq!(facts.key, "ECDSA P-384");
    // Without the issuing CA among the samples, the root did not issue them.
    let denial = admit(root, &issued, &[], &policy, now, false).unwrap_err();
    assert!(
        denial
            .codes()
            .iter()
            .all(|c| *c == "sample_not_issued_by_anchor"),
        "{denial}"
    );
}

/// Subjects and issuers read as `openssl x509 -nameopt RFC2253,-esc_msb` prints them (RFC 4514
/// order and escaping; UTF-8 left as it is): a CN that holds a comma and looks like two
/// attributes, every character RFC 4514 escapes, several RDNs, a multi-valued RDN, domain
/// components and non-ASCII text. Each certificate is also admitted, and its anchor subject is
/// the same text.
#[test]
fn names_read_as_openssl_prints_them_in_rfc_2253_form() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openssl.cnf"), OPENSSL_CNF).unwrap();
    let subjects: &[(&str, &str, &[&str])] = &[
        ("evil", r"/CN=Evil CA\, O=DirectTrust", &[]),
        (
            "specials",
            r#"/C=US/ST=New York/L=Albany/O=Example\, Inc./OU=R&D/CN=#Weird <CA> "q";x=y\\z \+1 "#,
            &[],
        ),
        (
            "multi-valued",
            "/DC=org/DC=example/O=Member Four/OU=Direct+CN=Member Four CA",
            &["-multivalue-rdn"],
        ),
        (
            "utf8",
            "/O=Zürich Ärzte/CN=Ärztenetz Trust Anchor",
            &["-utf8"],
        ),
    ];
    let now = OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let policy = AdmissionPolicy::default();
    let rfc2253 = |pem: &str, field: &str| {
        let out = run_in(
            dir.path(),
            "openssl",
            &[
                "x509",
                "-in",
                pem,
                "-noout",
                field,
                "-nameopt",
                "RFC2253,-esc_msb",
            ],
        );
        out.assert_success("openssl x509 -nameopt RFC2253");
        let line = out.stdout.trim_end_matches('\n');
        line.strip_prefix(&format!("{}=", &field[1..]))
            .unwrap_or_else(|| panic!("{pem}: unexpected openssl output {line:?}"))
            .to_string()
    };
    for (stem, subject, extra) in subjects {
        let (pem, key) = (format!("{stem}.pem"), format!("{stem}.key"));
        let mut args = vec![
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "v3_ca",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-days",
            "3650",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            subject,
        ];
        args.extend_from_slice(extra);
        run_in(dir.path(), "openssl", &args).assert_success(&format!("openssl req {stem}"));
        let want = rfc2253(&pem, "-subject");
        let der = pem::parse(std::fs::read(dir.path().join(&pem)).unwrap())
            .unwrap()
            .into_contents();
        let summary = anchorage::x509::summarize(&der).unwrap();
        assert_eq!(summary.subject, want, "{stem}: subject");
        assert_eq!(
            summary.issuer, want,
            "{stem}: issuer of a self-signed certificate"
        );
        let facts = admit(&der, &[], &[], &policy, now, false).unwrap();
        assert_eq!(facts.subject, want, "{stem}: anchor subject");
    }
    // The one case the task is about, spelled out: one attribute, its comma escaped.
    assert_eq!(
        rfc2253("evil.pem", "-subject"),
        r"CN=Evil CA\, O=DirectTrust"
    );
    // An issuer that is not the subject: a certificate issued by the multi-RDN CA.
    run_in(
        dir.path(),
        "openssl",
        &[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/O=Member Four/CN=Leaf, Test",
        ],
    )
    .assert_success("openssl req leaf");
    run_in(
        dir.path(),
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "specials.pem",
            "-CAkey",
            "specials.key",
            "-set_serial",
            "0x77",
            "-days",
            "30",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "v3_end_entity",
            "-out",
            "leaf.pem",
        ],
    )
    .assert_success("openssl x509 -req leaf");
    let der = pem::parse(std::fs::read(dir.path().join("leaf.pem")).unwrap())
        .unwrap()
        .into_contents();
    let summary = anchorage::x509::summarize(&der).unwrap();
    assert_eq!(summary.subject, rfc2253("leaf.pem", "-subject"));
    assert_eq!(summary.issuer, rfc2253("leaf.pem", "-issuer"));
    assert_eq!(summary.subject, r"CN=Leaf\, Test,O=Member Four");
}

/// `bytes` with every constructed element down to `depth` levels rewritten to BER indefinite
/// lengths (what `openssl cms -stream` and the Java reference bundler do to the wrappers);
/// deeper elements, the certificates among them, stay as they are.
pub(crate) fn indefinite(bytes: &[u8], depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (tag, len_byte) = (rest[0], rest[1]);
        let (len, header) = if len_byte < 0x80 {
            (len_byte as usize, 2)
        } else {
            let n = (len_byte & 0x7f) as usize;
            let len = rest[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, 2 + n)
        };
        let (element, after) = rest.split_at(header + len);
        if depth > 0 && tag & 0x20 != 0 {
            out.extend([tag, 0x80]);
            out.extend(indefinite(&element[header..], depth - 1));
            out.extend([0, 0]);
        } else {
            out.extend_from_slice(element);
        }
        rest = after;
    }
    out
}

/// Issue 13: a member's upload is read by the same reader as an external source's bundle, so
/// BER with indefinite lengths, PEM armour around it, and signed bundles (`.p7m`, DER or
/// streamed BER) give the member the anchors an external source would yield; a signed
/// bundle's anchors are those it signs, never its signer. Each artifact is first read by
/// openssl, so these are files other tools accept.
#[test]
fn member_uploads_read_every_form_external_sources_read() {
    let policy = AdmissionPolicy::default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p7b = file("bundle.p7b");
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    let want = sorted(
        pem::parse_many(file("bundle.pem"))
            .unwrap()
            .into_iter()
            .map(|p| p.into_contents())
            .collect(),
    );
    let ber = indefinite(&p7b, 4);
    assert_ne!(ber, p7b);
    std::fs::write(d.join("ber.p7b"), &ber).unwrap();
    std::fs::write(d.join("bundle.p7b"), &p7b).unwrap();
    std::fs::write(d.join("openssl.cnf"), OPENSSL_CNF).unwrap();
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        run_in(d, "openssl", &args).assert_success(&format!("openssl {}", args.join(" ")));
    };
    // openssl reads the BER bundle and finds the three certificates.
    openssl("pkcs7 -inform DER -in ber.p7b -print_certs -out ber-certs.pem");
    assert_eq!(
        pem::parse_many(std::fs::read(d.join("ber-certs.pem")).unwrap())
            .unwrap()
            .len(),
        3
    );
    openssl(
        "req -x509 -config openssl.cnf -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
         -keyout signer.key -days 30 -subj /CN=Member_Bundle_Signer -out signer.pem",
    );
    for (out, stream) in [("signed.p7m", ""), ("streamed.p7m", "-stream")] {
        openssl(&format!(
            "cms -sign -binary -nodetach {stream} -outform DER -in bundle.p7b \
             -signer signer.pem -inkey signer.key -out {out}"
        ));
        openssl(&format!(
            "cms -verify -binary -inform DER -in {out} -noverify -out {out}.content"
        ));
        assert_eq!(
            std::fs::read(d.join(format!("{out}.content"))).unwrap(),
            p7b
        );
    }
    let signed = std::fs::read(d.join("signed.p7m")).unwrap();
    let streamed = std::fs::read(d.join("streamed.p7m")).unwrap();
    assert_eq!(
        streamed[1], 0x80,
        "openssl -stream writes indefinite lengths"
    );
    let signer_der = pem::parse(std::fs::read(d.join("signer.pem")).unwrap())
        .unwrap()
        .into_contents();

    let armoured =
        |label: &str, bytes: &[u8]| pem::encode(&pem::Pem::new(label, bytes.to_vec())).into_bytes();
    let cases: &[(&str, Vec<u8>)] = &[
        ("ok/ber-indefinite-p7b", ber.clone()),
        ("ok/pem-armoured-ber-p7b", armoured("PKCS7", &ber)),
        (
            "ok/pem-pkcs7-signed-data-label",
            armoured("PKCS #7 SIGNED DATA", &p7b),
        ),
        ("ok/signed-p7m", signed.clone()),
        ("ok/signed-p7m-pem", armoured("CMS", &signed)),
        ("ok/streamed-ber-p7m", streamed.clone()),
    ];
    for (name, input) in cases {
        let got = read_anchor_upload(input, policy.max_upload_bytes)
            .unwrap_or_else(|d| panic!("{name}: {d}"));
        assert!(
            !got.contains(&signer_der),
            "{name}: the signer is no anchor"
        );
        assert_eq!(sorted(got.clone()), want, "{name}");
        // The same bytes from an external source: the same reader, the same anchors.
        let external = anchorage::bundle::read_bundle(input, 1000).unwrap();
        assert_eq!(
            external.anchors, got,
            "{name}: as an external source reads it"
        );
        let verification = anchorage::bundle::verify::verify_unpinned(&external).unwrap();
        assert_eq!(verification.signed, name.contains("p7m"), "{name}");
    }

    // A signed bundle whose content was altered is refused, as from an external source.
    let at = signed
        .windows(16)
        .position(|w| w == &want[0][15..31])
        .unwrap();
    let mut tampered = signed.clone();
    tampered[at + 4] ^= 0x01;
    let denial = read_anchor_upload(&tampered, policy.max_upload_bytes).unwrap_err();
    assert_eq!(denial.codes(), ["upload_unreadable"], "{denial}");
    assert!(denial.to_string().contains("signed bundle"), "{denial}");
    let external = anchorage::bundle::read_bundle(&tampered, 1000).unwrap();
    let err = anchorage::bundle::verify::verify_unpinned(&external).unwrap_err();
    assert_eq!(
        err.kind,
        anchorage::bundle::verify::VerifyFailure::BadSignature
    );
}
