//! Issuance through the real binary, judged by independent implementations: every profile
//! (address, domain) × usage (dual, signing, encryption, pair) × key source (RSA-2048 CSR,
//! P-256 CSR, server-generated key) is checked with `openssl verify` for the S/MIME purposes
//! and for revocation by CRL, with pkilint for RFC 5280, with `openssl pkcs12 -legacy` for the
//! PKCS#12 files, and field by field against the profile of spec §2.
//!
//! Each matrix cell is its own `#[test]` with its own CA, so cells run in parallel and a
//! failure names the cell.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::public_key::PublicKey;

use crate::harness::{self, Ca, Chain, KeyAlg, DOMAIN, PUBLIC_URL};
use crate::tools::{self, ToolOutput};

/// The default policy OIDs of both Direct profiles: DirectTrust CP 1.3, LoA 3, covered entity.
const DEFAULT_POLICIES: [&str; 3] = [
    "1.3.6.1.4.1.41179.0.1.3",
    "1.3.6.1.4.1.41179.1.3",
    "1.3.6.1.4.1.41179.2.1",
];
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";
/// Spec §2: at most 3 years.
const MAX_VALIDITY_DAYS: i64 = 3 * 365;
/// A password a registrar might choose (written to its file with the trailing newline an
/// editor leaves, which the CLI must not count as part of it).
const P12_PASSWORD: &str = "registrar-chosen PKCS#12 password";
/// pkilint's confirmation that a key identifier is RFC 7093 method 1 (spec §2, AKI / SKI).
const SKI_METHOD_1: &str = "pkix.subject_key_identifier_rfc7093_method_1_identified";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    Address,
    Domain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    RsaCsr,
    /// P-256 for certificates that only sign; RSA-2048 for those that encrypt, because RFC
    /// 8813 forbids keyEncipherment for EC keys (the CA refuses that combination).
    P256Csr,
    Generated,
}

/// What one certificate is for (a pair request yields Signing then Encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertUsage {
    Dual,
    Signing,
    Encryption,
}

impl CertUsage {
    fn for_request(usage: &str) -> &'static [CertUsage] {
        match usage {
            "dual" => &[CertUsage::Dual],
            "signing" => &[CertUsage::Signing],
            "encryption" => &[CertUsage::Encryption],
            "pair" => &[CertUsage::Signing, CertUsage::Encryption],
            other => panic!("no usage {other}"),
        }
    }

    fn signs(self) -> bool {
        self != CertUsage::Encryption
    }

    fn encrypts(self) -> bool {
        self != CertUsage::Signing
    }
}

/// One issued certificate with what it must contain.
#[derive(Debug)]
struct Issued {
    /// A PEM file holding just this certificate.
    pem: PathBuf,
    /// As printed by `cert issue -o json`.
    serial: String,
    usage: CertUsage,
    /// The lower-case address or domain the SAN must carry.
    holder: String,
    /// The private key (PEM) the certificate's public key must match: the CSR's key, or the
    /// one extracted from the PKCS#12.
    key: PathBuf,
}

// ---- the matrix ------------------------------------------------------------------------

#[test]
fn address_certs_from_rsa_csrs() {
    issue_every_usage(Binding::Address, Keys::RsaCsr);
}

#[test]
fn address_certs_from_p256_csrs() {
    issue_every_usage(Binding::Address, Keys::P256Csr);
}

#[test]
fn address_certs_with_generated_keys() {
    issue_every_usage(Binding::Address, Keys::Generated);
}

#[test]
fn domain_certs_from_rsa_csrs() {
    issue_every_usage(Binding::Domain, Keys::RsaCsr);
}

#[test]
fn domain_certs_from_p256_csrs() {
    issue_every_usage(Binding::Domain, Keys::P256Csr);
}

#[test]
fn domain_certs_with_generated_keys() {
    issue_every_usage(Binding::Domain, Keys::Generated);
}

