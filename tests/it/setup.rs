//! Setting a CA up: the zero-config evaluation start, explicit `init`, importing an existing
//! root or issuing CA from PEM and PKCS#12 (made by openssl, not by us), and the refusals
//! that keep a broken hierarchy out of the store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{free_port, openssl_verify, run_in};

const BIN: &str = env!("CARGO_BIN_EXE_anchorage");
const PASS: &str = "setup-test-passphrase-0123";

fn anchorage(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .env("ANCHORAGE_PASSPHRASE", PASS)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

#[test]
fn zero_config_serve_creates_an_evaluation_ca_and_serves_it() {
    let cwd = tempfile::tempdir().unwrap();
    // A port picked free can be taken by a parallel test before serve binds it: retry then.
    let (mut child, port, lines) = (0..3)
        .find_map(|_| {
            let port = free_port();
            // No --data-dir, no config, no passphrase: everything defaults.
            let mut child = Command::new(BIN)
                .current_dir(cwd.path())
                .env_remove("ANCHORAGE_PASSPHRASE")
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let mut lines = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let done = line.contains("health:");
                lines.push(line);
                if done || Instant::now() > deadline {
                    return Some((child, port, lines));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        })
        .expect("serve did not start in three attempts");
    let listen = format!("127.0.0.1:{port}");
    let text = lines.join("\n");
    let (status, body) = http_get(port, "/healthz");
    let (root_status, root) = http_get(port, "/ca/root.cer");
    let (crl_status, crl) = http_get(port, "/crl/issuing.crl");
    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();

    assert!(
        text.contains(&format!("listening on http://{listen}")),
        "{text}"
    );
    assert!(
        text.contains("/crl/issuing.crl") && text.contains("/api/v1/certificates"),
        "{text}"
    );
    assert!(
        stderr.contains("EVALUATION ONLY"),
        "warning missing: {stderr}"
    );
    assert_eq!(
        (status, String::from_utf8_lossy(&body).contains("ok")),
        (200, true)
    );
    assert_eq!(root_status, 200);
    assert_eq!(crl_status, 200);
    let data = cwd.path().join("anchorage-data");
    let pass = data.join("evaluation-passphrase");
    let mode = std::fs::metadata(&pass).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the evaluation passphrase must be private");
    std::fs::write(cwd.path().join("root.der"), &root).unwrap();
    std::fs::write(cwd.path().join("crl.der"), &crl).unwrap();
    let cert = run_in(
        cwd.path(),
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "root.der", "-noout", "-subject",
        ],
    );
    cert.assert_success("root certificate parses");
    assert!(cert.stdout.contains("Root CA"));
    run_in(
        cwd.path(),
        "openssl",
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout"],
    )
    .assert_success("CRL parses");
    // The CA keys are not stored in clear anywhere in the data directory.
    let store = std::fs::read_dir(data.join("store")).unwrap();
    for entry in store {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
            "clear key material on disk"
        );
    }
}

