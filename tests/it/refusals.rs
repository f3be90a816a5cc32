//! Refusals through the real binary: every issuance rule of requirement 6 and garbage in place
//! of a CSR. Each case must exit non-zero, name its reason codes in the `-o json` error object
//! (`{code, message, reasons: [{code, message, field}]}`), and leave the store exactly as it
//! was: the same `cert list`, the same audit log length, and no output files.

use std::path::Path;

use crate::harness::{self, Ca, KeyAlg, StoreState, DOMAIN};
use crate::tools;

/// One refused request: `cert issue ARGS...` (split at spaces) must fail with `code` and
/// exactly `reasons` (in any order).
struct Case {
    name: &'static str,
    args: &'static str,
    code: &'static str,
    reasons: &'static [&'static str],
}

const DENIED: &str = "request_denied";

/// The rules about who the certificate is for and what is asked.
const REQUEST_CASES: &[Case] = &[
    Case {
        name: "fail/address-double-dot",
        args: "--address a..b@direct.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["address_malformed"],
    },
    Case {
        name: "fail/address-no-at",
        args: "--address no-at --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["address_malformed"],
    },
    Case {
        name: "fail/address-dollar",
        args: "--address $x@direct.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["address_malformed"],
    },
    Case {
        name: "fail/address-empty-local-part",
        args: "--address @direct.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["address_malformed"],
    },
    Case {
        name: "fail/domain-underscore",
        args: "--domain bad_domain.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_malformed"],
    },
    Case {
        name: "fail/domain-single-label",
        args: "--domain localhost --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_malformed"],
    },
    Case {
        name: "fail/domain-leading-hyphen",
        args: "--domain=-x.direct.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_malformed"],
    },
    Case {
        name: "fail/address-domain-not-managed",
        args: "--address jones@other.example --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_not_managed"],
    },
    Case {
        name: "fail/domain-not-managed",
        args: "--domain other.example --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_not_managed"],
    },
    Case {
        // A subdomain is a different health domain; only exact managed domains are served.
        name: "fail/subdomain-not-managed",
        args: "--domain sub.direct.example.com --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["domain_not_managed"],
    },
    Case {
        // The CLI's default subscriber name is the holder, so name one to isolate the rule.
        name: "fail/holder-missing",
        args: "--subscriber Jones-Clinic --usage dual --csr good.csr",
        code: DENIED,
        reasons: &["holder_missing"],
    },
    Case {
        name: "fail/usage-unknown",
        args: "--address jones@direct.example.com --usage bogus --csr good.csr",
        code: DENIED,
        reasons: &["usage_unknown"],
    },
    Case {
        name: "fail/profile-unknown",
        args: "--address jones@direct.example.com --usage dual --profile nope --csr good.csr",
        code: DENIED,
        reasons: &["profile_unknown"],
    },
    Case {
        name: "fail/profile-binding-mismatch",
        args: "--address jones@direct.example.com --usage dual --profile domain --csr good.csr",
        code: DENIED,
        reasons: &["profile_binding_mismatch"],
    },
    Case {
        name: "fail/profile-reserved-for-the-service",
        args: "--domain direct.example.com --usage signing --profile bundle-signer --csr good.csr",
        code: DENIED,
        reasons: &["profile_not_for_subscribers"],
    },
    Case {
        name: "fail/pair-with-one-csr",
        args: "--address jones@direct.example.com --usage pair --csr good.csr",
        code: DENIED,
        reasons: &["pair_needs_two_keys"],
    },
    Case {
        name: "fail/pair-with-one-key-twice",
        args: "--address jones@direct.example.com --usage pair --csr good.csr --encryption-csr good.csr",
        code: DENIED,
        reasons: &["pair_same_key"],
    },
    Case {
        // Every failed rule is reported at once, so a registrar fixes a request in one go.
        name: "fail/several-rules",
        args: "--address jones@other.example --usage dual --category nope --csr p384.csr",
        code: DENIED,
        reasons: &["domain_not_managed", "category_unknown", "key_type_unsupported"],
    },
    Case {
        name: "fail/every-field",
        args: "--address a..b@direct.example.com --usage bogus --profile nope --csr tampered.der",
        code: DENIED,
        reasons: &[
            "address_malformed",
            "usage_unknown",
            "profile_unknown",
            "csr_signature_invalid",
        ],
    },
    Case {
        // Refused only after the passphrase unlocked the CA: still nothing may be stored.
        name: "fail/p12-password-too-short",
        args: "--address jones@direct.example.com --usage dual --keygen --p12-out jones.p12 --p12-password-file short-password.txt",
        code: "invalid_input",
        reasons: &[],
    },
];

