//! Private files stay private whatever the umask: `init`, `serve` and issuance run under
//! `umask 000` (through `sh -c 'umask 000; exec ...'`), and every file holding keys, records,
//! tokens or the passphrase must still be 0600 in 0700 directories, while published outputs
//! get exactly the configured `publish.file_mode`. A store or passphrase file that group or
//! others can read stops start-up with `insecure_permissions` and the `chmod` that fixes it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::http;
use crate::tools::{free_port, run_cmd, ToolOutput};

const DOMAIN: &str = "direct.example.com";

/// `anchorage --data-dir DATA ARGS` under `umask 000`, with no passphrase in the environment
/// (the evaluation passphrase file is used).
fn umask0(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_anchorage"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .current_dir(data.parent().unwrap())
        .env_remove("ANCHORAGE_PASSPHRASE")
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CONFIG")
        .env_remove("ANCHORAGE_URL")
        .env_remove("ANCHORAGE_TOKEN")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(data: &Path, args: &[&str]) -> Value {
    let out = run_cmd(&mut umask0(data, &[&["-o", "json"], args].concat()));
    out.assert_success(&format!("anchorage {args:?}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

fn run_err(data: &Path, args: &[&str]) -> (Value, ToolOutput) {
    let out = run_cmd(&mut umask0(data, &[&["-o", "json"], args].concat()));
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    let v = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
    (v, out)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every directory under `dir` (and itself) is 0700, every file 0600.
fn assert_private_tree(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private_tree(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path) -> (Serve, std::net::SocketAddr) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = umask0(data, &["serve", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = http(addr, "GET", "/healthz", None, None) {
            if r.status == 200 {
                return (serve, addr);
            }
        }
        if let Ok(Some(status)) = serve.0.try_wait() {
            panic!("serve exited with {status}");
        }
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn private_files_are_private_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}", free_port());
    run_ok(
        &data,
        &["init", "--managed-domain", DOMAIN, "--public-url", &url],
    );
    let config = data.join("anchorage.toml");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&data.join("evaluation-passphrase")), 0o600);
    assert_private_tree(&data.join("store"));
    // Published files get the configured mode, exactly.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("file_mode = \"0644\""), "{text}");
    std::fs::write(
        &config,
        text.replace("file_mode = \"0644\"", "file_mode = \"0640\""),
    )
    .unwrap();

    {
        let (_serve, _addr) = serve(&data);
        assert_eq!(mode(&data.join("control-token")), 0o600);
        let p12 = dir.path().join("holder.p12");
        let issued = run_ok(
            &data,
            &[
                "cert",
                "issue",
                "--address",
                &format!("umask@{DOMAIN}"),
                "--usage",
                "dual",
                "--keygen",
                "--p12-out",
                p12.to_str().unwrap(),
            ],
        );
        assert!(issued["serial"].is_string(), "{issued}");
        let written: Vec<String> = issued["p12_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        assert!(!written.is_empty(), "{issued}");
        for path in written {
            assert_eq!(mode(Path::new(&path)), 0o600, "{path}");
        }
        assert_private_tree(&data.join("store"));
    }
    let zone = run_ok(&data, &["publish", "zone"]);
    let ldif = run_ok(&data, &["publish", "ldif"]);
    let mut published = Vec::new();
    for entry in walk(&data.join("published")) {
        published.push(entry);
    }
    assert!(published.len() >= 2, "{zone} {ldif} {published:?}");
    for path in &published {
        assert_eq!(mode(path), 0o640, "{}", path.display());
    }
    assert_private_tree(&data.join("store"));
    assert_eq!(mode(&config), 0o600);

    // A world-readable store stops start-up, naming the path and the fix.
    let store = data.join("store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        &["cert", "list"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
    ] {
        let (err, out) = run_err(&data, args);
        assert_eq!(err["code"], "insecure_permissions", "{}", out.describe());
        let expected = format!(
            "{} is readable by group or others (mode 0755); fix it with: chmod -R go-rwx {}",
            store.display(),
            store.display()
        );
        assert_eq!(err["message"], expected, "{}", out.describe());
    }
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    // So does a readable passphrase file.
    let pass = data.join("evaluation-passphrase");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (err, out) = run_err(&data, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(err["code"], "insecure_permissions", "{}", out.describe());
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("chmod 600 {}", pass.display())),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
