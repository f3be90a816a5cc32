//! The HTTP API (requirement 10) through `anchorage::http::router` in process, one request at a
//! time with `oneshot`: bearer tokens and roles, issuance from a CSR (PEM or base64 DER) or a
//! server-generated key (a legacy PKCS#12 that openssl opens), pairs, refusals with stable
//! codes, listing and fetching, revocation reaching the CRL, and the public CRL and CA URLs
//! written into certificates resolving to routes the router serves. openssl reads every
//! certificate, CRL and PKCS#12 the API hands out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anchorage::authority::{token_hash, Authority, InitOptions};
use anchorage::ca::CaRole;
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::http::{router, AppState};
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;
use x509_parser::prelude::*;

use crate::tools::{der_crl_to_pem, openssl_verify, run, run_in, ToolOutput};

const DOMAIN: &str = "direct.example.com";
const OTHER_DOMAIN: &str = "direct.other.example";
/// Written into every CRL distribution point and AIA; nothing listens there.
const PUBLIC_URL: &str = "http://pki.direct.example.com:8080";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An initialised authority in a temporary directory and the router over it.
struct Api {
    dir: TempDir,
    authority: Arc<Authority>,
    app: Router,
    /// A registrar token's secret.
    registrar: String,
}

/// One complete response.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// Asserts the status and the `{code, message}` error body; returns the body.
    fn expect_error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["code"], json!(code), "{v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error body without a message: {v}"
        );
        v
    }

    fn expect_status(&self, status: StatusCode) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

impl Api {
    fn new() -> Api {
        Api::with_config(|_| {})
    }