/// Issues dual, signing, encryption and pair for one binding and key source, checks every
/// certificate, then revokes the dual-use one and checks the CRL says so (and only that).
fn issue_every_usage(binding: Binding, keys: Keys) {
    let ca = Ca::init(&[DOMAIN]);
    let chain = ca.chain();
    let issuing_der = harness::cert_der(&chain.issuing);
    let (_, issuing) = X509Certificate::from_der(&issuing_der).unwrap();

    let mut issued = Vec::new();
    for usage in ["dual", "signing", "encryption", "pair"] {
        issued.extend(issue(&ca, binding, keys, usage));
    }
    assert_eq!(issued.len(), 5, "dual + signing + encryption + a pair");

    for cert in &issued {
        let what = format!("{binding:?}/{keys:?}/{:?} {}", cert.usage, cert.serial);
        check_profile(cert, &issuing, binding, keys, &what);
        check_purposes(cert, &chain, &what);
        check_pkilint(cert, &chain, keys, &what);
        assert_eq!(
            public_key_of_private(&cert.key),
            public_key_of_cert(&cert.pem),
            "{what}: the certificate does not carry the subscriber's key"
        );
    }
    let listed = statuses(&ca);
    assert_eq!(listed.len(), issued.len(), "cert list: {listed:?}");
    assert!(listed.values().all(|s| s == "valid"), "{listed:?}");

    // Revoke one; the exported CRL must make OpenSSL reject it and only it.
    let revoked = &issued[0];
    assert_eq!(revoked.usage, CertUsage::Dual);
    ca.json(&[
        "cert",
        "revoke",
        &revoked.serial,
        "--reason",
        "key-compromise",
    ]);
    let (_, crl_pem) = ca.crl("issuing");
    let listed = statuses(&ca);
    for cert in &issued {
        let what = format!("{binding:?}/{keys:?}/{:?} after revocation", cert.usage);
        let purpose = if cert.usage.signs() {
            "smimesign"
        } else {
            "smimeencrypt"
        };
        let out = verify(&chain, &cert.pem, purpose, Some(&crl_pem));
        if cert.serial == revoked.serial {
            assert_verify_error(&out, 23, "certificate revoked", &what);
            assert_eq!(listed[&cert.serial], "revoked", "{what}");
        } else {
            out.assert_success(&format!("{what}: openssl verify -crl_check"));
            assert_eq!(listed[&cert.serial], "valid", "{what}");
        }
    }
}