/// The rules about the key and what was sent as a CSR.
const CSR_CASES: &[Case] = &[
    Case {
        name: "fail/weak-rsa",
        args: "--address jones@direct.example.com --usage dual --csr rsa1024.csr",
        code: DENIED,
        reasons: &["key_too_weak"],
    },
    Case {
        name: "fail/p256-dual",
        args: "--address jones@direct.example.com --usage dual --csr p256.csr",
        code: DENIED,
        reasons: &["key_type_not_for_usage"],
    },
    Case {
        name: "fail/p256-encryption",
        args: "--domain direct.example.com --usage encryption --csr p256.csr",
        code: DENIED,
        reasons: &["key_type_not_for_usage"],
    },
    Case {
        name: "fail/p384",
        args: "--address jones@direct.example.com --usage dual --csr p384.csr",
        code: DENIED,
        reasons: &["key_type_unsupported"],
    },
    Case {
        name: "fail/ed25519",
        args: "--address jones@direct.example.com --usage dual --csr ed25519.csr",
        code: DENIED,
        reasons: &["key_type_unsupported"],
    },
    Case {
        name: "fail/unsupported-encryption-key-of-a-pair",
        args: "--address jones@direct.example.com --usage pair --csr good.csr --encryption-csr ed25519.csr",
        code: DENIED,
        reasons: &["key_type_unsupported"],
    },
    Case {
        name: "fail/csr-signature-invalid",
        args: "--address jones@direct.example.com --usage dual --csr tampered.der",
        code: DENIED,
        reasons: &["csr_signature_invalid"],
    },
    Case {
        name: "fail/csr-empty",
        args: "--address jones@direct.example.com --usage dual --csr empty.csr",
        code: DENIED,
        reasons: &["csr_empty"],
    },
    Case {
        name: "fail/csr-random-bytes",
        args: "--address jones@direct.example.com --usage dual --csr random.bin",
        code: DENIED,
        reasons: &["csr_malformed"],
    },
    Case {
        name: "fail/csr-is-certificate",
        args: "--address jones@direct.example.com --usage dual --csr issuing.pem",
        code: DENIED,
        reasons: &["csr_is_certificate"],
    },
    Case {
        name: "fail/csr-is-certificate-der",
        args: "--address jones@direct.example.com --usage dual --csr issuing.der",
        code: DENIED,
        reasons: &["csr_is_certificate"],
    },
    Case {
        name: "fail/csr-is-private-key",
        args: "--address jones@direct.example.com --usage dual --csr good.key",
        code: DENIED,
        reasons: &["csr_is_private_key"],
    },
    Case {
        name: "fail/csr-is-traditional-ec-private-key",
        args: "--address jones@direct.example.com --usage dual --csr ec-traditional.key",
        code: DENIED,
        reasons: &["csr_is_private_key"],
    },
    Case {
        name: "fail/csr-file-missing",
        args: "--address jones@direct.example.com --usage dual --csr missing.csr",
        code: "io_error",
        reasons: &[],
    },
];

/// A CSR openssl makes with a weak digest or a key anchorage never certifies (issue 11,
/// requirement 7): refused for the algorithm, not as a bad signature, with sentences naming
/// what was found.
pub struct AlgorithmCase {
    pub name: &'static str,
    pub key: KeyAlg,
    /// The `openssl req` digest option.
    pub digest: Option<&'static str>,
    /// The signature algorithm openssl must have written (as `openssl req -text` names it), so
    /// that a changed openssl default cannot make a case test something else.
    pub written: &'static str,
    pub reasons: &'static [&'static str],
    /// Words the reason messages must contain between them.
    pub named: &'static [&'static str],
}

pub const ALGORITHM_CASES: &[AlgorithmCase] = &[
    AlgorithmCase {
        name: "fail/rsa-sha1",
        key: KeyAlg::Rsa2048,
        digest: Some("-sha1"),
        written: "sha1WithRSAEncryption",
        reasons: &["signature_algorithm_weak"],
        named: &["sha1WithRSAEncryption"],
    },
    AlgorithmCase {
        name: "fail/rsa-md5",
        key: KeyAlg::Rsa2048,
        digest: Some("-md5"),
        written: "md5WithRSAEncryption",
        reasons: &["signature_algorithm_weak"],
        named: &["md5WithRSAEncryption"],
    },
    AlgorithmCase {
        name: "fail/ecdsa-sha1",
        key: KeyAlg::P256,
        digest: Some("-sha1"),
        written: "ecdsa-with-SHA1",
        reasons: &["signature_algorithm_weak"],
        named: &["ecdsa-with-SHA1"],
    },
    AlgorithmCase {
        name: "fail/dsa-sha1",
        key: KeyAlg::Dsa,
        digest: Some("-sha1"),
        written: "dsaWithSHA1",
        reasons: &["signature_algorithm_weak", "key_type_unsupported"],
        named: &["dsa-with-SHA1", "DSA (1.2.840.10040.4.1)"],
    },
    AlgorithmCase {
        name: "fail/secp256k1",
        key: KeyAlg::Secp256k1,
        digest: None,
        written: "ecdsa-with-SHA256",
        reasons: &["key_type_unsupported"],
        named: &["secp256k1 (1.3.132.0.10)"],
    },
    AlgorithmCase {
        name: "fail/brainpoolP256r1",
        key: KeyAlg::BrainpoolP256r1,
        digest: None,
        written: "ecdsa-with-SHA256",
        reasons: &["key_type_unsupported"],
        named: &["brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7)"],
    },
    AlgorithmCase {
        name: "fail/secp521r1",
        key: KeyAlg::P521,
        digest: None,
        written: "ecdsa-with-SHA256",
        reasons: &["key_type_unsupported"],
        named: &["secp521r1"],
    },
    AlgorithmCase {
        name: "fail/secp256k1-sha1",
        key: KeyAlg::Secp256k1,
        digest: Some("-sha1"),
        written: "ecdsa-with-SHA1",
        reasons: &["signature_algorithm_weak", "key_type_unsupported"],
        named: &["ecdsa-with-SHA1", "secp256k1"],
    },
];

