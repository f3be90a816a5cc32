//! Slow and idle clients cannot cut revocation checking. `serve` runs with a low descriptor
//! limit (`ulimit -n 256`) and short timeouts; the test holds 2,000 connections open from
//! 127.0.0.1, half of them silent and half with a request head sent only in part, and checks
//! that the CRL, the issuing CA certificate and a bundle still download promptly, and that the
//! held connections are closed by the server within the timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{cli_json, http};
use crate::tools::free_port;

const PASS: &str = "connection limits test passphrase";
const HELD: usize = 2_000;

/// Raises this process's soft descriptor limit to its hard limit (the test holds 2,000).
fn raise_own_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("raise the soft descriptor limit");
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now > (HELD as u64) + 200,
        "the test needs {HELD} descriptors, has {now}"
    );
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_systemd_unit_raises_the_descriptor_limit() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ops/systemd/anchorage.service"
    ))
    .unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE in the unit")
        .trim()
        .parse()
        .unwrap();
    let config: anchorage::config::Config = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/anchorage.toml"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        limit >= config.server.max_connections as u64 + 64,
        "{limit}"
    );
}

#[test]
fn slow_and_idle_clients_cannot_cut_revocation_checking() {
    raise_own_limit();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    cli_json(
        &data,
        PASS,
        &[
            "init",
            "--managed-domain",
            "direct.example.com",
            "--public-url",
            &format!("http://{addr}"),
        ],
    );
    // Short limits, so the test sees them act.
    let config = data.join("anchorage.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "header_read_timeout_secs = 10",
            "header_read_timeout_secs = 2",
        )
        .replace("idle_timeout_secs = 60", "idle_timeout_secs = 3");
    assert!(text.contains("idle_timeout_secs = 3"), "{text}");
    std::fs::write(&config, text).unwrap();

    let logs = tempfile::tempdir().unwrap();
    let child = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_anchorage"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", &addr.to_string()])
        .env("ANCHORAGE_PASSPHRASE", PASS)
        .env_remove("ANCHORAGE_DATA_DIR")
        .env_remove("ANCHORAGE_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(addr, "GET", "/healthz", None, None)
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "serve did not start: {}",
            std::fs::read_to_string(logs.path().join("err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Before: each download works.
    let paths = [
        "/crl/issuing.crl",
        "/ca/issuing.cer",
        "/bundles/provider-test.p7b",
    ];
    for p in paths {
        assert_eq!(http(addr, "GET", p, None, None).unwrap().status, 200, "{p}");
    }

    // 2,000 connections: silent ones, and ones that send half a request head.
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /crl/issuing.crl HTTP/1.1\r\nHost: slow\r\n")
                .unwrap();
        }
        held.push(s);
    }
    // While they are held, relying parties still get what they need, promptly.
    let started = Instant::now();
    for p in paths {
        let r = http(addr, "GET", p, None, None).unwrap();
        assert_eq!(r.status, 200, "{p} while {HELD} connections are held");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "downloads took {took:?}");

    // And the held connections are closed by the server (evicted or timed out).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut closed = 0;
    for s in held.iter_mut() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        // A closed connection reads EOF (or a reset); a 408 for a half-sent head counts too.
        let gone = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        closed += usize::from(gone);
    }
    assert_eq!(
        closed, HELD,
        "every held connection was closed by the server"
    );
    let err = std::fs::read_to_string(logs.path().join("err")).unwrap_or_default();
    assert!(!err.contains("Too many open files"), "{err}");
    // Still serving afterwards.
    assert_eq!(
        http(addr, "GET", "/crl/issuing.crl", None, None)
            .unwrap()
            .status,
        200
    );
}
