//! Issue 12, "Hardened service": `/healthz` names what hurts (an external source that never
//! got a good copy, an unreadable store answered 503), `config check` refuses dangerous
//! values with messages naming the key and the fix, and every public error body is JSON,
//! including query-string and path-parameter rejections, with paging that cannot wrap.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anchorage::authority::{Authority, InitOptions};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::http::{router, AppState};
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

const BIN: &str = env!("CARGO_BIN_EXE_anchorage");
const DOMAIN: &str = "direct.example.com";

/// An initialised authority whose inventory is `bundles`, and the router over it.
struct Service {
    _dir: TempDir,
    authority: Arc<Authority>,
    app: Router,
    token: String,
}

impl Service {
    fn new(declare: impl FnOnce(&Path)) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let bundles = dir.path().join("bundles");
        std::fs::create_dir_all(&bundles).unwrap();
        declare(&bundles);
        let config = Config {
            data_dir: dir.path().join("data"),
            bundles_dir: bundles,
            public_url: "http://pki.direct.example.com".into(),
            managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
            ..Config::default()
        };
        let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
        let passphrase =
            Passphrase::new("hardening test passphrase (not a secret)".into()).unwrap();
        authority
            .init(InitOptions::default(), &passphrase, "hardening-test")
            .unwrap();
        authority.refresh_crls().unwrap();
        let (token, _) = crate::harness::token(&authority, "admin", "hardening", Some(30));
        let authority = Arc::new(authority);
        let app = router(AppState::new(authority.clone()));
        Service {
            _dir: dir,
            authority,
            app,
            token: token.to_string(),
        }
    }

    /// One request; `auth` adds the admin token. Returns status, content type and body.
    async fn send(&self, method: Method, uri: &str, auth: bool) -> (StatusCode, String, Vec<u8>) {
        let mut builder = Request::builder().method(method).uri(uri);
        if auth {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        let response = self
            .app
            .clone()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, content_type, body.to_vec())
    }

    async fn health(&self) -> (StatusCode, Value) {
        let (status, _, body) = self.send(Method::GET, "/healthz", false).await;
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "/healthz not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, v)
    }
}

// ---- requirement 3: health says what hurts -------------------------------------------------

/// Today an enabled source that never fetched anything is invisible: `/healthz` says `ok`
/// while the bundle it should feed publishes none of its anchors.
#[tokio::test]
async fn health_reports_an_external_source_that_never_got_a_copy() {
    let closed = crate::tools::free_port();
    let service = Service::new(|bundles| {
        std::fs::write(
            bundles.join("community.toml"),
            format!("[source]\nurl = \"https://127.0.0.1:{closed}/community.p7b\"\n"),
        )
        .unwrap();
        // A disabled source is not a problem.
        std::fs::write(
            bundles.join("parked.toml"),
            format!("[source]\nurl = \"https://127.0.0.1:{closed}/parked.p7b\"\nenabled = false\n"),
        )
        .unwrap();
    });
    let (status, health) = service.health().await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let problems = health["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{health}");
    assert_eq!(problems[0]["code"], "external_source_no_copy");
    assert_eq!(problems[0]["subject"], "community");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("never had a good copy"),
        "{health}"
    );
}

