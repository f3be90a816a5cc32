//! A throw-away CA driven through the real `anchorage` binary, the way an operator would.
//!
//! Every [`Ca`] lives in its own temporary directory (data directory `data/`, everything else
//! beside it), so tests run in parallel without sharing state or ports. Commands run with that
//! directory as their working directory: tests write the CLI forms exactly as documented,
//! `cert issue --csr req.pem --out jones.pem`, and read results with [`Ca::path`].
//!
//! The CA passphrase reaches the child process through `Command::env`, never
//! `std::env::set_var` (which would leak into tests running in parallel).
//!
//! ```ignore
//! let ca = Ca::init(&["direct.example.com"]);
//! let csr = ca.csr("jones", KeyAlg::Rsa2048);
//! let issued = ca.issue_json(&["--address", "jones@direct.example.com", "--usage", "dual",
//!                              "--csr", &csr, "--out", "jones.pem"]);
//! let chain = ca.chain();
//! ```

// Not every test module uses every helper.
#![allow(dead_code, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::tools::{self, ToolOutput};

/// The health domain most tests manage.
pub const DOMAIN: &str = "direct.example.com";
/// The public URL given to `init`; it ends up in every CRL distribution point and AIA.
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// The CA passphrase handed to the child through `ANCHORAGE_PASSPHRASE`.
pub const PASSPHRASE: &str = "integration-test CA passphrase (not a secret)";

/// Environment variables of the test process that would change what the binary does.
const AMBIENT_ENV: [&str; 3] = [
    "ANCHORAGE_PASSPHRASE",
    "ANCHORAGE_DATA_DIR",
    "ANCHORAGE_CONFIG",
];

/// One initialised CA in its own temporary directory.
pub struct Ca {
    dir: TempDir,
    /// `None`: the zero-config evaluation path (a random passphrase file in the data dir).
    passphrase: Option<String>,
    /// What `init -o json` printed.
    pub init: Value,
}

/// The CA certificates as separate PEM files (from `ca chain`, issuing first).
pub struct Chain {
    pub issuing: PathBuf,
    pub root: PathBuf,
}

/// Key types for CSRs made with `openssl req -newkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Rsa2048,
    /// Too weak for any profile.
    Rsa1024,
    P256,
    /// Not offered by the Direct profiles.
    P384,
    /// Not offered by the Direct profiles.
    Ed25519,
    /// Curves anchorage does not certify at all.
    Secp256k1,
    BrainpoolP256r1,
    P521,
    /// DSA-1024 (its parameters are made on first use, in `dsa.params`).
    Dsa,
}

impl KeyAlg {
    fn newkey_args(self) -> &'static [&'static str] {
        match self {
            KeyAlg::Rsa2048 => &["-newkey", "rsa:2048"],
            KeyAlg::Rsa1024 => &["-newkey", "rsa:1024"],
            KeyAlg::P256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyAlg::P384 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyAlg::Ed25519 => &["-newkey", "ed25519"],
            KeyAlg::Secp256k1 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            KeyAlg::BrainpoolP256r1 => &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:brainpoolP256r1",
            ],
            KeyAlg::P521 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            KeyAlg::Dsa => &["-newkey", "dsa:dsa.params"],
        }
    }
}

/// A snapshot of everything a refused request must leave untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreState {
    /// `cert list -o json`.
    pub certs: Value,
    /// `audit verify -o json` → `entries`.
    pub audit_entries: u64,
}

impl Ca {
    /// `anchorage init --managed-domain D... --public-url PUBLIC_URL` with the test passphrase.
    pub fn init(domains: &[&str]) -> Ca {
        Ca::init_with(domains, &[])
    }

    /// [`Ca::init`] with extra `init` arguments, e.g. `&["--root-key", "rsa4096"]`.
    pub fn init_with(domains: &[&str], extra: &[&str]) -> Ca {
        Ca::create(domains, extra, Some(PASSPHRASE.to_string()))
    }

    /// [`Ca::init`] without any passphrase configured: the binary creates and later reads
    /// its evaluation passphrase file.
    pub fn init_evaluation(domains: &[&str]) -> Ca {
        Ca::create(domains, &[], None)
    }

