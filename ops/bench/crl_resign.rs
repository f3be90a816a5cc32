//! Re-signing the issuing CA's CRL with many revoked certificates (issue 14, requirement 6:
//! a CRL with 100,000 revoked re-signed in at most 1 s). Not a test: a `[[bench]]` with
//! `harness = false` that takes arguments.
//!
//!   ANCHORAGE_PASSPHRASE=... cargo bench --bench crl_resign -- --data-dir DIR \
//!       [--revoked 100000] [--rounds 5] [--out FILE]
//!
//! On a data directory filled by `fill_store` (at least `--revoked` + `--rounds`
//! certificates): revokes certificates through `Store::revoke` (one transaction each, as a
//! revocation stores it; no CRL is signed in between) until `--revoked` are revoked, then
//! `--rounds` times revokes one more (so the CRL is stale) and times
//! `Authority::current_crl`, which re-signs it: reading every revocation of the CA, building
//! the DER and signing it, storing and flushing the record. Prints each time and the median,
//! and writes the last CRL to `--out` for an independent check (`openssl crl -inform DER`).
//! Without `--data-dir` (as under `cargo test --all-targets`) it prints its usage and exits 0.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anchorage::audit::AuditDraft;
use anchorage::authority::Authority;
use anchorage::ca::CaRole;
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::model::RevocationReason;
use anchorage::store::Revocation;
use time::OffsetDateTime;

struct Args {
    data_dir: PathBuf,
    revoked: usize,
    rounds: usize,
    out: Option<PathBuf>,
}

fn args() -> Option<Args> {
    let mut data_dir = None;
    let (mut revoked, mut rounds, mut out) = (100_000, 5, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            "--revoked" => revoked = it.next().and_then(|v| v.parse().ok()).expect("--revoked N"),
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--out" => out = it.next().map(PathBuf::from),
            _ => {} // --bench and anything cargo adds
        }
    }
    Some(Args {
        data_dir: data_dir?,
        revoked,
        rounds,
        out,
    })
}

fn main() {
    let Some(args) = args() else {
        println!("usage: ANCHORAGE_PASSPHRASE=... cargo bench --bench crl_resign -- --data-dir DIR [--revoked N] [--rounds R] [--out FILE]");
        println!("(no --data-dir given: nothing to do)");
        return;
    };
    let config = Config::resolve(None, Some(&args.data_dir)).unwrap();
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    let store = authority.danger_store().unwrap();
    let mut revoked = store.revocations(CaRole::Issuing).unwrap().len();
    let mut unrevoked = store
        .certs()
        .map(Result::unwrap)
        .filter(|c| store.revocation(&c.serial).unwrap().is_none())
        .map(|c| c.serial);
    let mut revoke_one = || {
        let serial = unrevoked
            .next()
            .expect("not enough certificates: fill the store first");
        let revocation = Revocation {
            record_version: anchorage::store::RECORD_VERSION,
            revision: 0,
            serial: serial.clone(),
            ca: CaRole::Issuing,
            reason: RevocationReason::KeyCompromise,
            revoked_at: OffsetDateTime::now_utc(),
            revoked_by: "crl_resign (bench)".into(),
        };
        let draft = AuditDraft::new(
            "crl_resign (bench)",
            "cert.revoke",
            serial.to_string(),
            serde_json::json!({"reason": "keyCompromise"}),
        );
        store.revoke(&revocation, draft, &|_, _| true).unwrap();
    };
    let start = Instant::now();
    let before = revoked;
    while revoked < args.revoked {
        revoke_one();
        revoked += 1;
        if revoked.is_multiple_of(10_000) {
            eprintln!("{revoked} revoked ({:.1?})", start.elapsed());
        }
    }
    store.flush().unwrap();
    eprintln!(
        "revoked {} more in {:.1?}; {revoked} revoked by the issuing CA",
        revoked - before,
        start.elapsed()
    );

    // A warm-up round unlocks the CA keys (Argon2id): not part of the measured re-signing.
    revoke_one();
    revoked += 1;
    authority.current_crl(CaRole::Issuing).unwrap();
    let mut times = Vec::new();
    let mut last = None;
    for round in 1..=args.rounds {
        revoke_one();
        revoked += 1;
        store.flush().unwrap();
        let start = Instant::now();
        let crl = authority.current_crl(CaRole::Issuing).unwrap();
        let took = start.elapsed();
        println!(
            "round {round}: CRL #{} with {} revoked, {} bytes, re-signed in {:.1} ms",
            crl.number,
            revoked,
            crl.der.len(),
            took.as_secs_f64() * 1e3
        );
        times.push(took.as_secs_f64() * 1e3);
        last = Some(crl);
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!(
            "median re-sign: {median:.1} ms over {} rounds (min {:.1}, max {:.1})",
            times.len(),
            times[0],
            times[times.len() - 1]
        );
    }
    if let (Some(path), Some(crl)) = (args.out, last) {
        std::fs::write(&path, &crl.der).unwrap();
        println!("wrote {}", path.display());
    }
}