impl AlgorithmCase {
    /// The CSR's file name, made in `dir` and checked to carry `written`.
    pub fn make(&self, dir: &Path) -> String {
        let stem = self.name.trim_start_matches("fail/");
        let csr = harness::openssl_csr(dir, stem, self.key, self.digest);
        let text = tools::run_in(dir, "openssl", &["req", "-in", &csr, "-noout", "-text"]);
        text.assert_success("openssl req -text");
        assert!(
            text.stdout
                .contains(&format!("Signature Algorithm: {}", self.written)),
            "{}: openssl did not sign with {}: {}",
            self.name,
            self.written,
            text.stdout
        );
        csr
    }
}

#[test]
fn request_rules_refuse_and_store_nothing() {
    let ca = Ca::init(&[DOMAIN]);
    fixtures(&ca);
    run_cases(&ca, REQUEST_CASES);
}

#[test]
fn csr_rules_refuse_and_store_nothing() {
    let ca = Ca::init(&[DOMAIN]);
    fixtures(&ca);
    run_cases(&ca, CSR_CASES);
}

/// Weak digests and uncertifiable keys are named before the proof of possession is checked,
/// for a single CSR and for the encryption CSR of a pair; a bit flipped in a good CSR's
/// signature is still `csr_signature_invalid` (the `fail/csr-signature-invalid` case above).
#[test]
fn csr_algorithms_refuse_with_precise_codes_and_store_nothing() {
    let ca = Ca::init(&[DOMAIN]);
    ca.csr("good", KeyAlg::Rsa2048);
    for case in ALGORITHM_CASES {
        let csr = case.make(ca.dir());
        let args = format!("--address jones@direct.example.com --usage dual --csr {csr}");
        let err = assert_refused(&ca, case.name, &args, DENIED, case.reasons);
        let messages = err["reasons"].to_string();
        for word in case.named {
            assert!(
                messages.contains(word),
                "{}: names {word}: {err}",
                case.name
            );
        }
        if case.reasons.contains(&"key_type_unsupported") {
            assert!(
                messages.contains("profile 'address' accepts"),
                "{}: says what the profile accepts: {err}",
                case.name
            );
        }
    }
    let args = "--address jones@direct.example.com --usage pair --csr good.csr --encryption-csr rsa-md5.csr";
    let err = assert_refused(
        &ca,
        "fail/pair-md5-encryption-csr",
        args,
        DENIED,
        &["signature_algorithm_weak"],
    );
    assert_eq!(err["reasons"][0]["field"], "encryption_csr", "{err}");
}

/// Two holders whose DNS owner names coincide cannot both be published (spec §3): the second
/// is refused, whichever comes first. Re-issuing to the same holder is not a collision.
#[test]
fn owner_name_collision_dotted_local_part_first() {
    let ca = Ca::init(&[DOMAIN, "b.direct.example.com"]);
    let csr = ca.csr("key", KeyAlg::Rsa2048);
    issue_ok(&ca, "--address a.b@direct.example.com", &csr);
    issue_ok(&ca, "--domain b.direct.example.com", &csr);
    // The same holder again, spelled in another case: not a collision.
    issue_ok(&ca, "--address A.B@Direct.Example.com", &csr);
    refuse_collision(
        &ca,
        "fail/collision-subdomain-address",
        "--address a@B.direct.example.com",
        &csr,
    );
    refuse_collision(
        &ca,
        "fail/collision-address-vs-domain",
        "--address b@direct.example.com",
        &csr,
    );
}

