//! The web interface and accounts (issue 5) in process: the authorisation matrix (every page
//! and API route x every role and anonymous), CSRF on every form, session expiry (idle and
//! absolute, with a clock the test moves), the sign-in throttle per account and per client,
//! scoped API tokens, security headers, and the issuance form keeping what was typed and
//! showing each failed rule beside its field.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anchorage::accounts::{Role, Scope};
use anchorage::authority::{Authority, InitOptions, NewUser};
use anchorage::clock::Clock;
use anchorage::config::Config;
use anchorage::http::tls::ClientAddr;
use anchorage::http::{router, AppState};
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

use crate::tools::run_in;

pub(crate) const DOMAIN: &str = "direct.example.com";
pub(crate) const OTHER_DOMAIN: &str = "direct.other.example";
pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const MEMBER_BUNDLE: &str = "provider-test";

/// A clock the test moves forward.
pub(crate) struct TestClock(pub(crate) Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub(crate) struct Web {
    pub(crate) dir: TempDir,
    pub(crate) clock: Arc<TestClock>,
    pub(crate) authority: Arc<Authority>,
    pub(crate) app: Router,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    pub(crate) fn is_login_redirect(&self) -> bool {
        self.status == StatusCode::SEE_OTHER && self.location().starts_with("/login")
    }

    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find_map(|c| {
            let first = c.split(';').next()?.to_string();
            let (n, v) = first.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }

    /// The value of a hidden `csrf` input on the page.
    pub(crate) fn csrf(&self) -> String {
        hidden(&self.body, "csrf")
    }
}

pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in page: {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// A signed-in browser: its session cookie and the session's CSRF token.
#[derive(Clone)]
pub(crate) struct Browser {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k,
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A multipart body of text fields and one optional file.
pub(crate) fn multipart(
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> (String, Vec<u8>) {
    let boundary = "----anchorage-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, filename, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Web {
    pub(crate) fn new() -> Web {
        Web::with_config(|_| {})
    }

    pub(crate) fn with_config(adjust: impl FnOnce(&mut Config)) -> Web {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            public_url: "http://pki.direct.example.com:8080".into(),
            managed_domains: vec![
                HealthDomain::parse(DOMAIN).unwrap(),
                HealthDomain::parse(OTHER_DOMAIN).unwrap(),
            ],
            // Tests here send one CSR for several holders; `ownership` turns this off.
            policies_dir: Some(crate::harness::key_reuse_policies(dir.path())),
            ..Config::default()
        };
        adjust(&mut config);
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(TestClock(Mutex::new(start)));
        let authority = Authority::open(config, clock.clone()).unwrap();
        let passphrase = Passphrase::new("web test passphrase (not a secret)".into()).unwrap();
        authority
            .init(InitOptions::default(), &passphrase, "web-test")
            .unwrap();
        authority.refresh_crls().unwrap();
        let users = [
            ("admin", Role::Admin, Scope::default()),
            (
                "registrar",
                Role::Registrar,
                Scope {
                    domains: vec![DOMAIN.into()],
                    ..Scope::default()
                },
            ),
            (
                "member",
                Role::Member,
                Scope {
                    // A configuration without the test bundles still has a member.
                    bundles: vec![
                        if authority.inventory().bundles.contains_key(MEMBER_BUNDLE) {
                            MEMBER_BUNDLE.into()
                        } else {
                            "*".into()
                        },
                    ],
                    ..Scope::default()
                },
            ),
            ("dns", Role::DnsOperator, Scope::default()),
        ];
        for (name, role, scope) in users {
            authority
                .add_user(
                    NewUser {
                        username: name.into(),
                        display_name: format!("Test {name}"),
                        role,
                        scope,
                    },
                    PASSWORD,
                    "web-test",
                )
                .unwrap();
        }
        let authority = Arc::new(authority);
        let app = router(AppState::new(authority.clone()));
        Web {
            dir,
            clock,
            authority,
            app,
        }
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.clock.0.lock().unwrap() += by;
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, String)],
        content_type: Option<&str>,
        body: Vec<u8>,
        client: &str,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let mut request = builder.body(Body::from(body)).unwrap();
        let addr: SocketAddr = format!("{client}:40000").parse().unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientAddr(addr)));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub(crate) async fn get(&self, uri: &str, browser: Option<&Browser>) -> Reply {
        let headers: Vec<(&str, String)> = browser
            .map(|b| vec![("cookie", b.cookie.clone())])
            .unwrap_or_default();
        self.request(Method::GET, uri, &headers, None, Vec::new(), "192.0.2.10")
            .await
    }

    pub(crate) async fn post_form(
        &self,
        uri: &str,
        browser: Option<&Browser>,
        pairs: &[(&str, &str)],
    ) -> Reply {
        let headers: Vec<(&str, String)> = browser
            .map(|b| vec![("cookie", b.cookie.clone())])
            .unwrap_or_default();
        self.request(
            Method::POST,
            uri,
            &headers,
            Some("application/x-www-form-urlencoded"),
            form(pairs).into_bytes(),
            "192.0.2.10",
        )
        .await
    }

    pub(crate) async fn post_multipart(
        &self,
        uri: &str,
        browser: &Browser,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &[u8])],
    ) -> Reply {
        let (ct, body) = multipart(fields, files);
        self.request(
            Method::POST,
            uri,
            &[("cookie", browser.cookie.clone())],
            Some(&ct),
            body,
            "192.0.2.10",
        )
        .await
    }

    /// The sign-in form round trip, from a given client address.
    pub(crate) async fn try_login(&self, user: &str, password: &str, client: &str) -> Reply {
        let page = self
            .request(Method::GET, "/login", &[], None, Vec::new(), client)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let login_csrf = page
            .cookie("anchorage_login_csrf")
            .expect("login CSRF cookie");
        let token = page.csrf();
        assert_eq!(login_csrf, token, "double-submit cookie and field differ");
        self.request(
            Method::POST,
            "/login",
            &[("cookie", format!("anchorage_login_csrf={login_csrf}"))],
            Some("application/x-www-form-urlencoded"),
            form(&[
                ("username", user),
                ("password", password),
                ("csrf", &token),
                ("next", "/"),
            ])
            .into_bytes(),
            client,
        )
        .await
    }

    pub(crate) async fn login(&self, user: &str) -> Browser {
        let r = self.try_login(user, PASSWORD, "192.0.2.10").await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "sign-in of {user} failed: {}",
            r.body
        );
        let session = r.cookie("anchorage_session").expect("session cookie");
        let cookie = format!("anchorage_session={session}");
        let home = self
            .get(
                "/",
                Some(&Browser {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                }),
            )
            .await;
        assert_eq!(home.status, StatusCode::OK);
        let csrf = hidden(&home.body, "csrf");
        Browser { cookie, csrf }
    }

    pub(crate) fn token(&self, role: Role, scope: Scope) -> String {
        let (secret, _) = self
            .authority
            .create_scoped_token(role, scope, "web test", Some(30), None, "web-test")
            .unwrap();
        secret.to_string()
    }

    pub(crate) async fn api(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let (ct, bytes) = match body {
            Some(v) => (Some("application/json"), serde_json::to_vec(&v).unwrap()),
            None => (None, Vec::new()),
        };
        self.request(method, uri, &headers, ct, bytes, "192.0.2.20")
            .await
    }

    pub(crate) fn csr(&self, name: &str) -> String {
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
                "/CN=web test",
            ],
        )
        .assert_success("openssl req");
        std::fs::read_to_string(self.dir.path().join(&req)).unwrap()
    }
}

