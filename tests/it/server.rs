//! `anchorage serve` as a real child process, for tests that need the binary end to end: kill -9
//! in the middle of issuance, a second process on a locked data directory, start-up refusals.
//!
//! A [`Server`] listens on a free 127.0.0.1 port, writes its stdout and stderr to files (shown
//! when a test fails) and is killed when it drops, also when the test panics. [`http`] is a
//! minimal blocking HTTP/1.1 client (one connection per request, `Connection: close`), enough
//! for these tests without an HTTP client crate; it refuses a truncated body, so a response
//! cut off by a kill never counts as an acknowledgement. [`http_with_headers`] adds request
//! headers (conditional GETs) and returns the response headers too; [`curl`] makes the same
//! kind of request with curl, over HTTPS when the server has a TLS listener.
//!
//! The CA passphrase reaches children through `Command::env`, never `std::env::set_var`.

// Failing the test is what a helper here is for.
#![allow(clippy::panic)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::tools::{free_port, ToolOutput};

/// The passphrase the CAs of these tests are sealed with.
pub const PASSPHRASE: &str = "server-test CA passphrase (not a secret)";

/// How long a start may take on a loaded machine before the test gives up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Environment of the test process that would change what the binary does.
const AMBIENT_ENV: [&str; 4] = [
    "ANCHORAGE_PASSPHRASE",
    "ANCHORAGE_DATA_DIR",
    "ANCHORAGE_CONFIG",
    "RUST_LOG",
];

/// The `anchorage` binary with a clean environment and the given passphrase.
pub fn anchorage(data_dir: &Path, passphrase: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    for name in AMBIENT_ENV {
        cmd.env_remove(name);
    }
    cmd.env("ANCHORAGE_PASSPHRASE", passphrase)
        .arg("--data-dir")
        .arg(data_dir);
    cmd
}

/// Runs one CLI command on `data_dir` to completion.
pub fn cli(data_dir: &Path, passphrase: &str, args: &[&str]) -> ToolOutput {
    let out = anchorage(data_dir, passphrase)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run anchorage {args:?}: {e}"));
    ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `anchorage -o json ARGS`, insists on success and parses what it printed.
pub fn cli_json(data_dir: &Path, passphrase: &str, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = cli(data_dir, passphrase, &all);
    out.assert_success(&format!("anchorage {}", all.join(" ")));
    parse_json(&out.stdout, &all.join(" "))
}

/// Runs `anchorage -o json ARGS`, insists on failure and returns the error body
/// (`{code, message, reasons}`), checking that it failed cleanly rather than by a panic.
pub fn cli_error(data_dir: &Path, passphrase: &str, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = cli(data_dir, passphrase, &all);
    let what = format!("anchorage {}", all.join(" "));
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        out.describe()
    );
    assert_clean_failure(&out.status, &out.stderr, &what);
    parse_json(&out.stdout, &what)
}

fn parse_json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{text}"))
}

/// Exit status 1 from `main`'s error report: not a panic (101) nor a signal.
fn assert_clean_failure(status: &ExitStatus, stderr: &str, what: &str) {
    assert_eq!(
        status.code(),
        Some(1),
        "{what} should fail with status 1, got {status}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
}

/// A running (or exited) `anchorage serve`. Killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: TempDir,
}

