//! External bundles (issue 6, requirement 12): parse + verify a signed bundle of 10,000 and of
//! 1,000 anchors as a publisher serves it, and the peak memory of a whole refresh pipeline.
//!
//!   cargo bench --bench external
//!   EXTERNAL_BENCH_MEMORY=10000 cargo bench --bench external     # peak memory only
//!   EXTERNAL_BENCH_MEMORY=10000 EXTERNAL_BENCH_FORM=ber cargo bench --bench external
//!
//! Set-up (not timed; cached under `target/bench-external/<n>/`): `n` distinct, realistic
//! anchors (self-signed RSA-2048 CA certificates, ~1.2 KB each, made with rcgen), assembled
//! with `openssl crl2pkcs7 -nocrl -certfile all.pem -outform DER`, then signed by OpenSSL as a
//! publisher would (`openssl cms -sign -binary -nodetach -outform DER`, signatureAlgorithm
//! rsaEncryption) with an RSA-2048 signer issued by an OpenSSL publisher CA, once in DER and
//! once with `-stream` (BER, indefinite lengths). The source pins the publisher CA, so
//! verification walks the chain.
//!
//! Groups (single-threaded; targets: 10,000 anchors <= 300 ms, 1,000 anchors <= 1/8 of it):
//! - `external_<n>/parse_verify_der` and `parse_verify_ber`: `bundle::read_bundle`
//!   (duplicates removed) + `bundle::verify::verify` against the pinned CA.
//! - `external_<n>/refresh_pipeline`: the above plus admission of every anchor and building
//!   the republished `.p7b` (what a refresh does between download and store).
//!
//! For comparison, on the same files, as whole processes (best of 3, printed to stderr):
//! `openssl cms -verify -binary -inform DER -CAfile pub-ca.pem -in signed.p7m -out inner.p7b`
//! and `openssl pkcs7 -inform DER -in inner.p7b -print_certs -noout`.
//!
//! Memory mode (`EXTERNAL_BENCH_MEMORY=<n>`): reads the cached DER file, runs the refresh
//! pipeline once and prints the process's peak RSS (VmHWM) against 3x the file size + 50 MB.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it uses 200 and 25 anchors.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::OffsetDateTime;

use anchorage::bundle::build_p7b;
use anchorage::bundle::read_bundle as parse_bundle;
use anchorage::bundle::verify::{verify, Pins};
use anchorage::model::Fingerprint;
use anchorage::policy::admission::{admit, AdmissionPolicy};
use anchorage::x509;

const KEYS: usize = 8;
const MAX_ANCHORS: usize = 50_000;

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
    params.serial_number = Some(SerialNumber::from_slice(&(i as u64 + 1).to_be_bytes()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method =
        KeyIdMethod::PreSpecified(x509::key_identifier_of_bits(key.der_bytes()));
    params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec![format!("http://pki.hisp{i}.example.org/crl/root.crl")],
    }];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 32],
        x509::certificate_policies_der(&[
            "1.3.6.1.4.1.41179.0.1.2".into(),
            "1.3.6.1.4.1.41179.1.3".into(),
        ])
        .unwrap(),
    )];
    params.self_signed(key).unwrap().der().to_vec()
}

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

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory with `signed.p7m`, `signed-ber.p7m` and `pub-ca.pem` for `n` anchors.
fn fixtures(n: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-external")
        .join(n.to_string());
    if dir.join("signed-ber.p7m").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let pems: String = anchors(n)
        .into_iter()
        .map(|a| pem::encode(&pem::Pem::new("CERTIFICATE", a)))
        .collect();
    std::fs::write(dir.join("all.pem"), pems).unwrap();
    openssl(
        &dir,
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "all.pem",
            "-outform",
            "DER",
            "-out",
            "bundle.p7b",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "pub-ca.key",
            "-out",
            "pub-ca.pem",
            "-days",
            "365",
            "-subj",
            "/CN=Bench Publisher CA",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "signer.key",
            "-out",
            "signer.csr",
            "-subj",
            "/CN=Bench Bundle Signer",
        ],
    );
    std::fs::write(
        dir.join("signer.ext"),
        "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "signer.csr",
            "-CA",
            "pub-ca.pem",
            "-CAkey",
            "pub-ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-out",
            "signer.pem",
            "-extfile",
            "signer.ext",
        ],
    );
    let sign = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
            "bundle.p7b",
            "-signer",
            "signer.pem",
            "-inkey",
            "signer.key",
            "-out",
            out,
        ];
        args.extend_from_slice(extra);
        openssl(&dir, &args);
    };
    sign("signed.p7m", &[]);
    sign("signed-ber.p7m", &["-stream"]);
    eprintln!(
        "external: {n} anchors generated and signed with openssl in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    dir
}

