//! Durability of the real service (requirement 8): a certificate acknowledged with 201 survives
//! `kill -9` of `anchorage serve` in the middle of a burst of issuance, nothing is recorded
//! twice, the audit chain stays intact, and the service starts again cleanly. Also: a second
//! process on a served data directory fails with a clear `data_dir_locked`, and the service
//! refuses to start when a CA key does not match its certificate.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage::ca::CaRole;
use anchorage::store::Store;
use serde_json::{json, Value};

use crate::server::{cli, cli_error, cli_json, http, Server, PASSPHRASE};
use crate::tools::{free_port, run_in};

const DOMAIN: &str = "direct.example.com";
const CLIENTS: usize = 3;
const KILL_CYCLES: usize = 3;
/// How long each burst runs before the kill (once at least a few requests were acknowledged).
const BURST: Duration = Duration::from_millis(1500);
const MIN_ACKS_PER_BURST: usize = 5;

/// `anchorage init` on a fresh data directory, sealed with [`PASSPHRASE`].
fn init(data: &Path) {
    let url = format!("http://127.0.0.1:{}", free_port());
    cli_json(
        data,
        PASSPHRASE,
        &["init", "--managed-domain", DOMAIN, "--public-url", &url],
    );
    // Each client sends one CSR for many addresses.
    crate::harness::allow_key_reuse(data);
}

fn registrar_token(data: &Path) -> String {
    let created = cli_json(
        data,
        PASSPHRASE,
        &["token", "create", "--role", "registrar", "--domain", "*"],
    );
    created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token create printed no token: {created}"))
        .to_string()
}

/// A fresh RSA-2048 key and its CSR, made by openssl; returns the CSR PEM.
fn csr(dir: &Path, name: &str) -> String {
    let key = format!("{name}.key");
    let req = format!("{name}.csr");
    run_in(
        dir,
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &req,
            "-subj",
            "/CN=durability test",
        ],
    )
    .assert_success("openssl req");
    std::fs::read_to_string(dir.join(&req)).expect("CSR written by openssl")
}

fn issue_body(address: &str, csr: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "address": address,
        "usage": "dual",
        "csr": csr,
        "subscriber": {"name": "Durability Clinic"},
        "proofing": {"method": "in-person", "evidence_reference": "durability test"},
    }))
    .expect("JSON body")
}

/// Reopens the data directory with the CLI and checks what a crash must not break: every
/// acknowledged serial is there, no serial and no request (each has its own address) is
/// recorded twice, and the audit chain verifies. Returns how many certificates are stored.
fn assert_store_consistent(data: &Path, acknowledged: &[String], when: &str) -> usize {
    let list = cli_json(data, PASSPHRASE, &["cert", "list"]);
    let list = list
        .as_array()
        .unwrap_or_else(|| panic!("cert list printed no array: {list}"));
    let field = |c: &Value, name: &str| c[name].as_str().expect("cert list field").to_string();
    let serials: HashSet<String> = list.iter().map(|c| field(c, "serial")).collect();
    let holders: HashSet<String> = list.iter().map(|c| field(c, "holder")).collect();
    assert_eq!(
        serials.len(),
        list.len(),
        "{when}: a serial is listed twice"
    );
    assert_eq!(
        holders.len(),
        list.len(),
        "{when}: a request was recorded twice"
    );
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|s| !serials.contains(*s))
        .collect();
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged certificates are gone: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    let report = cli_json(data, PASSPHRASE, &["audit", "verify"]);
    assert_eq!(report["ok"], json!(true), "{when}: audit verify: {report}");
    list.len()
}

/// What one burst of concurrent issuance saw.
struct Burst {
    acknowledged: Vec<String>,
    /// Requests sent before the kill that got no complete response.
    cut_off: usize,
    elapsed: Duration,
}

