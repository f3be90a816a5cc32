//! Issue 12 requirement 2, "A full disk heals": the data directory lives on a small tmpfs that
//! the test fills while `serve` runs. Before the fix every write failed with 500 until a
//! restart (sled keeps its first I/O error) and `/healthz` said `ok`. Now writes answer 503
//! `store_unwritable`, `/healthz` answers 503 naming the problem, CRLs and CA certificates are
//! still served, and as soon as space returns issuance and revocation work again without a
//! restart. At the end nothing acknowledged is missing from the store, the CRL, the zone, the
//! LDIF, the published bundle or the audit log.
//!
//! Mounting needs root (CI runs as root); a failed mount fails the test.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::server::{cli, cli_json, http, HttpResponse, Server, PASSPHRASE};
use crate::tools::{free_port, run_in};

const DOMAIN: &str = "direct.example.com";
const BUNDLE: &str = "provider-test";
/// Room for the store (a few hundred KiB here) and sled's log segments, small enough to fill
/// in a moment.
const TMPFS_SIZE: &str = "24m";

/// A tmpfs mounted for one test; unmounted (lazily, in case a process still holds a file) on
/// drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE},mode=0755")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {TMPFS_SIZE} tmpfs at {} failed (the test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Writes a file until the file system refuses: afterwards not one more page fits.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        for chunk in [1 << 20, 4096, 512] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn csr(dir: &Path) -> String {
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
            "k.pem",
            "-subj",
            "/CN=full disk",
            "-out",
            "r.csr",
        ],
    )
    .assert_success("openssl req");
    std::fs::read_to_string(dir.join("r.csr")).unwrap()
}

/// One issued certificate: serial and the base64 of its DER (as CERT records carry it).
#[derive(Debug, Clone)]
struct Issued {
    serial: String,
    address: String,
    der_b64: String,
}

fn issue(server: &Server, token: &str, address: &str, csr: &str) -> Result<Issued, HttpResponse> {
    let body = json!({
        "address": address, "usage": "dual", "csr": csr,
        "subscriber": {"name": "Full Disk Clinic"},
        "proofing": {"method": "in-person", "evidence_reference": "full disk test"},
    });
    let r = http(
        server.addr,
        "POST",
        "/api/v1/certificates",
        Some(token),
        Some(body.to_string().as_bytes()),
    )
    .expect("the server answers while the disk is full");
    if r.status != 201 {
        return Err(r);
    }
    let v = r.json();
    let pem_text = v["certificates"][0]["pem"].as_str().unwrap();
    Ok(Issued {
        serial: v["serial"].as_str().unwrap().to_string(),
        address: address.to_string(),
        der_b64: base64::engine::general_purpose::STANDARD
            .encode(pem::parse(pem_text).unwrap().contents()),
    })
}

fn revoke(server: &Server, token: &str, serial: &str) -> HttpResponse {
    http(
        server.addr,
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(token),
        Some(br#"{"reason":"key-compromise"}"#),
    )
    .expect("the server answers")
}

/// Submits a member anchor to `provider-test` and approves it (which publishes the bundle);
/// the first refusal is returned.
fn submit_and_approve(server: &Server, admin: &str, member: &str) -> Result<u64, HttpResponse> {
    let body = json!({
        "file": String::from_utf8_lossy(crate::bundles::fixture(&format!("{member}.pem"))),
        "organization": format!("{member} HISP"),
        "contact": format!("pki@{member}.example"),
    });
    let r = http(
        server.addr,
        "POST",
        &format!("/api/v1/bundles/{BUNDLE}/anchors"),
        Some(admin),
        Some(body.to_string().as_bytes()),
    )
    .expect("the server answers");
    if r.status != 201 {
        return Err(r);
    }
    let id = r.json()["id"].as_u64().unwrap();
    let r = http(
        server.addr,
        "POST",
        &format!("/api/v1/anchors/{id}/approve"),
        Some(admin),
        Some(b"{}"),
    )
    .expect("the server answers");
    if r.status != 200 {
        return Err(r);
    }
    Ok(id)
}

/// The certificates of the served `provider-test.p7b`, read back by openssl.
fn bundle_certs(server: &Server, dir: &Path) -> BTreeSet<Vec<u8>> {
    let r = http(
        server.addr,
        "GET",
        &format!("/bundles/{BUNDLE}.p7b"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "the bundle download");
    std::fs::write(dir.join("served.p7b"), &r.body).unwrap();
    let out = run_in(
        dir,
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "served.p7b",
            "-print_certs",
        ],
    );
    out.assert_success("openssl pkcs7 -print_certs");
    pem::parse_many(out.stdout.as_bytes())
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect()
}

fn health(server: &Server) -> (u16, Value) {
    let r = http(server.addr, "GET", "/healthz", None, None).unwrap();
    (r.status, r.json())
}

/// The serials on a DER CRL, as openssl prints them (upper-case hex).
fn crl_serials(dir: &Path, der: &[u8]) -> BTreeSet<String> {
    let path = dir.join("issuing.crl");
    std::fs::write(&path, der).unwrap();
    let out = run_in(
        dir,
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "issuing.crl",
            "-noout",
            "-text",
        ],
    );
    out.assert_success("openssl crl");
    out.stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_uppercase())
        .collect()
}