fn pins(dir: &Path) -> Pins {
    let ca = x509::certificates_from_pem_or_der(&std::fs::read(dir.join("pub-ca.pem")).unwrap())
        .unwrap();
    Pins {
        fingerprints: ca.iter().map(|d| Fingerprint::of(d).0).collect(),
        certificates: ca,
    }
}

/// Parse, verify, admit every anchor, build the republished `.p7b`, in the order and with
/// the buffers `Authority::apply_refresh` uses (the body is dropped after parsing, the signed
/// copy after verification): returns the admitted count.
fn pipeline(body: Vec<u8>, pins: &Pins, policy: &AdmissionPolicy, now: OffsetDateTime) -> usize {
    let mut parsed = parse_bundle(&body, MAX_ANCHORS).unwrap();
    drop(body);
    let verification = verify(&parsed, pins, now).unwrap();
    assert!(verification.verified);
    parsed.signed = None;
    let mut admitted: Vec<Vec<u8>> = std::mem::take(&mut parsed.anchors)
        .into_iter()
        .filter(|a| admit(a, &[], &[], policy, now, false).is_ok())
        .collect();
    let count = admitted.len();
    admitted.sort();
    let p7b = build_p7b(&admitted);
    drop(admitted);
    black_box(p7b);
    count
}

fn best_of(dir: &Path, runs: usize, args: &[&str]) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            openssl(dir, args);
            start.elapsed()
        })
        .min()
        .unwrap()
}

fn bench_size(c: &mut Criterion, n: usize) {
    let dir = fixtures(n);
    let der = std::fs::read(dir.join("signed.p7m")).unwrap();
    let ber = std::fs::read(dir.join("signed-ber.p7m")).unwrap();
    assert_eq!(ber[1], 0x80, "the -stream file uses indefinite lengths");
    let pins = pins(&dir);
    let policy = AdmissionPolicy::default();
    let now = OffsetDateTime::now_utc();
    assert_eq!(parse_bundle(&ber, MAX_ANCHORS).unwrap().anchors.len(), n);
    assert_eq!(pipeline(der.clone(), &pins, &policy, now), n);

    let mut g = c.benchmark_group(format!("external_{n}"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("parse_verify_der", |b| {
        b.iter(|| {
            let parsed = parse_bundle(&der, MAX_ANCHORS).unwrap();
            black_box(verify(&parsed, &pins, now).unwrap())
        })
    });
    g.bench_function("parse_verify_ber", |b| {
        b.iter(|| {
            let parsed = parse_bundle(&ber, MAX_ANCHORS).unwrap();
            black_box(verify(&parsed, &pins, now).unwrap())
        })
    });
    g.bench_function("refresh_pipeline", |b| {
        b.iter_batched(
            || der.clone(),
            |body| black_box(pipeline(body, &pins, &policy, now)),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();

    let verify_cms = best_of(
        &dir,
        3,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-CAfile",
            "pub-ca.pem",
            "-in",
            "signed.p7m",
            "-out",
            "inner.p7b",
        ],
    );
    let print = best_of(
        &dir,
        3,
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "inner.p7b",
            "-print_certs",
            "-noout",
        ],
    );
    eprintln!(
        "external_{n}: file {} bytes (BER {} bytes); openssl cms -verify {:.1} ms + openssl pkcs7 -print_certs {:.1} ms = {:.1} ms (best of 3, whole processes)",
        der.len(),
        ber.len(),
        verify_cms.as_secs_f64() * 1e3,
        print.as_secs_f64() * 1e3,
        (verify_cms + print).as_secs_f64() * 1e3
    );
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn memory(n: usize) {
    let dir = fixtures(n);
    let baseline = vm_hwm_kb();
    // EXTERNAL_BENCH_FORM=ber measures the `-stream` (BER) file instead.
    let file = match std::env::var("EXTERNAL_BENCH_FORM").as_deref() {
        Ok("ber") => "signed-ber.p7m",
        _ => "signed.p7m",
    };
    let body = std::fs::read(dir.join(file)).unwrap();
    let size_kb = body.len() as u64 / 1024;
    let admitted = pipeline(
        body,
        &pins(&dir),
        &AdmissionPolicy::default(),
        OffsetDateTime::now_utc(),
    );
    let peak = vm_hwm_kb();
    let limit = 3 * size_kb + 50 * 1024;
    println!(
        "external memory: {admitted} anchors, {file} {} KB; peak RSS (VmHWM) {peak} KB, {baseline} KB before reading the file; limit 3 x size + 50 MB = {limit} KB: {}",
        size_kb,
        if peak <= limit { "within" } else { "EXCEEDED" }
    );
}

fn main() {
    if let Ok(n) = std::env::var("EXTERNAL_BENCH_MEMORY") {
        memory(n.parse().expect("EXTERNAL_BENCH_MEMORY=<anchor count>"));
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    for n in if full { [10_000, 1_000] } else { [200, 25] } {
        bench_size(&mut c, n);
    }
    c.final_summary();
}
