//! The web interface in a real browser: headless Chromium (Debian's package) driven through
//! chromedriver (WebDriver) against `anchorage serve` as a child process. A registrar signs in,
//! issues a certificate from an uploaded CSR and another with a server-generated key, and the
//! browser downloads the PEM, the DER and the PKCS#12; openssl then checks each file against
//! the CA chain and the key. A member submits an anchor, an administrator approves it, and the
//! published bundle holds it (openssl reads the .p7b). A screenshot of every page visited is
//! written under `target/tmp/screenshots/` and its path printed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::server::{anchorage, cli, Server, PASSPHRASE};
use crate::tools::{free_port, run_in};

const PASSWORD: &str = "browser test password 1";
const DOMAIN: &str = "direct.example.com";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (ops/test.sh installs Debian's chromium-driver)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, port }
}

/// A browser session with its own profile and download directory.
struct Browser {
    client: Client,
    base: String,
    downloads: PathBuf,
    shots: PathBuf,
    name: String,
    n: usize,
}

impl Browser {
    async fn open(driver: &Driver, base: &str, work: &Path, name: &str) -> Browser {
        let downloads = work.join(format!("downloads-{name}"));
        let profile = work.join(format!("profile-{name}"));
        std::fs::create_dir_all(&downloads).unwrap();
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                }
            }
        });
        let mut builder = ClientBuilder::rustls().unwrap();
        builder.capabilities(caps.as_object().unwrap().clone());
        let client = builder
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            base: base.to_string(),
            downloads,
            shots,
            name: name.to_string(),
            n: 0,
        }
    }

    async fn go(&mut self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn shot(&mut self, name: &str) {
        self.n += 1;
        let png = self.client.screenshot().await.unwrap();
        let path = self
            .shots
            .join(format!("{}-{:02}-{name}.png", self.name, self.n));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    async fn fill(&self, id: &str, text: &str) {
        let e = self.client.find(Locator::Id(id)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn select(&self, id: &str, value: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Polls the page until it contains `needle`: a click that submits a form may return
    /// before the browser has loaded the answer.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let html = self.source().await;
            if html.contains(needle) {
                return html;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {needle:?}: {html}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign_in(&mut self, user: &str) {
        self.go("/login").await;
        self.shot(&format!("login-{user}")).await;
        self.fill("username", user).await;
        self.fill("password", PASSWORD).await;
        self.client
            .find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for("Sign out").await;
    }

    /// Waits for a finished download (Chromium writes `.crdownload` first).
    fn downloaded(&self, suffix: &str) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = std::fs::read_dir(&self.downloads)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(suffix));
            if let Some(p) = found {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no *{suffix} downloaded into {}",
                self.downloads.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn add_user(data_dir: &Path, name: &str, role: &str, scope: &[&str]) {
    let mut args = vec!["user", "add", name, "--role", role, "--name", name];
    args.extend_from_slice(scope);
    let out = anchorage(data_dir, PASSPHRASE)
        .env("ANCHORAGE_USER_PASSWORD", PASSWORD)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = run_in(dir, "openssl", args);
    out.assert_success(&format!("openssl {}", args.join(" ")));
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_member_and_admin_in_a_real_browser() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data_dir = w.join("data");
    let init = cli(
        &data_dir,
        PASSPHRASE,
        &[
            "init",
            "--managed-domain",
            DOMAIN,
            "--public-url",
            "http://pki.direct.example.com",
        ],
    );
    init.assert_success("anchorage init");
    add_user(&data_dir, "registrar1", "registrar", &["--domain", DOMAIN]);
    add_user(
        &data_dir,
        "member1",
        "member",
        &["--bundle", "provider-test"],
    );
    add_user(&data_dir, "admin1", "admin", &[]);
    let server = Server::start(&data_dir, PASSPHRASE);
    let base = format!("http://{}", server.addr);
    // The CA chain, for openssl.
    let chain = reqwest_get(&format!("{base}/ca/issuing.cer")).await;
    std::fs::write(w.join("issuing.der"), chain).unwrap();
    let root = reqwest_get(&format!("{base}/ca/root.cer")).await;
    std::fs::write(w.join("root.der"), root).unwrap();
    openssl(
        w,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "issuing.der",
            "-out",
            "issuing.pem",
        ],
    );
    openssl(
        w,
        &[
            "x509", "-inform", "DER", "-in", "root.der", "-out", "root.pem",
        ],
    );

    let driver = start_driver();

    // ---- registrar: CSR upload ----------------------------------------------------------
    let mut b = Browser::open(&driver, &base, w, "registrar").await;
    b.go("/").await;
    b.shot("home").await;
    b.sign_in("registrar1").await;
    openssl(
        w,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "sub.key",
            "-out",
            "sub.csr",
            "-subj",
            "/CN=ignored",
        ],
    );
    b.go("/registrar/issue").await;
    b.shot("issue-form").await;
    b.fill("address", "dr.browser@direct.example.com").await;
    b.fill("subscriber_name", "Dr. Browser").await;
    b.select("organisation", "default").await;
    b.select("usage", "dual").await;
    b.select("proofing_method", "in-person").await;
    b.fill("evidence_reference", "case-web-1").await;
    b.click("key_csr").await;
    let upload = w.join("sub.csr");
    b.client
        .find(Locator::Id("csr_file"))
        .await
        .unwrap()
        .send_keys(&upload.display().to_string())
        .await
        .unwrap();
    b.click("issue-submit").await;
    b.wait_for("Certificate issued").await;
    b.shot("issued-from-csr").await;
    b.client
        .find(Locator::LinkText("PEM"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let pem = b.downloaded(".pem");
    b.client
        .find(Locator::LinkText("DER"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let der = b.downloaded(".cer");
    let verify = openssl(
        w,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            &pem.display().to_string(),
        ],
    );
    assert!(verify.contains(": OK"), "{verify}");
    let from_der = openssl(
        w,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            &der.display().to_string(),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(
        from_der.contains("dr.browser@direct.example.com"),
        "{from_der}"
    );
    // The certificate carries the key of the CSR, not one of ours.
    let cert_key = openssl(
        w,
        &[
            "x509",
            "-in",
            &pem.display().to_string(),
            "-noout",
            "-pubkey",
        ],
    );
    let csr_key = openssl(w, &["pkey", "-in", "sub.key", "-pubout"]);
    assert_eq!(cert_key, csr_key);

    // The list, a detail page, the revoke confirmation page.
    b.go("/registrar/certs?q=browser").await;
    b.shot("cert-list").await;
    // Readable on a tablet: at 768 px nothing needs horizontal scrolling of the page.
    for (width, height) in [(768, 1024), (1280, 1100)] {
        b.client.set_window_size(width, height).await.unwrap();
        let fits = b
            .client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "the page overflows at {width} px");
        b.shot(&format!("cert-list-{width}px")).await;
    }
    b.client
        .find(Locator::LinkText("dr.browser@direct.example.com"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.shot("cert-detail").await;
    b.click("revoke-link").await;
    b.shot("revoke-confirm").await;

    // ---- registrar: server-generated key --------------------------------------------------
    b.go("/registrar/issue").await;
    b.fill("address", "dr.keygen@direct.example.com").await;
    b.fill("subscriber_name", "Dr. Keygen").await;
    b.select("usage", "pair").await;
    b.select("proofing_method", "remote-supervised").await;
    b.fill("evidence_reference", "case-web-2").await;
    b.click("key_generate").await;
    b.click("issue-submit").await;
    b.wait_for("p12-password").await;
    b.shot("issued-with-generated-key").await;
    let password = b.text("#p12-password").await;
    assert!(password.len() >= 20, "{password}");
    let links = b
        .client
        .find_all(Locator::Css("a.p12-download"))
        .await
        .unwrap();
    assert_eq!(links.len(), 2, "a pair gives two PKCS#12 files");
    for link in links {
        link.click().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let p12s = loop {
        let done: Vec<PathBuf> = std::fs::read_dir(&b.downloads)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "p12"))
            .collect();
        if done.len() == 2 {
            break done;
        }
        assert!(Instant::now() < deadline, "PKCS#12 downloads: {done:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for p12 in &p12s {
        let pass = format!("pass:{password}");
        let path = p12.display().to_string();
        let cert = openssl(
            w,
            &[
                "pkcs12", "-legacy", "-in", &path, "-passin", &pass, "-nokeys", "-clcerts",
            ],
        );
        let cert_file = w.join("p12-cert.pem");
        std::fs::write(&cert_file, &cert).unwrap();
        let verify = openssl(
            w,
            &[
                "verify",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "issuing.pem",
                &cert_file.display().to_string(),
            ],
        );
        assert!(verify.contains(": OK"), "{verify}");
        let key = openssl(
            w,
            &[
                "pkcs12", "-legacy", "-in", &path, "-passin", &pass, "-nocerts", "-nodes",
            ],
        );
        let key_file = w.join("p12-key.pem");
        std::fs::write(&key_file, key).unwrap();
        assert_eq!(
            openssl(
                w,
                &["pkey", "-in", &key_file.display().to_string(), "-pubout"]
            ),
            openssl(
                w,
                &[
                    "x509",
                    "-in",
                    &cert_file.display().to_string(),
                    "-noout",
                    "-pubkey"
                ]
            ),
            "the PKCS#12 key matches its certificate"
        );
    }
    b.client.clone().close().await.unwrap();

    // ---- member submits an anchor ----------------------------------------------------------
    openssl(
        w,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "anchor.key",
            "-out",
            "anchor.pem",
            "-days",
            "3650",
            "-subj",
            "/O=Browser Member/CN=Browser Member Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let mut m = Browser::open(&driver, &base, w, "member").await;
    m.sign_in("member1").await;
    m.go("/member/anchors").await;
    m.shot("member-anchors").await;
    m.select("bundle", "provider-test").await;
    m.fill("organization", "Browser Member").await;
    m.fill("contact", "PKI Team <pki@member.example>").await;
    m.client
        .find(Locator::Id("anchor_file"))
        .await
        .unwrap()
        .send_keys(&w.join("anchor.pem").display().to_string())
        .await
        .unwrap();
    m.click("anchor-submit").await;
    m.wait_for("Your anchor was submitted for review").await;
    m.shot("member-submitted").await;
    assert!(m.text("#anchor-list").await.contains("pending"));
    m.client.clone().close().await.unwrap();

    // ---- admin approves it --------------------------------------------------------------------
    let mut a = Browser::open(&driver, &base, w, "admin").await;
    a.sign_in("admin1").await;
    a.go("/admin/queue").await;
    a.shot("admin-queue").await;
    let approve = a
        .client
        .find(Locator::Css("section[id^=pending-] button[id^=approve-]"))
        .await
        .unwrap();
    approve.click().await.unwrap();
    a.wait_for("class=\"flash\"").await;
    a.shot("admin-approved").await;
    let flash = a.text(".flash").await;
    assert_eq!(
        flash,
        anchorage::http::web::Notice::AnchorApprovedPublished.sentence()
    );
    for (path, name) in [
        ("/admin/bundles", "admin-bundles"),
        ("/admin/users", "admin-users"),
        ("/admin/tokens", "admin-tokens"),
        ("/admin/ca", "admin-ca"),
        ("/admin/audit", "admin-audit"),
    ] {
        a.go(path).await;
        a.shot(name).await;
        assert!(!a.source().await.contains("could not"), "{path}");
    }
    let audit = a.text("#audit-list").await;
    for action in ["anchor.approve", "user.login", "cert.issue"] {
        assert!(
            audit.contains(action),
            "{action} missing from the audit viewer"
        );
    }
    a.client.clone().close().await.unwrap();

    // The published bundle holds the member's anchor (openssl reads it).
    let p7b = reqwest_get(&format!("{base}/bundles/provider-test.p7b")).await;
    std::fs::write(w.join("provider-test.p7b"), p7b).unwrap();
    let certs = openssl(
        w,
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "provider-test.p7b",
            "-print_certs",
            "-noout",
        ],
    );
    assert!(certs.contains("Browser Member Root"), "{certs}");

    // No password, generated or typed, reached the service's log.
    let mut server = server;
    assert!(server.stop().success(), "{}", server.output());
    let log = server.output();
    for secret in [PASSWORD, password.as_str()] {
        assert!(!log.contains(secret), "a secret is in the server log");
    }

    // `audit export`: JSON lines, filterable, with who, when and from where.
    let out = w.join("audit.jsonl");
    cli(
        &data_dir,
        PASSPHRASE,
        &["audit", "export", "--out", &out.display().to_string()],
    )
    .assert_success("audit export");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|p| p[1] == p[0] + 1),
        "oldest first, none missing"
    );
    let issued = lines
        .iter()
        .find(|e| {
            e["action"] == "cert.issue" && e["actor"].as_str().unwrap().starts_with("registrar1")
        })
        .expect("the browser issuance is audited");
    assert!(
        issued["actor"]
            .as_str()
            .unwrap()
            .ends_with("from 127.0.0.1"),
        "{issued}"
    );
    assert!(issued["at"].as_str().is_some());
    let logins = cli(
        &data_dir,
        PASSPHRASE,
        &["audit", "export", "--action", "user.login"],
    );
    logins.assert_success("audit export --action");
    let logins: Vec<serde_json::Value> = logins
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logins.len(), 3, "three sign-ins");
    assert!(logins
        .iter()
        .all(|e| e["details"]["from"] == json!("127.0.0.1")));
}

async fn reqwest_get(url: &str) -> Vec<u8> {
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}
