//! The audit trail through the real binary: every issuance and revocation is logged, and
//! `anchorage audit verify` catches an entry changed, removed or cut off the end of the store.

use std::path::Path;
use std::process::Command;

use anchorage::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_anchorage");

fn anchorage(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .env("ANCHORAGE_PASSPHRASE", "audit-test-passphrase-xyz")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A data directory with an init, two issuances and a revocation in its log.
fn populated(dir: &Path) {
    let init = anchorage(
        dir,
        &[
            "--data-dir",
            "d",
            "init",
            "--managed-domain",
            "direct.example.com",
            "--public-url",
            "http://127.0.0.1:8080",
        ],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    std::fs::write(dir.join("pw"), "a-long-p12-password").unwrap();
    let mut serials = Vec::new();
    for address in ["a@direct.example.com", "b@direct.example.com"] {
        // -o json after the subcommand works as well as before it.
        let out = anchorage(
            dir,
            &[
                "--data-dir",
                "d",
                "cert",
                "issue",
                "--address",
                address,
                "--usage",
                "dual",
                "--keygen",
                "--p12-out",
                "k.p12",
                "--p12-password-file",
                "pw",
                "-o",
                "json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serials.push(json(&out)["serial"].as_str().unwrap().to_string());
    }
    let revoke = anchorage(
        dir,
        &[
            "-o",
            "json",
            "--data-dir",
            "d",
            "cert",
            "revoke",
            &serials[0],
            "--reason",
            "superseded",
        ],
    );
    assert!(revoke.status.success());
}

fn verify(dir: &Path) -> serde_json::Value {
    json(&anchorage(
        dir,
        &["--data-dir", "d", "-o", "json", "audit", "verify"],
    ))
}

#[test]
fn log_records_who_did_what_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let report = verify(dir.path());
    assert_eq!(report["ok"], true, "{report}");
    let store = Store::open(&dir.path().join("d")).unwrap();
    let actions: Vec<String> = store.audit_entries().map(|e| e.unwrap().action).collect();
    assert_eq!(
        actions,
        [
            "ca.init",
            "bundle_signer.issue",
            "org.create",
            "crl.publish",
            "crl.publish",
            "cert.issue",
            "cert.issue",
            "cert.revoke",
            "crl.publish"
        ]
    );
    let issue = store
        .audit_entries()
        .map(|e| e.unwrap())
        .find(|e| e.action == "cert.issue")
        .unwrap();
    assert!(issue.actor.starts_with("cli:"));
    assert_eq!(issue.target, "a@direct.example.com");
    assert_eq!(issue.details["proofing"]["method"], "operator-attested");
    let text = serde_json::to_string(&issue).unwrap();
    assert!(
        !text.contains("a-long-p12-password"),
        "no secrets in the audit log"
    );
    assert_eq!(report["entries"], 9);
}

#[test]
fn verify_detects_changed_removed_and_truncated_entries() {
    type Tamper = fn(&sled::Tree);
    let cases: [(&str, Tamper, &str); 3] = [
        (
            "fail/changed",
            |t| {
                let key = 6u64.to_be_bytes();
                let old = t.get(key).unwrap().unwrap();
                let new = String::from_utf8(old.to_vec())
                    .unwrap()
                    .replace("a@direct", "x@direct");
                t.insert(key, new.as_bytes()).unwrap();
            },
            "changed",
        ),
        (
            "fail/removed",
            |t| {
                t.remove(3u64.to_be_bytes()).unwrap();
            },
            "missing",
        ),
        (
            "fail/truncated",
            |t| {
                t.remove(9u64.to_be_bytes()).unwrap();
            },
            "removed from the end",
        ),
    ];
    for (name, tamper, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        {
            let store = Store::open(&dir.path().join("d")).unwrap();
            tamper(store.danger_audit_tree());
            store.flush().unwrap();
        }
        let out = anchorage(
            dir.path(),
            &["--data-dir", "d", "-o", "json", "audit", "verify"],
        );
        assert!(!out.status.success(), "{name}");
        let v = json(&out);
        assert_eq!(v["code"], "audit_integrity", "{name}");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{name}: {v}"
        );
    }
}
