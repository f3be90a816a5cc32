//! Parsers under torture (issue 13, requirement 6): the bundle reader (`bundle::read_bundle`,
//! signature verification of what it reads, and the strict `certificates_in`), the upload
//! classifier (`bundle::upload::classify`) and the CSR path (`x509::parse_csr`, which
//! `policy::issuance` calls for every request) get arbitrary bytes, mutations of valid inputs
//! (bit flips, truncations, length-byte changes, insertions, deletions, duplicated ranges, PEM
//! armour) and nesting bombs. None may panic, and none may take more than linear time:
//!
//! - work: the hand-written walker counts every header it reads (`bundle::der::work`, per
//!   thread); a case may read at most 4 headers per input byte plus a constant. This is exact
//!   and independent of machine load. The crates' own work is covered by the next two checks.
//! - time per case: thread CPU time under a generous bound (250 ms + 50 µs per byte), to catch
//!   a blow-up in any layer, ours or a crate's, without flaking on a loaded machine.
//! - scaling: [`hostile_families_scale_linearly`] times structured worst cases (wide BER, many
//!   certificates, many PEM blocks, many BEGIN lines, long CSR armour) at n and 32 n; a
//!   quadratic step would take ~1,000 times as long, linear ~32: the bound is 256. Times are
//!   the thread's CPU time, so other processes on the machine do not skew the ratio.
//!
//! The case count is proptest's: 256 per property by default (a few seconds in `cargo test`),
//! `PROPTEST_CASES` raises it; `ops/bench/torture.sh` runs them at over a million cases in
//! release mode and records the result in `ops/BENCHMARKS.md`.

use std::sync::OnceLock;
use std::time::Duration;

use anchorage::bundle::{self, der};
use proptest::prelude::*;
use proptest::sample::Index;
use rcgen::{CertificateParams, KeyPair};

use crate::admission::indefinite;

/// The valid inputs mutations start from: every form the readers accept, and the wrong files
/// members send by mistake.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["torture.example".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap().der().to_vec();
        let other_key = KeyPair::generate().unwrap();
        let other = CertificateParams::new(vec!["other.example".to_string()])
            .unwrap()
            .self_signed(&other_key)
            .unwrap()
            .der()
            .to_vec();
        let rsa_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let anchors = [cert.clone(), other.clone()];
        let p7b = bundle::build_p7b(&anchors);
        let with_metadata = bundle::build_p7b_with_metadata(&anchors, b"<TrustBundle/>");
        let p7m =
            bundle::sign_p7m(&p7b, &cert, &[], &key, time::OffsetDateTime::now_utc()).unwrap();
        let csr = CertificateParams::new(vec!["csr.example".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let rsa_csr = CertificateParams::new(vec!["rsa.example".to_string()])
            .unwrap()
            .serialize_request(&rsa_key)
            .unwrap();
        let pem = |label: &str, der: &[u8]| {
            ::pem::encode(&::pem::Pem::new(label, der.to_vec())).into_bytes()
        };
        vec![
            p7b.clone(),
            indefinite(&p7b, 4),
            pem("PKCS7", &p7b),
            pem("PKCS7", &indefinite(&p7b, 4)),
            with_metadata.clone(),
            indefinite(&with_metadata, 6),
            p7m.clone(),
            indefinite(&p7m, 6),
            pem("CMS", &p7m),
            cert.clone(),
            pem("CERTIFICATE", &cert),
            [pem("CERTIFICATE", &cert), pem("CERTIFICATE", &other)].concat(),
            csr.der().to_vec(),
            csr.pem().unwrap().into_bytes(),
            rsa_csr.der().to_vec(),
            key.serialize_der(),
            key.serialize_pem().into_bytes(),
            anchorage::pkcs12::build(&cert, &key, &[], "pw", "torture").unwrap(),
        ]
    })
}