pub(crate) fn issue_fields<'a>(
    csrf: &'a str,
    address: &'a str,
    csr: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("address", address),
        ("domain", ""),
        ("subscriber_name", "Dr. Jane Smith"),
        (
            "nonce",
            Box::leak(
                anchorage::accounts::random_secret()
                    .unwrap()
                    .into_boxed_str(),
            ),
        ),
        ("usage", "dual"),
        ("level_of_assurance", ""),
        ("category", ""),
        ("proofing_method", "in-person"),
        ("evidence_reference", "case-1234"),
        ("key_source", "csr"),
        ("csr", csr),
        ("encryption_csr", ""),
    ]
}

#[tokio::test]
async fn sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it() {
    let web = Web::new();
    let r = web.try_login("registrar", PASSWORD, "192.0.2.10").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("anchorage_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    // Plain HTTP: no Secure attribute (the browser would drop the cookie), no HSTS.
    assert!(!set.contains("Secure"), "{set}");
    assert!(r.header("strict-transport-security").is_none());
    let browser = web.login("registrar").await;
    let page = web.get("/registrar/certs", Some(&browser)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // Sign-out needs the CSRF token, then the session is gone for good.
    let refused = web
        .post_form("/logout", Some(&browser), &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = web
        .post_form("/logout", Some(&browser), &[("csrf", &browser.csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(web
        .get("/registrar/certs", Some(&browser))
        .await
        .is_login_redirect());
    // Audited with the client address.
    let audit = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let login = audit.iter().find(|e| e.action == "user.login").unwrap();
    assert_eq!(login.details["from"], json!("192.0.2.10"));
    assert!(audit.iter().any(|e| e.action == "user.logout"));
}

#[tokio::test]
async fn security_headers_on_pages_and_api() {
    let web = Web::new();
    for uri in ["/", "/login", "/api/v1/certificates", "/healthz"] {
        let r = web.get(uri, None).await;
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{uri}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{uri}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{uri}");
    }
}

#[tokio::test]
async fn hsts_and_secure_cookies_over_tls() {
    let web = Web::new();
    // What the HTTPS listener adds to every request.
    let mut request = Request::builder()
        .uri("/login")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(anchorage::http::web::OverTls);
    let r = web.app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        r.headers().get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn every_form_post_needs_the_csrf_token() {
    let web = Web::new();
    let admin = web.login("admin").await;
    let registrar = web.login("registrar").await;
    let csr = web.csr("csrf");
    // Wrong token, then no token, on a multipart form.
    for token in ["not-the-token", ""] {
        let r = web
            .post_multipart(
                "/registrar/issue",
                &registrar,
                &issue_fields(token, "dr.csrf@direct.example.com", &csr),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    }
    assert!(
        web.authority.certs(&Default::default()).unwrap().is_empty(),
        "nothing issued without the token"
    );
    // Another session's token does not work either.
    let r = web
        .post_multipart(
            "/registrar/issue",
            &registrar,
            &issue_fields(&admin.csrf, "dr.csrf@direct.example.com", &csr),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // URL-encoded admin forms.
    for (uri, fields) in [
        ("/admin/users", vec![("username", "eve"), ("role", "admin")]),
        (
            "/admin/tokens",
            vec![("role", "admin"), ("valid_days", "5")],
        ),
        ("/admin/users/registrar/disable", vec![]),
        ("/admin/bundles/provider-test/build", vec![]),
        ("/admin/anchors/1/approve", vec![]),
    ] {
        let mut with = fields.clone();
        with.push(("csrf", "forged"));
        let r = web.post_form(uri, Some(&admin), &with).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.body);
    }
    assert!(web
        .authority
        .danger_store()
        .unwrap()
        .user("eve")
        .unwrap()
        .is_none());
    assert!(web
        .authority
        .user("registrar")
        .unwrap()
        .disabled_at
        .is_none());
    // The sign-in form has its own double-submit token.
    let r = web
        .request(
            Method::POST,
            "/login",
            &[],
            Some("application/x-www-form-urlencoded"),
            form(&[("username", "admin"), ("password", PASSWORD), ("csrf", "x")]).into_bytes(),
            "192.0.2.30",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.cookie("anchorage_session").is_none());
    assert!(r.body.contains("expired"), "{}", r.body);
    // With the right token, the same form works.
    let r = web
        .post_multipart(
            "/registrar/issue",
            &registrar,
            &issue_fields(&registrar.csrf, "dr.csrf@direct.example.com", &csr),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Certificate issued"));
}

#[tokio::test]
async fn sessions_expire_when_idle_and_after_the_absolute_limit() {
    let web = Web::with_config(|c| {
        c.web.session_idle_minutes = 30;
        c.web.session_absolute_hours = 2;
    });
    let browser = web.login("registrar").await;
    web.advance(Duration::minutes(29));
    assert_eq!(
        web.get("/registrar/certs", Some(&browser)).await.status,
        StatusCode::OK
    );
    // Activity moved the idle deadline.
    web.advance(Duration::minutes(29));
    assert_eq!(
        web.get("/registrar/certs", Some(&browser)).await.status,
        StatusCode::OK
    );
    web.advance(Duration::minutes(31));
    let r = web.get("/registrar/certs", Some(&browser)).await;
    assert!(r.is_login_redirect(), "{} {}", r.status, r.location());
    assert!(
        r.location().contains("next=%2Fregistrar%2Fcerts"),
        "{}",
        r.location()
    );
    // Absolute limit: active every 20 minutes, still ends after 2 hours.
    let browser = web.login("registrar").await;
    for _ in 0..5 {
        web.advance(Duration::minutes(20));
        assert_eq!(
            web.get("/registrar/certs", Some(&browser)).await.status,
            StatusCode::OK
        );
    }
    web.advance(Duration::minutes(21));
    assert!(web
        .get("/registrar/certs", Some(&browser))
        .await
        .is_login_redirect());
    // The hourly sweep removes sessions that ended without a sign-out.
    let _abandoned = web.login("admin").await;
    web.advance(Duration::hours(3));
    let now = web.authority.now();
    assert!(
        web.authority
            .danger_store()
            .unwrap()
            .purge_sessions(now, None)
            .unwrap()
            >= 1
    );
    assert_eq!(
        web.authority
            .danger_store()
            .unwrap()
            .purge_sessions(now, None)
            .unwrap(),
        0
    );
    // A disabled user's session ends at once.
    let browser = web.login("registrar").await;
    web.authority
        .set_user_disabled("registrar", true, "web-test")
        .unwrap();
    assert!(web
        .get("/registrar/certs", Some(&browser))
        .await
        .is_login_redirect());
}

#[tokio::test]
async fn sign_in_is_throttled_per_account_and_per_client() {
    let web = Web::with_config(|c| {
        c.web.login_free_failures = 3;
        c.web.login_delay_secs = 60;
        c.web.login_max_delay_secs = 600;
    });
    for i in 0..3 {
        let r = web
            .try_login("registrar", "wrong password!!", &format!("198.51.100.{i}"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(r.body.contains("user name or the password is wrong"));
    }
    // The account is throttled from any address, even with the right password.
    let r = web.try_login("registrar", PASSWORD, "198.51.100.99").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("60"));
    // Another account from a clean address is not affected.
    assert_eq!(
        web.try_login("admin", PASSWORD, "198.51.100.50")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // After the delay the right password works, and a success clears the account.
    web.advance(Duration::seconds(61));
    assert_eq!(
        web.try_login("registrar", PASSWORD, "198.51.100.99")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // Per client: one address guessing at many accounts is stopped too.
    for user in ["a1", "a2", "a3"] {
        assert_eq!(
            web.try_login(user, "guess guess guess", "203.0.113.7")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = web.try_login("member", PASSWORD, "203.0.113.7").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Failed sign-ins are audited with the address, never with the password.
    let failed: Vec<_> = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(Result::unwrap)
        .filter(|e| e.action == "user.login_failed")
        .collect();
    assert!(failed.len() >= 6);
    assert!(failed
        .iter()
        .all(|e| !e.details.to_string().contains("guess")));
    assert!(failed
        .iter()
        .any(|e| e.details["from"] == json!("203.0.113.7")));
}

#[tokio::test]
async fn api_tokens_are_limited_to_their_role_scope_expiry_and_revocation() {
    let web = Web::new();
    let scoped = web.token(
        Role::Registrar,
        Scope {
            domains: vec![DOMAIN.into()],
            ..Scope::default()
        },
    );
    let csr = web.csr("scope");
    let body = |address: &str| {
        json!({"address": address, "usage": "dual", "csr": csr,
               "subscriber": {"name": "Scope Test"},
               "proofing": {"method": "in-person", "evidence_reference": "t-1"}})
    };
    let ok = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&scoped),
            Some(body("a@direct.example.com")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let denied = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&scoped),
            Some(body("a@direct.other.example")),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    // A certificate of another domain is invisible to the scoped token.
    let admin = web.token(Role::Admin, Scope::default());
    let other = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&admin),
            Some(body("b@direct.other.example")),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let other_serial = serde_json::from_str::<Value>(&other.body).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let r = web
        .api(
            Method::GET,
            &format!("/api/v1/certificates/{other_serial}"),
            Some(&scoped),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let listed: Value = serde_json::from_str(
        &web.api(Method::GET, "/api/v1/certificates", Some(&scoped), None)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Organisation scope: a registrar of Good Clinic may not issue for another organisation.
    web.authority
        .add_organisation(
            &anchorage::accounts::Principal::operator("test"),
            "good-clinic",
            anchorage::authority::OrganisationChange {
                name: Some("Good Clinic".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let org_scoped = web.token(
        Role::Registrar,
        Scope {
            domains: vec!["*".into()],
            organisations: vec!["good-clinic".into()],
            ..Scope::default()
        },
    );
    let mut b = body("c@direct.example.com");
    b["subscriber"]["organization"] = json!("default");
    assert_eq!(
        web.api(
            Method::POST,
            "/api/v1/certificates",
            Some(&org_scoped),
            Some(b)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Member tokens submit only to their bundles; dns_operator and member tokens cannot issue.
    let member = web.token(
        Role::Member,
        Scope {
            bundles: vec![MEMBER_BUNDLE.into()],
            ..Scope::default()
        },
    );
    let r = web
        .api(
            Method::POST,
            "/api/v1/bundles/provider/anchors",
            Some(&member),
            Some(json!({"file": "x", "organization": "o", "contact": "c"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    for role in [Role::Member, Role::DnsOperator] {
        let t = web.token(role, crate::harness::wide_scope(role));
        let r = web
            .api(
                Method::POST,
                "/api/v1/certificates",
                Some(&t),
                Some(body("d@direct.example.com")),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}");
    }
    // Revocation and expiry end a token.
    let listed: Value = serde_json::from_str(
        &web.api(Method::GET, "/api/v1/tokens", Some(&admin), None)
            .await
            .body,
    )
    .unwrap();
    assert!(
        listed.to_string().find("hash").is_none(),
        "token hashes must not be listed"
    );
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scope"]["domains"] == json!([DOMAIN]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = web
        .api(
            Method::POST,
            &format!("/api/v1/tokens/{id}/revoke"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = web
        .api(Method::GET, "/api/v1/certificates", Some(&scoped), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("revoked"));
    web.advance(Duration::days(31));
    let r = web
        .api(Method::GET, "/api/v1/certificates", Some(&org_scoped), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("expired"));
}

#[tokio::test]
async fn the_issue_form_keeps_what_was_typed_and_shows_each_rule_beside_its_field() {
    let web = Web::new();
    let registrar = web.login("registrar").await;
    let mut fields = issue_fields(&registrar.csrf, "not an address", "");
    for f in fields.iter_mut() {
        match f.0 {
            "subscriber_name" => f.1 = "",
            "evidence_reference" => f.1 = "",
            "key_source" => f.1 = "generate",
            _ => {}
        }
    }
    let r = web
        .post_multipart("/registrar/issue", &registrar, &fields, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    for id in [
        "address-error",
        "subscriber_name-error",
        "evidence_reference-error",
    ] {
        assert!(
            r.body.contains(&format!("id=\"{id}\"")),
            "no {id} in the page"
        );
    }
    assert!(
        r.body.contains("value=\"not an address\""),
        "the typed address was lost"
    );
    assert!(r.body.contains("aria-invalid=\"true\""));
    // Out of the registrar's scope: refused beside the address field.
    let csr = web.csr("form");
    let r = web
        .post_multipart(
            "/registrar/issue",
            &registrar,
            &issue_fields(&registrar.csrf, "x@direct.other.example", &csr),
            &[],
        )
        .await;
    // Refused as the API refuses it (403), the form shown again with the reason.
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("id=\"address-error\""));
    assert!(r
        .body
        .contains("may not issue for the domain direct.other.example"));
    assert!(
        r.body.contains(csr.lines().nth(1).unwrap()),
        "the pasted CSR was lost"
    );
    assert!(web.authority.certs(&Default::default()).unwrap().is_empty());

    // Renewal starts from the old certificate: holder, subscriber and usage filled in.
    let fields = issue_fields(&registrar.csrf, "renew.me@direct.example.com", &csr);
    let r = web
        .post_multipart("/registrar/issue", &registrar, &fields, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let serial = r
        .body
        .split("href=\"/registrar/certs/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let form = web
        .get(
            &format!("/registrar/issue?renew={serial}"),
            Some(&registrar),
        )
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("value=\"renew.me@direct.example.com\""));
    assert!(form.body.contains("value=\"Dr. Jane Smith\""));
    // The certificate's page offers PEM and DER, renewal and revocation.
    let detail = web
        .get(&format!("/registrar/certs/{serial}"), Some(&registrar))
        .await;
    for id in ["download-pem", "download-der", "revoke-link"] {
        assert!(detail.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    // Revocation needs the confirmation box.
    let revoke = format!("/registrar/certs/{serial}/revoke");
    let unconfirmed = [("csrf", registrar.csrf.as_str()), ("reason", "superseded")];
    let r = web.post_form(&revoke, Some(&registrar), &unconfirmed).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let confirmed = [
        ("csrf", registrar.csrf.as_str()),
        ("reason", "superseded"),
        ("confirm", "yes"),
    ];
    let r = web.post_form(&revoke, Some(&registrar), &confirmed).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let revoked = web
        .get("/registrar/certs?status=revoked", Some(&registrar))
        .await;
    assert!(revoked.body.contains("renew.me@direct.example.com"));
    let valid = web
        .get("/registrar/certs?status=valid", Some(&registrar))
        .await;
    assert!(!valid.body.contains("renew.me@direct.example.com"));
}

#[tokio::test]
async fn a_generated_pkcs12_downloads_once_with_a_password_shown_once() {
    let web = Web::new();
    let registrar = web.login("registrar").await;
    let mut fields = issue_fields(&registrar.csrf, "p12.once@direct.example.com", "");
    for f in fields.iter_mut() {
        if f.0 == "key_source" {
            f.1 = "generate";
        }
    }
    let r = web
        .post_multipart("/registrar/issue", &registrar, &fields, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let password = r
        .body
        .split("id=\"p12-password\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(password.len() >= 20);
    let link = r
        .body
        .split("href=\"/registrar/download/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let uri = format!("/registrar/download/{link}");
    // Another signed-in registrar cannot take it.
    let admin = web.login("admin").await;
    assert_eq!(web.get(&uri, Some(&admin)).await.status, StatusCode::GONE);
    let first = web.get(&uri, Some(&registrar)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("content-type"), Some("application/x-pkcs12"));
    let second = web.get(&uri, Some(&registrar)).await;
    assert_eq!(second.status, StatusCode::GONE);
    // Neither the password nor the key is anywhere in the store.
    assert!(!store_contains(
        &web.authority.config().data_dir,
        password.as_bytes()
    ));
}

/// The status banner of a page: the text of its `<p class="flash">`, if it has one.
fn banner(html: &str) -> Option<&str> {
    let start = html.find("<p class=\"flash\" role=\"status\">")?;
    let rest = &html[start..];
    let text = &rest[rest.find('>')? + 1..];
    text.split("</p>").next()
}

/// Issue 11, requirement 9: banners are the server's own messages. Every page that takes
/// `?done=` shows nothing for text put in the URL (a script, a sentence, another page's id),
/// while each real action leads to its id and its fixed sentence.
#[tokio::test]
async fn status_banners_are_the_servers_own_messages() {
    use anchorage::http::web::Notice;

    let web = Web::new();
    let admin = web.login("admin").await;
    let registrar = web.login("registrar").await;
    let member = web.login("member").await;

    // A certificate to revoke and an anchor to review, through the forms.
    let csr = web.csr("banner");
    let fields = issue_fields(&registrar.csrf, "banner@direct.example.com", &csr);
    let r = web
        .post_multipart("/registrar/issue", &registrar, &fields, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let serial = r
        .body
        .split("href=\"/registrar/certs/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    run_in(
        web.dir.path(),
        "openssl",
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
            "/O=Banner HISP/CN=Banner Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
    .assert_success("openssl req -x509");
    let anchor = std::fs::read(web.dir.path().join("anchor.pem")).unwrap();
    // The test clock started before openssl stamped notBefore.
    web.advance(Duration::minutes(1));

    // Text in the URL is never a banner, on any page that takes `done`.
    let cert_page = format!("/registrar/certs/{serial}");
    // (page, its navigation entry, who may see it)
    let pages: [(&str, &str, &Browser); 5] = [
        ("/admin/queue", "/admin/queue", &admin),
        ("/admin/bundles", "/admin/bundles", &admin),
        ("/admin/users", "/admin/users", &admin),
        ("/admin/tokens", "/admin/tokens", &admin),
        (&cert_page, "/registrar/certs", &registrar),
    ];
    for (page, nav, who) in pages {
        for (name, done) in [
            ("fail/script", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ("fail/sentence", "Your+account+was+compromised"),
            ("fail/unknown", "anchor-approved-by-mallory"),
            ("fail/another-page", "cert-revoked"),
            ("fail/another-page", "token-revoked"),
            // Not revoked: the certificate page does not claim it is.
            ("fail/not-so", "cert-revoked"),
        ] {
            if Notice::from_query(Some(done), nav).is_some() && name != "fail/not-so" {
                continue;
            }
            if name == "fail/not-so" && page != cert_page {
                continue;
            }
            let r = web.get(&format!("{page}?done={done}"), Some(who)).await;
            assert_eq!(r.status, StatusCode::OK, "{name} {page}: {}", r.body);
            for echoed in ["alert(1)", "script", "compromised", "mallory"] {
                assert!(!r.body.contains(echoed), "{name} {page}: {echoed} echoed");
            }
            assert_eq!(banner(&r.body), None, "{name} {page}");
        }
    }

    // Each real action: its redirect names the id, and the page shows the fixed sentence.
    async fn follow(web: &Web, who: &Browser, r: Reply, want: Notice) {
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert!(
            r.location().ends_with(&format!("?done={}", want.as_str())),
            "{} for {}",
            r.location(),
            want.as_str()
        );
        let page = web.get(r.location(), Some(who)).await;
        assert_eq!(banner(&page.body), Some(want.sentence()), "{}", page.body);
    }

    // A member submits (a page rendered in reply: the banner without any redirect).
    let (ct, body) = multipart(
        &[
            ("csrf", &member.csrf),
            ("bundle", MEMBER_BUNDLE),
            ("organization", "Banner HISP"),
            ("contact", "PKI <pki@banner.example>"),
        ],
        &[("anchor_file", "anchor.pem", &anchor)],
    );
    let r = web
        .request(
            Method::POST,
            "/member/anchors",
            &[("cookie", member.cookie.clone())],
            Some(&ct),
            body,
            "192.0.2.10",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(banner(&r.body), Some(Notice::AnchorSubmitted.sentence()));
    let id = web.authority.danger_store().unwrap().anchors().unwrap()[0].id;

    let approve = format!("/admin/anchors/{id}/approve");
    let r = web
        .post_form(&approve, Some(&admin), &[("csrf", &admin.csrf)])
        .await;
    follow(&web, &admin, r, Notice::AnchorApprovedPublished).await;
    let r = web
        .post_form(
            &format!("/admin/bundles/{MEMBER_BUNDLE}/build"),
            Some(&admin),
            &[("csrf", &admin.csrf)],
        )
        .await;
    follow(&web, &admin, r, Notice::BundleUnchanged).await;
    let r = web
        .post_form(
            &format!("/admin/anchors/{id}/retire"),
            Some(&admin),
            &[("csrf", &admin.csrf), ("note", "rotated")],
        )
        .await;
    follow(&web, &admin, r, Notice::AnchorRetiredPublished).await;

    // Users: created (rendered in reply), disabled, enabled, a new password.
    let r = web
        .post_form(
            "/admin/users",
            Some(&admin),
            &[
                ("csrf", &admin.csrf),
                ("username", "newbie"),
                ("name", "New Registrar"),
                ("role", "registrar"),
                ("domains", DOMAIN),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(banner(&r.body), Some(Notice::UserCreated.sentence()));
    for (action, want) in [
        ("disable", Notice::UserDisabled),
        ("enable", Notice::UserEnabled),
    ] {
        let r = web
            .post_form(
                &format!("/admin/users/newbie/{action}"),
                Some(&admin),
                &[("csrf", &admin.csrf)],
            )
            .await;
        follow(&web, &admin, r, want).await;
    }
    let r = web
        .post_form(
            "/admin/users/newbie/reset",
            Some(&admin),
            &[("csrf", &admin.csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(banner(&r.body), Some(Notice::PasswordReset.sentence()));

    // A token revoked.
    let (_, token) = web
        .authority
        .create_scoped_token(
            Role::Registrar,
            Scope {
                domains: vec![DOMAIN.into()],
                ..Scope::default()
            },
            "banner test",
            Some(30),
            None,
            "web-test",
        )
        .unwrap();
    let r = web
        .post_form(
            &format!("/admin/tokens/{}/revoke", token.id),
            Some(&admin),
            &[("csrf", &admin.csrf)],
        )
        .await;
    follow(&web, &admin, r, Notice::TokenRevoked).await;

    // A certificate revoked.
    let r = web
        .post_form(
            &format!("{cert_page}/revoke"),
            Some(&registrar),
            &[
                ("csrf", &registrar.csrf),
                ("reason", "superseded"),
                ("confirm", "yes"),
            ],
        )
        .await;
    follow(&web, &registrar, r, Notice::CertRevoked).await;

    // Other text from a URL is not quoted back into a page either.
    for (who, uri) in [
        (&registrar, "/registrar/certs/Your-account-was-compromised"),
        (
            &registrar,
            "/registrar/issue?renew=Your+account+was+compromised",
        ),
        (&member, "/member/anchors/Your-account-was-compromised"),
    ] {
        let r = web.get(uri, Some(who)).await;
        assert!(r.status.is_client_error(), "{uri}: {}", r.status);
        assert!(!r.body.contains("compromised"), "{uri}: {}", r.body);
    }
}

fn store_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            store_contains(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// Who may use a route. `Pages` routes answer anonymous users with a redirect to the sign-in
/// page and other roles with 403; API routes with 401 and 403.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// Even without a token.
    Public,
    Anyone,
    Admin,
    Issuers,
    Members,
    Dns,
}

impl Who {
    fn allows(self, role: Option<Role>) -> bool {
        match self {
            Who::Public | Who::Anyone => true,
            Who::Dns => matches!(role, Some(Role::Admin | Role::DnsOperator)),
            Who::Admin => role == Some(Role::Admin),
            Who::Issuers => matches!(role, Some(Role::Admin | Role::Registrar)),
            Who::Members => matches!(role, Some(Role::Admin | Role::Member)),
        }
    }
}

#[tokio::test]
async fn authorisation_matrix_every_route_every_role() {
    let web = Web::new();
    let csr = web.csr("matrix");
    let admin_token = web.token(Role::Admin, Scope::default());
    // Fixtures the routes act on.
    let issued = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&admin_token),
            Some(json!({"address": "matrix@direct.example.com", "usage": "dual", "csr": csr,
                        "subscriber": {"name": "Matrix"}, "proofing": {"method": "in-person", "evidence_reference": "m"}})),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let serial = serde_json::from_str::<Value>(&issued.body).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();

    let roles: [(Option<Role>, &str); 5] = [
        (None, ""),
        (Some(Role::Admin), "admin"),
        (Some(Role::Registrar), "registrar"),
        (Some(Role::Member), "member"),
        (Some(Role::DnsOperator), "dns"),
    ];
    let pages: Vec<(Method, String, Who)> = vec![
        (Method::GET, "/".into(), Who::Anyone),
        (Method::GET, "/login".into(), Who::Anyone),
        (Method::GET, "/static/app.css".into(), Who::Anyone),
        (Method::GET, "/registrar/issue".into(), Who::Issuers),
        (Method::POST, "/registrar/issue".into(), Who::Issuers),
        (Method::GET, "/registrar/certs".into(), Who::Issuers),
        (
            Method::GET,
            format!("/registrar/certs/{serial}"),
            Who::Issuers,
        ),
        (
            Method::GET,
            format!("/registrar/certs/{serial}/pem"),
            Who::Issuers,
        ),
        (
            Method::GET,
            format!("/registrar/certs/{serial}/der"),
            Who::Issuers,
        ),
        (
            Method::GET,
            format!("/registrar/certs/{serial}/revoke"),
            Who::Issuers,
        ),
        (
            Method::POST,
            format!("/registrar/certs/{serial}/revoke"),
            Who::Issuers,
        ),
        (Method::GET, "/registrar/download/none".into(), Who::Issuers),
        (Method::GET, "/member/anchors".into(), Who::Members),
        (Method::POST, "/member/anchors".into(), Who::Members),
        (Method::GET, "/member/anchors/1".into(), Who::Members),
        (Method::GET, "/admin".into(), Who::Admin),
        (Method::GET, "/admin/queue".into(), Who::Admin),
        (Method::POST, "/admin/anchors/1/approve".into(), Who::Admin),
        (Method::GET, "/admin/bundles".into(), Who::Admin),
        (
            Method::POST,
            "/admin/bundles/provider-test/build".into(),
            Who::Admin,
        ),
        (Method::GET, "/admin/users".into(), Who::Admin),
        (Method::POST, "/admin/users".into(), Who::Admin),
        (Method::POST, "/admin/users/dns/enable".into(), Who::Admin),
        (Method::GET, "/admin/tokens".into(), Who::Admin),
        (Method::POST, "/admin/tokens".into(), Who::Admin),
        (Method::POST, "/admin/tokens/none/revoke".into(), Who::Admin),
        (Method::GET, "/admin/ca".into(), Who::Admin),
        (Method::GET, "/admin/audit".into(), Who::Admin),
    ];
    let mut checked = 0;
    for (role, user) in roles {
        let browser = match role {
            Some(_) => Some(web.login(user).await),
            None => None,
        };
        for (method, uri, who) in &pages {
            // POSTs carry a valid CSRF token, so only authorisation decides.
            let r = if *method == Method::POST {
                let csrf = browser.as_ref().map(|b| b.csrf.clone()).unwrap_or_default();
                if uri == "/registrar/issue" || uri == "/member/anchors" {
                    match &browser {
                        Some(b) => web.post_multipart(uri, b, &[("csrf", &csrf)], &[]).await,
                        None => web.post_form(uri, None, &[("csrf", "")]).await,
                    }
                } else {
                    web.post_form(
                        uri,
                        browser.as_ref(),
                        &[("csrf", &csrf), ("reason", "superseded")],
                    )
                    .await
                }
            } else {
                web.get(uri, browser.as_ref()).await
            };
            let allowed = who.allows(role);
            let denied = r.is_login_redirect()
                || r.status == StatusCode::FORBIDDEN
                || r.status == StatusCode::UNAUTHORIZED;
            if allowed {
                assert!(
                    !denied,
                    "{user:?} should reach {method} {uri}: {} {}",
                    r.status,
                    r.location()
                );
            } else if role.is_none() {
                assert!(
                    r.is_login_redirect(),
                    "anonymous {method} {uri}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{user} {method} {uri}: {}",
                    r.body
                );
            }
            checked += 1;
        }
    }

    let api: Vec<(Method, String, Who)> = vec![
        (Method::POST, "/api/v1/certificates".into(), Who::Issuers),
        (Method::GET, "/api/v1/certificates".into(), Who::Issuers),
        (
            Method::GET,
            format!("/api/v1/certificates/{serial}"),
            Who::Issuers,
        ),
        (
            Method::GET,
            format!("/api/v1/certificates/{serial}/pem"),
            Who::Issuers,
        ),
        (
            Method::GET,
            format!("/api/v1/certificates/{serial}/der"),
            Who::Issuers,
        ),
        (
            Method::POST,
            "/api/v1/certificates/0badc0de/revoke".into(),
            Who::Issuers,
        ),
        (Method::GET, "/api/v1/ca".into(), Who::Issuers),
        (Method::GET, "/api/v1/bundles".into(), Who::Anyone),
        (
            Method::POST,
            format!("/api/v1/bundles/{MEMBER_BUNDLE}/anchors"),
            Who::Members,
        ),
        (
            Method::POST,
            format!("/api/v1/bundles/{MEMBER_BUNDLE}/build"),
            Who::Admin,
        ),
        (Method::GET, "/api/v1/anchors".into(), Who::Members),
        (Method::GET, "/api/v1/anchors/1".into(), Who::Members),
        (Method::POST, "/api/v1/anchors/1/approve".into(), Who::Admin),
        (Method::POST, "/api/v1/anchors/1/reject".into(), Who::Admin),
        (Method::POST, "/api/v1/anchors/1/retire".into(), Who::Admin),
        (Method::POST, "/api/v1/anchors/1/promote".into(), Who::Admin),
        (Method::GET, "/api/v1/users".into(), Who::Admin),
        (Method::POST, "/api/v1/users".into(), Who::Admin),
        (Method::GET, "/api/v1/users/dns".into(), Who::Admin),
        (Method::POST, "/api/v1/users/dns/disable".into(), Who::Admin),
        (Method::POST, "/api/v1/users/dns/enable".into(), Who::Admin),
        (
            Method::POST,
            "/api/v1/users/dns/password".into(),
            Who::Admin,
        ),
        (Method::GET, "/api/v1/tokens".into(), Who::Admin),
        (Method::POST, "/api/v1/tokens".into(), Who::Admin),
        (
            Method::POST,
            "/api/v1/tokens/none/revoke".into(),
            Who::Admin,
        ),
        (Method::GET, "/api/v1/audit".into(), Who::Admin),
        (Method::GET, "/api/v1/zones".into(), Who::Dns),
        (Method::GET, format!("/api/v1/zones/{DOMAIN}"), Who::Dns),
        (Method::GET, "/api/v1/sources".into(), Who::Public),
        (
            Method::GET,
            "/api/v1/bundles/none/status".into(),
            Who::Public,
        ),
        (
            Method::POST,
            "/api/v1/bundles/none/refresh".into(),
            Who::Admin,
        ),
    ];
    for (role, _) in roles {
        let token = role.map(|r| web.token(r, crate::harness::wide_scope(r)));
        for (method, uri, who) in &api {
            let body = (*method == Method::POST).then(|| json!({}));
            let r = web.api(method.clone(), uri, token.as_deref(), body).await;
            let allowed = who.allows(role);
            // The bundle list is public information but still needs some token; refresh
            // status is for monitoring without one.
            if role.is_none() && *who != Who::Public {
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "anonymous {method} {uri}: {}",
                    r.body
                );
            } else if allowed || *who == Who::Public {
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{role:?} should reach {method} {uri}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role:?} {method} {uri}: {}",
                    r.body
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * (pages.len() + api.len()));
}

#[tokio::test]
async fn the_ca_page_shows_key_fingerprints_that_openssl_agrees_with() {
    let web = Web::new();
    let admin = web.login("admin").await;
    let page = web.get("/admin/ca", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    for role in ["root", "issuing"] {
        let der = web
            .authority
            .ca_cert(anchorage::ca::CaRole::parse(role).unwrap())
            .unwrap();
        let path = web.dir.path().join(format!("{role}.der"));
        std::fs::write(&path, der).unwrap();
        let spki = web.dir.path().join(format!("{role}.spki"));
        let pubkey = run_in(
            web.dir.path(),
            "openssl",
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                path.to_str().unwrap(),
                "-noout",
                "-pubkey",
            ],
        );
        pubkey.assert_success("openssl x509 -pubkey");
        let pem = web.dir.path().join(format!("{role}.pub.pem"));
        std::fs::write(&pem, pubkey.stdout).unwrap();
        run_in(
            web.dir.path(),
            "openssl",
            &[
                "pkey",
                "-pubin",
                "-in",
                pem.to_str().unwrap(),
                "-outform",
                "DER",
                "-out",
                spki.to_str().unwrap(),
            ],
        )
        .assert_success("openssl pkey");
        let digest = run_in(
            web.dir.path(),
            "openssl",
            &["dgst", "-sha256", "-r", spki.to_str().unwrap()],
        );
        let hex = digest.stdout.split_whitespace().next().unwrap().to_string();
        assert!(
            page.body.contains(&hex),
            "{role} key fingerprint {hex} not on the CA page"
        );
    }
}

#[tokio::test]
async fn certificate_listing_is_paged_with_a_total_and_a_next_link() {
    let web = Web::new();
    let admin = web.token(Role::Admin, Scope::default());
    for i in 0..3 {
        let csr = web.csr(&format!("page{i}"));
        let body = json!({"address": format!("page{i}@direct.example.com"), "usage": "dual", "csr": csr,
                          "subscriber": {"name": "Paging"}, "proofing": {"method": "in-person", "evidence_reference": "p"}});
        let r = web
            .api(
                Method::POST,
                "/api/v1/certificates",
                Some(&admin),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let first = web
        .api(
            Method::GET,
            "/api/v1/certificates?limit=2&domain=direct.example.com",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("x-total-count"), Some("3"));
    let items: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);
    let link = first.header("link").unwrap().to_string();
    assert!(
        link.contains("after=") && link.contains("rel=\"next\""),
        "{link}"
    );
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let second = web.api(Method::GET, &next, Some(&admin), None).await;
    let items2: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(items2.as_array().unwrap().len(), 1);
    assert!(second.header("link").is_none());
    let serials: std::collections::HashSet<String> = items
        .as_array()
        .unwrap()
        .iter()
        .chain(items2.as_array().unwrap())
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 3, "pages overlap or miss a certificate");
    let bad = web
        .api(
            Method::GET,
            "/api/v1/certificates?limit=0",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_external_sources_and_refreshes_one_on_demand() {
    let bundles = tempfile::tempdir().unwrap();
    let closed = crate::tools::free_port();
    std::fs::write(
        bundles.path().join("elsewhere.toml"),
        format!(
            "[source]\nurl = \"https://127.0.0.1:{closed}/bundle.p7b\"\nconnect_timeout_secs = 2\ntotal_timeout_secs = 4\nretries = 0\n"
        ),
    )
    .unwrap();
    let dir = bundles.path().to_path_buf();
    let web = Web::with_config(move |c| c.bundles_dir = dir);
    let admin = web.login("admin").await;
    let page = web.get("/admin/bundles", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("elsewhere") && page.body.contains("never tried"),
        "{}",
        page.body
    );
    let r = web
        .post_form(
            "/admin/sources/elsewhere/refresh",
            Some(&admin),
            &[("csrf", &admin.csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/admin/bundles?done=source-refresh-failed");
    let page = web.get(r.location(), Some(&admin)).await;
    assert_eq!(
        banner(&page.body),
        Some(anchorage::http::web::Notice::SourceRefreshFailed.sentence())
    );
    // The row of the source says what went wrong, from the store.
    assert!(page.body.contains("connect_error"), "{}", page.body);
    assert!(page.body.contains("1 failures in a row"), "{}", page.body);
    // The attempt is audited with who asked for it.
    let audited = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(Result::unwrap)
        .any(|e| {
            e.action == "bundle.refresh_attempt"
                && e.actor.starts_with("admin (admin)")
                && e.details["status"] == json!("connect_error")
        });
    assert!(audited, "refresh outcome not in the audit log");
}

#[tokio::test]
async fn members_see_their_own_submissions_and_their_organisations() {
    let web = Web::new();
    run_in(
        web.dir.path(),
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "a.key",
            "-out",
            "a.pem",
            "-days",
            "3650",
            "-subj",
            "/O=Alpha HISP/CN=Alpha Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
    .assert_success("openssl req -x509");
    let pem = std::fs::read_to_string(web.dir.path().join("a.pem")).unwrap();
    // The test clock started before openssl stamped notBefore.
    web.advance(Duration::minutes(1));
    let scope = |orgs: &[&str]| Scope {
        bundles: vec![MEMBER_BUNDLE.into()],
        organisations: orgs.iter().map(|o| o.to_string()).collect(),
        ..Scope::default()
    };
    // Scopes name organisation records; the submission carries the display name.
    web.authority
        .add_organisation(
            &anchorage::accounts::Principal::operator("test"),
            "alpha-hisp",
            anchorage::authority::OrganisationChange {
                name: Some("Alpha HISP".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let alpha = web.token(Role::Member, scope(&[]));
    let beta = web.token(Role::Member, scope(&[]));
    let alpha_org = web.token(Role::Member, scope(&["alpha-hisp"]));
    let admin = web.token(Role::Admin, Scope::default());
    let r = web
        .api(
            Method::POST,
            &format!("/api/v1/bundles/{MEMBER_BUNDLE}/anchors"),
            Some(&alpha),
            Some(
                json!({"file": pem, "organization": "Alpha HISP", "contact": "pki@alpha.example"}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let count = |body: &str| {
        serde_json::from_str::<Value>(body)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    for (token, sees) in [
        (&alpha, true),
        (&beta, false),
        (&alpha_org, true),
        (&admin, true),
    ] {
        let list = web
            .api(Method::GET, "/api/v1/anchors", Some(token), None)
            .await;
        assert_eq!(count(&list.body), usize::from(sees), "{}", list.body);
        let one = web
            .api(
                Method::GET,
                &format!("/api/v1/anchors/{id}"),
                Some(token),
                None,
            )
            .await;
        let want = if sees {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(one.status, want, "{}", one.body);
    }
    // The web page of another member does not list it either.
    let member = web.login("member").await;
    let page = web.get("/member/anchors", Some(&member)).await;
    assert!(page.body.contains("Nothing submitted yet"), "{}", page.body);
}

/// A self-signed member CA made by openssl in the test directory; returns its PEM text.
fn openssl_ca(web: &Web, stem: &str, subject: &str) -> String {
    run_in(
        web.dir.path(),
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.pem"),
            "-days",
            "3650",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
    .assert_success("openssl req -x509");
    std::fs::read_to_string(web.dir.path().join(format!("{stem}.pem"))).unwrap()
}

/// `openssl x509 -noout -subject -nameopt RFC2253,-esc_msb`, without the `subject=` prefix.
fn openssl_rfc2253_subject(web: &Web, stem: &str) -> String {
    let out = run_in(
        web.dir.path(),
        "openssl",
        &[
            "x509",
            "-in",
            &format!("{stem}.pem"),
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253,-esc_msb",
        ],
    );
    out.assert_success("openssl x509 -subject");
    out.stdout
        .trim_end()
        .strip_prefix("subject=")
        .unwrap()
        .to_string()
}

/// Requirement 8: an anchor with the subject of an anchor in the bundle but another key is
/// refused with `anchor_same_subject_different_key` (nothing stored, nothing audited) through
/// the API and the member form, and admitted when marked as a key rollover; the review queue
/// and the API then warn which anchor it would replace.
#[tokio::test]
async fn a_same_subject_anchor_with_another_key_needs_a_declared_rollover() {
    let web = Web::new();
    let subject = "/O=Rollover HISP/CN=Rollover Root";
    let old = openssl_ca(&web, "old", subject);
    let new = openssl_ca(&web, "new", subject);
    let newer = openssl_ca(&web, "newer", subject);
    web.advance(Duration::minutes(1)); // past openssl's notBefore
    let member = web.token(
        Role::Member,
        Scope {
            bundles: vec![MEMBER_BUNDLE.into()],
            ..Scope::default()
        },
    );
    let admin = web.token(Role::Admin, Scope::default());
    let submit_uri = format!("/api/v1/bundles/{MEMBER_BUNDLE}/anchors");
    let body = |pem: &str, rollover: Option<bool>| {
        let mut b = json!({"file": pem, "organization": "Rollover HISP", "contact": "pki@rollover.example"});
        if let Some(r) = rollover {
            b["rollover"] = json!(r);
        }
        Some(b)
    };
    let r = web
        .api(Method::POST, &submit_uri, Some(&member), body(&old, None))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let old_id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let browser = web.login("member").await; // signing in is audited
    let anchors = || {
        web.authority
            .danger_store()
            .unwrap()
            .anchors()
            .unwrap()
            .len()
    };
    let audited = || {
        web.authority
            .danger_store()
            .unwrap()
            .audit_entries()
            .count()
    };
    let (anchors_before, audit_before) = (anchors(), audited());

    // Refused through the API, explicitly or by default not a rollover: one reason, the code,
    // a sentence naming the existing anchor; nothing stored or logged.
    for rollover in [None, Some(false)] {
        let r = web
            .api(
                Method::POST,
                &submit_uri,
                Some(&member),
                body(&new, rollover),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["code"], "request_denied", "{v}");
        let reasons = v["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "{v}");
        assert_eq!(reasons[0]["code"], "anchor_same_subject_different_key");
        let message = reasons[0]["message"].as_str().unwrap();
        assert!(message.contains(&format!("anchor #{old_id} ")), "{message}");
        assert!(
            message.contains("'CN=Rollover Root,O=Rollover HISP'"),
            "{message}"
        );
    }
    // Refused through the member form without the box, with the sentence on the page.
    let mut fields = vec![
        ("csrf", browser.csrf.as_str()),
        ("bundle", MEMBER_BUNDLE),
        ("organization", "Rollover HISP"),
        ("contact", "pki@rollover.example"),
    ];
    let page = web
        .post_multipart(
            "/member/anchors",
            &browser,
            &fields,
            &[("anchor_file", "newer.pem", newer.as_bytes())],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("anchor #{old_id} of the bundle")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("id=\"rollover\""),
        "the form offers the box"
    );
    assert_eq!(anchors(), anchors_before, "a refusal stores nothing");
    assert_eq!(audited(), audit_before, "a refusal logs nothing");

    // Marked as a rollover: admitted, and marked as replacing the old anchor.
    let r = web
        .api(
            Method::POST,
            &submit_uri,
            Some(&member),
            body(&new, Some(true)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let submitted: Value = serde_json::from_str(&r.body).unwrap();
    let new_id = submitted["id"].as_u64().unwrap();
    let anchor = &submitted["anchors"][0];
    assert_eq!(anchor["rollover_of"], json!([old_id]), "{anchor}");
    let warning = anchor["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("Key rollover") && warning.contains(&format!("#{old_id}")),
        "{warning}"
    );
    // The member form with the box: the third key replaces both.
    fields.push(("rollover", "yes"));
    let page = web
        .post_multipart(
            "/member/anchors",
            &browser,
            &fields,
            &[("anchor_file", "newer.pem", newer.as_bytes())],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let newer_id = web
        .authority
        .danger_store()
        .unwrap()
        .anchors()
        .unwrap()
        .iter()
        .map(|a| a.id)
        .max()
        .unwrap();
    assert!(
        page.body.contains(&format!("/member/anchors/{newer_id}")),
        "{}",
        page.body
    );
    let record = web.authority.anchor(newer_id).unwrap();
    assert_eq!(record.rollover_of, [old_id, new_id]);

    // The audit log carries the flag and what it replaces.
    let submits: Vec<Value> = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(|e| e.unwrap())
        .filter(|e| e.action == "anchor.submit")
        .map(|e| e.details)
        .collect();
    assert_eq!(submits.len(), 3);
    assert_eq!(submits[0]["rollover"], false);
    assert_eq!(submits[0]["rollover_of"], json!([]));
    assert_eq!(submits[1]["rollover"], true);
    assert_eq!(submits[1]["rollover_of"], json!([old_id]));
    assert_eq!(submits[2]["rollover_of"], json!([old_id, new_id]));

    // The review queue warns on each rollover, naming what it would replace; not on the old.
    let admin_browser = web.login("admin").await;
    let queue = web.get("/admin/queue", Some(&admin_browser)).await;
    assert_eq!(queue.status, StatusCode::OK);
    for (id, replaces) in [
        (new_id, format!("replaces anchor #{old_id} ")),
        (newer_id, format!("replaces anchors #{old_id}, #{new_id} ")),
    ] {
        let card = queue
            .body
            .split(&format!("id=\"pending-{id}\""))
            .nth(1)
            .and_then(|rest| rest.split("</section>").next())
            .unwrap_or_else(|| panic!("no card for #{id}: {}", queue.body));
        assert!(
            card.contains(&format!("id=\"rollover-{id}\"")) && card.contains(&replaces),
            "#{id}: {card}"
        );
    }
    assert!(!queue.body.contains(&format!("id=\"rollover-{old_id}\"")));
    // So do the API's anchor views, to the admin and the member.
    for token in [&admin, &member] {
        let one = web
            .api(
                Method::GET,
                &format!("/api/v1/anchors/{new_id}"),
                Some(token),
                None,
            )
            .await;
        let v: Value = serde_json::from_str(&one.body).unwrap();
        assert_eq!(v["rollover_of"], json!([old_id]), "{v}");
        assert!(
            v["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains(&format!("#{old_id}"))),
            "{v}"
        );
        let list = web
            .api(Method::GET, "/api/v1/anchors", Some(token), None)
            .await;
        let list: Value = serde_json::from_str(&list.body).unwrap();
        let old_view = list
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == old_id)
            .unwrap();
        assert_eq!(old_view["rollover_of"], json!([]), "{old_view}");
        assert_eq!(old_view["warnings"], json!([]), "{old_view}");
    }
    // The rollover is approved beside the anchor it replaces (which the reviewer retires).
    let approved = web
        .api(
            Method::POST,
            &format!("/api/v1/anchors/{new_id}/approve"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let approved: Value = serde_json::from_str(&approved.body).unwrap();
    assert_eq!(approved["anchor"]["state"], "published", "{approved}");
    let entry = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(|e| e.unwrap())
        .find(|e| e.action == "anchor.approve")
        .unwrap();
    assert_eq!(entry.details["rollover_of"], json!([old_id]));
}

/// Requirement 8: a CA whose one CN is `Evil CA, O=DirectTrust` is shown with the comma
/// escaped (RFC 4514), as openssl prints it in RFC 2253 form, never as a two-attribute name:
/// in the review queue, the member's pages, the API and the published bundle's JSON index.
#[tokio::test]
async fn a_comma_in_a_common_name_is_escaped_wherever_the_name_is_shown() {
    let web = Web::new();
    let evil = openssl_ca(&web, "evil", r"/CN=Evil CA\, O=DirectTrust");
    let multi = openssl_ca(
        &web,
        "multi",
        "/C=US/ST=New York/O=Example\\, Inc./OU=Direct <Test>/CN=Example Root; 2026 ",
    );
    web.advance(Duration::minutes(1));
    let escaped = r"CN=Evil CA\, O=DirectTrust";
    let unescaped = "CN=Evil CA, O=DirectTrust";
    assert_eq!(openssl_rfc2253_subject(&web, "evil"), escaped);
    let multi_escaped = openssl_rfc2253_subject(&web, "multi");
    assert_eq!(
        multi_escaped,
        r"CN=Example Root\; 2026\ ,OU=Direct \<Test\>,O=Example\, Inc.,ST=New York,C=US"
    );
    let member = web.token(
        Role::Member,
        Scope {
            bundles: vec![MEMBER_BUNDLE.into()],
            ..Scope::default()
        },
    );
    let admin = web.token(Role::Admin, Scope::default());
    let mut ids = Vec::new();
    for (pem, want) in [(&evil, escaped), (&multi, multi_escaped.as_str())] {
        let r = web
            .api(
                Method::POST,
                &format!("/api/v1/bundles/{MEMBER_BUNDLE}/anchors"),
                Some(&member),
                Some(json!({"file": pem, "organization": "Evil", "contact": "evil@example"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["anchors"][0]["subject"], want, "{v}");
        ids.push(v["id"].as_u64().unwrap());
    }
    let (evil_id, multi_id) = (ids[0], ids[1]);

    // HTML: askama escapes `<`, `>` and `"`, not the backslashes and commas of RFC 4514.
    let html = |text: &str| text.replace('<', "&#60;").replace('>', "&#62;");
    let admin_browser = web.login("admin").await;
    let queue = web.get("/admin/queue", Some(&admin_browser)).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains(escaped), "{}", queue.body);
    assert!(!queue.body.contains(unescaped), "{}", queue.body);
    let multi_html = html(&multi_escaped);
    assert!(
        queue.body.contains(&multi_html),
        "{multi_html} not in {}",
        queue.body
    );
    // The member pages, as an administrator sees them (the anchors came through a token).
    for page in [
        "/member/anchors".to_string(),
        format!("/member/anchors/{evil_id}"),
    ] {
        let page = web.get(&page, Some(&admin_browser)).await;
        assert!(
            page.body.contains(escaped) && !page.body.contains(unescaped),
            "{}",
            page.body
        );
    }
    // API views, and the published bundle's JSON index once approved.
    let one = web
        .api(
            Method::GET,
            &format!("/api/v1/anchors/{evil_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&one.body).unwrap()["subject"],
        escaped
    );
    for id in [evil_id, multi_id] {
        let r = web
            .api(
                Method::POST,
                &format!("/api/v1/anchors/{id}/approve"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let index = web
        .get(&format!("/bundles/{MEMBER_BUNDLE}.json"), None)
        .await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.body);
    let index: Value = serde_json::from_str(&index.body).unwrap();
    let subjects: Vec<&str> = index["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&escaped), "{index}");
    assert!(subjects.contains(&multi_escaped.as_str()), "{index}");
}

/// Tokens pile up (automation creates them): the admin list shows 100 per page, newest first,
/// with a page count and links, and a page past the end shows the last one.
#[tokio::test]
async fn the_token_list_is_paged_newest_first() {
    let web = Web::new();
    let admin = web.login("admin").await;
    let before = web.authority.tokens().unwrap().len();
    let mut ids = Vec::new();
    for i in 0..(205 - before) {
        // One second apart, so "newest" is well defined.
        *web.clock.0.lock().unwrap() += ::time::Duration::seconds(1);
        let (_, t) = crate::harness::token(
            &web.authority,
            "registrar",
            &format!("bulk-{i:03}"),
            Some(30),
        );
        ids.push(t.id);
    }
    let rows = |body: &str| body.matches("<tr><td class=\"mono\">").count();
    let first = web.get("/admin/tokens", Some(&admin)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.body.contains("Page 1 of 3 (205 tokens)"),
        "{}",
        first.body
    );
    assert_eq!(rows(&first.body), 100);
    assert!(first.body.contains("/admin/tokens?page=1\">next</a>"));
    let newest = ids.last().unwrap();
    assert!(
        first
            .body
            .contains(&format!("<td class=\"mono\">{newest}</td>")),
        "the newest token is on the first page"
    );
    let last = web.get("/admin/tokens?page=2", Some(&admin)).await;
    assert_eq!(rows(&last.body), 5);
    assert!(last.body.contains("Page 3 of 3"));
    assert!(!last.body.contains("\">next</a>"));
    let past = web.get("/admin/tokens?page=99", Some(&admin)).await;
    assert_eq!(past.status, StatusCode::OK);
    assert!(
        past.body.contains("Page 3 of 3"),
        "a page past the end shows the last"
    );
    // A page is not a way around the role check.
    let registrar = web.login("registrar").await;
    let denied = web.get("/admin/tokens?page=1", Some(&registrar)).await;
    assert_ne!(denied.status, StatusCode::OK);
}