/// Runs `CLIENTS` threads issuing as fast as they can, SIGKILLs the server while they are
/// busy, and returns every serial acknowledged with a complete 201 response.
fn burst_then_kill(server: &mut Server, token: &str, csrs: &[String], cycle: usize) -> Burst {
    let killed = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (killed, acknowledged, failures) =
                (killed.clone(), acknowledged.clone(), failures.clone());
            let (addr, token, csr) = (server.addr, token.to_string(), csrs[t].clone());
            // Returns whether a request of this client was in flight when the server died.
            std::thread::spawn(move || {
                for n in 0.. {
                    let body = issue_body(&format!("c{cycle}-t{t}-{n}@{DOMAIN}"), &csr);
                    let sent_before_kill = !killed.load(Ordering::SeqCst);
                    match http(
                        addr,
                        "POST",
                        "/api/v1/certificates",
                        Some(&token),
                        Some(&body),
                    ) {
                        Ok(r) if r.status == 201 => {
                            let v = r.json();
                            let serials = v["serials"].as_array().expect("serials");
                            assert_eq!(serials.len(), 1, "one serial for usage dual: {v}");
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(serials[0].as_str().expect("serial").to_string());
                        }
                        Ok(r) => {
                            failures.lock().unwrap().push(format!(
                                "HTTP {}: {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            return false;
                        }
                        // Reset, truncated or refused: expected once the server is killed.
                        Err(_) if killed.load(Ordering::SeqCst) => return sent_before_kill,
                        Err(e) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("before the kill: {e}"));
                            return false;
                        }
                    }
                }
                unreachable!("a client ran out of request numbers")
            })
        })
        .collect();

    // Let the burst run; a loaded machine may need long for the first acknowledgements, so
    // wait for a minimum count as well as the burst time (generous upper bound).
    let give_up = started + Duration::from_secs(120);
    loop {
        let acks = acknowledged.lock().unwrap().len();
        let stalled = !failures.lock().unwrap().is_empty();
        if stalled || (started.elapsed() >= BURST && acks >= MIN_ACKS_PER_BURST) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "only {acks} certificates acknowledged in 120 s:\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let elapsed = started.elapsed();
    let cut_off = clients
        .into_iter()
        .map(|c| c.join().expect("client thread panicked"))
        .filter(|&in_flight| in_flight)
        .count();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "issuance failed while the server was up: {failures:?}\n{}",
        server.output()
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    Burst {
        acknowledged,
        cut_off,
        elapsed,
    }
}

#[test]
fn kill_9_during_issuance_loses_no_acknowledged_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let token = registrar_token(&data);
    let csrs: Vec<String> = (0..CLIENTS)
        .map(|t| csr(tmp.path(), &format!("client{t}")))
        .collect();

    let mut acknowledged: Vec<String> = Vec::new();
    for cycle in 0..KILL_CYCLES {
        // Each start after the first is a restart after kill -9: it must come up cleanly.
        let mut server = Server::start(&data, PASSPHRASE);
        let burst = burst_then_kill(&mut server, &token, &csrs, cycle);
        eprintln!(
            "durability cycle {cycle}: {} certificates acknowledged in {:.2} s ({:.0}/s with {CLIENTS} clients), {} requests cut off by kill -9",
            burst.acknowledged.len(),
            burst.elapsed.as_secs_f64(),
            burst.acknowledged.len() as f64 / burst.elapsed.as_secs_f64(),
            burst.cut_off,
        );
        acknowledged.extend(burst.acknowledged);
        let stored = assert_store_consistent(&data, &acknowledged, &format!("after kill {cycle}"));
        eprintln!(
            "  stored {stored} in total, {} acknowledged",
            acknowledged.len()
        );
    }
    let distinct: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "a serial was issued twice"
    );

    // After the last kill: starts, issues, and stops gracefully on SIGTERM.
    let mut server = Server::start(&data, PASSPHRASE);
    let body = issue_body(&format!("after-kill@{DOMAIN}"), &csrs[0]);
    let r = http(
        server.addr,
        "POST",
        "/api/v1/certificates",
        Some(&token),
        Some(&body),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let serial = r.json()["serial"].as_str().unwrap().to_string();
    let status = server.stop();
    assert!(
        status.success(),
        "serve exited with {status} on SIGTERM:\n{}",
        server.output()
    );
    acknowledged.push(serial);
    assert_store_consistent(&data, &acknowledged, "after SIGTERM");
}

#[test]
fn a_cli_command_on_a_served_data_dir_fails_with_data_dir_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let mut server = Server::start(&data, PASSPHRASE);
    for args in [
        &["audit", "verify"][..],
        // (`cert`, `token`, `user`, `org` commands go through the running server instead.)
        &["ca", "status"],
        &["crl", "export", "--out", "x.crl"],
    ] {
        let error = cli_error(&data, PASSPHRASE, args);
        assert_eq!(error["code"], json!("data_dir_locked"), "{args:?}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("serve") && !message.to_lowercase().contains("sled"),
            "{args:?}: the message should point at the running server: {message}"
        );
    }
    // The refused commands changed nothing and the server is still healthy.
    let health = http(server.addr, "GET", "/healthz", None, None).unwrap();
    assert_eq!(health.status, 200);
    let status = server.stop();
    assert!(status.success(), "{}", server.output());
    // Once the server is gone the same command works.
    let out = cli(&data, PASSPHRASE, &["cert", "list"]);
    out.assert_success("cert list after serve stopped");
}

