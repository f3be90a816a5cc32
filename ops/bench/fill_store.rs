//! Fills an initialised anchorage data directory with many real, individually signed
//! certificates, for the start-up and memory benchmark (ops/bench/startup.sh).
//!
//!   ANCHORAGE_PASSPHRASE=... cargo bench --bench fill_store -- --data-dir DIR --count 100000
//!
//! Each certificate goes through the same steps as an issuance from a CSR: the issuance rules
//! (`Authority::approve`), a fresh serial, `UnlockedCa::issue` (build + RSA-2048 sign) and one
//! `Store::insert_certs` transaction (certificate, owner index, revision, audit entry), for a
//! distinct address `user<N>@<first managed domain>`. Signing runs on every core; the store
//! is flushed every 1,000 certificates and at the end instead of after each one (the records
//! are the ones `Authority::issue` would write). Subscriber keys come from a pool of 64
//! RSA-2048 CSRs, so the certificates are distinct but their keys repeat.
//!
//! Without `--data-dir` (as under `cargo test --all-targets`) it prints its usage and exits 0.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use time::OffsetDateTime;

use anchorage::audit::AuditDraft;
use anchorage::authority::Authority;
use anchorage::ca::{self, CaRole, EndEntitySpec, UnlockedCa};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::model::Fingerprint;
use anchorage::policy::issuance::{IssueRequest, KeySource, PlannedKey, Proofing, Subscriber};
use anchorage::store::{CertRecord, RECORD_VERSION};

const KEY_POOL: usize = 64;
const FLUSH_EVERY: u64 = 1000;

struct Args {
    data_dir: PathBuf,
    count: u64,
}

fn args() -> Option<Args> {
    let mut data_dir = None;
    let mut count = 100_000;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            "--count" => count = it.next().and_then(|c| c.parse().ok()).expect("--count N"),
            _ => {} // --bench and anything cargo adds
        }
    }
    Some(Args {
        data_dir: data_dir?,
        count,
    })
}