/// Today an unreadable store answers 503 with the store's own error text (a path, a decoder
/// message) and no problem list; it must be status `error` naming the store, no internals.
#[tokio::test]
async fn health_answers_503_naming_an_unreadable_store() {
    let service = Service::new(|_| {});
    let (status, health) = service.health().await;
    assert_eq!(
        (status, health["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    service
        .authority
        .danger_store()
        .unwrap()
        .danger_put_raw_ca_record("issuing", b"\x00not a record")
        .unwrap();
    let (status, health) = service.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "error", "{health}");
    assert_eq!(
        health["problems"][0]["code"], "store_unreadable",
        "{health}"
    );
    assert_eq!(health["problems"][0]["subject"], "store");
    let text = health.to_string();
    assert!(!text.contains("unreadable:"), "internals leaked: {text}");
}

// ---- requirement 9: public error bodies are JSON everywhere ---------------------------------

/// Today axum's own `Query` and `Path` rejections answer text/plain ("Failed to deserialize
/// query string", "Invalid URL"), and `offset + limit` overflows (a panic in a debug build, a
/// wrapped Link header in release). Every case must answer the JSON error body.
#[tokio::test]
async fn malformed_query_strings_and_paths_answer_json_errors() {
    let service = Service::new(|_| {});
    let get = Method::GET;
    let post = Method::POST;
    let bad = StatusCode::BAD_REQUEST;
    #[rustfmt::skip]
    let cases: &[(&str, Method, &str, StatusCode, &str)] = &[
        // Query strings.
        ("query/cert-limit-not-a-number", get.clone(), "/api/v1/certificates?limit=abc", bad, "invalid_input"),
        ("query/cert-offset-negative", get.clone(), "/api/v1/certificates?offset=-1", bad, "invalid_input"),
        ("query/cert-expiring-not-a-number", get.clone(), "/api/v1/certificates?expiring_within_days=soon", bad, "invalid_input"),
        ("query/cert-unknown-key", get.clone(), "/api/v1/certificates?colour=red", bad, "invalid_input"),
        ("query/cert-status-unknown", get.clone(), "/api/v1/certificates?status=sleeping", bad, "invalid_input"),
        ("query/anchors-unknown-key", get.clone(), "/api/v1/anchors?colour=red", bad, "invalid_input"),
        ("query/holders-unknown-key", get.clone(), "/api/v1/holders?colour=red", bad, "invalid_input"),
        ("query/audit-limit-not-a-number", get.clone(), "/api/v1/audit?limit=abc", bad, "invalid_input"),
        ("query/audit-before-not-a-number", get.clone(), "/api/v1/audit?before=yesterday", bad, "invalid_input"),
        ("query/ldif-since-not-a-number", get.clone(), "/api/v1/directory/ldif?since=abc", bad, "invalid_input"),
        // Path parameters that do not parse: a number, or UTF-8.
        ("path/anchor-id-not-a-number", get.clone(), "/api/v1/anchors/abc", bad, "invalid_input"),
        ("path/anchor-id-overflows", get.clone(), "/api/v1/anchors/99999999999999999999999", bad, "invalid_input"),
        ("path/anchor-approve-id", post.clone(), "/api/v1/anchors/abc/approve", bad, "invalid_input"),
        ("path/anchor-reject-id", post.clone(), "/api/v1/anchors/abc/reject", bad, "invalid_input"),
        ("path/anchor-retire-id", post.clone(), "/api/v1/anchors/abc/retire", bad, "invalid_input"),
        ("path/anchor-promote-id", post.clone(), "/api/v1/anchors/abc/promote", bad, "invalid_input"),
        ("path/cert-serial-not-utf8", get.clone(), "/api/v1/certificates/%FF", bad, "invalid_input"),
        ("path/cert-pem-not-utf8", get.clone(), "/api/v1/certificates/%FF/pem", bad, "invalid_input"),
        ("path/cert-der-not-utf8", get.clone(), "/api/v1/certificates/%FF/der", bad, "invalid_input"),
        ("path/cert-chain-not-utf8", get.clone(), "/api/v1/certificates/%FF/chain", bad, "invalid_input"),
        ("path/cert-revoke-not-utf8", post.clone(), "/api/v1/certificates/%FF/revoke", bad, "invalid_input"),
        ("path/cert-renew-not-utf8", post.clone(), "/api/v1/certificates/%FF/renew", bad, "invalid_input"),
        ("path/user-not-utf8", get.clone(), "/api/v1/users/%FF", bad, "invalid_input"),
        ("path/user-disable-not-utf8", post.clone(), "/api/v1/users/%FF/disable", bad, "invalid_input"),
        ("path/token-revoke-not-utf8", post.clone(), "/api/v1/tokens/%FF/revoke", bad, "invalid_input"),
        ("path/organisation-not-utf8", get.clone(), "/api/v1/organisations/%FF", bad, "invalid_input"),
        ("path/holder-not-utf8", get.clone(), "/api/v1/holders/%FF", bad, "invalid_input"),
        ("path/zone-not-utf8", get.clone(), "/api/v1/zones/%FF", bad, "invalid_input"),
        ("path/bundle-status-not-utf8", get.clone(), "/api/v1/bundles/%FF/status", bad, "invalid_input"),
        ("path/bundle-anchors-not-utf8", post.clone(), "/api/v1/bundles/%FF/anchors", bad, "invalid_input"),
        ("path/bundle-build-not-utf8", post.clone(), "/api/v1/bundles/%FF/build", bad, "invalid_input"),
        // Public routes relying parties fetch.
        ("public/crl-not-utf8", get.clone(), "/crl/%FF", bad, "invalid_input"),
        ("public/ca-not-utf8", get.clone(), "/ca/%FF", bad, "invalid_input"),
        ("public/bundle-not-utf8", get.clone(), "/bundles/%FF", bad, "invalid_input"),
        ("public/bundle-file-not-utf8", get.clone(), "/bundles/local/%FF", bad, "invalid_input"),
        ("public/bundle-version-not-utf8", get.clone(), "/bundles/local/v/%FF", bad, "invalid_input"),
        // Well-formed but absent: 404, still JSON.
        ("found/anchor-absent", get.clone(), "/api/v1/anchors/424242", StatusCode::NOT_FOUND, "not_found"),
        ("found/crl-absent", get.clone(), "/crl/nothing.crl", StatusCode::NOT_FOUND, "not_found"),
        ("found/api-route-absent", get.clone(), "/api/v1/no-such-thing", StatusCode::NOT_FOUND, "not_found"),
        ("method/api-get-on-post-route", get.clone(), "/api/v1/bundles/local/anchors", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    let mut failures = Vec::new();
    for (name, method, uri, status, code) in cases {
        let (got, content_type, body) = service.send(method.clone(), uri, true).await;
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        let ok = got == *status
            && content_type.starts_with("application/json")
            && v.as_ref().is_some_and(|v| {
                v["code"] == json!(code) && v["message"].as_str().is_some_and(|m| !m.is_empty())
            });
        if !ok {
            failures.push(format!(
                "{name}: {method} {uri} -> {got} {content_type} {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Paging cannot wrap: the largest offset is an empty page with no next link.
#[tokio::test]
async fn certificate_paging_does_not_wrap() {
    let service = Service::new(|_| {});
    for uri in [
        "/api/v1/certificates?offset=18446744073709551615",
        "/api/v1/certificates?offset=18446744073709551615&limit=1000",
        "/api/v1/audit?before=18446744073709551615&limit=1000",
    ] {
        let (status, content_type, body) = service.send(Method::GET, uri, true).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(content_type.starts_with("application/json"), "{uri}");
    }
    let response = service
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/certificates?offset=18446744073709551615")
                .header(header::AUTHORIZATION, format!("Bearer {}", service.token))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(response.headers().get(header::LINK).is_none());
}

// ---- requirement 5: `config check` catches dangerous values --------------------------------

/// One `config check` case: top-level key lines, then tables, and the expected outcome.
struct CheckCase {
    name: &'static str,
    /// Lines replacing the defaults of the top-level keys (`public_url`, `bundles_dir`).
    top: &'static [(&'static str, &'static str)],
    tables: &'static str,
    /// Mode of the passphrase file.
    mode: u32,
    /// A bundle declaration written into the bundles directory.
    bundle: Option<&'static str>,
    /// `Some(text)`: one error containing it (exit non-zero); `None`: ok.
    error: Option<&'static str>,
    /// A warning containing this text.
    warning: Option<&'static str>,
}

/// `anchorage config check --config FILE -o json`; returns success and the JSON report.
fn config_check(dir: &Path, file: &str) -> (bool, Value) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env_remove("ANCHORAGE_BUNDLES_DIR")
        .env_remove("ANCHORAGE_DATA_DIR")
        .args(["config", "check", "--config", file, "-o", "json"])
        .output()
        .unwrap();
    // The report comes first; a failing check then prints its error object.
    let mut values = serde_json::Deserializer::from_slice(&out.stdout).into_iter::<Value>();
    let report = values.next().unwrap().unwrap_or_else(|e| {
        panic!(
            "config check output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Today every one of these values passes `config check` (or, for a zero lifetime, gets a
/// vague sentence): each must be refused with a message naming the key and the fix, and a
/// missing bundles directory must be a warning that does not fail the check.
#[test]
fn config_check_refuses_dangerous_values_with_precise_messages() {
    #[rustfmt::skip]
    let cases = [
        CheckCase { name: "ok/sane", top: &[], tables: "", mode: 0o600, bundle: None, error: None, warning: None },
        CheckCase { name: "error/passphrase-readable-by-others", top: &[], tables: "", mode: 0o644, bundle: None,
            error: Some("is readable or writable by group or others (mode 0644): anyone on the machine who can read it can unseal the CA keys; run `chmod 600 "), warning: None },
        CheckCase { name: "error/passphrase-group-readable", top: &[], tables: "", mode: 0o640, bundle: None,
            error: Some("(mode 0640)"), warning: None },
        CheckCase { name: "error/request-timeout-zero", top: &[], tables: "[api]\nrequest_timeout_secs = 0\n", mode: 0o600, bundle: None,
            error: Some("api.request_timeout_secs = 0 would time out every request at once; set 1 to 3600 (default 30)"), warning: None },
        CheckCase { name: "error/request-timeout-absurd", top: &[], tables: "[api]\nrequest_timeout_secs = 86400\n", mode: 0o600, bundle: None,
            error: Some("api.request_timeout_secs = 86400 lets one slow client hold a connection for over an hour; set 1 to 3600 (default 30)"), warning: None },
        CheckCase { name: "error/session-idle-zero", top: &[], tables: "[web]\nsession_idle_minutes = 0\n", mode: 0o600, bundle: None,
            error: Some("web.session_idle_minutes = 0 would end every session at once; set 1 to 1440 (default 30)"), warning: None },
        CheckCase { name: "error/session-idle-absurd", top: &[], tables: "[web]\nsession_idle_minutes = 100000\n", mode: 0o600, bundle: None,
            error: Some("web.session_idle_minutes = 100000 keeps an abandoned signed-in browser usable for over a day; set 1 to 1440 (default 30)"), warning: None },
        CheckCase { name: "error/session-absolute-zero", top: &[], tables: "[web]\nsession_absolute_hours = 0\n", mode: 0o600, bundle: None,
            error: Some("web.session_absolute_hours = 0 would end every session at once; set 1 to 720 (default 8)"), warning: None },
        CheckCase { name: "error/session-absolute-absurd", top: &[], tables: "[web]\nsession_absolute_hours = 100000\n", mode: 0o600, bundle: None,
            error: Some("web.session_absolute_hours = 100000 keeps a stolen session cookie valid for over 30 days; set 1 to 720 (default 8)"), warning: None },
        CheckCase { name: "error/login-free-failures-huge", top: &[], tables: "[web]\nlogin_free_failures = 1000000\n", mode: 0o600, bundle: None,
            error: Some("web.login_free_failures = 1000000 lets a password guesser try that many times without delay, so the sign-in throttle does nothing; set 1 to 100 (default 5)"), warning: None },
        CheckCase { name: "error/login-delay-zero", top: &[], tables: "[web]\nlogin_delay_secs = 0\n", mode: 0o600, bundle: None,
            error: Some("web.login_delay_secs = 0 turns the sign-in throttle off (no delay after the free failures); set it to at least 1 (default 30)"), warning: None },
        CheckCase { name: "error/login-max-delay-zero", top: &[], tables: "[web]\nlogin_max_delay_secs = 0\n", mode: 0o600, bundle: None,
            error: Some("web.login_max_delay_secs = 0 caps every sign-in delay at nothing, so the throttle does nothing; set it to at least web.login_delay_secs (default 900)"), warning: None },
        CheckCase { name: "error/crl-coalesce-past-next-update", top: &[], tables: "[crl]\nnext_update_hours = 24\nrefresh_before_hours = 1\ncoalesce_millis = 3600000\n", mode: 0o600, bundle: None,
            error: Some("crl.coalesce_millis = 3600000 does not fit in the 1 h before nextUpdate (crl.refresh_before_hours, less the 10-minute publisher tick): a CRL could pass its nextUpdate; lower crl.coalesce_millis (default 2000) or raise crl.refresh_before_hours"), warning: None },
        CheckCase { name: "error/crl-refresh-before-zero", top: &[], tables: "[crl]\nrefresh_before_hours = 0\n", mode: 0o600, bundle: None,
            error: Some("crl.refresh_before_hours = 0: CRLs would be re-signed only after they passed their nextUpdate; set it to at least 1 (default 120)"), warning: None },
        CheckCase { name: "error/admission-policy-outside-policies", top: &[], tables: "", mode: 0o600,
            bundle: Some("title = \"Escape\"\nadmission_policy = \"../../etc/escape\"\n"),
            error: Some("escape.toml: admission_policy = '../../etc/escape' is outside the policies directory; name a file in policies_dir by its stem (letters, digits, '-', '_'; without .toml), e.g. 'anchor-admission'"), warning: None },
        CheckCase { name: "error/admission-policy-needs-policies-dir", top: &[], tables: "", mode: 0o600,
            bundle: Some("title = \"Strict\"\nadmission_policy = \"strict\"\n"),
            error: Some("bundle 'escape' names admission policy 'strict', which needs policies_dir"), warning: None },
        CheckCase { name: "error/public-url-query", top: &[("public_url", "\"http://ca.example.org/pki?x=1\"")], tables: "", mode: 0o600, bundle: None,
            error: Some("public_url = 'http://ca.example.org/pki?x=1' has a query ('?x=1'): paths such as /crl/issuing.crl are appended to it, so certificates would carry broken URLs; remove everything from '?' on"), warning: None },
        CheckCase { name: "error/public-url-fragment", top: &[("public_url", "\"http://ca.example.org/pki#top\"")], tables: "", mode: 0o600, bundle: None,
            error: Some("public_url = 'http://ca.example.org/pki#top' has a fragment ('#top'): paths such as /crl/issuing.crl are appended to it, so certificates would carry broken URLs; remove everything from '#' on"), warning: None },
        CheckCase { name: "error/public-url-wildcard-v4", top: &[("public_url", "\"http://0.0.0.0:8080\"")], tables: "", mode: 0o600, bundle: None,
            error: Some("public_url = 'http://0.0.0.0:8080' names the wildcard listen address 0.0.0.0: it is written into every certificate (CRL distribution point, AIA) and no relying party can reach it; set the host name relying parties use, e.g. http://ca.example.org"), warning: None },
        CheckCase { name: "error/public-url-wildcard-v6", top: &[("public_url", "\"http://[::]:8080/pki\"")], tables: "", mode: 0o600, bundle: None,
            error: Some("public_url = 'http://[::]:8080/pki' names the wildcard listen address ::"), warning: None },
        CheckCase { name: "warning/bundles-dir-missing", top: &[("bundles_dir", "\"no-such-dir\"")], tables: "", mode: 0o600, bundle: None,
            error: None, warning: Some("no-such-dir does not exist: the trust-bundle inventory is empty and no bundle is published; create the directory or correct bundles_dir (warning: the service still starts)") },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let bundles = dir.path().join("bundles");
        std::fs::create_dir_all(&bundles).unwrap();
        if let Some(text) = case.bundle {
            std::fs::write(bundles.join("escape.toml"), text).unwrap();
        }
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "config check passphrase").unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(case.mode)).unwrap();
        let mut top = [
            ("data_dir", "\"data\"".to_string()),
            ("public_url", "\"http://ca.example.org\"".to_string()),
            ("managed_domains", "[\"direct.example.com\"]".to_string()),
            ("bundles_dir", format!("{:?}", bundles.to_str().unwrap())),
            ("passphrase_file", format!("{:?}", pass.to_str().unwrap())),
        ];
        for (key, value) in case.top {
            for line in top.iter_mut().filter(|(k, _)| k == key) {
                line.1 = value.to_string();
            }
        }
        let mut text: String = top.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        text.push_str(case.tables);
        std::fs::write(dir.path().join("case.toml"), text).unwrap();
        let (ok, report) = config_check(dir.path(), "case.toml");
        let problems: Vec<&str> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let warnings: Vec<&str> = report["warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let fine = match case.error {
            None => ok && report["ok"] == json!(true) && problems.is_empty(),
            Some(needle) => {
                !ok && report["ok"] == json!(false)
                    && problems.len() == 1
                    && problems[0].contains(needle)
            }
        } && match case.warning {
            None => warnings.is_empty(),
            Some(needle) => warnings.len() == 1 && warnings[0].contains(needle),
        };
        if !fine {
            failures.push(format!("{}: exit ok {ok}: {report}", case.name));
        }
    }
    // The reference configuration passes, pointed at this checkout and a 0600 passphrase.
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "reference passphrase").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reference = std::fs::read_to_string(root.join("ops/anchorage.toml"))
        .unwrap()
        .replace(
            "/etc/anchorage/policies",
            root.join("policies").to_str().unwrap(),
        )
        .replace(
            "/etc/anchorage/bundles",
            root.join("bundles").to_str().unwrap(),
        )
        .replace("/etc/anchorage/passphrase", pass.to_str().unwrap());
    std::fs::write(dir.path().join("reference.toml"), reference).unwrap();
    let (ok, report) = config_check(dir.path(), "reference.toml");
    if !(ok && report == json!({"ok": true, "problems": [], "warnings": []})) {
        failures.push(format!("ok/reference: exit ok {ok}: {report}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pages stay HTML: a query string that does not parse is a 400 error page with a fixed
/// sentence. Today it is axum's text/plain rejection.
#[tokio::test]
async fn malformed_page_queries_answer_an_html_page_without_the_input() {
    let service = Service::new(|_| {});
    let (status, content_type, body) = service
        .send(
            Method::GET,
            "/login?next=%3Cscript%3Ealert(1)%3C/script%3E&next=%3Cscript%3E",
            false,
        )
        .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        content_type.starts_with("text/html"),
        "{content_type}: {body}"
    );
    assert!(
        body.contains("The address has a malformed query."),
        "{body}"
    );
    assert!(
        !body.contains("<script>") && !body.contains("alert(1)"),
        "{body}"
    );
}

/// Today `serve` starts with any value `config check` refuses (only `init` checked them): an
/// existing service edited to a zero request timeout must refuse to start, naming the key.
#[test]
fn serve_refuses_to_start_with_a_dangerous_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pass = "serve refusal passphrase (not a secret)";
    crate::server::cli_json(
        &data,
        pass,
        &["init", "--managed-domain", "direct.example.com"],
    );
    let file = data.join("anchorage.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("request_timeout_secs = 30"), "{text}");
    std::fs::write(
        &file,
        text.replace("request_timeout_secs = 30", "request_timeout_secs = 0"),
    )
    .unwrap();
    let refusal =
        crate::server::Server::spawn(&data, pass, crate::tools::free_port()).expect_refusal();
    assert_eq!(refusal["code"], "config_invalid", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("api.request_timeout_secs = 0 would time out every request at once"),
        "{refusal}"
    );
}