/// Replaces one CA record of a stopped service's store.
fn put_ca_record(data: &Path, record: &anchorage::ca::CaRecord) {
    let store = Store::open(data).unwrap();
    store.danger_put_ca_record(record).unwrap();
}

fn ca_record(data: &Path, role: CaRole) -> anchorage::ca::CaRecord {
    Store::open(data).unwrap().ca_record(role).unwrap().unwrap()
}

fn refused_start(data: &Path, passphrase: &str) -> Value {
    Server::spawn(data, passphrase, free_port()).expect_refusal()
}

#[test]
fn serve_refuses_to_start_when_a_ca_key_does_not_match_its_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let other = tmp.path().join("other");
    init(&data);
    init(&other);

    // A wrong passphrase cannot open the sealed keys.
    let error = refused_start(&data, "not the passphrase these keys were sealed with");
    assert_eq!(error["code"], json!("passphrase_error"), "{error}");

    // A sealed key from another hierarchy, sealed with the same passphrase and for the same
    // role, decrypts fine: only the key/certificate check can catch it.
    for role in [CaRole::Issuing, CaRole::Root] {
        let original = ca_record(&data, role);
        let mut swapped = original.clone();
        swapped.sealed_key = ca_record(&other, role).sealed_key;
        put_ca_record(&data, &swapped);
        let error = refused_start(&data, PASSPHRASE);
        assert_eq!(error["code"], json!("ca_key_error"), "{role:?}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{} CA private key does not match", role.as_str())),
            "{role:?}: {message}"
        );
        put_ca_record(&data, &original);
    }

    // With the records restored the same data directory serves again.
    let mut server = Server::start(&data, PASSPHRASE);
    let status = server.stop();
    assert!(status.success(), "{}", server.output());
}

/// The acknowledgement waits for the disk, not only for the page cache (sled's own flush uses
/// `sync_file_range`, which a power cut can undo): traced with strace, `cert issue` calls
/// `fdatasync` on sled's log after the write that holds the certificate's record and before it
/// prints the certificate. (Bookkeeping written after the acknowledgement, such as the zone
/// publication's state, may reach the log later: the certificate is what must be durable.)
#[test]
fn issuance_is_fdatasynced_before_it_is_acknowledged() {
    let ca = crate::harness::Ca::init(&[DOMAIN]);
    let csr = ca.csr("synced", crate::harness::KeyAlg::Rsa2048);
    let trace = ca.path("strace.txt");
    let log = ca.data_dir().join("store").join("db");
    let out = crate::tools::run_cmd(
        std::process::Command::new("strace")
            .current_dir(ca.dir())
            .env("ANCHORAGE_PASSPHRASE", crate::harness::PASSPHRASE)
            .args([
                "-f",
                "-qq",
                "-y",
                "-s",
                "1000000",
                "-e",
                "trace=pwrite64,write,fdatasync",
            ])
            .arg("-o")
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_anchorage"))
            .arg("--data-dir")
            .arg(ca.data_dir())
            .args(["cert", "issue", "--address", &format!("synced@{DOMAIN}")])
            .args(["--usage", "dual", "--csr", &csr, "-o", "json"]),
    );
    out.assert_success("strace anchorage cert issue");
    assert!(out.stdout.contains("\"serial\""), "{}", out.describe());
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let log_name = format!("<{}>", log.display());
    let printed = lines
        .iter()
        .position(|l| l.contains("write(1<") && l.contains("certificates"))
        .unwrap_or_else(|| panic!("no write of the result to stdout in the trace:\n{text}"));
    let reply: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON output");
    let serial = reply["certificates"][0]["serial"]
        .as_str()
        .unwrap_or_else(|| panic!("no serial in {reply}"))
        .to_string();
    // The log write that carries the certificate's record (sled stores the JSON as is).
    let last_write = lines[..printed]
        .iter()
        .rposition(|l| {
            l.contains("pwrite64(")
                && l.contains(&log_name)
                && l.contains(&format!("\\\"{serial}\\\""))
        })
        .unwrap_or_else(|| {
            panic!(
                "no write of serial {serial} to {log_name} before the result:\n{}",
                text.chars().take(4000).collect::<String>()
            )
        });
    let synced = lines[last_write..printed].iter().any(|l| {
        l.contains("fdatasync(") && l.contains(&log_name) && l.trim_end().ends_with("= 0")
    });
    assert!(
        synced,
        "no fdatasync of {log_name} between the write of serial {serial} and the acknowledgement:\n{}",
        lines[last_write..=printed]
            .iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