    fn create(domains: &[&str], extra: &[&str], passphrase: Option<String>) -> Ca {
        let dir = tempfile::Builder::new()
            .prefix("anchorage-it-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let mut ca = Ca {
            dir,
            passphrase,
            init: Value::Null,
        };
        let mut args = vec!["init".to_string()];
        for d in domains {
            args.extend(["--managed-domain".to_string(), d.to_string()]);
        }
        args.extend(["--public-url".to_string(), PUBLIC_URL.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        ca.init = ca.json(&args);
        ca
    }

    /// The working directory of every command (CSRs, outputs); the store is in `data/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A file in the working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `anchorage --data-dir DATA ARGS...`; the caller judges the outcome.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> ToolOutput {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
        cmd.current_dir(self.dir())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args.iter().map(AsRef::as_ref));
        for var in AMBIENT_ENV {
            cmd.env_remove(var);
        }
        if let Some(p) = &self.passphrase {
            cmd.env("ANCHORAGE_PASSPHRASE", p);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start anchorage: {e}"));
        ToolOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `ARGS... -o json`, insists on success and returns the parsed stdout.
    pub fn json<S: AsRef<str>>(&self, args: &[S]) -> Value {
        let out = self.run_json(args);
        out.assert_success(&format!("anchorage {}", join(args)));
        parse_json(&out)
    }

    /// Runs `ARGS... -o json`, insists on failure and returns the error object
    /// `{code, message, reasons: [{code, message, field}]}`.
    pub fn json_err<S: AsRef<str>>(&self, args: &[S]) -> Value {
        let out = self.run_json(args);
        assert!(
            !out.status.success(),
            "anchorage {} should have failed: {}",
            join(args),
            out.describe()
        );
        parse_json(&out)
    }

    fn run_json<S: AsRef<str>>(&self, args: &[S]) -> ToolOutput {
        let mut all: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        all.extend(["-o", "json"]);
        self.run(&all)
    }

    /// `cert issue ARGS... -o json`, which must succeed; the object has `serial`, `serials`,
    /// `certificates`, `p12_files` and `p12_password`.
    pub fn issue_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["cert", "issue"];
        all.extend_from_slice(args);
        self.json(&all)
    }

    /// Makes a CSR with `openssl req -new -newkey ... -nodes -subj /CN=STEM` and returns its
    /// file name (`STEM.csr`, relative to [`Ca::dir`]); the key goes to `STEM.key` (PKCS#8).
    pub fn csr(&self, stem: &str, alg: KeyAlg) -> String {
        self.csr_digest(stem, alg, None)
    }

    /// [`Ca::csr`] signed with the digest `-sha1`, `-md5`, ... (openssl's default when `None`).
    pub fn csr_digest(&self, stem: &str, alg: KeyAlg, digest: Option<&str>) -> String {
        openssl_csr(self.dir(), stem, alg, digest)
    }

    /// Writes `ca chain --out chain.pem` and splits it into `issuing.pem` and `root.pem`.
    pub fn chain(&self) -> Chain {
        self.json(&["ca", "chain", "--out", "chain.pem"]);
        let certs = pem_certs(&self.path("chain.pem"));
        assert_eq!(certs.len(), 2, "ca chain holds issuing then root");
        let chain = Chain {
            issuing: self.path("issuing.pem"),
            root: self.path("root.pem"),
        };
        write(&chain.issuing, &certs[0]);
        write(&chain.root, &certs[1]);
        chain
    }

    /// `crl export --ca CA --out CA.crl` (DER, as served) plus `CA.crl.pem` for
    /// `openssl verify -CRLfile`; returns (DER path, PEM path).
    pub fn crl(&self, ca: &str) -> (PathBuf, PathBuf) {
        let der = format!("{ca}.crl");
        self.json(&["crl", "export", "--ca", ca, "--out", &der]);
        let (der, pem) = (self.path(&der), self.path(&format!("{ca}.crl.pem")));
        tools::der_crl_to_pem(&der, &pem);
        (der, pem)
    }

    /// What the store holds now: the certificate listing and the audit log length (the
    /// audit chain is verified on the way).
    pub fn state(&self) -> StoreState {
        let audit = self.json(&["audit", "verify"]);
        StoreState {
            certs: self.json(&["cert", "list"]),
            audit_entries: audit["entries"]
                .as_u64()
                .unwrap_or_else(|| panic!("audit verify -o json without entries: {audit}")),
        }
    }
}

/// Makes `STEM.csr` and `STEM.key` in `dir` with `openssl req -new -newkey ... -nodes
/// -subj /CN=STEM`, signed with `digest` (`-sha1`, `-md5`, ...; openssl's default when `None`);
/// returns the CSR's file name.
pub fn openssl_csr(dir: &Path, stem: &str, alg: KeyAlg, digest: Option<&str>) -> String {
    if alg == KeyAlg::Dsa && !dir.join("dsa.params").exists() {
        tools::run_in(
            dir,
            "openssl",
            &[
                "genpkey",
                "-genparam",
                "-algorithm",
                "DSA",
                "-pkeyopt",
                "dsa_paramgen_bits:1024",
                "-out",
                "dsa.params",
            ],
        )
        .assert_success("openssl genpkey -genparam DSA");
    }
    let (csr, key) = (format!("{stem}.csr"), format!("{stem}.key"));
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(alg.newkey_args());
    args.extend(digest);
    args.extend(["-nodes", "-keyout", &key, "-subj"]);
    let subj = format!("/CN={stem}");
    args.extend([subj.as_str(), "-out", &csr]);
    tools::run_in(dir, "openssl", &args).assert_success("openssl req");
    csr
}

fn join<S: AsRef<str>>(args: &[S]) -> String {
    args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
}

fn parse_json(out: &ToolOutput) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.describe()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Reads a file, failing the test with its name.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The CERTIFICATE blocks of a PEM file, each re-encoded as its own PEM text.
pub fn pem_certs(path: &Path) -> Vec<String> {
    pem::parse_many(read(path))
        .unwrap_or_else(|e| panic!("{} is not PEM: {e}", path.display()))
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| {
            pem::encode_config(
                &b,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect()
}

/// Splits a PEM file of certificates into `STEM-0.pem`, `STEM-1.pem`, ... beside it.
pub fn split_certs(path: &Path, stem: &str) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    pem_certs(path)
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let p = dir.join(format!("{stem}-{i}.pem"));
            write(&p, cert);
            p
        })
        .collect()
}

