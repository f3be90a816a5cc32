//! Issue 12, requirement 6: the audit log cannot be rewritten by whoever can write the store.
//! Each test plays the attacker on the store file directly (`Store::open` and the raw trees,
//! with the old code's unkeyed SHA-256 chain recomputed), then checks that `anchorage audit
//! verify` and `audit verify --checkpoint FILE` name what was done, and that the entries the
//! CLI acknowledged are still there when nothing was touched.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage::audit::AuditEntry;
use anchorage::store::Store;
use serde_json::{json, Value};

use crate::harness::{Ca, DOMAIN, PASSPHRASE};
use crate::server::Server;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The old code's entry hash: SHA-256 of the entry with `hash` empty (and no `chain`).
fn unkeyed_hash(entry: &AuditEntry) -> String {
    let mut unsealed = entry.clone();
    unsealed.hash = String::new();
    let bytes = serde_json::to_vec(&unsealed).unwrap();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref())
}

fn entries(store: &Store) -> Vec<AuditEntry> {
    store.audit_entries().map(|e| e.unwrap()).collect()
}

/// Rewrites entries `from..` as an unkeyed SHA-256 chain continuing from entry `from - 1`, as
/// the old code would have written them, and moves the recorded head to the new last entry.
fn rechain_unkeyed(store: &Store, from: u64) {
    let all = entries(store);
    let mut prev = all
        .iter()
        .find(|e| e.seq + 1 == from)
        .map_or(GENESIS.to_string(), |e| e.hash.clone());
    let tree = store.danger_audit_tree();
    for mut e in all.into_iter().filter(|e| e.seq >= from) {
        e.chain = None;
        e.prev_hash = prev;
        e.hash = unkeyed_hash(&e);
        prev = e.hash.clone();
        tree.insert(e.seq.to_be_bytes(), serde_json::to_vec(&e).unwrap())
            .unwrap();
    }
    set_head(store);
}

/// Points the recorded head at the last entry in the tree.
fn set_head(store: &Store) {
    let last = entries(store).pop().unwrap();
    store
        .danger_meta_tree()
        .insert(
            "audit_head",
            serde_json::to_vec(&json!({"seq": last.seq, "hash": last.hash})).unwrap(),
        )
        .unwrap();
}

fn edit_entry(store: &Store, seq: u64, edit: impl FnOnce(&mut AuditEntry)) {
    let mut e = entries(store).into_iter().find(|e| e.seq == seq).unwrap();
    edit(&mut e);
    store
        .danger_audit_tree()
        .insert(seq.to_be_bytes(), serde_json::to_vec(&e).unwrap())
        .unwrap();
}

/// Tampers with the store of `data` (the CLI is not running).
fn tamper(data: &Path, how: impl FnOnce(&Store)) {
    let store = Store::open(data).unwrap();
    how(&store);
    store.flush().unwrap();
}

/// A CA with a few audited actions beyond `init`.
fn busy_ca() -> Ca {
    let ca = Ca::init(&[DOMAIN]);
    for label in ["one", "two", "three"] {
        ca.json(&["token", "create", "--role", "admin", "--label", label]);
    }
    ca
}

/// `audit verify` (with `--checkpoint FILE` when given) must fail with `code`, its message
/// containing `needle`.
fn verify_fails(ca: &Ca, checkpoint: Option<&Path>, code: &str, needle: &str, case: &str) {
    let mut args = vec!["audit".to_string(), "verify".to_string()];
    if let Some(cp) = checkpoint {
        args.extend(["--checkpoint".to_string(), cp.display().to_string()]);
    }
    let err = ca.json_err(&args);
    assert_eq!(err["code"], code, "{case}: {err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(needle), "{case}: {message}");
    assert!(!message.contains(PASSPHRASE), "{case}: no secret in errors");
}

fn audit_count(ca: &Ca) -> u64 {
    ca.json(&["audit", "verify"])["entries"].as_u64().unwrap()
}

/// Runs the CLI on `ca`'s data directory without any passphrase.
fn run_without_passphrase(ca: &Ca, args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .current_dir(ca.dir())
        .env_remove("ANCHORAGE_PASSPHRASE")
        .env_remove("ANCHORAGE_CONFIG")
        .env_remove("ANCHORAGE_DATA_DIR")
        .arg("--data-dir")
        .arg(ca.data_dir())
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), value)
}