#[test]
fn init_is_explicit_and_refuses_a_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--data-dir",
        "d",
        "-o",
        "json",
        "init",
        "--managed-domain",
        "direct.example.com",
        "--managed-domain",
        "Direct.Example.ORG",
        "--public-url",
        "http://ca.example.test",
        "--root-key",
        "p384",
    ];
    let out = anchorage(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["ca"]["root_key"], "ECDSA P-384");
    assert_eq!(v["ca"]["issuing_key"], "RSA-2048");
    assert_eq!(
        v["ca"]["managed_domains"],
        serde_json::json!(["direct.example.com", "direct.example.org"])
    );
    assert!(
        !dir.path().join("d/evaluation-passphrase").exists(),
        "env passphrase given: no evaluation file"
    );
    let again = anchorage(dir.path(), &args);
    assert!(!again.status.success());
    assert_eq!(json_of(&again)["code"], "conflict");
    let status = json_of(&anchorage(
        dir.path(),
        &["--data-dir", "d", "-o", "json", "ca", "status"],
    ));
    assert_eq!(status[0]["role"], "root");
    assert_eq!(status[0]["crl_number"], 1);
    assert_eq!(status[1]["crl_number"], 1);
    let check = anchorage(dir.path(), &["--data-dir", "d", "config", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // A wrong passphrase cannot unlock the keys.
    let bad = Command::new(BIN)
        .current_dir(dir.path())
        .env("ANCHORAGE_PASSPHRASE", "not-the-right-passphrase")
        .args([
            "--data-dir",
            "d",
            "-o",
            "json",
            "cert",
            "revoke",
            "01",
            "--reason",
            "superseded",
        ])
        .output()
        .unwrap();
    assert_eq!(json_of(&bad)["code"], "passphrase_error");
}

#[test]
fn config_check_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "public_url = \"https://ca.example\"\nmanaged_domains = []\n[crl]\nnext_update_hours = 1\n",
    )
    .unwrap();
    let out = anchorage(
        dir.path(),
        &["--config", "bad.toml", "-o", "json", "config", "check"],
    );
    assert!(!out.status.success());
    let problems = String::from_utf8_lossy(&out.stdout).to_string();
    for needle in ["http://", "managed_domains", "next_update_hours"] {
        assert!(
            problems.contains(needle),
            "{needle} not reported: {problems}"
        );
    }
    std::fs::write(
        dir.path().join("typo.toml"),
        "managed_domain = [\"a.example\"]\n",
    )
    .unwrap();
    let typo = anchorage(dir.path(), &["--config", "typo.toml", "config", "check"]);
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    // The reference configuration, pointed at this checkout's policies and a real file.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(dir.path().join("pass"), PASS).unwrap();
    // As the reference config says: 0600, or `config check` refuses it.
    std::fs::set_permissions(
        dir.path().join("pass"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let reference = std::fs::read_to_string(root.join("ops/anchorage.toml"))
        .unwrap()
        .replace(
            "/etc/anchorage/policies",
            root.join("policies").to_str().unwrap(),
        )
        .replace(
            "/etc/anchorage/bundles",
            root.join("bundles").to_str().unwrap(),
        )
        .replace(
            "/etc/anchorage/passphrase",
            dir.path().join("pass").to_str().unwrap(),
        );
    std::fs::write(dir.path().join("reference.toml"), reference).unwrap();
    let ok = anchorage(
        dir.path(),
        &["--config", "reference.toml", "config", "check"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "configuration OK"
    );
}

/// An openssl-made CA: `ext` are extra -addext arguments.
fn openssl_ca(dir: &Path, name: &str, subject: &str, signer: Option<&str>) {
    let key = format!("{name}.key");
    let cert = format!("{name}.pem");
    run_in(
        dir,
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    )
    .assert_success("genpkey");
    let exts = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ];
    match signer {
        None => {
            let mut args = vec![
                "req", "-x509", "-new", "-key", &key, "-subj", subject, "-days", "3650", "-out",
                &cert,
            ];
            args.extend(exts);
            run_in(dir, "openssl", &args).assert_success("self-signed CA");
        }
        Some(parent) => {
            let csr = format!("{name}.csr");
            run_in(
                dir,
                "openssl",
                &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
            )
            .assert_success("csr");
            std::fs::write(
                dir.join("ext.cnf"),
                "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
            )
            .unwrap();
            let pkey = format!("{parent}.key");
            let pcert = format!("{parent}.pem");
            run_in(
                dir,
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &pcert,
                    "-CAkey",
                    &pkey,
                    "-CAcreateserial",
                    "-days",
                    "1800",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    &cert,
                ],
            )
            .assert_success("issuing CA");
        }
    }
}

fn issue_and_verify(dir: &Path, data: &str, root_pem: &str) {
    run_in(
        dir,
        "openssl",
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key", "-subj", "/CN=x",
            "-out", "ee.csr",
        ],
    )
    .assert_success("ee csr");
    let out = anchorage(
        dir,
        &[
            "--data-dir",
            data,
            "cert",
            "issue",
            "--address",
            "jones@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            "ee.csr",
            "--out",
            "ee.pem",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = anchorage(
        dir,
        &["--data-dir", data, "ca", "chain", "--out", "chain.pem"],
    );
    assert!(out.status.success());
    let verify = openssl_verify(
        &dir.join(root_pem),
        Some(&dir.join("chain.pem")),
        &dir.join("ee.pem"),
        "smimesign",
        None,
    );
    verify.assert_success("certificate issued under the imported CA chains to the imported root");
}

#[test]
fn imports_an_openssl_root_from_pem_and_from_pkcs12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ca(d, "root", "/C=US/O=Example HIE/CN=Example HIE Root", None);
    run_in(
        d,
        "openssl",
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "root.key", "-out", "root.p8",
        ],
    )
    .assert_success("pkcs8");
    let base = [
        "init",
        "--managed-domain",
        "direct.example.com",
        "--public-url",
        "http://127.0.0.1:8080",
    ];
    let mut args = vec!["--data-dir", "pem"];
    args.extend(base);
    args.extend(["--root-cert", "root.pem", "--root-key-file", "root.p8"]);
    let out = anchorage(d, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    issue_and_verify(d, "pem", "root.pem");

    std::fs::write(d.join("p12pw"), "p12-password-42\n").unwrap();
    run_in(
        d,
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-inkey",
            "root.key",
            "-in",
            "root.pem",
            "-passout",
            "file:p12pw",
            "-out",
            "root.p12",
        ],
    )
    .assert_success("pkcs12 export");
    let mut args = vec!["--data-dir", "p12"];
    args.extend(base);
    args.extend(["--root-p12", "root.p12", "--p12-password-file", "p12pw"]);
    let out = anchorage(d, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    issue_and_verify(d, "p12", "root.pem");
}