impl Server {
    /// Starts `serve` on a free port and waits until `/healthz` answers 200. Retries on another
    /// port when the one picked was taken in the meantime.
    pub fn start(data_dir: &Path, passphrase: &str) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let mut server = Server::spawn(data_dir, passphrase, free_port());
            match server.wait_ready(READY_TIMEOUT) {
                Ok(()) => return server,
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("anchorage serve did not start: {e}"),
            }
        }
        panic!("anchorage serve found no free port: {last}")
    }

    /// Launches `anchorage -o json serve` on `port` without waiting for anything.
    pub fn spawn(data_dir: &Path, passphrase: &str, port: u16) -> Server {
        let logs = tempfile::tempdir().expect("temp dir for server logs");
        let file = |name: &str| {
            std::fs::File::create(logs.path().join(name))
                .unwrap_or_else(|e| panic!("cannot create the server {name} log: {e}"))
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = anchorage(data_dir, passphrase)
            .args(["-o", "json", "serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anchorage serve: {e}"));
        Server { child, addr, logs }
    }

    /// Polls `/healthz` until it answers 200; an error carries the child's output.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "serve exited with {status} before answering:\n{}",
                    self.output()
                ));
            }
            if let Ok(r) = http(self.addr, "GET", "/healthz", None, None) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no 200 from /healthz within {timeout:?}:\n{}",
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the child to exit on its own; `None` when it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// For a start that must be refused: waits for the exit, checks it failed cleanly
    /// (status 1, no panic) and returns the JSON error body it printed.
    pub fn expect_refusal(&mut self) -> Value {
        let status = self.wait_exit(READY_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "serve should have refused to start but is still running:\n{}",
                self.output()
            )
        });
        let stderr = self.stderr();
        assert_clean_failure(&status, &stderr, "anchorage serve");
        parse_json(&self.stdout(), "anchorage serve")
    }

    /// SIGKILL: no shutdown code runs, as in a power cut or the OOM killer.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the graceful exit (SIGKILL if it never comes).
    pub fn stop(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(sent.success(), "kill -TERM failed");
        match self.wait_exit(Duration::from_secs(60)) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "serve did not stop within 60 s of SIGTERM:\n{}",
                    self.output()
                )
            }
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        self.log("stdout")
    }

    pub fn stderr(&self) -> String {
        self.log("stderr")
    }

    /// Both logs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- serve stdout ---\n{}\n--- serve stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP response, body complete.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request on a fresh connection. `body` is sent as JSON. Errors on connection failure,
/// timeout, or a response that is cut short.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    request(addr, method, path, &headers, body)
}

/// One request without a body but with extra request headers (`If-None-Match`...). The body
/// of a response to HEAD, or of a 304, is whatever followed the head: it must be empty.
pub fn http_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpResponse> {
    request(addr, method, path, headers, None)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
}

/// One request with curl, the way an operator or an STA's cron job fetches a bundle: curl's
/// own HTTP and TLS stack, over HTTPS with `--cacert CA` as the only trust anchor. curl reads
/// no body for HEAD (`--head`), so a HEAD response's body is empty here whatever the server
/// sent; [`http_with_headers`] sees the bytes. `Err` carries curl's output when curl fails
/// (exit status 60: the server certificate is not trusted).
pub fn curl(
    url: &str,
    cacert: Option<&Path>,
    method: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, ToolOutput> {
    let dir = tempfile::tempdir().expect("temp dir for curl output");
    let (head_file, body_file) = (dir.path().join("head"), dir.path().join("body"));
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--http1.1", "--max-time", "30"])
        .arg("--dump-header")
        .arg(&head_file)
        .arg("--output")
        .arg(&body_file);
    if let Some(ca) = cacert {
        cmd.arg("--cacert").arg(ca);
    }
    let head_request = method.eq_ignore_ascii_case("HEAD");
    if head_request {
        cmd.arg("--head");
    } else if !method.eq_ignore_ascii_case("GET") {
        cmd.args(["--request", method]);
    }
    for (name, value) in headers {
        cmd.arg("--header").arg(format!("{name}: {value}"));
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e} (run ops/test.sh to install it)"));
    if !out.status.success() {
        return Err(ToolOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let heads = std::fs::read_to_string(&head_file)
        .unwrap_or_else(|e| panic!("curl {url} wrote no headers: {e}"));
    // The last head is the final response (after any 100 Continue).
    let head = heads
        .trim_end()
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default();
    let mut raw = format!("{head}\r\n\r\n").into_bytes();
    if !head_request {
        // curl creates no output file for an empty body (a 304).
        raw.extend(std::fs::read(&body_file).unwrap_or_default());
    }
    Ok(parse_response(&raw, true)
        .unwrap_or_else(|e| panic!("curl {url}: unreadable response head: {e}\n{heads}")))
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// `bodiless`: a response to HEAD, whose Content-Length describes the body a GET would get.
fn parse_response(raw: &[u8], bodiless: bool) -> io::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("incomplete response head ({} bytes)", raw.len())))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 head"))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line '{status_line}'")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // No body follows a response to HEAD, a 1xx, 204 or 304, whatever the headers say.
    let body = if bodiless || status == 204 || status == 304 || status < 200 {
        rest.to_vec()
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if rest.len() < len {
            return Err(bad(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunked body cut short"))?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| bad("bad chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(format!("bad chunk size '{size_text}'")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("chunked body cut short"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
