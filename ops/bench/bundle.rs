//! Trust-bundle assembly and signing (`anchorage::bundle`) for a bundle of 10,000 anchors.
//!
//!   cargo bench --bench bundle
//!
//! Set-up (not timed by criterion): 10,000 distinct, realistic anchors: self-signed CA
//! certificates with RSA-2048 keys and RSA signatures (8 keys shared between the anchors, each
//! certificate with its own subject and serial, a six-attribute subject, SKI, key usage,
//! basic constraints, CRL distribution point, AIA and certificate policies: ~1.2 KB each), a
//! root + issuing CA made by `ca::create_hierarchy`, and an RSA-2048 bundle signer issued by it.
//!
//! Groups (single-threaded; target: build + sign <= 150 ms for 10,000 anchors):
//! - `bundle_10000/build_p7b`: `build_p7b` from the anchors in a shuffled order (sort, de-duplicate,
//!   assemble the DER).
//! - `bundle_10000/sign_p7m`: `sign_p7m` over that `.p7b` (SHA-256 of ~12 MB, one RSA-2048
//!   signature, assembly).
//! - `bundle_10000/build_and_sign`: both, the figure for the target.
//! - `bundle_10000/certificates_in`: reading the `.p7b` back (each certificate decoded by
//!   x509-cert).
//!
//! For comparison, the same anchors through OpenSSL, timed as whole processes (best of 3,
//! printed to stderr): `openssl crl2pkcs7 -nocrl -certfile all.pem -outform DER`, and
//! `openssl cms -sign -binary -nodetach -outform DER` over our `.p7b`.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it uses 200 anchors, so the
//! untimed single pass stays quick.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::OffsetDateTime;

use anchorage::bundle::{build_p7b, certificates_in, sign_p7m};
use anchorage::ca::{self, EndEntitySpec, HierarchyOptions, IssuingKeyAlgorithm, RootKeyAlgorithm};
use anchorage::keyseal::Passphrase;
use anchorage::model::{CertUsage, HealthDomain, Holder};
use anchorage::x509;

const KEYS: usize = 8;

fn anchor_count() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        200
    }
}

/// One realistic anchor: a community member's CA certificate.
fn anchor(i: usize, key: &KeyPair) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "Massachusetts");
    dn.push(DnType::LocalityName, "Boston");
    dn.push(
        DnType::OrganizationName,
        format!("Health Information Service Provider {i}"),
    );
    dn.push(DnType::OrganizationalUnitName, "Direct Trust Anchors");
    dn.push(DnType::CommonName, format!("HISP {i} Direct Root CA"));
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(SerialNumber::from_slice(
        &ca::random_serial().unwrap().to_bytes(),
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method =
        KeyIdMethod::PreSpecified(x509::key_identifier_of_bits(key.der_bytes()));
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("http://pki.hisp{i}.example.org/crl/root.crl")],
    }];
    params.custom_extensions = vec![
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            x509::ca_issuers_der(&format!("http://pki.hisp{i}.example.org/ca/root.cer")).unwrap(),
        ),
        CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            x509::certificate_policies_der(&[
                "1.3.6.1.4.1.41179.0.1.2".into(),
                "1.3.6.1.4.1.41179.1.3".into(),
                "1.3.6.1.4.1.41179.2.3".into(),
            ])
            .unwrap(),
        ),
    ];
    params.self_signed(key).unwrap().der().to_vec()
}

/// `n` anchors, signed on every core.
fn anchors(n: usize) -> Vec<Vec<u8>> {
    let keys: Vec<KeyPair> = (0..KEYS)
        .map(|_| {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let keys = &keys;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| (i, anchor(i, &keys[i % KEYS])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Vec<u8>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, c)| c).collect()
    })
}

struct Signer {
    cert: Vec<u8>,
    chain: Vec<Vec<u8>>,
    key: KeyPair,
}