/// `cert issue` for one usage; returns one `Issued` per certificate, in output order.
fn issue(ca: &Ca, binding: Binding, keys: Keys, usage: &str) -> Vec<Issued> {
    // Mixed case in, lower case in the certificate.
    let (flag, input, holder) = match binding {
        Binding::Address => (
            "--address",
            format!("{}.Holder@Direct.Example.COM", usage.to_uppercase()),
            format!("{usage}.holder@{DOMAIN}"),
        ),
        Binding::Domain => ("--domain", "Direct.Example.COM".into(), DOMAIN.into()),
    };
    let wanted = CertUsage::for_request(usage);
    let out = format!("{usage}.pem");
    let mut args: Vec<String> = [flag, &input, "--usage", usage, "--out", &out]
        .map(String::from)
        .into();

    // Where each certificate's private key ends up, in output order.
    let key_files: Vec<PathBuf>;
    let mut p12s: Vec<(String, Option<&str>)> = Vec::new();
    match keys {
        Keys::RsaCsr | Keys::P256Csr => {
            let stems: Vec<String> = if wanted.len() == 2 {
                vec![format!("{usage}-signing"), format!("{usage}-encryption")]
            } else {
                vec![usage.to_string()]
            };
            for ((stem, flag), cert_usage) in
                stems.iter().zip(["--csr", "--encryption-csr"]).zip(wanted)
            {
                let alg = if keys == Keys::P256Csr && !cert_usage.encrypts() {
                    KeyAlg::P256
                } else {
                    KeyAlg::Rsa2048
                };
                let csr = ca.csr(stem, alg);
                args.extend([flag.to_string(), csr]);
            }
            key_files = stems.iter().map(|s| ca.path(&format!("{s}.key"))).collect();
        }
        Keys::Generated => {
            let p12 = format!("{usage}.p12");
            args.extend(["--keygen".into(), "--p12-out".into(), p12]);
            // Half the requests bring their own password, half get a generated one.
            let own_password = matches!(usage, "dual" | "encryption");
            if own_password {
                std::fs::write(ca.path("pw.txt"), format!("{P12_PASSWORD}\n")).unwrap();
                args.extend(["--p12-password-file".into(), "pw.txt".into()]);
            }
            let names: Vec<String> = if wanted.len() == 2 {
                vec![
                    format!("{usage}-signing.p12"),
                    format!("{usage}-encryption.p12"),
                ]
            } else {
                vec![format!("{usage}.p12")]
            };
            p12s = names
                .into_iter()
                .map(|n| (n, own_password.then_some(P12_PASSWORD)))
                .collect();
            key_files = p12s
                .iter()
                .map(|(n, _)| ca.path(&format!("{n}.key.pem")))
                .collect();
        }
    }

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let json = ca.issue_json(&args);
    let serials = json_strings(&json["serials"]);
    assert_eq!(serials.len(), wanted.len(), "{usage}: serials in {json}");
    assert_eq!(
        json["serial"], json["serials"][0],
        "{usage}: serial is the first"
    );

    let pems = harness::split_certs(&ca.path(&out), usage);
    assert_eq!(pems.len(), wanted.len(), "{usage}: certificates in --out");

    if keys == Keys::Generated {
        let files = json_strings(&json["p12_files"]);
        let names: Vec<&str> = p12s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(files, names, "{usage}: PKCS#12 files");
        let generated = json["p12_password"].as_str();
        for (((name, own), pem), key) in p12s.iter().zip(&pems).zip(&key_files) {
            let password = match (own, generated) {
                (Some(own), None) => own.to_string(),
                (None, Some(generated)) => {
                    assert!(generated.len() >= 20, "a generated password is long");
                    generated.to_string()
                }
                _ => panic!("{usage}: p12_password must be shown only when generated: {json}"),
            };
            check_pkcs12(ca, name, &password, pem, key);
        }
    } else {
        assert!(
            json["p12_password"].is_null(),
            "{usage}: no PKCS#12 for a CSR"
        );
    }

    pems.into_iter()
        .zip(serials)
        .zip(wanted)
        .zip(key_files)
        .map(|(((pem, serial), usage), key)| Issued {
            pem,
            serial,
            usage: *usage,
            holder: holder.clone(),
            key,
        })
        .collect()
}

// ---- checks ----------------------------------------------------------------------------

