//! Users and API tokens from the command line (issue 5, requirement 1): `user add/list/passwd/
//! disable/enable` and `token create/list/revoke`, directly on the store and through a running
//! `serve` (which holds the store), with the same JSON either way; refusals name the problem.

use std::path::Path;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::server::{anchorage, cli, cli_error, cli_json, http, Server, PASSPHRASE};

const DOMAIN: &str = "direct.example.com";

/// `anchorage -o json ARGS` with the password in the environment.
fn with_password(data_dir: &Path, password: &str, args: &[&str]) -> Value {
    let out = anchorage(data_dir, PASSPHRASE)
        .env("ANCHORAGE_USER_PASSWORD", password)
        .args(["-o", "json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_users_and_tokens(data_dir: &Path, server: Option<&Server>, tag: &str) {
    // A user with a chosen password, and one with a generated password shown once.
    let r = with_password(
        data_dir,
        "a long enough password",
        &[
            "user",
            "add",
            &format!("reg-{tag}"),
            "--role",
            "registrar",
            "--domain",
            DOMAIN,
        ],
    );
    assert_eq!(r["role"], "registrar");
    assert_eq!(r["scope"]["domains"], json!([DOMAIN]));
    assert!(
        r.get("password").is_none(),
        "a chosen password is not echoed"
    );
    let r = cli_json(
        data_dir,
        PASSPHRASE,
        &[
            "user",
            "add",
            &format!("mem-{tag}"),
            "--role",
            "member",
            "--bundle",
            "provider-test",
        ],
    );
    assert!(r["password"].as_str().unwrap().len() >= 20);
    let list = cli_json(data_dir, PASSPHRASE, &["user", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&format!("reg-{tag}").as_str()), "{list}");
    assert!(
        !list.to_string().contains("argon2"),
        "hashes never leave the store"
    );

    // Refusals with a clear message.
    let e = cli_error(
        data_dir,
        PASSPHRASE,
        &["user", "add", "nobody", "--role", "registrar"],
    );
    assert_eq!(e["code"], "invalid_input", "{e}");
    assert!(e["message"].as_str().unwrap().contains("--domain"), "{e}");
    let e = cli_error(
        data_dir,
        PASSPHRASE,
        &["user", "add", &format!("reg-{tag}"), "--role", "admin"],
    );
    assert_eq!(e["code"], "conflict", "{e}");
    let e = cli_error(
        data_dir,
        PASSPHRASE,
        &["user", "add", "Bad Name", "--role", "admin"],
    );
    assert_eq!(e["code"], "invalid_input", "{e}");
    let out = anchorage(data_dir, PASSPHRASE)
        .env("ANCHORAGE_USER_PASSWORD", "short")
        .args(["user", "add", "shorty", "--role", "admin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));

    // A scoped token, listed without its secret, then revoked.
    let t = cli_json(
        data_dir,
        PASSPHRASE,
        &[
            "token",
            "create",
            "--role",
            "registrar",
            "--domain",
            DOMAIN,
            "--label",
            tag,
        ],
    );
    let secret = t["token"].as_str().unwrap().to_string();
    assert_eq!(t["scope"]["domains"], json!([DOMAIN]));
    let id = t["id"].as_str().unwrap().to_string();
    if let Some(s) = server {
        let r = http(s.addr, "GET", "/api/v1/certificates", Some(&secret), None).unwrap();
        assert_eq!(r.status, 200);
    }
    let list = cli_json(data_dir, PASSPHRASE, &["token", "list"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(id))
        .unwrap();
    assert_eq!(row["state"], "live");
    assert!(!list.to_string().contains(&secret));
    cli_json(data_dir, PASSPHRASE, &["token", "revoke", &id]);
    let list = cli_json(data_dir, PASSPHRASE, &["token", "list"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(id))
        .unwrap();
    assert_eq!(row["state"], "revoked");
    if let Some(s) = server {
        let r = http(s.addr, "GET", "/api/v1/certificates", Some(&secret), None).unwrap();
        assert_eq!(r.status, 401);
    }
    let e = cli_error(data_dir, PASSPHRASE, &["token", "revoke", &id]);
    assert_eq!(e["code"], "conflict", "{e}");

    // Disable, enable, new password.
    let r = cli_json(
        data_dir,
        PASSPHRASE,
        &["user", "disable", &format!("reg-{tag}")],
    );
    assert_eq!(r["disabled"], true);
    let r = cli_json(
        data_dir,
        PASSPHRASE,
        &["user", "enable", &format!("reg-{tag}")],
    );
    assert_eq!(r["disabled"], false);
    let r = cli_json(
        data_dir,
        PASSPHRASE,
        &["user", "passwd", &format!("reg-{tag}")],
    );
    assert!(r["password"].as_str().unwrap().len() >= 20);
    let e = cli_error(data_dir, PASSPHRASE, &["user", "disable", "ghost"]);
    assert_eq!(e["code"], "not_found", "{e}");
}

#[test]
fn users_and_tokens_from_the_cli_directly_and_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    cli(&data_dir, PASSPHRASE, &["init", "--managed-domain", DOMAIN]).assert_success("init");
    check_users_and_tokens(&data_dir, None, "direct");
    let mut server = Server::start(&data_dir, PASSPHRASE);
    check_users_and_tokens(&data_dir, Some(&server), "served");
    assert!(server.stop().success(), "{}", server.output());
    // Everything done through the server is in the audit log with the operator's name.
    let log = cli(
        &data_dir,
        PASSPHRASE,
        &["audit", "export", "--action", "user."],
    );
    log.assert_success("audit export");
    let created: Vec<Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "user.create")
        .collect();
    assert_eq!(created.len(), 4, "{}", log.stdout);
    assert!(created.iter().any(|e| e["target"] == "reg-served"
        && e["actor"].as_str().unwrap().contains("admin token control")));
    cli(&data_dir, PASSPHRASE, &["audit", "verify"]).assert_success("audit verify");
}