/// The DER of the first CERTIFICATE block in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    pem::parse(read(path))
        .unwrap_or_else(|e| panic!("{} is not PEM: {e}", path.display()))
        .into_contents()
}

/// An API token with an explicit scope (registrars: every managed domain; members: every
/// bundle), as `token create --domain '*'` makes one.
pub fn token(
    authority: &anchorage::authority::Authority,
    role: &str,
    label: &str,
    valid_days: Option<u32>,
) -> (zeroize::Zeroizing<String>, anchorage::store::TokenRecord) {
    let role = anchorage::accounts::Role::parse(role).unwrap();
    authority
        .create_scoped_token(role, wide_scope(role), label, valid_days, None, "test")
        .unwrap()
}

/// The widest scope of a role, written out.
pub fn wide_scope(role: anchorage::accounts::Role) -> anchorage::accounts::Scope {
    use anchorage::accounts::{Role, Scope};
    match role {
        Role::Registrar => Scope {
            domains: vec!["*".into()],
            ..Scope::default()
        },
        Role::Member => Scope {
            bundles: vec!["*".into()],
            ..Scope::default()
        },
        Role::Admin | Role::DnsOperator => Scope::default(),
    }
}

/// The organisation `init` creates: it owns every managed domain.
pub const TEST_ORG: &str = anchorage::authority::DEFAULT_ORGANISATION;

/// A copy of the shipped profiles under `dir` that lets one key be certified for many holders
/// (for tests that send one CSR many times, where the key is not the point).
pub fn key_reuse_policies(dir: &Path) -> PathBuf {
    let dir = dir.join("policies-key-reuse");
    std::fs::create_dir_all(&dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("allow_key_reuse = false", "allow_key_reuse = true");
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

/// For tests that load a server (bursts from one token, one CSR for many addresses), where
/// neither the key nor the rate is the point: the data directory's config names a copy of the
/// shipped profiles with `allow_key_reuse = true` and lifts the per-token rate limits.
pub fn allow_key_reuse(data: &Path) {
    let dir = key_reuse_policies(data.parent().unwrap());
    let config = data.join("anchorage.toml");
    let old = std::fs::read_to_string(&config).unwrap();
    let lifted: String = old
        .lines()
        .map(|l| {
            if l.starts_with("rate_limit_per_minute") {
                "rate_limit_per_minute = 0".to_string()
            } else if l.starts_with("rate_limit_per_day") {
                "rate_limit_per_day = 0".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(lifted.contains("rate_limit_per_minute = 0"), "{old}");
    std::fs::write(
        &config,
        format!("policies_dir = {:?}\n{lifted}\n", dir.display().to_string()),
    )
    .unwrap();
}