/// The profile of spec §2, field by field.
fn check_profile(
    cert: &Issued,
    issuing: &X509Certificate<'_>,
    binding: Binding,
    keys: Keys,
    what: &str,
) {
    let der = harness::cert_der(&cert.pem);
    let (rest, x) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty(), "{what}: trailing bytes");
    assert_eq!(x.version(), X509Version::V3, "{what}");

    let serial = x.raw_serial();
    assert_eq!(serial.len(), 16, "{what}: serial is 16 bytes");
    assert!(serial[0] & 0x80 == 0, "{what}: serial is positive");
    assert_eq!(hex::encode(serial), cert.serial, "{what}: JSON serial");

    assert_eq!(
        x.signature_algorithm.algorithm.to_id_string(),
        SHA256_WITH_RSA,
        "{what}: signed by the RSA issuing CA with SHA-256"
    );
    assert_eq!(x.issuer().as_raw(), issuing.subject().as_raw(), "{what}");

    let (nb, na) = (
        x.validity().not_before.to_datetime(),
        x.validity().not_after.to_datetime(),
    );
    let now = OffsetDateTime::now_utc();
    assert!(nb <= now && now < na, "{what}: valid now ({nb} .. {na})");
    assert!(
        (na - nb).whole_days() <= MAX_VALIDITY_DAYS,
        "{what}: validity {nb} .. {na} exceeds 3 years"
    );
    assert!(na <= issuing.validity().not_after.to_datetime(), "{what}");

    match (keys, x.public_key().parsed().unwrap()) {
        (Keys::RsaCsr | Keys::Generated, PublicKey::RSA(rsa)) => {
            assert_eq!(rsa.key_size(), 2048, "{what}: RSA-2048")
        }
        (Keys::P256Csr, PublicKey::RSA(rsa)) if cert.usage.encrypts() => {
            assert_eq!(rsa.key_size(), 2048, "{what}: RSA-2048")
        }
        (Keys::P256Csr, PublicKey::EC(_)) if !cert.usage.encrypts() => assert_eq!(
            x.public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .as_deref(),
            Some("1.2.840.10045.3.1.7"),
            "{what}: P-256"
        ),
        (_, other) => panic!("{what}: unexpected key {other:?}"),
    }

    let cns: Vec<&str> = x
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cns, [cert.holder.as_str()], "{what}: subject CN");
    for email in x.subject().iter_email() {
        assert_eq!(email.as_str().unwrap(), cert.holder, "{what}: emailAddress");
    }

    let san = x.subject_alternative_name().unwrap().expect("SAN");
    match (binding, san.value.general_names.as_slice()) {
        (Binding::Address, [GeneralName::RFC822Name(a)]) => {
            assert_eq!(*a, cert.holder, "{what}: SAN rfc822Name")
        }
        (Binding::Domain, [GeneralName::DNSName(d)]) => {
            assert_eq!(*d, cert.holder, "{what}: SAN dNSName")
        }
        (_, names) => panic!("{what}: SAN must be exactly one {binding:?} name: {names:?}"),
    }

    let ku = x.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical, "{what}: keyUsage is critical");
    let ku = ku.value;
    assert_eq!(
        (ku.digital_signature(), ku.key_encipherment()),
        (cert.usage.signs(), cert.usage.encrypts()),
        "{what}: keyUsage {ku:?}"
    );
    assert!(
        !(ku.non_repudiation()
            || ku.data_encipherment()
            || ku.key_agreement()
            || ku.key_cert_sign()
            || ku.crl_sign()),
        "{what}: keyUsage {ku:?} has extra bits"
    );

    let eku = x.extended_key_usage().unwrap().expect("extKeyUsage");
    assert!(!eku.critical, "{what}: extKeyUsage is not critical");
    let e = eku.value;
    assert!(
        e.email_protection
            && !(e.any
                || e.server_auth
                || e.client_auth
                || e.code_signing
                || e.time_stamping
                || e.ocsp_signing)
            && e.other.is_empty(),
        "{what}: extKeyUsage must be emailProtection only: {e:?}"
    );

    let bc = x.basic_constraints().unwrap().expect("basicConstraints");
    assert!(!bc.value.ca, "{what}: CA:FALSE");

    let mut policies = None;
    let mut cdp = None;
    let mut aia = None;
    let mut aki = None;
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => {
                policies = Some(
                    p.iter()
                        .map(|i| i.policy_id.to_id_string())
                        .collect::<Vec<_>>(),
                )
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                cdp = Some(
                    points
                        .iter()
                        .map(|p| match &p.distribution_point {
                            Some(DistributionPointName::FullName(names)) => uris(names),
                            other => panic!("{what}: CDP without a full name: {other:?}"),
                        })
                        .collect::<Vec<_>>(),
                )
            }
            ParsedExtension::AuthorityInfoAccess(a) => {
                aia = Some(
                    a.iter()
                        .map(|d| {
                            (
                                d.access_method.to_id_string(),
                                uris(std::slice::from_ref(&d.access_location)),
                            )
                        })
                        .collect::<Vec<_>>(),
                )
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    assert_eq!(
        policies.expect("certificatePolicies"),
        DEFAULT_POLICIES,
        "{what}: policy OIDs"
    );
    assert_eq!(
        cdp.expect("cRLDistributionPoints"),
        [[format!("{PUBLIC_URL}/crl/issuing.crl")]],
        "{what}: CRL distribution point"
    );
    assert_eq!(
        aia.expect("authorityInfoAccess"),
        [(
            CA_ISSUERS.to_string(),
            vec![format!("{PUBLIC_URL}/ca/issuing.cer")]
        )],
        "{what}: AIA caIssuers"
    );
    assert_eq!(
        subject_key_id(&x).map(|k| k.len()),
        Some(20),
        "{what}: SKI of 160 bits"
    );
    assert_eq!(
        aki,
        subject_key_id(issuing),
        "{what}: AKI is the issuing CA's SKI"
    );
}