fn normalise_serial(serial: &str) -> String {
    serial.replace(':', "").to_uppercase()
}

#[test]
fn a_full_disk_answers_503_and_heals_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&tmp.path().join("fs"));
    let data = fs.path.join("data");
    // The bundle inventory is configuration, outside the failing file system.
    let bundles = tmp.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    for name in ["provider-test.toml", "provider.toml"] {
        std::fs::copy(shipped.join(name), bundles.join(name)).unwrap();
    }
    let url = format!("http://127.0.0.1:{}", free_port());
    cli_json(
        &data,
        PASSPHRASE,
        &[
            "init",
            "--managed-domain",
            DOMAIN,
            "--public-url",
            &url,
            "--bundles-dir",
            bundles.to_str().unwrap(),
        ],
    );
    crate::harness::allow_key_reuse(&data);
    let token = cli_json(
        &data,
        PASSPHRASE,
        &["token", "create", "--role", "registrar", "--domain", "*"],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = cli_json(&data, PASSPHRASE, &["token", "create", "--role", "admin"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let csr = csr(tmp.path());
    let mut server = Server::start(&data, PASSPHRASE);
    let mut anchors = vec![submit_and_approve(&server, &admin, "alpha")
        .unwrap_or_else(|r| panic!("anchor before the fault: {}", r.status))];
    let mut acknowledged: Vec<Issued> = Vec::new();
    let mut revoked: Vec<String> = Vec::new();
    for n in 0..3 {
        let issued = issue(&server, &token, &format!("before{n}@{DOMAIN}"), &csr)
            .unwrap_or_else(|r| panic!("issuance before the fault: {}", r.status));
        acknowledged.push(issued);
    }
    let r = revoke(&server, &token, &acknowledged[0].serial);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    revoked.push(acknowledged[0].serial.clone());

    // Fill the file system. A write may still fit into a page sled already holds; keep
    // issuing until one is refused, and count every 201 as acknowledged.
    let filler = fs.fill();
    let mut refusal = None;
    // sled preallocates its log in segments of 512 KiB, so up to a segment of writes still fits.
    for n in 0..1000 {
        match issue(&server, &token, &format!("full{n}@{DOMAIN}"), &csr) {
            Ok(issued) => acknowledged.push(issued),
            Err(r) => {
                refusal = Some(r);
                break;
            }
        }
    }
    let refusal = refusal.expect("1000 issuances succeeded on a full file system");
    let body = refusal.json();
    assert_eq!(
        (refusal.status, body["code"].as_str()),
        (503, Some("store_unwritable")),
        "{body}\n{}",
        server.output()
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("full or failing"),
        "{body}"
    );
    assert!(refusal.header("retry-after").is_some(), "no Retry-After");
    // Sticky while the disk stays full: issuance and revocation both refused, clearly.
    let again = issue(&server, &token, &format!("again@{DOMAIN}"), &csr).unwrap_err();
    assert_eq!(
        (again.status, again.json()["code"].clone()),
        (503, json!("store_unwritable"))
    );
    let r = revoke(&server, &token, &acknowledged[1].serial);
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (503, json!("store_unwritable")),
        "revocation on a full disk"
    );
    let refused = submit_and_approve(&server, &admin, "bravo").unwrap_err();
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (503, json!("store_unwritable")),
        "an anchor submission on a full disk"
    );
    // Health names the problem (the healer runs every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, h) = loop {
        let (status, h) = health(&server);
        if status == 503 || Instant::now() > deadline {
            break (status, h);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "/healthz while the disk is full: {h}");
    assert_eq!(h["status"], "error", "{h}");
    let problem = h["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "store_unwritable")
        .unwrap_or_else(|| panic!("no store_unwritable problem: {h}"))
        .clone();
    assert_eq!(problem["subject"], "store");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{problem}"
    );
    // Relying parties still get the CRL, the CA certificate and the bundle.
    assert!(bundle_certs(&server, tmp.path()).contains(&crate::bundles::anchor_der("alpha")));
    for path in ["/crl/issuing.crl", "/ca/issuing.cer", "/ca/root.pem"] {
        let r = http(server.addr, "GET", path, None, None).unwrap();
        assert_eq!(r.status, 200, "{path} while the disk is full");
    }

    // Space returns: writes work again without a restart, within a few healer ticks.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let healed = loop {
        match issue(&server, &token, &format!("after@{DOMAIN}"), &csr) {
            Ok(issued) => break issued,
            Err(r) => {
                assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
                assert!(
                    Instant::now() < deadline,
                    "issuance still refused 20 s after space returned:\n{}",
                    server.output()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    };
    acknowledged.push(healed);
    assert!(
        server.output().contains("the store takes writes again"),
        "healed without reopening the store?\n{}",
        server.output()
    );
    let (status, h) = health(&server);
    assert_eq!((status, h["status"].clone()), (200, json!("ok")), "{h}");
    let r = revoke(&server, &token, &acknowledged[1].serial);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    revoked.push(acknowledged[1].serial.clone());
    anchors.push(
        submit_and_approve(&server, &admin, "bravo")
            .unwrap_or_else(|r| panic!("anchor after healing: {}", r.status)),
    );
    let served = bundle_certs(&server, tmp.path());
    for member in ["alpha", "bravo"] {
        assert!(
            served.contains(&crate::bundles::anchor_der(member)),
            "{member}'s anchor is not in the served bundle"
        );
    }
    for n in 0..3 {
        let issued = issue(&server, &token, &format!("later{n}@{DOMAIN}"), &csr)
            .unwrap_or_else(|r| panic!("issuance after healing: {}", r.status));
        acknowledged.push(issued);
    }

    // Nothing acknowledged is lost. The CRL and the zone follow (CRL coalescing and zone
    // publication are asynchronous: wait for them).
    let live: Vec<&Issued> = acknowledged
        .iter()
        .filter(|i| !revoked.contains(&i.serial))
        .collect();
    let zone_file = data.join(format!("published/dns/{DOMAIN}.fragment"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crl = http(server.addr, "GET", "/crl/issuing.crl", None, None).unwrap();
        let on_crl = crl_serials(tmp.path(), &crl.body);
        let zone = std::fs::read_to_string(&zone_file).unwrap_or_default();
        let crl_ok = revoked
            .iter()
            .all(|s| on_crl.contains(&normalise_serial(s)));
        let zone_ok = live.iter().all(|i| zone.contains(&i.der_b64))
            && revoked.iter().all(|s| {
                let i = acknowledged.iter().find(|i| &i.serial == s).unwrap();
                !zone.contains(&i.der_b64)
            });
        if crl_ok && zone_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after healing: CRL has {on_crl:?} (revoked {revoked:?}), zone complete: {zone_ok}\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = server.stop();
    assert!(status.success(), "serve on SIGTERM: {}", server.output());

    // The store, the LDIF and the audit log, read back by the CLI after the service stopped.
    let list = cli_json(&data, PASSPHRASE, &["cert", "list"]);
    let stored: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect();
    for i in &acknowledged {
        assert!(
            stored.contains(&i.serial),
            "{} lost from the store",
            i.serial
        );
    }
    let ldif_path = tmp.path().join("export.ldif");
    cli(
        &data,
        PASSPHRASE,
        &["publish", "ldif", "--out", ldif_path.to_str().unwrap()],
    )
    .assert_success("publish ldif");
    let ldif = std::fs::read_to_string(&ldif_path)
        .unwrap()
        .replace("\n ", "");
    for i in &live {
        assert!(
            ldif.contains(&i.address) && ldif.contains(&i.der_b64),
            "{} missing from the LDIF",
            i.address
        );
    }
    let listed = cli_json(&data, PASSPHRASE, &["anchor", "list", "--bundle", BUNDLE]);
    for id in &anchors {
        let anchor = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"].as_u64() == Some(*id))
            .unwrap_or_else(|| panic!("anchor #{id} lost: {listed}"));
        assert_eq!(anchor["state"], "published", "{anchor}");
    }
    let report = cli_json(&data, PASSPHRASE, &["audit", "verify"]);
    assert_eq!(report["ok"], json!(true), "audit verify: {report}");
    let audit = cli(&data, PASSPHRASE, &["audit", "export"]);
    audit.assert_success("audit export");
    for i in &acknowledged {
        assert!(
            audit.stdout.contains(&i.serial),
            "{} has no audit entry",
            i.serial
        );
    }
    for s in &revoked {
        assert!(
            audit
                .stdout
                .lines()
                .any(|l| l.contains("revoke") && l.contains(s.as_str())),
            "the revocation of {s} has no audit entry"
        );
    }
    eprintln!(
        "full disk: {} certificates, {} revocations and {} anchors acknowledged, all kept",
        acknowledged.len(),
        revoked.len(),
        anchors.len()
    );
}
