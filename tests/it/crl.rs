//! CRL publication in a running service: a burst of revocations over the API is published in
//! one (or very few) new CRLs within seconds, and CRLs are re-signed before nextUpdate.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::time::OffsetDateTime;
use anchorage::authority::{Authority, InitOptions};
use anchorage::ca::CaRole;
use anchorage::clock::Clock;
use anchorage::config::Config;
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use x509_parser::prelude::*;

use crate::server::{cli_json, http, Server};
use crate::tools::{free_port, run_in};

const PASSPHRASE: &str = "crl-test-passphrase-0123456";

fn crl_of(der: &[u8]) -> (u64, Vec<String>, OffsetDateTime, OffsetDateTime) {
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    let number = crl
        .crl_number()
        .map(|n| n.to_u64_digits().first().copied().unwrap_or(0))
        .unwrap();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    let next = crl.next_update().unwrap().to_datetime();
    (number, serials, crl.last_update().to_datetime(), next)
}

#[test]
fn revocation_bursts_are_published_together_and_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let url = format!("http://127.0.0.1:{}", free_port());
    cli_json(
        &data,
        PASSPHRASE,
        &[
            "init",
            "--managed-domain",
            "direct.example.com",
            "--public-url",
            &url,
        ],
    );
    // One CSR for the whole burst.
    crate::harness::allow_key_reuse(&data);
    let token = cli_json(
        &data,
        PASSPHRASE,
        &["token", "create", "--role", "registrar", "--domain", "*"],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    run_in(
        dir.path(),
        "openssl",
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "k", "-subj", "/CN=x",
            "-out", "r.csr",
        ],
    )
    .assert_success("csr");
    let csr = std::fs::read_to_string(dir.path().join("r.csr")).unwrap();
    let server = Server::start(&data, PASSPHRASE);
    let get_crl = || {
        let r = http(server.addr, "GET", "/crl/issuing.crl", None, None).unwrap();
        assert_eq!(r.status, 200);
        crl_of(&r.body)
    };
    let mut serials = Vec::new();
    for i in 0..5 {
        let body = serde_json::json!({
            "address": format!("user{i}@direct.example.com"), "usage": "dual", "csr": csr,
            "subscriber": {"name": "Test"}, "proofing": {"method": "in-person", "evidence_reference": "t"}
        });
        let r = http(
            server.addr,
            "POST",
            "/api/v1/certificates",
            Some(&token),
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        serials.push(r.json()["serial"].as_str().unwrap().to_string());
    }
    let (before, listed, this_update, next_update) = get_crl();
    assert!(listed.is_empty());
    assert_eq!(
        next_update - this_update,
        ::time::Duration::days(7),
        "default nextUpdate is 7 days"
    );

    let started = Instant::now();
    for serial in &serials {
        let r = http(
            server.addr,
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&token),
            Some(br#"{"reason":"key-compromise"}"#),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let (after, listed) = loop {
        let (number, listed, _, _) = get_crl();
        if listed.len() == serials.len() {
            break (number, listed);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "CRL not republished: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut want = serials.clone();
    want.sort();
    let mut got = listed;
    got.sort();
    assert_eq!(got, want);
    // Five revocations within the coalescing window: one new CRL, at most two if the burst
    // straddled the window's start.
    assert!(
        after > before && after <= before + 2,
        "CRL numbers {before} -> {after}"
    );
}

/// A clock the test moves forward.
struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

fn authority_at(dir: &Path, clock: Arc<TestClock>) -> Authority {
    let config = Config {
        data_dir: dir.to_path_buf(),
        managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    Authority::open(config, clock).unwrap()
}

#[test]
fn crls_are_re_signed_well_before_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let authority = authority_at(dir.path(), clock.clone());
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    authority
        .init(InitOptions::default(), &pass, "test")
        .unwrap();
    let first = authority.refresh_crls().unwrap();
    assert_eq!(first.len(), 2, "both CAs get a first CRL");
    assert!(
        authority.refresh_crls().unwrap().is_empty(),
        "nothing is due"
    );

    // 7-day CRLs are re-signed once fewer than 5 days remain (config default).
    *clock.0.lock().unwrap() = start + ::time::Duration::hours(47);
    assert!(
        authority.refresh_crls().unwrap().is_empty(),
        "still fresh after 47 h"
    );
    *clock.0.lock().unwrap() = start + ::time::Duration::hours(49);
    let again = authority.refresh_crls().unwrap();
    assert_eq!(again.len(), 2, "due after 48 h");
    for crl in &again {
        let (number, _, this_update, next_update) = crl_of(&crl.der);
        let previous = first.iter().find(|c| c.ca == crl.ca).unwrap();
        assert!(number > previous.number, "{:?}: number must grow", crl.ca);
        assert_eq!(this_update, start + ::time::Duration::hours(49));
        assert_eq!(next_update, this_update + ::time::Duration::days(7));
    }
    assert_eq!(
        authority
            .stored_crl(CaRole::Issuing)
            .unwrap()
            .unwrap()
            .number,
        again[0].number
    );
}

/// `/healthz` turns degraded, naming the cause, when relying parties are about to reject this
/// CA's certificates: a CRL past its nextUpdate (the CRL publisher stopped), a CA certificate
/// within 30 days of expiry, the issuing CA revoked.
#[test]
fn health_reports_overdue_crls_expiring_and_revoked_cas() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let authority = authority_at(dir.path(), clock.clone());
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    authority
        .init(InitOptions::default(), &pass, "test")
        .unwrap();
    authority.refresh_crls().unwrap();
    assert_eq!(authority.health_problems().unwrap(), vec![]);
    let codes = |a: &Authority| -> Vec<(String, String)> {
        a.health_problems()
            .unwrap()
            .into_iter()
            .map(|p| (p.code.to_string(), p.subject))
            .collect()
    };

    // Nobody re-signed for 7 days: both CRLs are overdue.
    *clock.0.lock().unwrap() = start + ::time::Duration::days(7);
    assert_eq!(
        codes(&authority),
        [
            ("crl_overdue".to_string(), "root".to_string()),
            ("crl_overdue".to_string(), "issuing".to_string())
        ]
    );
    authority.refresh_crls().unwrap();
    assert_eq!(codes(&authority), []);

    // 29 days before the issuing CA expires (CRLs kept fresh meanwhile).
    let issuing_not_after = authority
        .ca_status()
        .unwrap()
        .into_iter()
        .find(|s| s.role == CaRole::Issuing)
        .unwrap()
        .not_after;
    *clock.0.lock().unwrap() = issuing_not_after - ::time::Duration::days(29);
    authority.refresh_crls().unwrap();
    assert!(
        codes(&authority).contains(&("ca_expires_soon".to_string(), "issuing".to_string())),
        "{:?}",
        codes(&authority)
    );

    // Revoked issuing CA.
    *clock.0.lock().unwrap() = start + ::time::Duration::days(8);
    authority.refresh_crls().unwrap();
    authority.unlock(&pass).unwrap();
    let serial = authority.issuing_ca_serial().unwrap();
    authority
        .revoke_issuing_ca(
            &serial,
            anchorage::model::RevocationReason::CaCompromise,
            "test",
        )
        .unwrap();
    assert_eq!(
        codes(&authority),
        [("issuing_ca_revoked".to_string(), "issuing".to_string())]
    );
}