    fn with_config(adjust: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            public_url: PUBLIC_URL.into(),
            managed_domains: vec![
                HealthDomain::parse(DOMAIN).unwrap(),
                HealthDomain::parse(OTHER_DOMAIN).unwrap(),
            ],
            ..Config::default()
        };
        adjust(&mut config);
        let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
        let passphrase = Passphrase::new("api test passphrase (not a secret)".into()).unwrap();
        authority
            .init(InitOptions::default(), &passphrase, "api-test")
            .unwrap();
        // What `anchorage init` does next: the first CRLs.
        assert_eq!(authority.refresh_crls().unwrap().len(), 2);
        let (secret, _) = crate::harness::token(&authority, "registrar", "api tests", Some(30));
        let authority = Arc::new(authority);
        let app = router(AppState::new(authority.clone()));
        Api {
            dir,
            authority,
            app,
            registrar: secret.to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data_dir(&self) -> &Path {
        &self.authority.config().data_dir
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(value) = auth {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let body = match body {
            Some(bytes) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    /// GET with the registrar token.
    async fn get(&self, uri: &str) -> Reply {
        let auth = format!("Bearer {}", self.registrar);
        self.send(Method::GET, uri, Some(&auth), None).await
    }

    /// GET without credentials, as a relying party fetching a CRL or CA certificate.
    async fn get_public(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None, None).await
    }

    /// POST a JSON value with the registrar token.
    async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.post_as(&self.registrar, uri, body).await
    }

    async fn post_as(&self, token: &str, uri: &str, body: &Value) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(
            Method::POST,
            uri,
            Some(&auth),
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    async fn post_raw(&self, uri: &str, body: Vec<u8>) -> Reply {
        let auth = format!("Bearer {}", self.registrar);
        self.send(Method::POST, uri, Some(&auth), Some(body)).await
    }

    /// Issues and insists on 201; returns the response body.
    async fn issue(&self, body: &Value) -> Value {
        let r = self.post("/api/v1/certificates", body).await;
        r.expect_status(StatusCode::CREATED);
        r.json()
    }

    /// A fresh RSA-2048 key (`NAME.key`) and CSR made by openssl; returns the CSR PEM.
    fn csr(&self, name: &str) -> String {
        let (key, req) = (format!("{name}.key"), format!("{name}.csr"));
        run_in(
            self.dir.path(),
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &req,
                "-subj",
                "/CN=api test",
            ],
        )
        .assert_success("openssl req");
        std::fs::read_to_string(self.path(&req)).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// True when any file of the data directory contains `needle`.
    fn store_contains(&self, needle: &[u8]) -> bool {
        fn walk(dir: &Path, needle: &[u8]) -> bool {
            std::fs::read_dir(dir).unwrap().any(|entry| {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, needle)
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    bytes.windows(needle.len()).any(|w| w == needle)
                }
            })
        }
        walk(self.data_dir(), needle)
    }
}

fn issue_body(address: &str, csr: &str) -> Value {
    json!({
        "address": address,
        "usage": "dual",
        "csr": csr,
        "subscriber": {"name": "Jones Clinic", "organization": "anchorage evaluation"},
        "proofing": {"method": "in-person", "evidence_reference": "ticket 42"},
    })
}

fn keygen_body(address: &str, usage: &str) -> Value {
    json!({
        "address": address,
        "usage": usage,
        "keygen": true,
        "subscriber": {"name": "Jones Clinic"},
        "proofing": {"method": "in-person", "evidence_reference": "ticket 43"},
    })
}

fn pem_der(pem_text: &str) -> Vec<u8> {
    ::pem::parse(pem_text).unwrap().into_contents()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string '{key}' in {v}"))
}

fn openssl(args: &[&str]) -> ToolOutput {
    let out = run("openssl", args);
    out.assert_success(&format!("openssl {}", args.join(" ")));
    out
}

/// The public key of a certificate (PEM), as openssl prints it.
fn cert_public_key(cert: &Path) -> String {
    openssl(&["x509", "-in", path_str(cert), "-noout", "-pubkey"]).stdout
}

/// The public key of a private key (PEM), as openssl prints it.
fn key_public_key(key: &Path) -> String {
    openssl(&["pkey", "-in", path_str(key), "-pubout"]).stdout
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The CRL distribution point and AIA caIssuers URIs of a certificate.
fn certificate_urls(der: &[u8]) -> (Vec<String>, Vec<String>) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let (mut crl, mut ca_issuers) = (Vec::new(), Vec::new());
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(uri) = name {
                                crl.push(uri.to_string());
                            }
                        }
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for access in &aia.accessdescs {
                    if access.access_method
                        == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                    {
                        if let GeneralName::URI(uri) = &access.access_location {
                            ca_issuers.push(uri.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (crl, ca_issuers)
}

/// The router path of a URL under [`PUBLIC_URL`].
fn route_of(url: &str) -> &str {
    let path = url
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("'{url}' is not under the public URL {PUBLIC_URL}"));
    assert!(path.starts_with('/'), "'{url}' has no path");
    path
}

#[tokio::test]
async fn api_tokens_authenticate_and_authorise_and_are_stored_hashed() {
    let api = Api::new();
    let list = "/api/v1/certificates";

    // The secret is returned once; the record and the store hold only its SHA-256.
    let (secret, record) =
        crate::harness::token(&api.authority, "registrar", "front desk", Some(30));
    assert_eq!(record.hash, token_hash(&secret));
    let stored = api
        .authority
        .danger_store()
        .unwrap()
        .token_by_hash(&record.hash)
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, "registrar");
    for token in api.authority.danger_store().unwrap().tokens().unwrap() {
        let text = serde_json::to_string(&token).unwrap();
        assert!(
            !text.contains(secret.as_str()),
            "a token record holds the secret"
        );
        assert!(
            !text.contains(&api.registrar),
            "a token record holds the secret"
        );
    }
    assert!(
        api.store_contains(record.hash.as_bytes()),
        "the scan below must see the token records"
    );
    assert!(
        !api.store_contains(secret.as_bytes()),
        "the secret is in the store"
    );
    assert!(
        !api.store_contains(api.registrar.as_bytes()),
        "the secret is in the store"
    );

    // The token works.
    let ok = api
        .send(
            Method::GET,
            list,
            Some(&format!("Bearer {}", secret.as_str())),
            None,
        )
        .await;
    ok.expect_status(StatusCode::OK);
    assert_eq!(ok.json(), json!([]));

    // No, malformed, unknown or expired credentials: 401 with a Bearer challenge.
    let (expired, _) = crate::harness::token(&api.authority, "registrar", "old", Some(0));
    for (what, auth) in [
        ("no header", None),
        (
            "Basic scheme",
            Some("Basic cmVnaXN0cmFyOnNlY3JldA==".to_string()),
        ),
        ("empty bearer", Some("Bearer ".to_string())),
        (
            "unknown token",
            Some(format!("Bearer {}x", secret.as_str())),
        ),
        (
            "expired token",
            Some(format!("Bearer {}", expired.as_str())),
        ),
    ] {
        let r = api.send(Method::GET, list, auth.as_deref(), None).await;
        let body = r.expect_error(StatusCode::UNAUTHORIZED, "unauthorised");
        assert_eq!(r.header(header::WWW_AUTHENTICATE), "Bearer", "{what}");
        if what == "expired token" {
            assert!(
                body["message"].as_str().unwrap().contains("expired"),
                "{body}"
            );
        }
        let post = api
            .send(
                Method::POST,
                list,
                auth.as_deref(),
                Some(serde_json::to_vec(&issue_body("x@direct.example.com", "x")).unwrap()),
            )
            .await;
        post.expect_error(StatusCode::UNAUTHORIZED, "unauthorised");
    }

    // A member may not issue or read certificates.
    let (member, _) = crate::harness::token(&api.authority, "member", "hisp", Some(30));
    let csr = api.csr("member");
    api.post_as(
        &member,
        list,
        &issue_body("member@direct.example.com", &csr),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.send(
        Method::GET,
        list,
        Some(&format!("Bearer {}", member.as_str())),
        None,
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        api.authority.danger_store().unwrap().cert_count() == 0,
        "a refused caller issued something"
    );

    // Relying parties need no token.
    let health = api.get_public("/healthz").await;
    health.expect_status(StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn api_issues_from_a_csr_in_pem_or_base64_der() {
    let api = Api::new();
    let csr = api.csr("jones");
    let v = api
        .issue(&issue_body("Jones@Direct.Example.com", &csr))
        .await;
    let serial = str_of(&v, "serial").to_string();
    assert_eq!(v["serials"], json!([serial]));
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["serial"], json!(serial));
    assert_eq!(certs[0]["usage"], json!("dual"));
    assert_eq!(certs[0]["holder"], json!("jones@direct.example.com"));
    assert!(
        v.get("pkcs12").is_none() && v.get("p12_password").is_none(),
        "{v}"
    );
    let pem_text = str_of(&certs[0], "pem").to_string();
    let cert_pem = api.write("jones.pem", pem_text.as_bytes());

    // openssl agrees on the serial, and the certificate carries the CSR's key.
    let printed = openssl(&["x509", "-in", path_str(&cert_pem), "-noout", "-serial"]).stdout;
    assert_eq!(
        printed.trim().to_ascii_lowercase(),
        format!("serial={serial}")
    );
    assert_eq!(
        cert_public_key(&cert_pem),
        key_public_key(&api.path("jones.key"))
    );

    // The same certificate from every fetch route.
    let show = api.get(&format!("/api/v1/certificates/{serial}")).await;
    show.expect_status(StatusCode::OK);
    let shown = show.json();
    assert_eq!(shown["serial"], json!(serial));
    assert_eq!(shown["status"], json!("valid"));
    assert_eq!(shown["holder"], json!("jones@direct.example.com"));
    assert_eq!(shown["binding"], json!("address"));
    assert_eq!(shown["pem"], json!(pem_text));
    let pem_reply = api.get(&format!("/api/v1/certificates/{serial}/pem")).await;
    pem_reply.expect_status(StatusCode::OK);
    assert_eq!(
        pem_reply.header(header::CONTENT_TYPE),
        "application/x-pem-file"
    );
    assert_eq!(String::from_utf8(pem_reply.body.clone()).unwrap(), pem_text);
    let der_reply = api.get(&format!("/api/v1/certificates/{serial}/der")).await;
    der_reply.expect_status(StatusCode::OK);
    assert_eq!(
        der_reply.header(header::CONTENT_TYPE),
        "application/pkix-cert"
    );
    assert_eq!(der_reply.body, pem_der(&pem_text));
    let der_file = api.write("jones.der", &der_reply.body);
    let reencoded = openssl(&["x509", "-inform", "DER", "-in", path_str(&der_file)]).stdout;
    assert_eq!(
        pem_der(&reencoded),
        pem_der(&pem_text),
        "DER parses and equals the PEM"
    );
    // Serials are accepted in openssl's upper case too.
    api.get(&format!("/api/v1/certificates/{}", serial.to_uppercase()))
        .await
        .expect_status(StatusCode::OK);

    // A CSR given as base64 DER, wrapped at 64 columns as `openssl base64` writes it.
    let csr2 = api.csr("smith");
    let b64 = B64.encode(pem_der(&csr2));
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let v2 = api
        .issue(&issue_body("smith@direct.example.com", &wrapped.join("\n")))
        .await;
    let pem2 = v2["certificates"][0]["pem"].as_str().unwrap();
    let cert2 = api.write("smith.pem", pem2.as_bytes());
    assert_eq!(
        cert_public_key(&cert2),
        key_public_key(&api.path("smith.key"))
    );
    assert_ne!(v2["serial"], json!(serial));
}

#[tokio::test]
async fn api_keygen_returns_a_legacy_pkcs12_and_pairs_return_two_serials() {
    let api = Api::new();
    let v = api
        .issue(&keygen_body("keygen@direct.example.com", "dual"))
        .await;
    let serial = str_of(&v, "serial");
    let password = str_of(&v, "p12_password").to_string();
    assert!(
        password.len() >= 16,
        "a short generated password: {password}"
    );
    let p12s = v["pkcs12"].as_array().unwrap();
    assert_eq!(p12s.len(), 1);
    assert_eq!(p12s[0]["serial"], json!(serial));
    let p12 = api.write(
        "keygen.p12",
        &B64.decode(str_of(&p12s[0], "pkcs12_base64")).unwrap(),
    );
    let pass_file = api.write("keygen.pass", password.as_bytes());
    let passin = format!("file:{}", path_str(&pass_file));
    let p12_arg = path_str(&p12);

    // openssl 3 opens the legacy PKCS#12: the certificate is the issued one, the key is its
    // key, and the CA chain rides along.
    let cert = openssl(&[
        "pkcs12", "-legacy", "-in", p12_arg, "-passin", &passin, "-nokeys", "-clcerts",
    ]);
    let cert_pem = api.write("keygen-cert.pem", cert.stdout.as_bytes());
    assert_eq!(
        pem_der(&cert.stdout),
        pem_der(str_of(&v["certificates"][0], "pem"))
    );
    let key = openssl(&[
        "pkcs12", "-legacy", "-in", p12_arg, "-passin", &passin, "-nocerts", "-nodes",
    ]);
    let key_pem = api.write("keygen-key.pem", key.stdout.as_bytes());
    assert_eq!(cert_public_key(&cert_pem), key_public_key(&key_pem));
    let cas = openssl(&[
        "pkcs12", "-legacy", "-in", p12_arg, "-passin", &passin, "-nokeys", "-cacerts",
    ]);
    let ca_ders: HashSet<Vec<u8>> = ::pem::parse_many(&cas.stdout)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    let chain: HashSet<Vec<u8>> = api.authority.ca_chain().unwrap().into_iter().collect();
    assert_eq!(ca_ders, chain, "the PKCS#12 carries the CA chain");
    let wrong = run(
        "openssl",
        &[
            "pkcs12",
            "-legacy",
            "-in",
            p12_arg,
            "-passin",
            "pass:wrong password!",
            "-nokeys",
        ],
    );
    assert!(
        !wrong.status.success(),
        "a wrong password opened the PKCS#12"
    );
    // The password is shown once and never stored.
    assert!(
        !api.store_contains(password.as_bytes()),
        "the PKCS#12 password is in the store"
    );

    // A caller-chosen password is used and not echoed.
    let mut chosen = keygen_body("chosen@direct.example.com", "dual");
    chosen["p12_password"] = json!("correct horse battery staple 42");
    let v = api.issue(&chosen).await;
    assert!(v.get("p12_password").is_none(), "{v}");
    let p12 = api.write(
        "chosen.p12",
        &B64.decode(str_of(&v["pkcs12"][0], "pkcs12_base64"))
            .unwrap(),
    );
    openssl(&[
        "pkcs12",
        "-legacy",
        "-in",
        path_str(&p12),
        "-passin",
        "pass:correct horse battery staple 42",
        "-nokeys",
    ]);

    // A pair from two CSRs: two serials, signing then encryption, each with its own key.
    let (sign_csr, enc_csr) = (api.csr("pair-sign"), api.csr("pair-enc"));
    let mut pair = issue_body("pair@direct.example.com", &sign_csr);
    pair["usage"] = json!("pair");
    pair["encryption_csr"] = json!(enc_csr);
    let v = api.issue(&pair).await;
    let serials = v["serials"].as_array().unwrap();
    assert_eq!(serials.len(), 2);
    assert_ne!(serials[0], serials[1]);
    assert_eq!(v["serial"], serials[0]);
    let certs = v["certificates"].as_array().unwrap();
    for (cert, (usage, key)) in certs
        .iter()
        .zip([("signing", "pair-sign.key"), ("encryption", "pair-enc.key")])
    {
        assert_eq!(cert["usage"], json!(usage));
        let file = api.write(&format!("pair-{usage}.pem"), str_of(cert, "pem").as_bytes());
        assert_eq!(cert_public_key(&file), key_public_key(&api.path(key)));
    }

    // A server-generated pair: two PKCS#12 files under one generated password.
    let v = api
        .issue(&keygen_body("genpair@direct.example.com", "pair"))
        .await;
    assert_eq!(v["serials"].as_array().unwrap().len(), 2);
    let p12s = v["pkcs12"].as_array().unwrap();
    assert_eq!(p12s.len(), 2);
    let pass_file = api.write("genpair.pass", str_of(&v, "p12_password").as_bytes());
    let passin = format!("file:{}", path_str(&pass_file));
    for (p12, usage) in p12s.iter().zip(["signing", "encryption"]) {
        assert_eq!(p12["usage"], json!(usage));
        let file = api.write(
            &format!("genpair-{usage}.p12"),
            &B64.decode(str_of(p12, "pkcs12_base64")).unwrap(),
        );
        openssl(&[
            "pkcs12",
            "-legacy",
            "-in",
            path_str(&file),
            "-passin",
            &passin,
            "-nokeys",
            "-clcerts",
        ]);
    }
}

#[tokio::test]
async fn api_refusals_carry_stable_codes_and_every_failed_rule() {
    let api = Api::new();
    let uri = "/api/v1/certificates";

    // Several rules fail at once: all of them come back in one 422.
    let r = api
        .post(
            uri,
            &json!({
                "address": "someone@not-managed.example",
                "usage": "triple",
                "csr": "not a certificate request",
                "subscriber": {"name": ""},
                "proofing": {"method": "in-person", "evidence_reference": "ticket 44"},
            }),
        )
        .await;
    let v = r.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "request_denied");
    let reasons = v["reasons"].as_array().unwrap();
    for reason in reasons {
        assert!(
            reason["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{reason}"
        );
        assert!(
            reason["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reason}"
        );
        assert!(
            reason["field"].as_str().is_some_and(|f| !f.is_empty()),
            "{reason}"
        );
    }
    let fields: Vec<(&str, &str)> = reasons
        .iter()
        .map(|r| (r["code"].as_str().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    for expected in [
        ("domain_not_managed", "address"),
        ("usage_unknown", "usage"),
        ("csr_malformed", "csr"),
        ("subscriber_missing", "subscriber_name"),
    ] {
        assert!(fields.contains(&expected), "{expected:?} missing from {v}");
    }

    let csr = api.csr("refusals");
    let good = issue_body("refusals@direct.example.com", &csr);

    // Malformed JSON, an unknown field and a wrong type are the caller's mistakes: 400.
    api.post_raw(uri, br#"{"address": "#.to_vec())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    let mut unknown = good.clone();
    unknown["colour"] = json!("blue");
    let v = api
        .post(uri, &unknown)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(v["message"].as_str().unwrap().contains("colour"), "{v}");
    let mut wrong_type = good.clone();
    wrong_type["keygen"] = json!("yes");
    api.post(uri, &wrong_type)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    let mut both = good.clone();
    both["keygen"] = json!(true);
    api.post(uri, &both)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    let mut neither = good.clone();
    neither.as_object_mut().unwrap().remove("csr");
    api.post(uri, &neither)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");

    // A body over api.max_body_bytes (64 KiB by default).
    let mut huge = good.clone();
    huge["csr"] = json!("A".repeat(65 * 1024));
    api.post(uri, &huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert_eq!(
        api.authority.danger_store().unwrap().cert_count(),
        0,
        "a refused request issued something"
    );

    // Serials: unknown 404, malformed 400, on every route.
    let unknown_serial = "0102030405060708090a0b0c0d0e0f10";
    for suffix in ["", "/pem", "/der"] {
        api.get(&format!("{uri}/{unknown_serial}{suffix}"))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        for bad in ["not-a-serial", "abc", "0g"] {
            api.get(&format!("{uri}/{bad}{suffix}"))
                .await
                .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
        }
    }
    let revoke = json!({"reason": "key-compromise"});
    api.post(&format!("{uri}/{unknown_serial}/revoke"), &revoke)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.post(&format!("{uri}/not-a-serial/revoke"), &revoke)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");

    // Revoking twice conflicts; an unknown reason is refused before anything changes.
    let serial = str_of(&api.issue(&good).await, "serial").to_string();
    let revoke_uri = format!("{uri}/{serial}/revoke");
    api.post(&revoke_uri, &json!({"reason": "bored"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    api.post(&revoke_uri, &revoke)
        .await
        .expect_status(StatusCode::OK);
    api.post(&revoke_uri, &json!({"reason": "superseded"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let shown = api.get(&format!("{uri}/{serial}")).await.json();
    assert_eq!(
        shown["revocation"]["reason"],
        json!("key-compromise"),
        "{shown}"
    );

    // The limit is the configured one, to the byte (JSON allows trailing whitespace).
    let limit = 2048;
    let small = Api::with_config(|c| c.api.max_body_bytes = limit);
    let padded = |address: &str, len: usize| {
        let mut body = serde_json::to_vec(&issue_body(address, &csr)).unwrap();
        assert!(body.len() < len, "the CSR alone exceeds the test limit");
        body.resize(len, b' ');
        body
    };
    small
        .post_raw(uri, padded("over@direct.example.com", limit + 1))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    small
        .post_raw(uri, padded("at@direct.example.com", limit))
        .await
        .expect_status(StatusCode::CREATED);
}

/// Issue 11, requirement 7 through the API: CSRs signed with SHA-1 or MD5 and keys on curves
/// anchorage does not certify are refused for exactly that (422, precise codes, sentences
/// naming the algorithm or curve), and nothing is stored or audited. A bit flipped in a good
/// CSR's signature is still a bad signature, and a P-256 CSR signed with SHA-512 (a strong
/// digest the proof-of-possession check once could not verify) is issued.
#[tokio::test]
async fn api_names_weak_csr_digests_and_unsupported_keys() {
    let api = Api::new();
    let uri = "/api/v1/certificates";
    let before = (
        api.get(uri).await.json(),
        api.authority.verify_audit().unwrap().entries,
    );
    let refuse = |csr: String, reasons: &'static [&'static str], name: &'static str| {
        let api = &api;
        async move {
            let body = issue_body("weak@direct.example.com", &csr);
            let v = api
                .post(uri, &body)
                .await
                .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "request_denied");
            let mut got: Vec<&str> = v["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["code"].as_str().unwrap())
                .collect();
            got.sort_unstable();
            let mut want = reasons.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: {v}");
            v
        }
    };
    for case in crate::refusals::ALGORITHM_CASES {
        let file = case.make(api.dir.path());
        let csr = std::fs::read_to_string(api.path(&file)).unwrap();
        let v = refuse(csr, case.reasons, case.name).await;
        let messages = v["reasons"].to_string();
        for word in case.named {
            assert!(messages.contains(word), "{}: names {word}: {v}", case.name);
        }
    }
    // The same refusal for base64 DER.
    let md5 = std::fs::read_to_string(api.path("rsa-md5.csr")).unwrap();
    refuse(
        B64.encode(pem_der(&md5)),
        &["signature_algorithm_weak"],
        "fail/rsa-md5-der",
    )
    .await;

    let good = api.csr("flipped");
    let mut der = pem_der(&good);
    *der.last_mut().unwrap() ^= 0x01;
    refuse(
        B64.encode(der),
        &["csr_signature_invalid"],
        "fail/flipped-signature-bit",
    )
    .await;

    let after = (
        api.get(uri).await.json(),
        api.authority.verify_audit().unwrap().entries,
    );
    assert_eq!(
        after, before,
        "a refused CSR changed the store or the audit log"
    );
    assert_eq!(api.authority.danger_store().unwrap().cert_count(), 0);

    let p256_sha512 = crate::harness::openssl_csr(
        api.dir.path(),
        "p256-sha512",
        crate::harness::KeyAlg::P256,
        Some("-sha512"),
    );
    let mut body = issue_body(
        "strong@direct.example.com",
        &std::fs::read_to_string(api.path(&p256_sha512)).unwrap(),
    );
    body["usage"] = json!("signing");
    api.issue(&body).await;
    assert_eq!(api.authority.danger_store().unwrap().cert_count(), 1);
}

#[tokio::test]
async fn api_lists_with_filters_and_a_revocation_reaches_the_crl() {
    let api = Api::new();
    let uri = "/api/v1/certificates";
    let alice = api
        .issue(&issue_body("alice@direct.example.com", &api.csr("alice")))
        .await;
    let bob = api
        .issue(&issue_body("bob@direct.example.com", &api.csr("bob")))
        .await;
    let mut domain_body = issue_body("", &api.csr("org"));
    domain_body.as_object_mut().unwrap().remove("address");
    domain_body["domain"] = json!(OTHER_DOMAIN);
    let org = api.issue(&domain_body).await;
    let (alice, bob, org) = (
        str_of(&alice, "serial"),
        str_of(&bob, "serial"),
        str_of(&org, "serial"),
    );

    let serials_of = |reply: Reply| -> Vec<String> {
        reply.expect_status(StatusCode::OK);
        let mut s: Vec<String> = reply
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| str_of(c, "serial").to_string())
            .collect();
        s.sort();
        s
    };
    let sorted = |list: &[&str]| -> Vec<String> {
        let mut s: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        s.sort();
        s
    };
    assert_eq!(serials_of(api.get(uri).await), sorted(&[alice, bob, org]));
    assert_eq!(
        serials_of(
            api.get(&format!("{uri}?holder=Alice@direct.example.com"))
                .await
        ),
        sorted(&[alice])
    );
    assert_eq!(
        serials_of(api.get(&format!("{uri}?domain={DOMAIN}")).await),
        sorted(&[alice, bob])
    );
    assert_eq!(
        serials_of(api.get(&format!("{uri}?domain={OTHER_DOMAIN}")).await),
        sorted(&[org])
    );
    assert_eq!(
        serials_of(
            api.get(&format!("{uri}?holder=nobody@direct.example.com"))
                .await
        ),
        Vec::<String>::new()
    );

    // Revoke bob for key compromise.
    let r = api
        .post(
            &format!("{uri}/{bob}/revoke"),
            &json!({"reason": "key-compromise"}),
        )
        .await;
    r.expect_status(StatusCode::OK);
    let revocation = r.json();
    assert_eq!(revocation["serial"], json!(bob));
    assert_eq!(revocation["reason"], json!("key-compromise"));
    assert_eq!(
        serials_of(api.get(&format!("{uri}?status=revoked")).await),
        sorted(&[bob])
    );
    assert_eq!(
        serials_of(api.get(&format!("{uri}?status=valid")).await),
        sorted(&[alice, org])
    );
    assert_eq!(
        serials_of(
            api.get(&format!("{uri}?status=revoked&domain={OTHER_DOMAIN}"))
                .await
        ),
        Vec::<String>::new()
    );
    api.get(&format!("{uri}?status=bogus"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(
        api.get(&format!("{uri}/{bob}")).await.json()["status"],
        json!("revoked")
    );

    // The server's publisher coalesces; in process we publish at once.
    let published = api.authority.refresh_crls().unwrap();
    assert_eq!(published.len(), 1, "only the issuing CA's CRL changed");
    let crl = api.get_public("/crl/issuing.crl").await;
    crl.expect_status(StatusCode::OK);
    assert_eq!(crl.header(header::CONTENT_TYPE), "application/pkix-crl");
    assert_eq!(crl.body, published[0].der);
    let crl_file = api.write("issuing.crl", &crl.body);
    let text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        path_str(&crl_file),
        "-noout",
        "-text",
    ])
    .stdout;
    let entry = text
        .split("Serial Number: ")
        .find(|e| e.to_ascii_lowercase().starts_with(bob))
        .unwrap_or_else(|| panic!("{bob} is not on the CRL:\n{text}"));
    assert!(
        entry.contains("Key Compromise"),
        "no reason code for {bob}:\n{text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains(alice),
        "alice is on the CRL:\n{text}"
    );
    assert_eq!(
        text.matches("Serial Number: ").count(),
        1,
        "exactly one revoked entry:\n{text}"
    );
    let root_crl = api.get_public("/crl/root.crl").await;
    root_crl.expect_status(StatusCode::OK);
    let root_crl_file = api.write("root.crl", &root_crl.body);
    openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        path_str(&root_crl_file),
        "-noout",
    ]);
    api.get_public("/crl/nothing.crl")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // CA certificates, DER, equal to the stored chain (issuing first).
    let chain = api.authority.ca_chain().unwrap();
    for (route, der) in [("/ca/issuing.cer", &chain[0]), ("/ca/root.cer", &chain[1])] {
        let r = api.get_public(route).await;
        r.expect_status(StatusCode::OK);
        assert_eq!(
            r.header(header::CONTENT_TYPE),
            "application/pkix-cert",
            "{route}"
        );
        assert_eq!(&r.body, der, "{route}");
        let file = api.write("ca.der", &r.body);
        openssl(&["x509", "-inform", "DER", "-in", path_str(&file), "-noout"]);
    }
    let pem_chain = api.get_public("/ca/chain.pem").await;
    pem_chain.expect_status(StatusCode::OK);
    let ders: Vec<Vec<u8>> = ::pem::parse_many(&pem_chain.body)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    assert_eq!(ders, chain);
    api.get_public("/ca/nothing.cer")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    let health = api.get_public("/healthz").await;
    health.expect_status(StatusCode::OK);
    assert_eq!(health.json()["status"], json!("ok"));
}

#[tokio::test]
async fn api_certificate_urls_resolve_to_routes_the_router_serves() {
    let api = Api::new();
    let v = api
        .issue(&issue_body("urls@direct.example.com", &api.csr("urls")))
        .await;
    let serial = str_of(&v, "serial").to_string();
    let cert_der = pem_der(str_of(&v["certificates"][0], "pem"));
    let issuing_der = api.authority.ca_cert(CaRole::Issuing).unwrap();
    let root_der = api.authority.ca_cert(CaRole::Root).unwrap();

    // Each URL written into a certificate is served by the router, unauthenticated, with the
    // right content: the end entity's point at the issuing CA, the issuing CA's at the root.
    for (what, der, ca) in [
        ("end entity", &cert_der, CaRole::Issuing),
        ("issuing CA", &issuing_der, CaRole::Root),
    ] {
        let (crl_urls, issuer_urls) = certificate_urls(der);
        assert!(!crl_urls.is_empty(), "{what}: no CRL distribution point");
        if what == "end entity" {
            assert!(!issuer_urls.is_empty(), "{what}: no AIA caIssuers");
        }
        for url in &crl_urls {
            let r = api.get_public(route_of(url)).await;
            r.expect_status(StatusCode::OK);
            assert_eq!(
                r.header(header::CONTENT_TYPE),
                "application/pkix-crl",
                "{url}"
            );
            assert_eq!(
                r.body,
                api.authority.stored_crl(ca).unwrap().unwrap().der,
                "{what}: {url}"
            );
        }
        for url in &issuer_urls {
            let r = api.get_public(route_of(url)).await;
            r.expect_status(StatusCode::OK);
            assert_eq!(
                r.header(header::CONTENT_TYPE),
                "application/pkix-cert",
                "{url}"
            );
            assert_eq!(r.body, api.authority.ca_cert(ca).unwrap(), "{what}: {url}");
        }
    }

    // A relying party builds the chain and checks revocation from those URLs alone.
    let (crl_urls, issuer_urls) = certificate_urls(&cert_der);
    let relying_party = |crl: Vec<u8>, issuer: Vec<u8>| {
        let cert = api.write(
            "rp-cert.pem",
            anchorage::x509::to_pem("CERTIFICATE", &cert_der).as_bytes(),
        );
        let root = api.write(
            "rp-root.pem",
            anchorage::x509::to_pem("CERTIFICATE", &root_der).as_bytes(),
        );
        let issuing = api.write(
            "rp-issuing.pem",
            anchorage::x509::to_pem("CERTIFICATE", &issuer).as_bytes(),
        );
        let crl_der = api.write("rp.crl", &crl);
        let crl_pem = api.path("rp-crl.pem");
        der_crl_to_pem(&crl_der, &crl_pem);
        openssl_verify(&root, Some(&issuing), &cert, "smimesign", Some(&crl_pem))
    };
    let crl = api.get_public(route_of(&crl_urls[0])).await.body;
    let issuer = api.get_public(route_of(&issuer_urls[0])).await.body;
    relying_party(crl, issuer).assert_success("openssl verify from the certificate's URLs");

    api.post(
        &format!("/api/v1/certificates/{serial}/revoke"),
        &json!({"reason": "key-compromise"}),
    )
    .await
    .expect_status(StatusCode::OK);
    api.authority.refresh_crls().unwrap();
    let crl = api.get_public(route_of(&crl_urls[0])).await.body;
    let issuer = api.get_public(route_of(&issuer_urls[0])).await.body;
    let out = relying_party(crl, issuer);
    assert!(
        !out.status.success() && out.describe().contains("revoked"),
        "openssl accepted a revoked certificate: {}",
        out.describe()
    );
}

/// Once the root revoked the issuing CA, the API refuses issuance with `issuing_ca_revoked`
/// (409) and stores nothing, and `/healthz` stays 200 but reports `degraded` with the cause.
#[tokio::test]
async fn a_revoked_issuing_ca_stops_issuance_and_degrades_health() {
    let api = Api::new();
    let serial = api.authority.issuing_ca_serial().unwrap();
    api.authority
        .revoke_issuing_ca(
            &serial,
            anchorage::model::RevocationReason::Superseded,
            "test",
        )
        .unwrap();
    let csr = api.csr("late");
    let refused = api
        .post(
            "/api/v1/certificates",
            &issue_body("late@direct.example.com", &csr),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "issuing_ca_revoked");
    assert!(
        refused["message"].as_str().unwrap().contains("superseded"),
        "{refused}"
    );
    assert_eq!(api.authority.danger_store().unwrap().cert_count(), 0);

    let health = api.get_public("/healthz").await;
    health.expect_status(StatusCode::OK);
    let body = health.json();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["problems"][0]["code"], "issuing_ca_revoked", "{body}");
    assert_eq!(body["problems"][0]["subject"], "issuing", "{body}");
}