fn signer() -> Signer {
    let passphrase = Passphrase::new("bundle benchmark passphrase 0123".into()).unwrap();
    let now = OffsetDateTime::now_utc();
    let (root, issuing) = ca::create_hierarchy(
        &HierarchyOptions {
            organization: "Bundle Bench".into(),
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
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    let cert = issuing_ca
        .issue(
            &EndEntitySpec {
                serial: ca::random_serial().unwrap(),
                holder: Holder::Domain(HealthDomain::parse("bundles.direct.example.com").unwrap()),
                usage: CertUsage::Signing,
                organization: Some("Bundle Bench".into()),
                not_before: now,
                not_after: now + time::Duration::days(397),
                policy_oids: vec![],
                crl_url: "http://pki.direct.example.com/crl/issuing.crl".into(),
                ca_issuers_url: "http://pki.direct.example.com/ca/issuing.cer".into(),
            },
            &key,
        )
        .unwrap();
    Signer {
        cert,
        chain: vec![issuing.cert_der, root.cert_der],
        key,
    }
}

/// Best of `runs` wall-clock times of an external command.
fn time_command(dir: &Path, runs: usize, args: &[&str]) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .min()
        .unwrap()
}

fn bundle(c: &mut Criterion) {
    let n = anchor_count();
    let started = Instant::now();
    let mut anchors = anchors(n);
    let mean = anchors.iter().map(Vec::len).sum::<usize>() / n;
    // the order the anchors might come out of a database: not sorted
    anchors.sort_by_key(|a| a.iter().rev().take(8).copied().collect::<Vec<u8>>());
    let signer = signer();
    let chain: Vec<&[u8]> = signer.chain.iter().map(Vec::as_slice).collect();
    eprintln!(
        "bundle: {n} anchors of {mean} bytes on average generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let p7b = build_p7b(&anchors);
    let now = OffsetDateTime::now_utc();

    let mut g = c.benchmark_group(format!("bundle_{n}"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("build_p7b", |b| b.iter(|| black_box(build_p7b(&anchors))));
    g.bench_function("sign_p7m", |b| {
        b.iter(|| black_box(sign_p7m(&p7b, &signer.cert, &chain, &signer.key, now).unwrap()))
    });
    g.bench_function("build_and_sign", |b| {
        b.iter(|| {
            let p7b = build_p7b(&anchors);
            black_box(sign_p7m(&p7b, &signer.cert, &chain, &signer.key, now).unwrap())
        })
    });
    g.bench_function("certificates_in", |b| {
        b.iter(|| black_box(certificates_in(&p7b).unwrap()))
    });
    g.finish();

    // The same through OpenSSL, as whole processes.
    let dir = tempfile::tempdir().unwrap();
    let pems: String = anchors
        .iter()
        .map(|a| pem::encode(&pem::Pem::new("CERTIFICATE", a.clone())))
        .collect();
    std::fs::write(dir.path().join("all.pem"), pems).unwrap();
    std::fs::write(dir.path().join("bundle.p7b"), &p7b).unwrap();
    std::fs::write(
        dir.path().join("signer.pem"),
        pem::encode(&pem::Pem::new("CERTIFICATE", signer.cert.clone())),
    )
    .unwrap();
    std::fs::write(dir.path().join("signer.key"), signer.key.serialize_pem()).unwrap();
    let runs = 3;
    let crl2pkcs7 = time_command(
        dir.path(),
        runs,
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "all.pem",
            "-outform",
            "DER",
            "-out",
            "o.p7b",
        ],
    );
    let cms_sign = time_command(
        dir.path(),
        runs,
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-md",
            "sha256",
            "-in",
            "bundle.p7b",
            "-signer",
            "signer.pem",
            "-inkey",
            "signer.key",
            "-out",
            "o.p7m",
        ],
    );
    eprintln!(
        "bundle: {n} anchors, .p7b {} bytes; openssl crl2pkcs7 -nocrl -certfile all.pem -outform DER: \
         {:.1} ms; openssl cms -sign -binary -nodetach (same .p7b): {:.1} ms (best of {runs}, whole \
         process)",
        p7b.len(),
        crl2pkcs7.as_secs_f64() * 1e3,
        cms_sign.as_secs_f64() * 1e3,
    );
    // both hold the same certificates
    let theirs = certificates_in(&std::fs::read(dir.path().join("o.p7b")).unwrap()).unwrap();
    assert_eq!(theirs.len(), n);
}

criterion_group!(benches, bundle);
criterion_main!(benches);
