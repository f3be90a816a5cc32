//! Discovery export at scale (issue 4, requirement 6):
//!
//!   cargo bench --bench discovery -- --data-dir DIR [--certs 100000] [--domains 1000]
//!
//! Fills DIR (once; reused on later runs) with real, individually signed RSA certificates
//! spread over `--domains` managed domains: the first domain holds 1,000 certificates, the
//! others share the rest. Then, in a fresh child process so its peak RSS is the export's
//! alone, it measures:
//! - the full export: every zone file (1,000 domains) and the full LDIF, written from the
//!   store to disk (`Authority::publish_zones` + `Authority::publish_ldif`), three rounds;
//!   the first round also creates the directory view (first export of a store);
//! - the incremental rewrite: one new certificate stored in the 1,000-certificate domain,
//!   then `Authority::publish_zone` for that domain (what `Authority::issue` runs after
//!   storing), 20 rounds;
//! - peak memory: VmHWM of the measuring process (/proc/self/status), reset after the store
//!   is opened (sled's log replay has its own peak, reported separately).
//!
//! Without `--data-dir` (as under `cargo test --all-targets`) it prints its usage and exits 0.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use anchorage::audit::AuditDraft;
use anchorage::authority::{Authority, InitOptions};
use anchorage::ca::{self, CaRole, EndEntitySpec, UnlockedCa};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::keyseal::Passphrase;
use anchorage::model::{Fingerprint, HealthDomain};
use anchorage::policy::issuance::{IssueRequest, KeySource, PlannedKey, Proofing, Subscriber};
use anchorage::store::{CertRecord, RECORD_VERSION};

const PASSPHRASE: &str = "discovery benchmark passphrase (not a secret)";
const BIG_DOMAIN_CERTS: u64 = 1000;
const KEY_POOL: usize = 32;
const BATCH: usize = 100;

struct Args {
    data_dir: PathBuf,
    certs: u64,
    domains: u64,
    measure: bool,
}

fn args() -> Option<Args> {
    let (mut data_dir, mut certs, mut domains, mut measure) = (None, 100_000, 1000, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            "--certs" => certs = it.next().and_then(|c| c.parse().ok()).expect("--certs N"),
            "--domains" => domains = it.next().and_then(|c| c.parse().ok()).expect("--domains N"),
            "--measure" => measure = true,
            _ => {} // --bench and anything cargo adds
        }
    }
    Some(Args {
        data_dir: data_dir?,
        certs,
        domains,
        measure,
    })
}

fn domain_name(k: u64) -> String {
    format!("d{k:04}.bench.example")
}

fn config(args: &Args) -> Config {
    Config {
        data_dir: args.data_dir.clone(),
        managed_domains: (0..args.domains)
            .map(|k| HealthDomain::parse(&domain_name(k)).unwrap())
            .collect(),
        ..Config::default()
    }
}

/// Domain of certificate `i`: the first 1,000 in domain 0, the rest round-robin.
fn domain_of(i: u64, domains: u64) -> u64 {
    if i < BIG_DOMAIN_CERTS || domains == 1 {
        0
    } else {
        1 + (i - BIG_DOMAIN_CERTS) % (domains - 1)
    }
}

fn csr_pool() -> Vec<Vec<u8>> {
    (0..KEY_POOL)
        .map(|_| {
            let key =
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                    .unwrap();
            let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap()
                .into_bytes()
        })
        .collect()
}

/// Approves and signs certificate `i` for `user<i>@<domain>`.
fn make_record(
    authority: &Authority,
    issuing: &UnlockedCa,
    csrs: &[Vec<u8>],
    i: u64,
    domain: &str,
) -> CertRecord {
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
        registrar: "discovery (bench)".into(),
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
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
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
        request_id: format!("bench{i}"),
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

fn store(authority: &Authority, records: &mut [CertRecord]) {
    let draft = AuditDraft::new(
        "discovery (bench)",
        "cert.issue",
        records[0].holder.to_string(),
        serde_json::json!({ "serials": records.iter().map(|r| r.serial.to_string()).collect::<Vec<_>>() }),
    );
    authority
        .danger_store()
        .unwrap()
        .insert_certs(
            records,
            OffsetDateTime::now_utc(),
            draft,
            &anchorage::store::IssueWrite::bulk(
                &records[0].holder.clone(),
                "bench",
                OffsetDateTime::now_utc(),
            ),
        )
        .unwrap();
}

fn unlock_issuing(authority: &Authority) -> UnlockedCa {
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    ca::unlock(
        &authority
            .danger_store()
            .unwrap()
            .ca_record(CaRole::Issuing)
            .unwrap()
            .unwrap(),
        &pass,
    )
    .unwrap()
}

/// Creates the CA and signs the missing certificates on every core.
fn fill(args: &Args) {
    let authority = Authority::open(config(args), Arc::new(SystemClock)).unwrap();
    if !authority.is_initialised().unwrap() {
        let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
        authority
            .init(InitOptions::default(), &pass, "bench")
            .unwrap();
    }
    let already = authority.danger_store().unwrap().cert_count() as u64;
    if already >= args.certs {
        return;
    }
    let issuing = unlock_issuing(&authority);
    let csrs = csr_pool();
    let start = Instant::now();
    let next = AtomicU64::new(already);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = mpsc::sync_channel::<CertRecord>(4096);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (authority, issuing, csrs, next) = (&authority, &issuing, &csrs, &next);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.certs {
                    break;
                }
                let domain = domain_name(domain_of(i, args.domains));
                if tx
                    .send(make_record(authority, issuing, csrs, i, &domain))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(tx);
        let mut batch = Vec::with_capacity(BATCH);
        let mut stored = already;
        for record in rx {
            batch.push(record);
            if batch.len() == BATCH {
                store(&authority, &mut batch);
                stored += batch.len() as u64;
                batch.clear();
                if stored.is_multiple_of(10_000) {
                    eprintln!("{stored} certificates in {:.1?}", start.elapsed());
                }
            }
        }
        if !batch.is_empty() {
            store(&authority, &mut batch);
        }
    });
    authority.danger_store().unwrap().flush().unwrap();
    eprintln!(
        "filled {} certificates in {:.1?}",
        authority.danger_store().unwrap().cert_count(),
        start.elapsed()
    );
}