#[test]
fn imports_an_issuing_ca_with_an_offline_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ca(d, "root", "/C=US/O=Example HIE/CN=Example HIE Root", None);
    openssl_ca(
        d,
        "issuing",
        "/C=US/O=Example HIE/CN=Example HIE Direct Issuing",
        Some("root"),
    );
    run_in(
        d,
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "issuing.key",
            "-out",
            "issuing.p8",
        ],
    )
    .assert_success("pkcs8");
    let out = anchorage(
        d,
        &[
            "--data-dir",
            "d",
            "-o",
            "json",
            "init",
            "--managed-domain",
            "direct.example.com",
            "--public-url",
            "http://127.0.0.1:8080",
            "--root-cert",
            "root.pem",
            "--issuing-cert",
            "issuing.pem",
            "--issuing-key-file",
            "issuing.p8",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    issue_and_verify(d, "d", "root.pem");
    let status = json_of(&anchorage(
        d,
        &["--data-dir", "d", "-o", "json", "ca", "status"],
    ));
    assert_eq!(status[0]["key_online"], false, "the root stays offline");
}

#[test]
fn refuses_broken_imports_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Repeated attribute types (DC=example, DC=com) do not survive re-encoding.
    openssl_ca(d, "dc", "/DC=com/DC=example/CN=Example Root", None);
    openssl_ca(d, "other", "/CN=Other Root", None);
    for f in ["dc", "other"] {
        run_in(
            d,
            "openssl",
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                &format!("{f}.key"),
                "-out",
                &format!("{f}.p8"),
            ],
        )
        .assert_success("pkcs8");
    }
    run_in(
        d,
        "openssl",
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ee.key",
            "-subj",
            "/CN=leaf",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-out",
            "ee.pem",
        ],
    )
    .assert_success("leaf");
    run_in(
        d,
        "openssl",
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ee.key", "-out", "ee.p8",
        ],
    )
    .assert_success("pkcs8");
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "fail/subject-does-not-re-encode",
            &["--root-cert", "dc.pem", "--root-key-file", "dc.p8"],
            "ca_key_error",
            "re-encode",
        ),
        (
            "fail/key-mismatch",
            &["--root-cert", "dc.pem", "--root-key-file", "other.p8"],
            "ca_key_error",
            "does not match",
        ),
        (
            "fail/not-a-ca",
            &["--root-cert", "ee.pem", "--root-key-file", "ee.p8"],
            "ca_key_error",
            "CA:TRUE",
        ),
        (
            "fail/issuing-without-root",
            &[
                "--issuing-cert",
                "other.pem",
                "--issuing-key-file",
                "other.p8",
            ],
            "invalid_input",
            "root certificate",
        ),
        (
            "fail/key-not-pkcs8",
            &["--root-cert", "other.pem", "--root-key-file", "other.pem"],
            "invalid_input",
            "PRIVATE KEY",
        ),
    ];
    for (name, extra, code, needle) in cases {
        let mut args = vec![
            "--data-dir",
            "d",
            "-o",
            "json",
            "init",
            "--managed-domain",
            "direct.example.com",
            "--public-url",
            "http://127.0.0.1:8080",
        ];
        args.extend(extra.iter());
        let out = anchorage(d, &args);
        assert!(!out.status.success(), "{name}");
        let v = json_of(&out);
        assert_eq!(v["code"], *code, "{name}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{name}: {v}"
        );
        let status = anchorage(d, &["--data-dir", "d", "-o", "json", "ca", "status"]);
        assert_eq!(
            json_of(&status)["code"],
            "not_initialised",
            "{name}: nothing stored"
        );
    }
}
