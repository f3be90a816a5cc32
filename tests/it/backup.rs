//! Backup and restore end to end: a CA that issued, revoked, admitted an anchor and built a
//! bundle is backed up through the running `serve` (the store is locked, so the CLI goes
//! through `GET /api/v1/backup` with the control token), restored into a new directory, and
//! started: the same counts, a verifying audit chain, and byte-identical CRLs and bundles. A
//! truncated backup and an occupied target are refused without writing anything, and a
//! damaged store names its file and the way back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::bundles::community;
use crate::harness::PASSPHRASE;
use crate::server::{cli, cli_error, cli_json, http, Server};

const DOMAIN: &str = "direct.example.com";

/// What must survive a restore: counts and audit chain, read with the CLI.
fn facts(data: &Path) -> (usize, usize, usize, Value) {
    let certs = cli_json(data, PASSPHRASE, &["cert", "list"]);
    let revoked = cli_json(data, PASSPHRASE, &["cert", "list", "--status", "revoked"]);
    let anchors = cli_json(data, PASSPHRASE, &["anchor", "list"]);
    let audit = cli_json(data, PASSPHRASE, &["audit", "verify"]);
    (
        certs.as_array().unwrap().len(),
        revoked.as_array().unwrap().len(),
        anchors.as_array().unwrap().len(),
        audit["entries"].clone(),
    )
}

/// The published bytes a relying party fetches.
fn published(server: &Server) -> Vec<(String, Vec<u8>)> {
    [
        "/crl/issuing.crl",
        "/crl/root.crl",
        "/bundles/provider-test.p7b",
        "/bundles/provider-test.p7m",
    ]
    .iter()
    .map(|path| {
        let r = http(server.addr, "GET", path, None, None).unwrap();
        assert_eq!(r.status, 200, "{path}");
        (path.to_string(), r.body)
    })
    .collect()
}

#[test]
fn backup_through_serve_restores_an_identical_ca() {
    let community = community(&[]);
    let ca = &community.ca;
    let data = ca.data_dir();
    let issued = ca.issue_json(&[
        "--address",
        &format!("kept@{DOMAIN}"),
        "--usage",
        "dual",
        "--keygen",
        "--p12-out",
        "kept.p12",
    ]);
    let other = ca.issue_json(&[
        "--address",
        &format!("gone@{DOMAIN}"),
        "--usage",
        "dual",
        "--keygen",
        "--p12-out",
        "gone.p12",
    ]);
    assert!(issued["serial"].is_string());
    ca.json(&[
        "cert",
        "revoke",
        other["serial"].as_str().unwrap(),
        "--reason",
        "key-compromise",
    ]);
    let submitted = ca.json(&["anchor", "submit", "--bundle", "provider-test", "alpha.pem"]);
    let id = submitted["id"].to_string();
    ca.json(&["anchor", "approve", &id]);
    ca.json(&["bundle", "build", "provider-test"]);

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("anchorage.backup");
    let mut server = Server::start(&data, PASSPHRASE);
    let served = published(&server);
    let backup = cli_json(
        &data,
        PASSPHRASE,
        &["backup", "--out", file.to_str().unwrap()],
    );
    assert_eq!(backup["via"], "server", "{backup}");
    server.stop();
    // `serve` itself logs its start; nothing changes after the backup.
    let before = facts(&data);
    assert_eq!((before.0, before.1, before.2), (2, 1, 1), "{before:?}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"anchorage-backup 1 sha256="));

    // Restore into a new directory; it starts and serves the same bytes.
    let restored = out.path().join("restored");
    let report = cli_json(&restored, PASSPHRASE, &["restore", file.to_str().unwrap()]);
    assert_eq!(report["config_restored"], true, "{report}");
    // The sealed audit key comes back too, or the keyed log could not be verified.
    assert_eq!(report["audit_key_restored"], true, "{report}");
    assert_eq!(
        std::fs::read(restored.join("audit.key")).unwrap(),
        std::fs::read(data.join("audit.key")).unwrap()
    );
    let key_mode = std::fs::metadata(restored.join("audit.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let store_mode = std::fs::metadata(restored.join("store"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(store_mode & 0o777, 0o700);
    assert_eq!(facts(&restored), before);
    let mut server = Server::start(&restored, PASSPHRASE);
    assert_eq!(published(&server), served);
    server.stop();
    let after = facts(&restored);
    assert_eq!((after.0, after.1, after.2), (2, 1, 1), "{after:?}");
    // A direct backup (no serve) reads the same store.
    let direct = out.path().join("direct.backup");
    let again = cli_json(
        &restored,
        PASSPHRASE,
        &["backup", "--out", direct.to_str().unwrap()],
    );
    assert_eq!(again["via"], "store", "{again}");
    assert_eq!(again["entries"], backup["entries"], "{again}");

    // An occupied directory is refused.
    let err = cli_error(&data, PASSPHRASE, &["restore", file.to_str().unwrap()]);
    assert_eq!(err["code"], "conflict", "{err}");

    // A truncated file is refused, naming the problem, and leaves nothing behind.
    let cut = out.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let target = out.path().join("from-cut");
    let err = cli_error(&target, PASSPHRASE, &["restore", cut.to_str().unwrap()]);
    assert_eq!(err["code"], "backup_invalid", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains(cut.to_str().unwrap()), "{message}");
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A damaged store names the file and the recovery step instead of sled's bare message.
    let log = restored.join("store").join("db");
    let mut db = std::fs::read(&log).unwrap();
    for b in db.iter_mut().skip(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&log, &db).unwrap();
    let out_damaged = cli(&restored, PASSPHRASE, &["-o", "json", "cert", "list"]);
    let err: Value = serde_json::from_str(&out_damaged.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out_damaged.describe()));
    assert_eq!(err["code"], "store_corrupted", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(log.to_str().unwrap()), "{message}");
    assert!(
        message.contains("anchorage restore FILE --data-dir D")
            && message.contains("ops/runbooks/backup-restore.md"),
        "{message}"
    );
}