/// Peak resident set size of this process since start or the last reset (kB).
fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn measure(args: &Args) {
    let authority = Authority::open(config(args), Arc::new(SystemClock)).unwrap();
    let zones_dir = args.data_dir.join("published/dns");
    let open_peak = peak_rss_kb();
    // Opening sled replays its log (a store filled moments ago has no snapshot yet), which
    // peaks on its own; reset the high-water mark so the figures below are the export's.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    println!(
        "store: {} managed domains; peak RSS while opening the store {open_peak} kB, RSS after it {} kB (high-water mark reset here)",
        args.domains,
        status_kb("VmRSS:")
    );
    for round in 1..=3 {
        let _ = std::fs::remove_dir_all(&zones_dir);
        // Zones and LDIF run side by side, as `serve` could: one is mostly fsync waits, the
        // other mostly encoding.
        let start = Instant::now();
        let ((zones, zones_time), (ldif, ldif_time)) = std::thread::scope(|s| {
            let zones = s.spawn(|| {
                let zones = authority.publish_zones(None, None).unwrap();
                (zones, start.elapsed())
            });
            let ldif = authority.publish_ldif(None).unwrap();
            let ldif_time = start.elapsed();
            (zones.join().unwrap(), (ldif, ldif_time))
        });
        let total = start.elapsed();
        let records: usize = zones.iter().map(|z| z.records).sum();
        println!(
            "full export round {round}: {} zones ({records} CERT records, {:.1} MB) done at {:.3} s, LDIF ({} entries, {} certificates, {:.1} MB) done at {:.3} s; total {:.3} s; peak RSS {} kB",
            zones.len(),
            dir_bytes(&zones_dir) as f64 / 1e6,
            zones_time.as_secs_f64(),
            ldif.entries,
            ldif.certificates,
            std::fs::metadata(&ldif.path).unwrap().len() as f64 / 1e6,
            ldif_time.as_secs_f64(),
            total.as_secs_f64(),
            peak_rss_kb()
        );
    }

    // Incremental: one more certificate in the 1,000-certificate domain, then its zone.
    let issuing = unlock_issuing(&authority);
    let csrs = csr_pool();
    let domain = HealthDomain::parse(&domain_name(0)).unwrap();
    let mut times: Vec<Duration> = Vec::new();
    let mut records = 0;
    for round in 0..20u64 {
        let i = args.certs + 1_000_000 + round + u64::from(std::process::id()) * 100;
        let mut record = [make_record(&authority, &issuing, &csrs, i, domain.as_str())];
        store(&authority, &mut record);
        authority.danger_store().unwrap().flush().unwrap();
        let start = Instant::now();
        let outcome = authority.publish_zone(&domain, None).unwrap();
        times.push(start.elapsed());
        assert!(outcome.written && outcome.changed);
        records = outcome.records;
    }
    times.sort();
    println!(
        "incremental rewrite of {} ({records} CERT records) after one issuance, 20 rounds: median {:.2} ms, max {:.2} ms, min {:.2} ms",
        domain,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
    );
    println!("peak RSS of the measuring process: {} kB", peak_rss_kb());
}

fn main() {
    let Some(args) = args() else {
        println!(
            "usage: cargo bench --bench discovery -- --data-dir DIR [--certs N] [--domains N]"
        );
        println!("(no --data-dir given: nothing to do)");
        return;
    };
    if args.measure {
        measure(&args);
        return;
    }
    fill(&args);
    // Measure in a fresh process: its peak RSS is then the export's, not the fill's.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .arg("--measure")
        // The malloc trim threshold `serve` runs with (src/main.rs).
        .env("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
        .status()
        .unwrap();
    assert!(status.success(), "the measuring run failed");
}