fn csr_pool() -> Vec<Vec<u8>> {
    let made = AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = KEY_POOL.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (0..per)
                        .map(|_| {
                            made.fetch_add(1, Ordering::Relaxed);
                            let key = rcgen::KeyPair::generate_rsa_for(
                                &rcgen::PKCS_RSA_SHA256,
                                rcgen::RsaKeySize::_2048,
                            )
                            .unwrap();
                            let params =
                                rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                            params
                                .serialize_request(&key)
                                .unwrap()
                                .pem()
                                .unwrap()
                                .into_bytes()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Approves and signs certificate `i`; returns the record `Authority::issue` would store.
fn make_record(
    authority: &Authority,
    issuing: &UnlockedCa,
    csrs: &[Vec<u8>],
    i: u64,
) -> CertRecord {
    let domain = authority.config().managed_domains[0].as_str().to_string();
    let req = IssueRequest {
        address: Some(format!("user{i}@{domain}")),
        domain: None,
        usage: "dual".into(),
        profile: None,
        category: None,
        key: KeySource::Csr {
            signing: csrs[i as usize % csrs.len()].clone(),
            encryption: None,
        },
        subscriber: Subscriber {
            name: format!("Subscriber {i}"),
            organization: Some("Bench Clinic".into()),
        },
        organisation: None,
        registrar: "fill_store (bench)".into(),
        proofing: Proofing {
            method: "in-person".into(),
            level_of_assurance: None,
            evidence_reference: format!("bench-{i}"),
        },
    };
    let approved = authority.approve(&req).unwrap();
    let planned = &approved.certs()[0];
    let PlannedKey::FromCsr(csr) = &planned.key else {
        panic!("CSR plan expected");
    };
    let now = OffsetDateTime::now_utc();
    let not_after = (now + time::Duration::days(i64::from(approved.profile().validity_days)))
        .min(issuing.not_after());
    let public_url = &authority.config().public_url;
    let spec = EndEntitySpec {
        serial: ca::random_serial().unwrap(),
        holder: approved.holder().clone(),
        usage: planned.usage,
        organization: approved.subscriber().organization.clone(),
        not_before: now,
        not_after,
        policy_oids: approved.policy_oids().to_vec(),
        crl_url: approved.profile().crl_url(public_url, "issuing"),
        ca_issuers_url: approved.profile().ca_issuers_url(public_url, "issuing"),
    };
    let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der).unwrap();
    let der = issuing.issue(&spec, &spki).unwrap();
    CertRecord {
        record_version: RECORD_VERSION,
        revision: 0,
        serial: spec.serial.clone(),
        request_id: hex::encode(ca::random_serial().unwrap().to_bytes().get(..8).unwrap()),
        dns_owner: approved.holder().dns_owner(),
        holder: approved.holder().clone(),
        usage: planned.usage,
        requested_usage: approved.usage(),
        profile: approved.profile().name.clone(),
        level_of_assurance: approved.level_of_assurance().to_string(),
        category: approved.category().to_string(),
        subscriber: approved.subscriber().clone(),
        registrar: approved.registrar().to_string(),
        proofing: approved.proofing().clone(),
        key: csr.key.description.clone(),
        key_origin: "csr".into(),
        not_before: spec.not_before,
        not_after: spec.not_after,
        fingerprint: Fingerprint::of(&der),
        issued_at: now,
        der,
    }
}

fn main() {
    let Some(args) = args() else {
        println!("usage: ANCHORAGE_PASSPHRASE=... cargo bench --bench fill_store -- --data-dir DIR [--count N]");
        println!("(no --data-dir given: nothing to do)");
        return;
    };
    let config = Config::resolve(None, Some(&args.data_dir)).unwrap();
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    assert!(
        authority.is_initialised().unwrap(),
        "run `anchorage --data-dir {} init --managed-domain ...` first",
        args.data_dir.display()
    );
    let (pass, _) = authority.passphrase(false).unwrap();
    let issuing = ca::unlock(
        &authority
            .danger_store()
            .unwrap()
            .ca_record(CaRole::Issuing)
            .unwrap()
            .unwrap(),
        &pass,
    )
    .unwrap();
    let start = Instant::now();
    let csrs = csr_pool();
    eprintln!("{} CSR keys in {:.1?}", csrs.len(), start.elapsed());

    let already = authority.danger_store().unwrap().cert_count() as u64;
    let next = AtomicU64::new(already);
    let end = already + args.count;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = mpsc::sync_channel::<CertRecord>(4096);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (authority, issuing, csrs, next) = (&authority, &issuing, &csrs, &next);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                if tx.send(make_record(authority, issuing, csrs, i)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut stored = 0u64;
        for record in rx {
            let mut records = [record];
            let now = OffsetDateTime::now_utc();
            let r = &records[0];
            let draft = AuditDraft::new(
                r.registrar.clone(),
                "cert.issue",
                r.holder.to_string(),
                serde_json::json!({
                    "serials": [r.serial.to_string()],
                    "usage": r.requested_usage,
                    "profile": r.profile,
                    "subscriber": r.subscriber,
                    "proofing": r.proofing,
                    "key_origin": "csr",
                }),
            );
            let write = anchorage::store::IssueWrite::bulk(&records[0].holder, "bench", now);
            authority
                .danger_store()
                .unwrap()
                .insert_certs(&mut records, now, draft, &write)
                .unwrap();
            stored += 1;
            if stored.is_multiple_of(FLUSH_EVERY) {
                authority.danger_store().unwrap().flush().unwrap();
            }
            if stored.is_multiple_of(10_000) {
                eprintln!("{stored} certificates in {:.1?}", start.elapsed());
            }
        }
        authority.danger_store().unwrap().flush().unwrap();
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "stored {} certificates ({} in the store) in {secs:.1} s ({:.0}/s) under {}",
        args.count,
        authority.danger_store().unwrap().cert_count(),
        args.count as f64 / secs,
        args.data_dir.display()
    );
}
