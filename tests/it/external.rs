//! External trust bundles against a real HTTPS publisher: a TLS server in the test process
//! (own test CA, 127.0.0.1 only) serves scripted answers, and the fixtures come from OpenSSL
//! (`crl2pkcs7`, `cms -sign`, also `-stream` for BER indefinite lengths and PEM inner
//! content). Every status of a refresh attempt is provoked, and after each failure the last
//! good copy must still be what is published. Republished bundles are checked with
//! `openssl cms -verify` and `openssl pkcs7 -print_certs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage::accounts::{Role, Scope};
use anchorage::authority::{Authority, InitOptions};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::external::RefreshStatus;
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use anchorage::refresh as schedule;
use axum::http::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server;
use crate::tools::{self, free_port};

const PASSPHRASE: &str = "external-test-passphrase-0123456";

// ---------------------------------------------------------------------------------------------
// Fixtures made by OpenSSL

/// Every file the tests need, in one temporary directory.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn openssl(&self, args: &[&str]) {
        tools::run_in(self.dir.path(), "openssl", args)
            .assert_success(&format!("openssl {args:?}"));
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn ca(&self, name: &str, cn: &str, newkey: &[&str], days: &str) {
        let key = format!("{name}.key");
        let cert = format!("{name}.pem");
        let subj = format!("/O={cn}/CN={cn}");
        let mut args = vec!["req", "-x509", "-nodes"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&[
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            days,
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.openssl(&args);
    }

    /// An end-entity certificate for `name` issued by `ca` with the extensions in `ext`.
    fn leaf(&self, name: &str, cn: &str, ca: &str, ext: &str) {
        self.write(&format!("{name}.ext"), ext);
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "365",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn concat(&self, out: &str, parts: &[&str]) {
        let text: String = parts
            .iter()
            .map(|p| std::fs::read_to_string(self.path(p)).unwrap())
            .collect();
        self.write(out, &text);
    }

    /// `openssl cms -sign` of `input` by `signer`; `extra` adds options (`-stream`...).
    fn sign(&self, input: &str, signer: &str, out: &str, extra: &[&str]) {
        let mut args = vec![
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-outform",
            "DER",
            "-in",
            input,
            "-signer",
        ];
        let (cert, key) = (format!("{signer}.pem"), format!("{signer}.key"));
        args.extend_from_slice(&[&cert, "-inkey", &key, "-out", out]);
        args.extend_from_slice(extra);
        self.openssl(&args);
    }

    fn make() -> Fixtures {
        let f = Fixtures {
            dir: tempfile::tempdir().unwrap(),
        };
        // TLS: a test CA and a server certificate for 127.0.0.1.
        f.ca("tls-ca", "Test TLS CA", &["-newkey", "rsa:2048"], "30");
        f.leaf(
            "tls",
            "127.0.0.1",
            "tls-ca",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        // The publisher's signing CA and its bundle signer; a stranger; an expired signer.
        f.ca(
            "pub-ca",
            "Test Publisher CA",
            &["-newkey", "rsa:2048"],
            "365",
        );
        f.leaf(
            "signer",
            "Test Bundle Signer",
            "pub-ca",
            "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n",
        );
        // Issued by the pinned CA, but for key encipherment only.
        f.leaf(
            "no-sign",
            "Encipherment Only",
            "pub-ca",
            "basicConstraints=critical,CA:false\nkeyUsage=critical,keyEncipherment\n",
        );
        f.openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "stranger.key",
            "-out",
            "stranger.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Stranger",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ]);
        f.expired_signer();
        // Anchors: two good ones, a third for a changed set, and a weak one (RSA-1024, SHA-1).
        let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        f.ca("anchor-a", "Community A Root", &p256, "3650");
        f.ca(
            "anchor-b",
            "Community B Root",
            &["-newkey", "rsa:2048"],
            "3650",
        );
        f.ca("anchor-c", "Community C Root", &p256, "3650");
        f.ca(
            "weak",
            "Weak Legacy Root",
            &["-newkey", "rsa:1024", "-sha1"],
            "3650",
        );
        // set1 holds a duplicate of anchor-a.
        f.concat(
            "set1.pem",
            &["anchor-a.pem", "anchor-b.pem", "weak.pem", "anchor-a.pem"],
        );
        f.concat("set2.pem", &["anchor-a.pem", "anchor-c.pem"]);
        for (set, certs) in [
            ("set1", "set1.pem"),
            ("set2", "set2.pem"),
            ("weak-only", "weak.pem"),
        ] {
            f.openssl(&[
                "crl2pkcs7",
                "-nocrl",
                "-certfile",
                certs,
                "-outform",
                "DER",
                "-out",
                &format!("{set}.p7b"),
            ]);
        }
        f.openssl(&[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "set1.pem",
            "-out",
            "set1-pem.p7b",
        ]);
        f.openssl(&[
            "crl2pkcs7",
            "-nocrl",
            "-outform",
            "DER",
            "-out",
            "empty.p7b",
        ]);
        f.sign(
            "set1.p7b",
            "signer",
            "signed.p7m",
            &["-certfile", "pub-ca.pem"],
        );
        f.sign("set1.p7b", "signer", "signed-ber.p7m", &["-stream"]);
        f.sign("set1-pem.p7b", "signer", "signed-pem-inner.p7m", &[]);
        f.sign("set2.p7b", "signer", "signed-set2.p7m", &[]);
        f.sign("weak-only.p7b", "signer", "signed-weak.p7m", &[]);
        f.sign("empty.p7b", "signer", "signed-empty.p7m", &[]);
        f.sign("set1.p7b", "stranger", "signed-stranger.p7m", &[]);
        f.sign("set1.p7b", "expired", "signed-expired.p7m", &[]);
        f.sign("set1.p7b", "no-sign", "signed-no-sign.p7m", &[]);
        // The signature's last byte flipped.
        let mut tampered = f.bytes("signed.p7m");
        *tampered.last_mut().unwrap() ^= 0x01;
        std::fs::write(f.path("signed-tampered.p7m"), tampered).unwrap();
        f
    }

    /// A self-signed signer that expired yesterday (OpenSSL 3.0 cannot back-date).
    fn expired_signer(&self) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Expired Bundle Signer");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(60);
        params.not_after = now - time::Duration::days(1);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        self.write("expired.pem", &cert.pem());
        self.write("expired.key", &key.serialize_pem());
    }
}