fn uris(names: &[GeneralName<'_>]) -> Vec<String> {
    names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => u.to_string(),
            other => panic!("not a URI: {other:?}"),
        })
        .collect()
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn verify(chain: &Chain, cert: &Path, purpose: &str, crl: Option<&Path>) -> ToolOutput {
    tools::openssl_verify(&chain.root, Some(&chain.issuing), cert, purpose, crl)
}

/// OpenSSL's S/MIME purposes follow the keyUsage bits: smimesign needs digitalSignature (or
/// nonRepudiation), smimeencrypt needs keyEncipherment; anything else is error 26.
fn check_purposes(cert: &Issued, chain: &Chain, what: &str) {
    for (purpose, allowed) in [
        ("smimesign", cert.usage.signs()),
        ("smimeencrypt", cert.usage.encrypts()),
    ] {
        let out = verify(chain, &cert.pem, purpose, None);
        if allowed {
            out.assert_success(&format!("{what}: openssl verify -purpose {purpose}"));
        } else {
            assert_verify_error(&out, 26, "unsuitable certificate purpose", what);
        }
    }
}

fn assert_verify_error(out: &ToolOutput, code: u32, text: &str, what: &str) {
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !out.status.success()
            && all.contains(&format!("error {code} at 0 depth"))
            && all.contains(text),
        "{what}: openssl verify should fail with error {code} ({text}): {}",
        out.describe()
    );
}

fn check_pkilint(cert: &Issued, chain: &Chain, keys: Keys, what: &str) {
    let out = tools::pkilint_cert(&cert.pem);
    let _ = keys;
    assert_pkilint_findings(&out, &[], what);
    tools::assert_pkilint_chain_clean(
        &tools::pkilint_chain(&chain.issuing, &cert.pem),
        &format!("{what}: issuing CA -> certificate"),
    );
}

/// Like `tools::assert_pkilint_clean`, but with the findings above INFO that are expected
/// (only ever a known defect), and insisting on the RFC 7093 method 1 key identifier.
fn assert_pkilint_findings(out: &ToolOutput, expected: &[&str], what: &str) {
    if expected.is_empty() {
        tools::assert_pkilint_clean(out, what);
    }
    let findings = tools::pkilint_findings(out);
    assert_eq!(
        out.status.code(),
        Some(findings.len().min(255) as i32),
        "pkilint on {what}: exit status does not match the findings: {}",
        out.describe()
    );
    let above_info: Vec<String> = findings
        .iter()
        .filter(|f| f.severity != "INFO")
        .map(|f| format!("{} ({})", f.code, f.severity))
        .collect();
    assert_eq!(
        above_info,
        expected,
        "pkilint on {what}: {}",
        out.describe()
    );
    assert!(
        findings.iter().any(|f| f.code == SKI_METHOD_1),
        "pkilint on {what}: SKI is not RFC 7093 method 1: {}",
        out.describe()
    );
}

