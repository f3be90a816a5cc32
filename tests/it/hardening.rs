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