/// A copy of the CA's whole working directory (data directory, checkpoints), to attack one
/// way per copy.
fn copy_of(ca: &Ca) -> Ca {
    let copy = Ca::init(&[DOMAIN]);
    std::fs::remove_dir_all(copy.data_dir()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(ca.data_dir())
        .arg(copy.data_dir())
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["cp.json"] {
        if ca.path(file).exists() {
            std::fs::copy(ca.path(file), copy.path(file)).unwrap();
        }
    }
    copy
}

#[test]
fn rewriting_entries_and_recomputing_an_unkeyed_chain_fails_verify() {
    let ca = busy_ca();
    ca.json(&["audit", "checkpoint", "--out", "cp.json"]);
    let before = audit_count(&ca);
    assert!(ca.data_dir().join("audit.key").exists());

    // The old attack: change what entry 3 says, recompute the chain from there with plain
    // SHA-256 and move the head. Entries 1 and 2 keep their MACs.
    let smart = copy_of(&ca);
    tamper(&smart.data_dir(), |s| {
        edit_entry(s, 3, |e| e.details = json!({"rewritten": true}));
        rechain_unkeyed(s, 3);
    });
    verify_fails(
        &smart,
        None,
        "audit_integrity",
        "entry 3 was changed",
        "fail/rechain-from-3",
    );
    verify_fails(
        &smart,
        Some(&smart.path("cp.json")),
        "audit_integrity",
        "entry 3 was changed",
        "fail/rechain-from-3 --checkpoint",
    );

    // The whole chain recomputed: the first entry already lacks its MAC.
    let whole = copy_of(&ca);
    tamper(&whole.data_dir(), |s| {
        edit_entry(s, 4, |e| e.actor = "mallory".into());
        rechain_unkeyed(s, 1);
    });
    verify_fails(
        &whole,
        None,
        "audit_integrity",
        "entry 1 was changed",
        "fail/rechain-all",
    );

    // The attacker also deletes the key file and the store's keyed marker: the log now looks
    // like one never keyed; the checkpoint, kept outside, refuses it.
    let erased = copy_of(&ca);
    tamper(&erased.data_dir(), |s| {
        edit_entry(s, 4, |e| e.actor = "mallory".into());
        rechain_unkeyed(s, 1);
        s.danger_meta_tree().remove("audit_key_id").unwrap();
    });
    std::fs::remove_file(erased.data_dir().join("audit.key")).unwrap();
    verify_fails(
        &erased,
        Some(&erased.path("cp.json")),
        "audit_integrity",
        "made with audit key",
        "fail/key-erased --checkpoint",
    );

    // Without the key, nothing keyed is verified or appended, and that is said.
    let (ok, err) = run_without_passphrase(&smart, &["audit", "verify"]);
    assert!(!ok, "{err}");
    assert_eq!(err["code"], "audit_key_unavailable", "{err}");
    let (ok, err) = run_without_passphrase(&ca, &["token", "create", "--role", "admin"]);
    assert!(!ok, "{err}");
    assert_eq!(err["code"], "audit_key_unavailable", "{err}");

    // The untouched original: everything acknowledged is still there and verifies.
    let report = ca.json(&["audit", "verify", "--checkpoint", "cp.json"]);
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["entries"], before,
        "no entry lost, none added by refusals"
    );
    assert_eq!(report["keyed_from"], 1);
}

