//! Issue 12, "Hardened service": `/healthz` names what hurts (an external source that never
//! got a good copy, an unreadable store answered 503), `config check` refuses dangerous
//! values with messages naming the key and the fix, and every public error body is JSON,
//! including query-string and path-parameter rejections, with paging that cannot wrap.

use std::path::Path;
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
        .store
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