#[test]
fn owner_name_collision_subdomain_address_first() {
    let ca = Ca::init(&[DOMAIN, "b.direct.example.com"]);
    let csr = ca.csr("key", KeyAlg::Rsa2048);
    issue_ok(&ca, "--address a@b.direct.example.com", &csr);
    issue_ok(&ca, "--address b@direct.example.com", &csr);
    refuse_collision(
        &ca,
        "fail/collision-dotted-local-part",
        "--address a.b@direct.example.com",
        &csr,
    );
    refuse_collision(
        &ca,
        "fail/collision-domain-vs-address",
        "--domain b.direct.example.com",
        &csr,
    );
}

fn refuse_collision(ca: &Ca, name: &str, holder: &str, _csr: &str) {
    // A key of its own, so the only rule broken is the collision.
    let csr = fresh_csr(ca);
    let args = format!("{holder} --usage dual --csr {csr}");
    assert_refused(ca, name, &args, DENIED, &["owner_name_collision"]);
}

/// One key per holder (a key certified for one holder is refused for another).
fn fresh_csr(ca: &Ca) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ca.csr(&format!("k{n}"), KeyAlg::Rsa2048)
}

fn issue_ok(ca: &Ca, holder: &str, _csr: &str) {
    let csr = fresh_csr(ca);
    let args = format!("{holder} --usage dual --csr {csr}");
    ca.issue_json(&args.split_whitespace().collect::<Vec<_>>());
}

fn run_cases(ca: &Ca, cases: &[Case]) {
    for c in cases {
        assert_refused(ca, c.name, c.args, c.code, c.reasons);
    }
    // Control: the fixtures and the store comparison are able to tell a success.
    let before = ca.state();
    ca.issue_json(&[
        "--address",
        "jones@direct.example.com",
        "--usage",
        "dual",
        "--csr",
        "good.csr",
        "--out",
        "out.pem",
    ]);
    assert!(ca.path("out.pem").is_file());
    assert_ne!(
        ca.state(),
        before,
        "ok/control: the store must show an issuance"
    );
}

/// Runs `cert issue ARGS... --out out.pem -o json` (ARGS split at spaces), checks the
/// refusal, and that nothing changed.
fn assert_refused(
    ca: &Ca,
    name: &str,
    args: &str,
    code: &str,
    reasons: &[&str],
) -> serde_json::Value {
    let before: StoreState = ca.state();
    let mut argv: Vec<&str> = vec!["cert", "issue"];
    argv.extend(args.split_whitespace());
    argv.extend(["--out", "out.pem"]);
    let err = ca.json_err(&argv);

    assert_eq!(err["code"], code, "{name}: {err}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{name}: a message: {err}"
    );
    let listed = err["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: reasons must be an array: {err}"));
    let mut got: Vec<&str> = listed
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default())
        .collect();
    got.sort_unstable();
    let mut want = reasons.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{name}: reason codes in {err}");
    for r in listed {
        assert!(
            r["message"].as_str().is_some_and(|m| !m.is_empty())
                && r["field"].as_str().is_some_and(|f| !f.is_empty()),
            "{name}: every reason has a message and a field: {r}"
        );
    }

    assert_eq!(ca.state(), before, "{name}: the store changed");
    for file in ["out.pem", "jones.p12"] {
        assert!(!ca.path(file).exists(), "{name}: wrote {file}");
    }
    err
}

/// The inputs the cases name, in the CA's directory.
fn fixtures(ca: &Ca) {
    let good = ca.csr("good", KeyAlg::Rsa2048);
    ca.csr("rsa1024", KeyAlg::Rsa1024);
    ca.csr("p384", KeyAlg::P384);
    ca.csr("p256", KeyAlg::P256);
    ca.csr("ed25519", KeyAlg::Ed25519);

    // A DER CSR whose signature no longer matches: its last byte lies in the signature.
    let mut der = pem::parse(harness::read(&ca.path(&good)))
        .unwrap()
        .into_contents();
    *der.last_mut().unwrap() ^= 0x01;
    std::fs::write(ca.path("tampered.der"), der).unwrap();

    std::fs::write(ca.path("empty.csr"), b"").unwrap();
    // Fixed "random" bytes: neither PEM nor a DER SEQUENCE.
    let noise: Vec<u8> = (0u32..256)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    std::fs::write(ca.path("random.bin"), noise).unwrap();

    let chain = ca.chain();
    std::fs::write(ca.path("issuing.der"), harness::cert_der(&chain.issuing)).unwrap();
    tools::run_in(
        ca.dir(),
        "openssl",
        &[
            "pkey",
            "-in",
            "p384.key",
            "-traditional",
            "-out",
            "ec-traditional.key",
        ],
    )
    .assert_success("openssl pkey -traditional");
    assert!(
        String::from_utf8_lossy(&harness::read(&ca.path("ec-traditional.key")))
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );

    // 7 characters and the newline an editor adds: too short once the newline is trimmed.
    std::fs::write(ca.path("short-password.txt"), "short12\n").unwrap();
}