#[test]
fn checkpoints_catch_truncation_deletion_rewrite_and_forgery() {
    let ca = busy_ca();
    let made = ca.json(&["audit", "checkpoint", "--out", "cp.json"]);
    let cp: Value = serde_json::from_slice(&std::fs::read(ca.path("cp.json")).unwrap()).unwrap();
    assert_eq!(made["checkpoint"], cp);
    assert_eq!(cp["format"], "anchorage-audit-checkpoint");
    let covered = cp["entries"].as_u64().unwrap();
    assert!(covered >= 6, "{cp}");
    for field in ["head_hash", "at", "key_id", "mac"] {
        assert!(
            cp[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {cp}"
        );
    }
    // More actions after the checkpoint: it still verifies.
    ca.json(&["token", "create", "--role", "admin", "--label", "after"]);
    let report = ca.json(&["audit", "verify", "--checkpoint", "cp.json"]);
    assert_eq!(report["checkpoint"]["entries"], covered);
    assert_eq!(report["evaluation_passphrase"], false);
    let total = report["entries"].as_u64().unwrap();
    assert_eq!(
        total,
        covered + 2,
        "the checkpoint's own entry and the token"
    );
    let log = Store::open(&ca.data_dir()).map(|s| entries(&s)).unwrap();
    let recorded = log.iter().find(|e| e.action == "audit.checkpoint").unwrap();
    assert_eq!(recorded.details["entries"], covered);
    assert!(recorded.target.ends_with("cp.json"), "{}", recorded.target);
    drop(log);

    // Truncated: the last entries removed and the head moved back.
    let truncated = copy_of(&ca);
    tamper(&truncated.data_dir(), |s| {
        for seq in covered - 1..=total {
            s.danger_audit_tree().remove(seq.to_be_bytes()).unwrap();
        }
        set_head(s);
    });
    verify_fails(
        &truncated,
        Some(&truncated.path("cp.json")),
        "audit_integrity",
        &format!("truncated to {} of the {covered} entries", covered - 2),
        "fail/truncated",
    );
    // Without the checkpoint the keyed chain alone cannot see a clean truncation.
    assert_eq!(truncated.json(&["audit", "verify"])["entries"], covered - 2);

    // A middle entry deleted.
    let deleted = copy_of(&ca);
    tamper(&deleted.data_dir(), |s| {
        s.danger_audit_tree().remove(3u64.to_be_bytes()).unwrap();
    });
    verify_fails(
        &deleted,
        Some(&deleted.path("cp.json")),
        "audit_integrity",
        "entry 3 is missing: deleted",
        "fail/deleted",
    );

    // An entry rewritten in place (the attacker cannot recompute its MAC).
    let rewritten = copy_of(&ca);
    tamper(&rewritten.data_dir(), |s| {
        edit_entry(s, 2, |e| e.target = "elsewhere".into());
    });
    verify_fails(
        &rewritten,
        Some(&rewritten.path("cp.json")),
        "audit_integrity",
        "entry 2 was changed",
        "fail/rewritten",
    );

    // A forged checkpoint: count and head changed without the key.
    let forged = copy_of(&ca);
    let mut fake = cp.clone();
    fake["entries"] = json!(2);
    fake["head_hash"] = json!(log_hash(&forged, 2));
    std::fs::write(forged.path("cp.json"), fake.to_string()).unwrap();
    verify_fails(
        &forged,
        Some(&forged.path("cp.json")),
        "audit_integrity",
        "MAC does not verify",
        "fail/forged-checkpoint",
    );

    // Nothing acknowledged was lost in the original.
    assert_eq!(audit_count(&ca), total);
}

fn log_hash(ca: &Ca, seq: u64) -> String {
    let store = Store::open(&ca.data_dir()).unwrap();
    entries(&store)
        .into_iter()
        .find(|e| e.seq == seq)
        .unwrap()
        .hash
}

/// A one-thread HTTP receiver on 127.0.0.1 that answers 204 and keeps each request body.
fn receiver() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkpoints", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(body) = read_request(&mut stream) {
                kept.lock().unwrap().push(body);
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())?;
        if buf.len() >= end + 4 + length {
            return head
                .starts_with("post /checkpoints")
                .then(|| buf[end + 4..end + 4 + length].to_vec());
        }
    }
}