// ---------------------------------------------------------------------------------------------
// The publisher: a scripted HTTPS server

#[derive(Clone)]
enum Reply {
    /// A response; with `etag`, a request carrying `If-None-Match: etag` gets 304.
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        etag: Option<String>,
    },
    /// 302 to this location.
    Redirect(String),
    /// 200 and a body that never ends.
    Endless,
    /// Accepts the request and never answers.
    Silent,
}

fn ok(body: Vec<u8>) -> Reply {
    Reply::Body {
        status: 200,
        content_type: "application/pkcs7-mime",
        body,
        etag: None,
    }
}

struct Publisher {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    requests: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Publisher {
    fn start(cert: &Path, key: &Path) -> Publisher {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = anchorage::http::tls::server_config(cert, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, q) = (routes.clone(), requests.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, r, q) = (acceptor.clone(), r.clone(), q.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls, r, q).await;
                    }
                });
            }
        });
        Publisher {
            addr,
            routes,
            requests,
            runtime: Some(runtime),
        }
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.split_whitespace().nth(1) == Some(path))
            .count()
    }

    fn last_request(&self, path: &str) -> String {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .rev()
            .find(|r| r.split_whitespace().nth(1) == Some(path))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn answer(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    requests.lock().unwrap().push(text.clone());
    let reply = routes.lock().unwrap().get(&path).cloned();
    let reply = reply.unwrap_or(Reply::Body {
        status: 404,
        content_type: "text/plain",
        body: b"not found".to_vec(),
        etag: None,
    });
    match reply {
        Reply::Body {
            status,
            content_type,
            body,
            etag,
        } => {
            let lower = text.to_ascii_lowercase();
            if let Some(tag) = &etag {
                if lower.contains(&format!("if-none-match: {}", tag.to_ascii_lowercase())) {
                    let head = format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.shutdown().await;
                    return;
                }
            }
            let etag_line = etag.map(|t| format!("ETag: {t}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{etag_line}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(&body).await;
            let _ = tls.shutdown().await;
        }
        Reply::Redirect(location) => {
            let head = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
        Reply::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime\r\nConnection: close\r\n\r\n";
            if tls.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![0x30u8; 64 * 1024];
            while tls.write_all(&chunk).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Reply::Silent => tokio::time::sleep(Duration::from_secs(120)).await,
    }
}

// ---------------------------------------------------------------------------------------------
// The service under test, in process

/// Declarations for the sources the tests use; `fixtures` holds the pins and the TLS CA.
fn declare(bundles: &Path, f: &Fixtures, publisher: &Publisher) {
    std::fs::create_dir_all(bundles.join("pins")).unwrap();
    for file in ["pub-ca.pem", "expired.pem", "tls-ca.pem"] {
        std::fs::copy(f.path(file), bundles.join("pins").join(file)).unwrap();
    }
    let limits = "connect_timeout_secs = 2\nread_timeout_secs = 2\ntotal_timeout_secs = 4\nretries = 1\nretry_backoff_ms = 10\nmax_bytes = 1000000\n";
    let source = |name: &str, url: &str, extra: &str| {
        std::fs::write(
            bundles.join(format!("{name}.toml")),
            format!("[source]\nurl = \"{url}\"\n{limits}{extra}"),
        )
        .unwrap();
    };
    source(
        "pinned",
        &publisher.url("/pinned.p7m"),
        "signers = [\"pins/pub-ca.pem\", \"pins/expired.pem\"]\ntls_ca_file = \"pins/tls-ca.pem\"\n",
    );
    source(
        "open",
        &publisher.url("/open.p7b"),
        "tls_ca_file = \"pins/tls-ca.pem\"\n",
    );
    source(
        "report",
        &publisher.url("/report.p7m"),
        "tls_ca_file = \"pins/tls-ca.pem\"\nadmission = \"report_only\"\n",
    );
    source("untrusted-tls", &publisher.url("/open.p7b"), "");
    let closed = free_port();
    source("refused", &format!("https://127.0.0.1:{closed}/x.p7b"), "");
    source("nodns", "https://no-such-host.invalid/x.p7b", "");
    source(
        "strict",
        &publisher.url("/strict.p7m"),
        "signers = [\"pins/pub-ca.pem\"]\ntls_ca_file = \"pins/tls-ca.pem\"\nstale_warn_hours = 1\nstale_fail_hours = 2\npublish_when_stale = false\n",
    );
    std::fs::write(
        bundles.join("combined.toml"),
        "title = \"Combined\"\ninclude = [\"pinned\"]\n",
    )
    .unwrap();
    std::fs::write(
        bundles.join("strict-combined.toml"),
        "title = \"Strict combined\"\ninclude = [\"strict\"]\n",
    )
    .unwrap();
}

/// The wall clock moved forward by a settable number of seconds.
#[derive(Default)]
struct ShiftedClock(std::sync::atomic::AtomicI64);

impl anchorage::clock::Clock for ShiftedClock {
    fn now(&self) -> time::OffsetDateTime {
        anchorage::clock::SystemClock.now()
            + time::Duration::seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

fn open_authority(dir: &Path) -> Arc<Authority> {
    open_authority_with(dir, Arc::new(SystemClock))
}

fn open_authority_with(dir: &Path, clock: Arc<dyn anchorage::clock::Clock>) -> Arc<Authority> {
    let config = Config {
        data_dir: dir.join("data"),
        bundles_dir: dir.join("bundles"),
        managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, clock).unwrap();
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    authority
        .init(InitOptions::default(), &pass, "test")
        .unwrap();
    authority.unlock(&pass).unwrap();
    Arc::new(authority)
}

struct Refresher {
    runtime: tokio::runtime::Runtime,
    authority: Arc<Authority>,
}

impl Refresher {
    fn run(&self, name: &str) -> anchorage::authority::RefreshReport {
        self.runtime
            .block_on(schedule::refresh(self.authority.clone(), name, "test"))
            .unwrap()
    }

    fn view(&self, name: &str) -> Value {
        serde_json::to_value(self.authority.source_view(name).unwrap()).unwrap()
    }

    fn latest(&self, name: &str) -> anchorage::store::BundleVersion {
        self.authority
            .danger_store()
            .unwrap()
            .latest_bundle_version(name)
            .unwrap()
            .unwrap()
    }
}

fn fingerprints(view: &Value, field: &str) -> Vec<String> {
    let mut list: Vec<String> = view[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect();
    list.sort();
    list
}

/// `openssl x509 -fingerprint -sha256` of a PEM file, as lower-case hex.
fn openssl_fingerprint(pem: &Path) -> String {
    let pem = pem.to_str().unwrap();
    let out = tools::run(
        "openssl",
        &["x509", "-noout", "-fingerprint", "-sha256", "-in", pem],
    );
    out.assert_success("openssl x509 -fingerprint");
    out.stdout
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// Verifies a published .p7m with `openssl cms -verify` against the CA chain and returns the
/// subjects `openssl pkcs7 -print_certs` lists in the content.
fn openssl_subjects(authority: &Authority, p7m: &[u8], dir: &Path) -> Vec<String> {
    let chain: String = authority
        .ca_chain()
        .unwrap()
        .iter()
        .map(|d| anchorage::x509::to_pem("CERTIFICATE", d))
        .collect();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    std::fs::write(dir.join("out.p7m"), p7m).unwrap();
    tools::run_in(
        dir,
        "openssl",
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-CAfile",
            "chain.pem",
            "-in",
            "out.p7m",
            "-out",
            "out.p7b",
        ],
    )
    .assert_success("openssl cms -verify of the republished bundle");
    let out = tools::run_in(
        dir,
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "out.p7b",
            "-print_certs",
            "-noout",
        ],
    );
    out.assert_success("openssl pkcs7 -print_certs");
    out.stdout
        .lines()
        .filter(|l| l.starts_with("subject="))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_status_keeps_the_last_good_copy() {
    let f = Fixtures::make();
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    declare(&dir.path().join("bundles"), &f, &publisher);
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: open_authority(dir.path()),
    };
    let (a, b, c) = (
        openssl_fingerprint(&f.path("anchor-a.pem")),
        openssl_fingerprint(&f.path("anchor-b.pem")),
        openssl_fingerprint(&f.path("anchor-c.pem")),
    );
    let weak = openssl_fingerprint(&f.path("weak.pem"));

    // ok: signed by the pinned CA's signer (rsaEncryption), duplicate removed, weak rejected.
    publisher.set("/pinned.p7m", ok(f.bytes("signed.p7m")));
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(report.published_version, Some(1));
    let view = r.view("pinned");
    assert_eq!(view["status"], "ok");
    assert_eq!(view["verification"]["verified"], true, "{view}");
    let mut all = vec![a.clone(), b.clone(), weak.clone()];
    all.sort();
    assert_eq!(fingerprints(&view, "last_attempt_anchors"), all);
    let rejected: Vec<&Value> = view["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["admitted"] == false)
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["fingerprint"], weak.as_str());
    assert!(!rejected[0]["reasons"].as_array().unwrap().is_empty());
    let good = r.latest("pinned");
    assert_eq!(good.version, 1);
    let mut published: Vec<String> = good
        .anchors
        .iter()
        .map(|x| x.fingerprint.0.clone())
        .collect();
    published.sort();
    let mut ab = vec![a.clone(), b.clone()];
    ab.sort();
    assert_eq!(published, ab);
    // Republication: the external bundle alone and the local bundle that includes it.
    let subjects = openssl_subjects(&r.authority, good.p7m.as_ref().unwrap(), dir.path());
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    let combined = r.latest("combined");
    assert_eq!(
        report.republished,
        vec![("combined".to_string(), combined.version)]
    );
    let subjects = openssl_subjects(&r.authority, combined.p7m.as_ref().unwrap(), dir.path());
    assert!(
        subjects.iter().any(|s| s.contains("Community A Root")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("Community B Root")),
        "{subjects:?}"
    );
    assert!(!subjects.iter().any(|s| s.contains("Weak")), "{subjects:?}");

    // ok, unchanged body: only timestamps move; the conditional GET carried no ETag yet.
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::Ok);
    assert!(report.reason.contains("unchanged"), "{report:?}");
    assert_eq!(report.published_version, None);

    // not_modified: the publisher now sends an ETag and honours If-None-Match.
    publisher.set(
        "/pinned.p7m",
        Reply::Body {
            status: 200,
            content_type: "application/pkcs7-mime",
            body: f.bytes("signed.p7m"),
            etag: Some("\"v1\"".into()),
        },
    );
    assert_eq!(r.run("pinned").status, RefreshStatus::Ok);
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::NotModified, "{report:?}");
    assert!(publisher
        .last_request("/pinned.p7m")
        .to_ascii_lowercase()
        .contains("if-none-match: \"v1\""));

    // BER indefinite lengths (`cms -sign -stream`) and PEM inner content parse to the same set.
    for fixture in ["signed-ber.p7m", "signed-pem-inner.p7m"] {
        publisher.set("/pinned.p7m", ok(f.bytes(fixture)));
        let report = r.run("pinned");
        assert_eq!(report.status, RefreshStatus::Ok, "{fixture}: {report:?}");
        assert_eq!(
            fingerprints(&r.view("pinned"), "last_attempt_anchors"),
            all,
            "{fixture}"
        );
        assert_eq!(
            r.latest("pinned").version,
            1,
            "{fixture}: same admitted set, no new version"
        );
    }
    // The BER fixture really is BER: its second byte announces an indefinite length.
    assert_eq!(f.bytes("signed-ber.p7m")[1], 0x80);

    // Each failure: precise status, last good copy (version 1, anchors a+b) still published.
    let html = Reply::Body {
        status: 200,
        content_type: "text/html",
        body: b"<html><body><h1>Maintenance</h1></body></html>".to_vec(),
        etag: None,
    };
    let cases: Vec<(&str, Reply, RefreshStatus, Option<u16>)> = vec![
        (
            "404",
            Reply::Body {
                status: 404,
                content_type: "text/plain",
                body: b"gone".to_vec(),
                etag: None,
            },
            RefreshStatus::HttpStatus,
            Some(404),
        ),
        (
            "503",
            Reply::Body {
                status: 503,
                content_type: "text/plain",
                body: b"busy".to_vec(),
                etag: None,
            },
            RefreshStatus::HttpStatus,
            Some(503),
        ),
        ("html-200", html, RefreshStatus::InvalidFormat, None),
        (
            "unsigned",
            ok(f.bytes("set1.p7b")),
            RefreshStatus::UnsignedButPinned,
            None,
        ),
        (
            "unsigned-pem",
            ok(f.bytes("set1-pem.p7b")),
            RefreshStatus::UnsignedButPinned,
            None,
        ),
        (
            "tampered",
            ok(f.bytes("signed-tampered.p7m")),
            RefreshStatus::BadSignature,
            None,
        ),
        (
            "stranger",
            ok(f.bytes("signed-stranger.p7m")),
            RefreshStatus::UntrustedSigner,
            None,
        ),
        (
            "expired",
            ok(f.bytes("signed-expired.p7m")),
            RefreshStatus::SignerExpired,
            None,
        ),
        (
            "no-digital-signature",
            ok(f.bytes("signed-no-sign.p7m")),
            RefreshStatus::UntrustedSigner,
            None,
        ),
        (
            "empty",
            ok(f.bytes("signed-empty.p7m")),
            RefreshStatus::Empty,
            None,
        ),
        (
            "all-rejected",
            ok(f.bytes("signed-weak.p7m")),
            RefreshStatus::AllRejected,
            None,
        ),
        ("endless", Reply::Endless, RefreshStatus::TooLarge, None),
        ("silent", Reply::Silent, RefreshStatus::Timeout, None),
    ];
    for (i, (name, reply, want, code)) in cases.into_iter().enumerate() {
        publisher.set("/pinned.p7m", reply);
        let before = publisher.count("/pinned.p7m");
        let report = r.run("pinned");
        let tries = publisher.count("/pinned.p7m") - before;
        // retries = 1: network failures and 5xx are tried twice, everything else once.
        let transient = matches!(name, "503" | "silent");
        assert_eq!(tries, if transient { 2 } else { 1 }, "{name}: tries");
        assert_eq!(report.status, want, "{name}: {report:?}");
        assert_eq!(report.http_code, code, "{name}");
        assert!(!report.reason.is_empty(), "{name}");
        let view = r.view("pinned");
        assert_eq!(view["status"], want.as_str(), "{name}");
        assert_eq!(view["consecutive_failures"], i as u64 + 1, "{name}");
        assert_eq!(
            fingerprints(&view, "anchors"),
            all,
            "{name}: the last good copy's anchors"
        );
        let latest = r.latest("pinned");
        assert_eq!(
            (latest.version, latest.sha256.clone()),
            (good.version, good.sha256.clone()),
            "{name}"
        );
        assert_eq!(r.latest("combined").version, combined.version, "{name}");
        if name == "all-rejected" {
            // What the bundle held is still shown, with every reason.
            let held = view["last_attempt_anchors"].as_array().unwrap();
            assert_eq!(held.len(), 1);
            assert_eq!(held[0]["admitted"], false);
            assert!(held[0]["reasons"].as_array().unwrap().len() >= 2, "{view}");
        }
    }

    // A changed set: new version, anchors added and removed recorded, republished.
    publisher.set("/pinned.p7m", ok(f.bytes("signed-set2.p7m")));
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(report.published_version, Some(2));
    let v2 = r.latest("pinned");
    let added: Vec<&str> = v2.added.iter().map(|x| x.fingerprint.0.as_str()).collect();
    let removed: Vec<&str> = v2
        .removed
        .iter()
        .map(|x| x.fingerprint.0.as_str())
        .collect();
    assert_eq!(added, [c.as_str()]);
    assert_eq!(removed, [b.as_str()]);
    assert_eq!(r.view("pinned")["consecutive_failures"], 0);
    let combined2 = r.latest("combined");
    assert_eq!(combined2.version, combined.version + 1);
    let subjects = openssl_subjects(&r.authority, combined2.p7m.as_ref().unwrap(), dir.path());
    assert!(
        subjects.iter().any(|s| s.contains("Community C Root")),
        "{subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains("Community B Root")),
        "{subjects:?}"
    );
    let attempts = &r.view("pinned")["attempts"];
    for status in [
        "ok",
        "not_modified",
        "http_status",
        "timeout",
        "too_large",
        "bad_signature",
    ] {
        assert!(
            attempts[status].as_u64().unwrap() >= 1,
            "{status}: {attempts}"
        );
    }
}

#[test]
fn network_failures_are_told_apart() {
    let f = Fixtures::make();
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    declare(&dir.path().join("bundles"), &f, &publisher);
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: open_authority(dir.path()),
    };
    publisher.set("/open.p7b", ok(f.bytes("set1-pem.p7b")));
    // Unpinned: a PEM bundle from crl2pkcs7 is accepted as unverified, and says so.
    let report = r.run("open");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    let view = r.view("open");
    assert_eq!(view["verification"]["verified"], false);
    assert!(view["verification"]["note"]
        .as_str()
        .unwrap()
        .contains("unverified"));
    // The same server without the test CA: TLS verification fails.
    let report = r.run("untrusted-tls");
    assert_eq!(report.status, RefreshStatus::TlsError, "{report:?}");
    let report = r.run("refused");
    assert_eq!(report.status, RefreshStatus::ConnectError, "{report:?}");
    assert_eq!(r.view("refused")["last_attempt_anchors"], Value::Null);
    let report = r.run("nodns");
    assert_eq!(report.status, RefreshStatus::DnsError, "{report:?}");
    // Report-only admission republishes the weak anchor but shows why it would be refused.
    publisher.set("/report.p7m", ok(f.bytes("signed-weak.p7m")));
    let report = r.run("report");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    let anchors = r.view("report")["anchors"].clone();
    assert_eq!(anchors[0]["admitted"], true);
    assert!(!anchors[0]["reasons"].as_array().unwrap().is_empty());
    // Redirects: followed on HTTPS, refused when they loop or leave HTTPS.
    publisher.set("/open.p7b", Reply::Redirect("/moved.p7b".into()));
    publisher.set("/moved.p7b", ok(f.bytes("set2.p7b")));
    let report = r.run("open");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(r.latest("open").version, 2);
    publisher.set("/open.p7b", Reply::Redirect("/open.p7b".into()));
    let report = r.run("open");
    assert_eq!(report.status, RefreshStatus::HttpStatus, "{report:?}");
    assert!(report.reason.contains("redirect"), "{report:?}");
    let plain = format!("http://{}/moved.p7b", publisher.addr);
    publisher.set("/open.p7b", Reply::Redirect(plain));
    let report = r.run("open");
    assert_eq!(report.status, RefreshStatus::HttpStatus, "{report:?}");
    assert!(report.reason.contains("HTTPS"), "{report:?}");
    assert_eq!(r.latest("open").version, 2);
    // A declared limit on the body: Content-Length over max_bytes stops before reading.
    publisher.set("/open.p7b", ok(vec![0x30; 2_000_000]));
    assert_eq!(r.run("open").status, RefreshStatus::TooLarge);
    assert_eq!(r.latest("open").version, 2);
}

#[test]
fn staleness_is_flagged_and_can_withdraw() {
    use anchorage::clock::Clock;
    let f = Fixtures::make();
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    declare(&dir.path().join("bundles"), &f, &publisher);
    let clock = Arc::new(ShiftedClock::default());
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: open_authority_with(dir.path(), clock.clone()),
    };
    let shift = |hours: i64| {
        clock
            .0
            .store(hours * 3600, std::sync::atomic::Ordering::SeqCst)
    };
    publisher.set("/strict.p7m", ok(f.bytes("signed.p7m")));
    assert_eq!(r.run("strict").status, RefreshStatus::Ok);
    assert_eq!(r.view("strict")["staleness"], "fresh");
    assert_eq!(r.latest("strict-combined").anchors.len(), 2);
    // Past stale_warn_hours (1): flagged, not yet degraded.
    shift(1);
    clock.0.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    let view = r.view("strict");
    assert_eq!(
        (view["staleness"].as_str(), view["stale"].as_bool()),
        (Some("stale_warn"), Some(true))
    );
    assert!(r.authority.degraded_sources().unwrap().is_empty());
    // Past stale_fail_hours (2): degraded; with publish_when_stale = false the including
    // bundle drops the source's anchors at its next rebuild; the source's own copy stays.
    shift(3);
    assert_eq!(r.view("strict")["staleness"], "stale_fail");
    assert_eq!(r.authority.degraded_sources().unwrap(), ["strict"]);
    let withdrawn = r.authority.republish_includers("strict", "test").unwrap();
    assert_eq!(withdrawn.len(), 1);
    assert!(r.latest("strict-combined").anchors.is_empty());
    assert_eq!(r.latest("strict").anchors.len(), 2);
    // The other source (publish_when_stale = true by default) is merely flagged.
    assert_eq!(r.view("pinned")["staleness"], "no_copy");
    // A successful refresh (same bytes) confirms the copy: fresh again, anchors back.
    let report = r.run("strict");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(r.view("strict")["staleness"], "fresh");
    assert_eq!(r.latest("strict-combined").anchors.len(), 2);
    assert!(r.authority.degraded_sources().unwrap().is_empty());
    let last_good = time::OffsetDateTime::parse(
        r.view("strict")["last_good_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((clock.now() - last_good).whole_seconds().abs() <= 2);
}

/// The CLI contract, through the binary: `--bundles-dir`, a minimal declaration,
/// `refresh run NAME` (exit status), `refresh status NAME -o json`, and the same through a
/// running `serve` (forwarded), its status API, metrics and start-up refresh.
#[test]
fn cli_and_server_contract() {
    let f = Fixtures::make();
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let inventory = dir.path().join("inventory");
    std::fs::create_dir_all(inventory.join("keys")).unwrap();
    std::fs::copy(f.path("pub-ca.pem"), inventory.join("keys/pub-ca.pem")).unwrap();
    std::fs::copy(f.path("tls-ca.pem"), inventory.join("keys/tls-ca.pem")).unwrap();
    // Minimal declarations: only [source] with url, signers and tls_ca_file.
    // `late` also runs every 2 seconds, to see the cron job fire while `serve` runs.
    for (name, path, extra) in [
        ("community", "/community.p7m", ""),
        ("late", "/late.p7m", "schedule = \"*/2 * * * * *\"\n"),
    ] {
        std::fs::write(
            inventory.join(format!("{name}.toml")),
            format!(
                "[source]\nurl = \"{}\"\nsigners = [\"keys/pub-ca.pem\"]\ntls_ca_file = \"keys/tls-ca.pem\"\n{extra}",
                publisher.url(path)
            ),
        )
        .unwrap();
    }
    let bundles_dir = inventory.to_str().unwrap();
    server::cli_json(
        &data,
        PASSPHRASE,
        &[
            "--bundles-dir",
            bundles_dir,
            "init",
            "--managed-domain",
            "direct.example.com",
        ],
    );
    publisher.set("/community.p7m", ok(f.bytes("signed-ber.p7m")));
    publisher.set("/late.p7m", ok(f.bytes("signed.p7m")));

    let run = server::cli_json(
        &data,
        PASSPHRASE,
        &["--bundles-dir", bundles_dir, "refresh", "run", "community"],
    );
    assert_eq!(run["status"], "ok", "{run}");
    let status = server::cli_json(
        &data,
        PASSPHRASE,
        &[
            "--bundles-dir",
            bundles_dir,
            "refresh",
            "status",
            "community",
        ],
    );
    assert_eq!(status["status"], "ok");
    let a = openssl_fingerprint(&f.path("anchor-a.pem"));
    let anchors = status["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), 3, "{status}");
    let entry = anchors
        .iter()
        .find(|x| x["fingerprint"] == a.as_str())
        .unwrap();
    assert_eq!(entry["admitted"], true);
    assert_eq!(entry["reasons"], Value::Array(vec![]));
    assert_eq!(status["last_attempt_anchors"].as_array().unwrap().len(), 3);

    // A failed attempt exits non-zero and prints the status with the HTTP code.
    publisher.set(
        "/community.p7m",
        Reply::Body {
            status: 404,
            content_type: "text/html",
            body: b"<html>404</html>".to_vec(),
            etag: None,
        },
    );
    let mut args = vec![
        "-o",
        "json",
        "--bundles-dir",
        bundles_dir,
        "refresh",
        "run",
        "community",
    ];
    let out = server::cli(&data, PASSPHRASE, &args);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    let failed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(failed["status"], "http_status");
    assert_eq!(failed["http_code"], 404);
    let status = server::cli_json(
        &data,
        PASSPHRASE,
        &[
            "--bundles-dir",
            bundles_dir,
            "refresh",
            "status",
            "community",
        ],
    );
    assert_eq!(status["status"], "http_status");
    assert_eq!(
        status["anchors"].as_array().unwrap().len(),
        3,
        "last good copy kept"
    );
    assert_eq!(status["consecutive_failures"], 1);

    // serve: refreshes `late` (never fetched) at start-up; the CLI is forwarded to it.
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let logs = tempfile::tempdir().unwrap();
    let mut child = server::anchorage(&data, PASSPHRASE)
        .args([
            "--bundles-dir",
            bundles_dir,
            "serve",
            "--listen",
            &addr.to_string(),
        ])
        .stdout(std::fs::File::create(logs.path().join("out")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(logs.path().join("err")).unwrap_or_default();
    let mut late = Value::Null;
    for _ in 0..300 {
        if let Ok(resp) = server::http(addr, "GET", "/api/v1/bundles/late/status", None, None) {
            late = resp.json();
            if late["status"] == "ok" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        late["status"],
        "ok",
        "start-up refresh of 'late': {late}\n{}",
        log()
    );
    // The scheduled job runs again and again (same bytes: ok, unchanged).
    let mut runs = 0;
    for _ in 0..100 {
        let view = server::http(addr, "GET", "/api/v1/bundles/late/status", None, None)
            .unwrap()
            .json();
        runs = view["attempts"]["ok"].as_u64().unwrap_or(0);
        if runs >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        runs >= 3,
        "the cron job did not fire: {runs} runs\n{}",
        log()
    );
    assert!(publisher.count("/late.p7m") >= 3);
    let health = server::http(addr, "GET", "/healthz", None, None)
        .unwrap()
        .json();
    assert_eq!(health["status"], "ok");

    publisher.set("/community.p7m", ok(f.bytes("signed-set2.p7m")));
    args = vec![
        "-o",
        "json",
        "--bundles-dir",
        bundles_dir,
        "refresh",
        "run",
        "community",
    ];
    let out = server::cli(&data, PASSPHRASE, &args);
    assert!(
        out.status.success(),
        "forwarded refresh: {}\n{}",
        out.describe(),
        log()
    );
    let forwarded: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(forwarded["status"], "ok");
    assert_eq!(forwarded["published_version"], 2);
    let status = server::http(addr, "GET", "/api/v1/bundles/community/status", None, None).unwrap();
    let status = status.json();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["anchors"].as_array().unwrap().len(), 2);
    // The new version is served at once.
    let served = server::http(addr, "GET", "/bundles/community.p7b", None, None).unwrap();
    assert_eq!(served.status, 200);
    std::fs::write(logs.path().join("served.p7b"), &served.body).unwrap();
    let out = tools::run_in(
        logs.path(),
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "served.p7b",
            "-print_certs",
            "-noout",
        ],
    );
    out.assert_success("openssl pkcs7 of the served bundle");
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("subject="))
            .count(),
        2
    );
    // Metrics.
    let metrics = server::http(addr, "GET", "/metrics", None, None).unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("anchorage_external_refresh_attempts_total{source=\"community\",status=\"http_status\"} 1"), "{text}");
    assert!(
        text.contains(
            "anchorage_external_refresh_attempts_total{source=\"community\",status=\"ok\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("anchorage_external_anchors{source=\"community\",verdict=\"admitted\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("anchorage_external_stale{source=\"late\"} 0"),
        "{text}"
    );
    // The admin call needs a token.
    let refused = server::http(
        addr,
        "POST",
        "/api/v1/bundles/community/refresh",
        None,
        None,
    )
    .unwrap();
    assert_eq!(refused.status, 401);
    // SIGTERM stops the server and its jobs cleanly.
    tools::run("kill", &["-TERM", &child.id().to_string()]).assert_success("kill -TERM");
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("serve did not stop within 10 s of SIGTERM:\n{}", log());
    };
    assert!(status.success(), "serve exit {status}:\n{}", log());
    assert!(
        !data.join("serve.json").exists(),
        "serve.json removed on shutdown"
    );
    // One log line per attempt, with status and reason.
    let log = strip_ansi(&log());
    assert!(
        log.contains("external bundle refresh source=late status=ok reason=3 anchors, 2 admitted"),
        "{log}"
    );
}

/// The log without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// The audit entries with `action` about `target`, oldest first.
fn audit_of(authority: &Authority, action: &str, target: &str) -> Vec<Value> {
    authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(|e| e.unwrap())
        .filter(|e| e.action == action && e.target == target)
        .map(|e| e.details)
        .collect()
}

/// Rollback (issue 12, requirement 8): a verified copy signed earlier than the accepted one
/// is refused as `rollback`, the published copy stays byte for byte, the refusal is audited
/// with both signing times, and an explicit `accept_older` takes it (audited too).
#[test]
fn an_older_signed_copy_is_a_rollback() {
    let f = Fixtures::make();
    // `signed.p7m` (set1) was signed in `make`; OpenSSL writes the current second as the
    // signingTime, so this one (set2) is signed strictly later.
    std::thread::sleep(Duration::from_millis(1100));
    f.sign("set2.p7b", "signer", "signed-newer.p7m", &[]);
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    declare(&dir.path().join("bundles"), &f, &publisher);
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: open_authority(dir.path()),
    };
    publisher.set("/pinned.p7m", ok(f.bytes("signed-newer.p7m")));
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    let view = r.view("pinned");
    let newer_time = view["verification"]["signing_time"]
        .as_str()
        .expect("the signing time is kept with the good copy")
        .to_string();
    let good = r.latest("pinned");
    let combined = r.latest("combined");

    publisher.set("/pinned.p7m", ok(f.bytes("signed.p7m")));
    let report = r.run("pinned");
    assert_eq!(report.status, RefreshStatus::Rollback, "{report:?}");
    assert!(report.reason.contains("--accept-older"), "{report:?}");
    assert_eq!(report.published_version, None);
    let view = r.view("pinned");
    assert_eq!(view["status"], "rollback");
    assert_eq!(view["verification"]["signing_time"], newer_time.as_str());
    let latest = r.latest("pinned");
    assert_eq!((latest.version, &latest.p7b), (good.version, &good.p7b));
    assert_eq!(latest.p7m, good.p7m, "the same published bytes");
    assert_eq!(r.latest("combined").p7m, combined.p7m);
    let refused = audit_of(&r.authority, "bundle.refresh_attempt", "pinned");
    let refused = refused.last().unwrap();
    assert_eq!(refused["status"], "rollback", "{refused}");
    assert_eq!(refused["previous_signing_time"], newer_time.as_str());
    let older_time = refused["signing_time"].as_str().unwrap().to_string();
    assert!(older_time < newer_time, "{refused}");
    // The scheduler keeps refusing it.
    assert_eq!(r.run("pinned").status, RefreshStatus::Rollback);

    // The operator accepts it explicitly.
    let report = r
        .runtime
        .block_on(schedule::refresh_with(
            r.authority.clone(),
            "pinned",
            "operator",
            true,
        ))
        .unwrap();
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(report.published_version, Some(good.version + 1));
    assert_eq!(
        r.view("pinned")["verification"]["signing_time"],
        older_time.as_str()
    );
    let accepted = audit_of(&r.authority, "bundle.refresh_accept_older", "pinned");
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["previous_signing_time"], newer_time.as_str());
    assert_eq!(accepted[0]["signing_time"], older_time.as_str());
    // The newer copy is newer again.
    publisher.set("/pinned.p7m", ok(f.bytes("signed-newer.p7m")));
    assert_eq!(r.run("pinned").status, RefreshStatus::Ok);
}

/// Conditional-GET validators belong to the URL they came from: after the declaration
/// moves to another URL, the first request there carries neither If-None-Match nor
/// If-Modified-Since.
#[test]
fn validators_do_not_follow_a_changed_url() {
    let f = Fixtures::make();
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    let bundles = dir.path().join("bundles");
    declare(&bundles, &f, &publisher);
    let tagged = Reply::Body {
        status: 200,
        content_type: "application/pkcs7-mime",
        body: f.bytes("signed.p7m"),
        etag: Some("\"v1\"".into()),
    };
    publisher.set("/a.p7m", tagged.clone());
    publisher.set("/b.p7m", tagged);
    let declaration = |url: &str| {
        std::fs::write(
            bundles.join("moving.toml"),
            format!("[source]\nurl = \"{url}\"\nsigners = [\"pins/pub-ca.pem\"]\ntls_ca_file = \"pins/tls-ca.pem\"\nretries = 0\n"),
        )
        .unwrap();
    };
    declaration(&publisher.url("/a.p7m"));
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: open_authority(dir.path()),
    };
    assert_eq!(r.run("moving").status, RefreshStatus::Ok);
    assert_eq!(r.run("moving").status, RefreshStatus::NotModified);
    let conditional = |path: &str| {
        let request = publisher.last_request(path).to_ascii_lowercase();
        request.contains("if-none-match") || request.contains("if-modified-since")
    };
    assert!(
        conditional("/a.p7m"),
        "{}",
        publisher.last_request("/a.p7m")
    );
    drop(r);

    declaration(&publisher.url("/b.p7m"));
    let config = Config {
        data_dir: dir.path().join("data"),
        bundles_dir: bundles.clone(),
        managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    authority
        .unlock(&Passphrase::new(PASSPHRASE.into()).unwrap())
        .unwrap();
    let r = Refresher {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        authority: Arc::new(authority),
    };
    let report = r.run("moving");
    assert_eq!(report.status, RefreshStatus::Ok, "{report:?}");
    assert_eq!(publisher.count("/b.p7m"), 1);
    assert!(
        !conditional("/b.p7m"),
        "the first request to the new URL was conditional: {}",
        publisher.last_request("/b.p7m")
    );
    // From then on, the new URL's own validators are used.
    assert_eq!(r.run("moving").status, RefreshStatus::NotModified);
    assert!(conditional("/b.p7m"));
}

/// Source URLs with credentials and a token: the secrets reach the publisher but appear in
/// no API response, console page, CLI output (text or JSON) or log line, also when the
/// fetch fails and when a rollback is refused and then accepted with `--accept-older`.
#[test]
fn source_url_secrets_are_never_shown() {
    let f = Fixtures::make();
    std::thread::sleep(Duration::from_millis(1100));
    f.sign("set2.p7b", "signer", "signed-newer.p7m", &[]);
    let publisher = Publisher::start(&f.path("tls.pem"), &f.path("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory");
    std::fs::create_dir_all(inventory.join("keys")).unwrap();
    std::fs::copy(f.path("pub-ca.pem"), inventory.join("keys/pub-ca.pem")).unwrap();
    std::fs::copy(f.path("tls-ca.pem"), inventory.join("keys/tls-ca.pem")).unwrap();
    const SECRETS: [&str; 2] = ["pw-secret-71", "tok-secret-93"];
    let closed = free_port();
    let secret_url = format!(
        "https://reader:pw-secret-71@{}/secret.p7m?token=tok-secret-93",
        publisher.addr
    );
    for (name, url) in [
        ("secret", secret_url.clone()),
        (
            "secret-down",
            format!("https://reader:pw-secret-71@127.0.0.1:{closed}/x.p7m?token=tok-secret-93"),
        ),
    ] {
        std::fs::write(
            inventory.join(format!("{name}.toml")),
            format!("[source]\nurl = \"{url}\"\nsigners = [\"keys/pub-ca.pem\"]\ntls_ca_file = \"keys/tls-ca.pem\"\nretries = 1\nretry_backoff_ms = 10\nconnect_timeout_secs = 2\n"),
        )
        .unwrap();
    }
    let route = "/secret.p7m?token=tok-secret-93";
    publisher.set(route, ok(f.bytes("signed-newer.p7m")));
    let leaks = |what: &str, text: &str| {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    };

    // The CLI, with the log at info on stderr.
    let data = dir.path().join("data");
    let bundles_dir = inventory.to_str().unwrap();
    server::cli_json(
        &data,
        PASSPHRASE,
        &[
            "--bundles-dir",
            bundles_dir,
            "init",
            "--managed-domain",
            "direct.example.com",
        ],
    );
    let cli = |args: &[&str]| {
        let mut all = vec!["--bundles-dir", bundles_dir];
        all.extend_from_slice(args);
        let out = server::anchorage(&data, PASSPHRASE)
            .env("RUST_LOG", "info")
            .args(&all)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        leaks(&format!("anchorage {args:?} stdout"), &stdout);
        leaks(&format!("anchorage {args:?} log"), &stderr);
        (out.status.success(), stdout, stderr)
    };
    let (ok_run, out, _) = cli(&["-o", "json", "refresh", "run", "secret"]);
    assert!(ok_run, "{out}");
    assert!(
        publisher
            .last_request(route)
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "the credentials still reach the publisher"
    );
    let (_, out, log) = cli(&["-o", "json", "refresh", "run", "secret-down"]);
    let failed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(failed["status"], "connect_error", "{failed}");
    assert!(log.contains("retrying"), "the retry line is logged: {log}");
    let redacted = format!("https://***@{}/secret.p7m?…", publisher.addr);
    let (_, out, _) = cli(&["-o", "json", "refresh", "status", "secret"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["url"], redacted.as_str());
    let (_, out, _) = cli(&["refresh", "status"]);
    assert!(out.contains(&redacted), "{out}");
    // A rollback through the CLI: refused (exit 1), then accepted with --accept-older.
    publisher.set(route, ok(f.bytes("signed.p7m")));
    let (ok_run, out, _) = cli(&["-o", "json", "refresh", "run", "secret"]);
    assert!(!ok_run);
    let refused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(refused["status"], "rollback", "{refused}");
    let (ok_run, out, _) = cli(&["-o", "json", "refresh", "run", "secret", "--accept-older"]);
    assert!(ok_run, "{out}");
    let accepted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accepted["status"], "ok", "{accepted}");
    let (ok_run, out, _) = cli(&["audit", "export"]);
    assert!(ok_run, "{out}");
    assert!(out.contains("bundle.refresh_accept_older"), "{out}");
    assert!(out.contains("\"rollback\""), "{out}");

    // The API and the admin console, in process.
    let web = crate::web::Web::with_config(|c| {
        c.bundles_dir = inventory.clone();
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = web.login("admin").await;
        for uri in [
            "/api/v1/sources",
            "/api/v1/bundles/secret/status",
            "/api/v1/bundles/secret-down/status",
        ] {
            let reply = web.get(uri, None).await;
            assert_eq!(reply.status, 200, "{uri}");
            leaks(uri, &reply.body);
        }
        publisher.set(route, ok(f.bytes("signed-newer.p7m")));
        for name in ["secret", "secret-down"] {
            let reply = web
                .post_form(
                    &format!("/admin/sources/{name}/refresh"),
                    Some(&admin),
                    &[("csrf", &admin.csrf)],
                )
                .await;
            assert_eq!(reply.status, 303, "{}", reply.body);
        }
        let page = web.get("/admin/bundles", Some(&admin)).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("127.0.0.1"), "{}", page.body);
        leaks("/admin/bundles", &page.body);
        let status = web.get("/api/v1/bundles/secret-down/status", None).await;
        assert!(status.body.contains("connect_error"), "{}", status.body);
        leaks("status after a failed fetch", &status.body);
        // The refresh API: a rollback is refused, then accepted with `accept_older=true`
        // (what a CLI forwarded to a running serve sends).
        let token = web.token(Role::Admin, Scope::default());
        publisher.set(route, ok(f.bytes("signed.p7m")));
        let uri = "/api/v1/bundles/secret/refresh";
        let refused = web.api(Method::POST, uri, Some(&token), None).await;
        assert_eq!(refused.status, 200, "{}", refused.body);
        leaks(uri, &refused.body);
        let refused: Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(refused["status"], "rollback", "{refused}");
        let uri = "/api/v1/bundles/secret/refresh?accept_older=true";
        let accepted = web.api(Method::POST, uri, Some(&token), None).await;
        assert_eq!(accepted.status, 200, "{}", accepted.body);
        let accepted: Value = serde_json::from_str(&accepted.body).unwrap();
        assert_eq!(accepted["status"], "ok", "{accepted}");
        let audited = audit_of(&web.authority, "bundle.refresh_accept_older", "secret");
        assert_eq!(audited.len(), 1, "{audited:?}");
    });
}