/// Opens a PKCS#12 the way OpenSSL 3 users must (`-legacy`), checks the algorithms spec §6
/// asks for, that the password matters, that it holds the issued certificate, and extracts
/// its key to `key_out`.
fn check_pkcs12(ca: &Ca, name: &str, password: &str, cert_pem: &Path, key_out: &Path) {
    let pass_file = ca.path(&format!("{name}.pass"));
    std::fs::write(&pass_file, password).unwrap();
    let pass_arg = format!("file:{}", pass_file.display());
    let p12 = ca.path(name);
    let p12 = p12.to_str().unwrap();
    let key_out = key_out.to_str().unwrap();
    let pkcs12 = |extra: &[&str]| {
        let mut args = vec!["pkcs12", "-legacy", "-in", p12, "-passin", &pass_arg];
        args.extend_from_slice(extra);
        tools::run("openssl", &args)
    };

    let info = pkcs12(&["-info", "-noout"]);
    info.assert_success(&format!("openssl pkcs12 -legacy -info {name}"));
    for alg in [
        "MAC: sha1",
        "pbeWithSHA1And40BitRC2-CBC",
        "pbeWithSHA1And3-KeyTripleDES-CBC",
    ] {
        assert!(
            info.stderr.contains(alg) || info.stdout.contains(alg),
            "{name}: expected the legacy algorithm {alg}: {}",
            info.describe()
        );
    }

    pkcs12(&["-nodes", "-nocerts", "-out", key_out]).assert_success("extract the key");
    let leaf = ca.path(&format!("{name}.cert.pem"));
    pkcs12(&["-nokeys", "-clcerts", "-out", leaf.to_str().unwrap()])
        .assert_success("extract the certificate");
    assert_eq!(
        harness::cert_der(&leaf),
        harness::cert_der(cert_pem),
        "{name}: the PKCS#12 holds the issued certificate"
    );

    let wrong = tools::run(
        "openssl",
        &[
            "pkcs12",
            "-legacy",
            "-in",
            p12,
            "-passin",
            "pass:not the password",
            "-noout",
        ],
    );
    assert!(
        !wrong.status.success(),
        "{name}: opened with a wrong password"
    );
}

fn public_key_of_private(key: &Path) -> String {
    let out = tools::run(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    );
    out.assert_success("openssl pkey -pubout");
    out.stdout
}

fn public_key_of_cert(cert: &Path) -> String {
    let out = tools::run(
        "openssl",
        &["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"],
    );
    out.assert_success("openssl x509 -pubkey");
    out.stdout
}

/// Serial -> status, from `cert list -o json`.
fn statuses(ca: &Ca) -> HashMap<String, String> {
    let list = ca.json(&["cert", "list"]);
    list.as_array()
        .unwrap_or_else(|| panic!("cert list -o json: {list}"))
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("serial"), field("status"))
        })
        .collect()
}