fn wait_for(what: &str, server: &Server, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not happen:\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_writes_checkpoints_on_a_schedule_to_a_file_and_a_url() {
    let ca = Ca::init(&[DOMAIN]);
    let (url, bodies) = receiver();
    let file: PathBuf = ca.path("scheduled.json");
    let config = ca.data_dir().join("anchorage.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // `init` wrote the [audit] table with its defaults.
    assert!(text.contains("checkpoint_interval_secs = 0"), "{text}");
    let text = text.replace(
        "checkpoint_interval_secs = 0",
        &format!(
            "checkpoint_interval_secs = 1\ncheckpoint_path = {:?}\ncheckpoint_url = {url:?}",
            file.display().to_string()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let check = ca.json(&["config", "check"]);
    assert_eq!(check["ok"], true, "{check}");

    let mut server = Server::start(&ca.data_dir(), PASSPHRASE);
    wait_for("two posted checkpoints", &server, || {
        bodies.lock().unwrap().len() >= 2
    });
    wait_for("the checkpoint file", &server, || file.exists());
    // The CLI goes through the running server for a checkpoint of its own.
    let forwarded = ca.json(&["audit", "checkpoint", "--out", "forwarded.json"]);
    assert_eq!(forwarded["via"], "server", "{forwarded}");
    let status = server.stop();
    assert!(status.success(), "{}", server.output());
    let stderr = server.stderr();
    assert!(!stderr.contains(PASSPHRASE), "no secret in the service log");

    let posted = bodies.lock().unwrap().last().cloned().unwrap();
    std::fs::write(ca.path("posted.json"), &posted).unwrap();
    for cp in ["scheduled.json", "posted.json", "forwarded.json"] {
        let report = ca.json(&["audit", "verify", "--checkpoint", cp]);
        assert_eq!(report["ok"], true, "{cp}: {report}");
        assert!(
            report["checkpoint"]["entries"].as_u64().unwrap() >= 6,
            "{report}"
        );
    }
    let store = Store::open(&ca.data_dir()).unwrap();
    let scheduled = entries(&store)
        .into_iter()
        .filter(|e| e.action == "audit.checkpoint" && e.actor == "system")
        .count();
    assert!(scheduled >= 2, "each scheduled checkpoint is in the log");
    drop(store);

    // A checkpoint file rewritten to an earlier count is refused (its MAC).
    let mut older: Value = serde_json::from_slice(&posted).unwrap();
    older["entries"] = json!(older["entries"].as_u64().unwrap() - 1);
    std::fs::write(ca.path("older.json"), older.to_string()).unwrap();
    verify_fails(
        &ca,
        Some(&ca.path("older.json")),
        "audit_integrity",
        "MAC does not verify",
        "fail/posted-altered",
    );
}

#[test]
fn a_legacy_log_is_keyed_on_upgrade_and_its_boundary_cannot_move() {
    let ca = busy_ca();
    // The store as the release before keying left it: an unkeyed SHA-256 chain, no key file,
    // no keyed marker.
    tamper(&ca.data_dir(), |s| {
        rechain_unkeyed(s, 1);
        s.danger_meta_tree().remove("audit_key_id").unwrap();
    });
    std::fs::remove_file(ca.data_dir().join("audit.key")).unwrap();
    let legacy = entries(&Store::open(&ca.data_dir()).unwrap()).len() as u64;

    // The first command with the passphrase keys the log from the next entry on.
    let report = ca.json(&["audit", "verify"]);
    assert_eq!(report["keyed_from"], legacy + 1, "{report}");
    assert_eq!(report["entries"], legacy + 1, "the audit.keyed entry");
    let key_file = ca.data_dir().join("audit.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ca.json(&["token", "create", "--role", "admin", "--label", "keyed"]);
    ca.json(&["audit", "checkpoint", "--out", "cp.json"]);
    let log = entries(&Store::open(&ca.data_dir()).unwrap());
    assert!(log
        .iter()
        .filter(|e| e.seq <= legacy)
        .all(|e| e.chain.is_none()));
    assert!(log
        .iter()
        .filter(|e| e.seq > legacy)
        .all(|e| e.chain.is_some()));
    assert_eq!(log[legacy as usize].action, "audit.keyed");
    let total = audit_count(&ca);

    // Moving the boundary in the key file (either way) is refused.
    let original = std::fs::read_to_string(&key_file).unwrap();
    let boundary = format!("\"keyed_from\": {}", legacy + 1);
    assert!(original.contains(&boundary), "{original}");
    for (case, moved) in [
        ("fail/boundary-earlier", 1),
        ("fail/boundary-later", legacy + 3),
    ] {
        let copy = copy_of(&ca);
        let path = copy.data_dir().join("audit.key");
        std::fs::write(
            &path,
            original.replace(&boundary, &format!("\"keyed_from\": {moved}")),
        )
        .unwrap();
        verify_fails(&copy, None, "audit_integrity", "was altered", case);
    }
    // Rewriting keyed entries as legacy ones (the boundary moved in the store) is refused.
    let copy = copy_of(&ca);
    tamper(&copy.data_dir(), |s| rechain_unkeyed(s, legacy + 1));
    verify_fails(
        &copy,
        None,
        "audit_integrity",
        &format!("entry {} was changed", legacy + 1),
        "fail/keyed-entries-made-legacy",
    );
    // A legacy entry rewritten (and the legacy part recomputed) breaks the first keyed link.
    let copy = copy_of(&ca);
    tamper(&copy.data_dir(), |s| {
        edit_entry(s, 2, |e| e.actor = "mallory".into());
        let keyed: Vec<AuditEntry> = entries(s).into_iter().filter(|e| e.seq > legacy).collect();
        rechain_unkeyed(s, 2);
        for e in keyed {
            s.danger_audit_tree()
                .insert(e.seq.to_be_bytes(), serde_json::to_vec(&e).unwrap())
                .unwrap();
        }
        set_head(s);
    });
    verify_fails(
        &copy,
        None,
        "audit_integrity",
        &format!(
            "entry {} does not point to the hash of entry {legacy}",
            legacy + 1
        ),
        "fail/legacy-rewritten",
    );

    // The original still verifies, against its checkpoint too, with nothing lost.
    let report = ca.json(&["audit", "verify", "--checkpoint", "cp.json"]);
    assert_eq!(report["entries"], total);
    assert_eq!(report["keyed_from"], legacy + 1);
}

/// The zero-config evaluation start keys its log too, and `audit verify` says that the
/// passphrase beside the data makes the keying worthless.
#[test]
fn the_evaluation_passphrase_is_flagged() {
    let ca = Ca::init_evaluation(&[DOMAIN]);
    let report = ca.json(&["audit", "verify"]);
    assert_eq!(report["keyed_from"], 1, "{report}");
    assert_eq!(report["evaluation_passphrase"], true, "{report}");
    let text = ca.run(&["audit", "verify"]);
    text.assert_success("audit verify");
    assert!(
        text.stdout.contains("protects nothing here"),
        "{}",
        text.stdout
    );
}