/// One change to an input; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// A length octet: short, indefinite, long forms with 1..=5 and 127 length bytes.
    SetLength(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
    DuplicateRange(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let length = prop::sample::select(vec![
        0x00u8, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0xff,
    ]);
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (any::<Index>(), length).prop_map(|(i, v)| Mutation::SetLength(i, v)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1u8..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1u8..64).prop_map(|(i, n)| Mutation::DuplicateRange(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let at = |i: &Index| i.index(bytes.len());
        match m {
            Mutation::FlipBit(i, bit) => {
                let p = at(i);
                bytes[p] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) | Mutation::SetLength(i, v) => {
                let p = at(i);
                bytes[p] = *v;
            }
            Mutation::Truncate(i) => {
                let p = at(i);
                bytes.truncate(p);
            }
            Mutation::Insert(i, v) => {
                let p = at(i);
                bytes.splice(p..p, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(i);
                let end = (p + usize::from(*n)).min(bytes.len());
                bytes.drain(p..end);
            }
            Mutation::DuplicateRange(i, n) => {
                let p = at(i);
                let end = (p + usize::from(*n)).min(bytes.len());
                let copy: Vec<u8> = bytes[p..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

/// id-signedData ContentInfo opened with indefinite lengths: a bomb behind it reaches the
/// SignedData walker rather than failing on the first byte.
const SIGNED_DATA_PREFIX: &[u8] = &[
    0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80,
];

/// Deep nesting (indefinite, definite with lengths that lie, constructed OCTET STRINGs) and
/// wide flat sequences, bare, behind a signedData prefix, or PEM-armoured.
fn bomb() -> impl Strategy<Value = Vec<u8>> {
    (0usize..6, 1usize..4000, 0usize..4000, 0usize..3).prop_map(|(kind, n, eocs, wrap)| {
        let mut body = Vec::new();
        match kind {
            0 => (0..n).for_each(|_| body.extend([0x30, 0x80])),
            1 => (0..n).for_each(|_| body.extend([0x24, 0x80])),
            2 => (0..n).for_each(|_| body.extend([0xa0, 0x80])),
            3 => (0..n).for_each(|_| body.extend([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff])),
            4 => {
                // Nested constructed OCTET STRINGs with honest definite lengths.
                body = vec![0x04, 0x00];
                for _ in 0..n.min(1000) {
                    let mut outer = vec![0x24];
                    let len = body.len();
                    if len < 0x80 {
                        outer.push(len as u8);
                    } else {
                        outer.extend([0x82, (len >> 8) as u8, len as u8]);
                    }
                    outer.extend(&body);
                    body = outer;
                }
            }
            _ => {
                // Wide: one indefinite SEQUENCE of n NULLs.
                body.extend([0x30, 0x80]);
                (0..n).for_each(|_| body.extend([0x05, 0x00]));
            }
        }
        (0..eocs.min(n + 2)).for_each(|_| body.extend([0, 0]));
        match wrap {
            0 => body,
            1 => [SIGNED_DATA_PREFIX, &body].concat(),
            _ => ::pem::encode(&::pem::Pem::new("PKCS7", body)).into_bytes(),
        }
    })
}

/// Every kind of hostile input, equally often.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    let corpus_index = 0..corpus().len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        (
            corpus_index.clone(),
            prop::collection::vec(mutation(), 1..5)
        )
            .prop_map(|(i, m)| apply(corpus()[i].clone(), &m)),
        bomb(),
        // Mutations under PEM armour: the decoded bytes are what is tortured.
        (corpus_index, prop::collection::vec(mutation(), 1..4)).prop_map(|(i, m)| {
            let der = apply(corpus()[i].clone(), &m);
            ::pem::encode(&::pem::Pem::new("PKCS7", der)).into_bytes()
        }),
    ]
}

/// Runs `f` on `input` and checks the work and time bounds.
fn bounded(input: &[u8], f: impl FnOnce(&[u8])) -> Result<(), TestCaseError> {
    let work_before = der::work();
    let start = cpu_time();
    f(input);
    let elapsed = cpu_time() - start;
    let work = der::work() - work_before;
    let len = input.len() as u64;
    prop_assert!(
        work <= 4 * len + 16,
        "{work} headers read for {len} bytes: not linear"
    );
    let limit = Duration::from_millis(250) + Duration::from_micros(50) * input.len() as u32;
    prop_assert!(
        elapsed <= limit,
        "{elapsed:?} for {len} bytes (limit {limit:?})"
    );
    Ok(())
}

proptest! {
    #[test]
    fn bundle_reader_survives_hostile_input(input in hostile()) {
        bounded(&input, |input| {
            if let Ok(parsed) = bundle::read_bundle(input, 1000) {
                let _ = bundle::verify::verify_unpinned(&parsed);
            }
            let _ = bundle::certificates_in(input);
        })?;
    }

    #[test]
    fn upload_classifier_survives_hostile_input(input in hostile()) {
        bounded(&input, |input| {
            let _ = bundle::upload::classify(input, 1 << 20);
        })?;
    }

    #[test]
    fn csr_path_survives_hostile_input(input in hostile()) {
        bounded(&input, |input| {
            let _ = anchorage::x509::parse_csr(input);
        })?;
    }
}

/// The corpus itself reads as intended, so mutations start from inputs that reach deep.
#[test]
fn the_torture_corpus_is_valid() {
    let c = corpus();
    assert_eq!(bundle::read_bundle(&c[1], 10).unwrap().anchors.len(), 2);
    assert!(bundle::read_bundle(&c[7], 10).unwrap().signed.is_some());
    bundle::verify::verify_unpinned(&bundle::read_bundle(&c[7], 10).unwrap()).unwrap();
    assert_eq!(bundle::upload::classify(&c[3], 1 << 20).unwrap().len(), 2);
    assert_eq!(bundle::upload::classify(&c[8], 1 << 20).unwrap().len(), 2);
    anchorage::x509::parse_csr(&c[12]).unwrap();
    anchorage::x509::parse_csr(&c[14]).unwrap();
    assert_eq!(
        bundle::upload::classify(&c[17], 1 << 20).unwrap_err()[0].code,
        "upload_is_pkcs12"
    );
}

/// The parsers under test, as the scaling check runs them.
type Parser = (&'static str, fn(&[u8]));

const PARSERS: [Parser; 4] = [
    ("read+verify", |input| {
        if let Ok(parsed) = bundle::read_bundle(input, usize::MAX) {
            let _ = bundle::verify::verify_unpinned(&parsed);
        }
    }),
    ("strict", |input| {
        let _ = bundle::certificates_in(input);
    }),
    ("classify", |input| {
        let _ = bundle::upload::classify(input, usize::MAX);
    }),
    ("csr", |input| {
        let _ = anchorage::x509::parse_csr(input);
    }),
];

/// CPU time this thread has used: unlike wall time, it does not grow when other processes
/// share the cores, which would make large inputs look slower than small ones.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The least CPU time of three runs.
fn time(f: &dyn Fn()) -> Duration {
    (0..3)
        .map(|_| {
            let start = cpu_time();
            f();
            cpu_time() - start
        })
        .min()
        .unwrap()
}

/// How much larger the large input of a family is than the small one.
const SCALE: usize = 32;

/// Structured worst cases at n and 32 n: linear work takes ~32 times as long, quadratic ~1,000.
/// The bound, 8 x 32, leaves room for cache and allocator effects and a loaded machine.
#[test]
fn hostile_families_scale_linearly() {
    let tiny_cert = |i: usize| {
        let b = (i as u32).to_be_bytes();
        vec![0x30, 0x05, 0x02, 0x03, b[1], b[2], b[3]]
    };
    let csr_pem = corpus()[13].clone();
    type Family = (&'static str, usize, Box<dyn Fn(usize) -> Vec<u8>>);
    let families: Vec<Family> = vec![
        (
            "wide BER signedData",
            2_000,
            Box::new(|n| {
                let mut v = SIGNED_DATA_PREFIX.to_vec();
                v.extend([0x30, 0x80]);
                (0..n).for_each(|_| v.extend([0x05, 0x00]));
                v.extend([0, 0, 0, 0, 0, 0]);
                v
            }),
        ),
        (
            "many certificates",
            500,
            Box::new(move |n| bundle::build_p7b(&(0..n).map(tiny_cert).collect::<Vec<_>>())),
        ),
        (
            "many PEM blocks",
            200,
            Box::new(|n| {
                let block = ::pem::encode(&::pem::Pem::new("PKCS7", bundle::build_p7b(&[])));
                block.repeat(n).into_bytes()
            }),
        ),
        (
            "many BEGIN lines",
            1_000,
            Box::new(|n| b"-----BEGIN CERTIFICATE-----\n".repeat(n)),
        ),
        (
            "partial BEGIN markers",
            1_000,
            Box::new(|n| b"-----BEGI-----BEGIN".repeat(n)),
        ),
        (
            "long CSR armour",
            1_000,
            Box::new(move |n| {
                let mut v = csr_pem.clone();
                v.extend(b"AAAA\n".repeat(n));
                v
            }),
        ),
    ];
    for (name, n, make) in &families {
        let (small, large) = (make(*n), make(SCALE * n));
        for (parser, run) in PARSERS {
            let (t_small, t_large) = (time(&|| run(&small)), time(&|| run(&large)));
            let ratio = t_large.as_secs_f64() / t_small.as_secs_f64().max(1e-4);
            eprintln!(
                "{name} / {parser}: {} B in {t_small:?}, {} B in {t_large:?} (x{ratio:.1})",
                small.len(),
                large.len()
            );
            assert!(
                ratio < 8.0 * SCALE as f64,
                "{name} / {parser}: {SCALE} times the input took {ratio:.1} times as long"
            );
        }
    }
}