/// `cert show SERIAL -o json` → status.
fn cert_status(ca: &Ca, serial: &str) -> String {
    let shown = ca.json(&["cert", "show", serial]);
    shown["status"].as_str().unwrap_or_default().to_string()
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

// ---- the CA side -----------------------------------------------------------------------

/// Both CA certificates, the root→issuing link and both CRLs (one with a revocation) are
/// RFC 5280-clean, and a full-chain CRL check (`-crl_check_all`) works with them.
#[test]
fn ca_certificates_and_crls_are_pkilint_clean() {
    let ca = Ca::init(&[DOMAIN]);
    check_hierarchy(&ca);
}

/// `init --root-key rsa4096` yields the same clean hierarchy.
#[test]
fn rsa4096_root_hierarchy_is_pkilint_clean() {
    let ca = Ca::init_with(&[DOMAIN], &["--root-key", "rsa4096"]);
    assert_eq!(ca.init["ca"]["root_key"], "RSA-4096", "{}", ca.init);
    check_hierarchy(&ca);
}

fn check_hierarchy(ca: &Ca) {
    let chain = ca.chain();
    for (name, pem) in [("root", &chain.root), ("issuing", &chain.issuing)] {
        assert_pkilint_findings(&tools::pkilint_cert(pem), &[], &format!("{name} CA"));
    }
    tools::assert_pkilint_chain_clean(
        &tools::pkilint_chain(&chain.root, &chain.issuing),
        "root CA -> issuing CA",
    );

    let csr = ca.csr("jones", KeyAlg::Rsa2048);
    let json = ca.issue_json(&[
        "--address",
        "jones@direct.example.com",
        "--usage",
        "dual",
        "--csr",
        &csr,
        "--out",
        "jones.pem",
    ]);
    let serial = json["serial"].as_str().unwrap().to_string();
    let jones = ca.path("jones.pem");
    assert_pkilint_findings(&tools::pkilint_cert(&jones), &[], "jones");
    tools::assert_pkilint_chain_clean(
        &tools::pkilint_chain(&chain.issuing, &jones),
        "issuing CA -> jones",
    );

    // Full path with both CRLs: the root CRL vouches for the issuing CA.
    let crl_check_all = |label: &str| {
        let (_, issuing_crl) = ca.crl("issuing");
        let (_, root_crl) = ca.crl("root");
        let both = ca.path(&format!("both-{label}.crl.pem"));
        let text = [harness::read(&issuing_crl), harness::read(&root_crl)].concat();
        std::fs::write(&both, text).unwrap();
        let args = [
            "verify",
            "-x509_strict",
            "-purpose",
            "smimesign",
            "-crl_check_all",
            "-CAfile",
            chain.root.to_str().unwrap(),
            "-untrusted",
            chain.issuing.to_str().unwrap(),
            "-CRLfile",
            both.to_str().unwrap(),
            jones.to_str().unwrap(),
        ];
        tools::run("openssl", &args)
    };
    crl_check_all("before").assert_success("openssl verify -crl_check_all");

    ca.json(&["cert", "revoke", &serial, "--reason", "key-compromise"]);
    assert_verify_error(
        &crl_check_all("after"),
        23,
        "certificate revoked",
        "jones after revocation",
    );

    for name in ["issuing", "root"] {
        let (der, pem) = ca.crl(name);
        tools::assert_pkilint_crl_clean(&tools::pkilint_crl(&der), &format!("{name} CRL"));
        let text = tools::run(
            "openssl",
            &["crl", "-in", pem.to_str().unwrap(), "-noout", "-text"],
        );
        text.assert_success("openssl crl -text");
        if name == "issuing" {
            assert!(
                text.stdout.contains(&serial.to_uppercase())
                    && text.stdout.contains("Key Compromise"),
                "the issuing CRL lists {serial} with its reason: {}",
                text.stdout
            );
        } else {
            assert!(
                text.stdout.contains("No Revoked Certificates"),
                "{}",
                text.stdout
            );
        }
    }
}

/// Zero configuration: no passphrase anywhere, so `init` writes an evaluation passphrase
/// file into the data directory and later commands unlock the CA with it.
#[test]
fn evaluation_passphrase_needs_no_configuration() {
    let ca = Ca::init_evaluation(&[DOMAIN]);
    let source = ca.init["passphrase_source"].as_str().unwrap_or_default();
    assert!(source.starts_with("EVALUATION"), "{}", ca.init);
    assert!(ca.data_dir().join("evaluation-passphrase").is_file());

    let json = ca.issue_json(&[
        "--domain",
        DOMAIN,
        "--usage",
        "dual",
        "--keygen",
        "--p12-out",
        "org.p12",
        "--out",
        "org.pem",
    ]);
    assert!(json["p12_password"].is_string(), "{json}");
    let chain = ca.chain();
    for purpose in ["smimesign", "smimeencrypt"] {
        verify(&chain, &ca.path("org.pem"), purpose, None)
            .assert_success(&format!("evaluation CA certificate, {purpose}"));
    }
    let serial = json["serial"].as_str().unwrap();
    ca.json(&["cert", "revoke", serial, "--reason", "key-compromise"]);
    assert_eq!(cert_status(&ca, serial), "revoked");
    let audit = ca.json(&["audit", "verify"]);
    assert_eq!(audit["ok"], true, "{audit}");
}
