//! Helpers that run independent, external implementations over what anchorage produces.
//!
//! Our own parser agreeing with our own encoder proves little: both can share the same
//! misreading of RFC 5280 or S/MIME. So integration tests hand certificates, chains and CRLs
//! to other people's code — OpenSSL's verifier and pkilint's RFC 5280 linters — the way relying
//! parties and auditors will. `ops/test.sh` installs these tools; a missing tool fails the test
//! with a pointer to that script instead of silently skipping the check.
//!
//! pkilint reports one finding per indented line, `    code (SEVERITY)[: message]`, under a
//! `Validator @ node.path` line, and exits with the number of findings it printed (capped at
//! 255). The clean-assertions read both and insist they agree, so a crash, a load failure or a
//! change in pkilint's output format fails the test instead of reading as "no findings".

// Not every test uses every helper; failing the test is what a helper here is for.
#![allow(dead_code, clippy::panic)]

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Everything a reader needs to see why a check failed.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    pub fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what} failed: {}", self.describe());
    }
}

/// An executable from the pkilint/cryptography venv that `ops/test.sh` builds.
pub fn venv_bin(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os("ANCHORAGE_TEST_VENV").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(v));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/venv"));
    for dir in &dirs {
        let bin = dir.join("bin").join(name);
        if bin.is_file() {
            return bin;
        }
    }
    panic!("pkilint venv missing: run ops/test.sh (no {name} in {dirs:?})");
}

pub fn run<A: AsRef<OsStr>>(cmd: impl AsRef<OsStr>, args: &[A]) -> ToolOutput {
    run_cmd(Command::new(cmd.as_ref()).args(args))
}

pub fn run_in<A: AsRef<OsStr>>(dir: &Path, cmd: impl AsRef<OsStr>, args: &[A]) -> ToolOutput {
    run_cmd(Command::new(cmd.as_ref()).args(args).current_dir(dir))
}

pub fn run_cmd(cmd: &mut Command) -> ToolOutput {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (run ops/test.sh to install it)"));
    ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl verify` as a relying party would run it; `-x509_strict` makes OpenSSL reject
/// encodings it would otherwise tolerate.
pub fn openssl_verify(
    root_pem: &Path,
    untrusted: Option<&Path>,
    cert: &Path,
    purpose: &str,
    crl_pem: Option<&Path>,
) -> ToolOutput {
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
        .arg(root_pem);
    if let Some(issuing) = untrusted {
        cmd.arg("-untrusted").arg(issuing);
    }
    if let Some(crl) = crl_pem {
        cmd.args(["-crl_check", "-CRLfile"]).arg(crl);
    }
    run_cmd(cmd.arg(cert))
}

/// `openssl verify -CRLfile` reads only PEM, while CRL distribution points serve DER.
pub fn der_crl_to_pem(der: &Path, pem_out: &Path) {
    let mut cmd = Command::new("openssl");
    cmd.args(["crl", "-inform", "DER", "-in"])
        .arg(der)
        .arg("-out")
        .arg(pem_out);
    run_cmd(&mut cmd).assert_success("openssl crl -inform DER");
}

/// RFC 5280 lint of one certificate (PEM or DER).
pub fn pkilint_cert(cert_pem: &Path) -> ToolOutput {
    run_cmd(
        Command::new(venv_bin("lint_pkix_cert"))
            .args(["lint", "-s", "INFO"])
            .arg(cert_pem),
    )
}

/// Issuer/subject consistency: names, key identifiers, signature.
pub fn pkilint_chain(issuer_pem: &Path, subject_pem: &Path) -> ToolOutput {
    run_cmd(
        Command::new(venv_bin("lint_pkix_signer_signee_cert_chain"))
            .args(["lint", "-s", "INFO"])
            .arg(issuer_pem)
            .arg(subject_pem),
    )
}

/// RFC 5280 profile lint of a CRL (PEM or DER).
pub fn pkilint_crl(crl: &Path) -> ToolOutput {
    run_cmd(
        Command::new(venv_bin("lint_crl"))
            .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "INFO"])
            .arg(crl),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: String,
    pub code: String,
}

const SEVERITIES: [&str; 6] = ["FATAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"];

/// The findings in pkilint's TEXT report, so tests can also expect a specific code.
pub fn pkilint_findings(out: &ToolOutput) -> Vec<Finding> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with(' '))
        .filter_map(|l| {
            let (code, rest) = l.trim().split_once(" (")?;
            let (severity, tail) = rest.split_once(')')?;
            let well_formed = !code.contains(' ')
                && SEVERITIES.contains(&severity)
                && (tail.is_empty() || tail.starts_with(':'));
            well_formed.then(|| Finding {
                severity: severity.to_owned(),
                code: code.to_owned(),
            })
        })
        .collect()
}

/// Fails on any finding above INFO. INFO findings (such as which key identifier method was
/// recognised) are observations, not defects.
pub fn assert_pkilint_clean(out: &ToolOutput, what: &str) {
    let findings = pkilint_findings(out);
    // pkilint exits with its finding count; a mismatch means it crashed, could not load the
    // input, or prints in a format this parser no longer understands.
    let expected_status = findings.len().min(255);
    assert!(
        out.status.code() == Some(expected_status as i32),
        "pkilint on {what}: exit status does not match the {} findings parsed: {}",
        findings.len(),
        out.describe()
    );
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.severity != "INFO")
        .map(|f| format!("{} ({})", f.code, f.severity))
        .collect();
    assert!(
        bad.is_empty(),
        "pkilint on {what} reported {}:\n{}",
        bad.join(", "),
        out.describe()
    );
}

/// The chain and CRL linters share the certificate linter's report format and exit status.
pub fn assert_pkilint_chain_clean(out: &ToolOutput, what: &str) {
    assert_pkilint_clean(out, what);
}

pub fn assert_pkilint_crl_clean(out: &ToolOutput, what: &str) {
    assert_pkilint_clean(out, what);
}

/// A port that was free a moment ago. Another process can take it before the server under
/// test binds it, which is rare enough on a test machine to accept.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}
