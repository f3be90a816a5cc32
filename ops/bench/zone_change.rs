//! How long one change takes to reach a large domain's zone (issue 14 requirement 4: <= 100 ms
//! in a 1,000,000-certificate domain). Opens a filled store (see `fill_store.rs` and
//! `zone_1m.sh`), queues zone publication as `serve` does, then ROUNDS times: revokes one
//! certificate of the first managed domain, and times `publish_queued_zones` (the zone update
//! alone: pending change -> touched shard and zone file written, fsynced, state recorded);
//! likewise after issuing one certificate with a server-generated key (the key generation and
//! signing are not timed). Prints each figure and the median.
//!
//!   ANCHORAGE_PASSPHRASE=... cargo bench --bench zone_change -- --data-dir DIR [--rounds N]
//!
//! Without `--data-dir` (as under `cargo test --all-targets`) it prints its usage and exits 0.

// Measurement code reads the clocks and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anchorage::authority::Authority;
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::model::RevocationReason;
use anchorage::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};

/// Unrevoked serials printed at the end, for the CLI revocation timed by `zone_1m.sh`.
const SPARE: usize = 3;

fn main() {
    let mut data_dir = None;
    let mut rounds = 7usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            "--rounds" => rounds = it.next().and_then(|c| c.parse().ok()).expect("--rounds N"),
            _ => {}
        }
    }
    let Some(data_dir) = data_dir else {
        println!("usage: ANCHORAGE_PASSPHRASE=... cargo bench --bench zone_change -- --data-dir DIR [--rounds N]");
        println!("(no --data-dir given: nothing to do)");
        return;
    };
    let config = Config::resolve(None, Some(&data_dir)).unwrap();
    let domain = config.managed_domains[0].clone();
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    let (pass, _) = authority.passphrase(false).unwrap();
    authority.unlock(&pass).unwrap();
    authority.queue_zone_publication();
    // Brings the zone up to date first (the first sweep of this store, if any, is here).
    let t = Instant::now();
    let swept = authority.sweep_zones();
    eprintln!(
        "sweep before the rounds: {} zone(s) written in {:.1?}",
        swept.iter().filter(|z| z.written).count(),
        t.elapsed()
    );
    let serials: Vec<_> = {
        let store = authority.danger_store().unwrap();
        let mut out = Vec::new();
        for c in store.domain_certs(domain.as_str()) {
            let c = c.unwrap();
            if !store.is_revoked(&c.serial).unwrap() {
                out.push(c.serial);
            }
            if out.len() == rounds + SPARE {
                break;
            }
        }
        out
    };
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        xs[xs.len() / 2]
    };
    let mut revocations = Vec::new();
    for serial in serials.iter().take(rounds) {
        authority
            .revoke(serial, RevocationReason::Superseded, "bench")
            .unwrap();
        let t = Instant::now();
        let out = authority.publish_queued_zones();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(out.len() == 1 && out[0].written, "{out:?}");
        println!(
            "revocation {serial}: zone update {ms:.1} ms ({} records, serial {})",
            out[0].records, out[0].serial
        );
        revocations.push(ms);
    }
    let mut issuances = Vec::new();
    for i in 0..rounds {
        let address = format!("zone-bench-{}-{i}@{domain}", std::process::id());
        authority
            .issue(
                &IssueRequest {
                    address: Some(address.clone()),
                    domain: None,
                    usage: "dual".into(),
                    profile: None,
                    category: None,
                    key: KeySource::Generate,
                    subscriber: Subscriber {
                        name: "Zone Bench".into(),
                        organization: None,
                    },
                    organisation: None,
                    registrar: "bench".into(),
                    proofing: Proofing {
                        method: "in-person".into(),
                        level_of_assurance: None,
                        evidence_reference: "bench".into(),
                    },
                },
                None,
            )
            .unwrap();
        let t = Instant::now();
        let out = authority.publish_queued_zones();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(out.len() == 1 && out[0].written, "{out:?}");
        println!(
            "issuance {address}: zone update {ms:.1} ms ({} records)",
            out[0].records
        );
        issuances.push(ms);
    }
    let spare: Vec<String> = serials.iter().skip(rounds).map(|s| s.to_string()).collect();
    println!("spare serials: {}", spare.join(" "));
    println!(
        "median zone update: revocation {:.1} ms, issuance {:.1} ms ({rounds} rounds each; target <= 100 ms)",
        median(&mut revocations),
        median(&mut issuances)
    );
}
