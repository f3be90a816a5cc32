//! Bundles at scale (issue 14, requirement 5): batch review publishes ONE version per batch
//! (through the CLI on the store, and through `POST /api/v1/anchors/approve` and `/reject`),
//! a batch with one bad id changes nothing and names it, only administrators decide batches,
//! and retention prunes old versions' files (410 Gone) while their changelog and Atom entries
//! stay. Each version's files are rebuilt by the store from framed records: openssl reads them.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anchorage::authority::{Authority, InitOptions, Submission};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::http::{router, AppState};
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use anchorage::store::Store;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::bundles::{anchor_der, community, fixture, openssl_print_certs};
use crate::tools::run;

const BUNDLE: &str = "provider-test";

fn sorted(members: &[&str]) -> Vec<Vec<u8>> {
    let mut ders: Vec<Vec<u8>> = members.iter().map(|m| anchor_der(m)).collect();
    ders.sort();
    ders
}

/// The content of a .p7m as `openssl cms -verify` extracts it (the signature is checked,
/// the signer's chain is not: that is the bundle tests' job).
fn p7m_content(dir: &Path, p7m: &[u8]) -> Vec<u8> {
    let (input, output) = (dir.join("batch.p7m"), dir.join("batch.content"));
    std::fs::write(&input, p7m).unwrap();
    let args = [
        "cms",
        "-verify",
        "-noverify",
        "-inform",
        "DER",
        "-in",
        input.to_str().unwrap(),
        "-out",
        output.to_str().unwrap(),
    ];
    run("openssl", &args).assert_success("openssl cms -verify");
    std::fs::read(output).unwrap()
}

fn states(ca: &crate::harness::Ca, ids: &[u64]) -> Vec<String> {
    let list = ca.json(&["anchor", "list", "--bundle", BUNDLE]);
    ids.iter()
        .map(|id| {
            let a = list
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["id"] == *id)
                .unwrap_or_else(|| panic!("no anchor {id} in {list}"));
            a["state"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_cli_batch_approval_publishes_one_version_holding_every_anchor() {
    let community = community(&[]);
    let ca = &community.ca;
    let members = ["alpha", "bravo", "charlie", "delta", "echo"];
    let mut ids = Vec::new();
    for m in members.iter().chain(&["golf", "hotel"]) {
        let file = format!("{m}.pem");
        let out = ca.json(&["anchor", "submit", "--bundle", BUNDLE, &file]);
        ids.push(out["id"].as_u64().unwrap());
    }
    let (batch, rest) = ids.split_at(5);
    let arg = |list: &[u64]| -> Vec<String> { list.iter().map(u64::to_string).collect() };

    // One unknown id refuses the whole batch and is named; nothing changes.
    let mut args: Vec<String> = vec!["anchor".into(), "approve".into()];
    args.extend(arg(batch));
    args.push("999999".into());
    let err = ca.json_err(&args);
    assert_eq!(err["code"], "not_found", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("#999999") && message.contains("nothing in the batch was"),
        "{message}"
    );
    assert!(states(ca, &ids).iter().all(|s| s == "pending"));

    // The batch: every anchor published, in ONE new version.
    let mut args: Vec<String> = vec!["anchor".into(), "approve".into()];
    args.extend(arg(batch));
    args.extend(["--note".into(), "reviewed together".into()]);
    let done = ca.json(&args);
    let published = done["published"].as_array().unwrap();
    assert_eq!(published.len(), 1, "{done}");
    assert_eq!(published[0]["bundle"], BUNDLE);
    assert_eq!(published[0]["version"], 1);
    assert_eq!(published[0]["anchors"], 5);
    let listed: Vec<u64> = done["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["state"], "published", "{a}");
            a["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(listed, batch);

    // An already published anchor in a batch refuses it; the pending one stays pending.
    let err = ca.json_err(&[
        "anchor",
        "approve",
        &rest[0].to_string(),
        &batch[0].to_string(),
    ]);
    assert_eq!(err["code"], "conflict", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains(&format!("#{} is published", batch[0])),
        "{err}"
    );
    assert_eq!(states(ca, rest), ["pending", "pending"]);

    // Bulk rejection: both rejected, nothing published.
    let mut args: Vec<String> = vec!["anchor".into(), "reject".into()];
    args.extend(arg(rest));
    args.extend(["--reason".into(), "not members of this community".into()]);
    let rejected = ca.json(&args);
    assert_eq!(rejected["published"], json!([]), "{rejected}");
    assert_eq!(states(ca, rest), ["rejected", "rejected"]);

    // What the store holds: one version; openssl reads exactly the five anchors from its .p7b,
    // and the .p7m (rebuilt around it) verifies and carries the same bytes.
    let store = Store::open(&ca.data_dir()).unwrap();
    let versions = store.bundle_versions(BUNDLE).unwrap();
    assert_eq!(versions.len(), 1);
    let file = ca.path("batch.p7b");
    std::fs::write(&file, &versions[0].p7b).unwrap();
    assert_eq!(openssl_print_certs(&file), sorted(&members));
    let p7m = versions[0].p7m.as_ref().expect("provider-test is signed");
    assert_eq!(p7m_content(ca.dir(), p7m), versions[0].p7b);

    // Every anchor audited on its own; one publish.
    let log: Vec<_> = store.audit_entries().map(Result::unwrap).collect();
    let approvals: Vec<_> = log
        .iter()
        .filter(|e| e.action == "anchor.approve")
        .collect();
    let targets: BTreeSet<String> = approvals.iter().map(|e| e.target.clone()).collect();
    let expected: BTreeSet<String> = batch.iter().map(|id| format!("anchor {id}")).collect();
    assert_eq!(targets, expected);
    assert!(approvals.iter().all(|e| e.details["batch"] == 5));
    let rejections = log.iter().filter(|e| e.action == "anchor.reject").count();
    assert_eq!(rejections, 2);
    let publishes = log.iter().filter(|e| e.action == "bundle.publish").count();
    assert_eq!(publishes, 1);
}

/// An authority on a fresh data directory with the shipped bundle inventory, and its router.
struct Api {
    _dir: tempfile::TempDir,
    authority: Arc<Authority>,
    app: Router,
}

impl Api {
    fn new(adjust: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            bundles_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles"),
            managed_domains: vec![HealthDomain::parse(crate::harness::DOMAIN).unwrap()],
            ..Config::default()
        };
        adjust(&mut config);
        let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
        let passphrase = Passphrase::new("anchor batch test passphrase".into()).unwrap();
        authority
            .init(InitOptions::default(), &passphrase, "batch-test")
            .unwrap();
        let authority = Arc::new(authority);
        let app = router(AppState::new(authority.clone()));
        Api {
            _dir: dir,
            authority,
            app,
        }
    }

    fn submit(&self, member: &str) -> u64 {
        let submission = Submission {
            bundle: BUNDLE.into(),
            file: fixture(&format!("{member}.pem")).to_vec(),
            organization: format!("{member} HISP"),
            contact: format!("pki@{member}.example"),
            ..Submission::default()
        };
        self.authority.submit_anchor(&submission, "test").unwrap()[0].id
    }

    fn token(&self, role: &str) -> String {
        let (secret, _) = crate::harness::token(&self.authority, role, role, Some(1));
        format!("Bearer {}", secret.as_str())
    }

    async fn send(&self, method: Method, uri: &str, auth: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if !auth.is_empty() {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply { status, body }
    }

    fn state(&self, id: u64) -> String {
        self.authority
            .anchor(id)
            .unwrap()
            .state
            .as_str()
            .to_string()
    }
}

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_endpoints_decide_as_one_and_only_for_administrators() {
    let api = Api::new(|_| {});
    let ids: Vec<u64> = ["alpha", "bravo", "charlie", "delta", "echo"]
        .iter()
        .map(|m| api.submit(m))
        .collect();
    let admin = api.token("admin");

    // Scope cells: a member (even of the anchors' bundle) and a registrar are refused for
    // every id, before the body is read; nothing changes. No token: 401.
    for role in ["member", "registrar"] {
        let auth = api.token(role);
        for action in ["approve", "reject"] {
            for list in [vec![ids[0]], ids.clone()] {
                let uri = format!("/api/v1/anchors/{action}");
                let body = json!({"ids": list, "reason": "x"});
                let r = api.send(Method::POST, &uri, &auth, Some(body)).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} {action} {list:?}");
            }
        }
    }
    let r = api
        .send(
            Method::POST,
            "/api/v1/anchors/approve",
            "",
            Some(json!({"ids": [ids[0]]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(ids.iter().all(|id| api.state(*id) == "pending"));

    // Malformed batches.
    for (body, code) in [
        (json!({"ids": []}), "invalid_input"),
        (json!({"ids": [ids[0], ids[0]]}), "invalid_input"),
        (json!({"ids": [ids[0]], "colour": 1}), "invalid_input"),
    ] {
        let r = api
            .send(Method::POST, "/api/v1/anchors/approve", &admin, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["code"], code);
    }

    // An unknown id: 404 naming it, nothing approved.
    let r = api
        .send(
            Method::POST,
            "/api/v1/anchors/approve",
            &admin,
            Some(json!({"ids": [ids[0], 424242]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["message"].as_str().unwrap().contains("#424242"));
    assert_eq!(api.state(ids[0]), "pending");

    // Three approved as one: one version holding the three.
    let r = api
        .send(
            Method::POST,
            "/api/v1/anchors/approve",
            &admin,
            Some(json!({"ids": &ids[..3], "note": "batch"})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let done = r.json();
    assert_eq!(
        done["published"],
        json!([{"bundle": BUNDLE, "version": 1, "sha256": done["published"][0]["sha256"], "anchors": 3}])
    );
    assert_eq!(done["anchors"].as_array().unwrap().len(), 3);
    let r = api
        .send(Method::GET, "/bundles/provider-test/v/1.p7b", "", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v1.p7b");
    std::fs::write(&file, &r.body).unwrap();
    assert_eq!(
        openssl_print_certs(&file),
        sorted(&["alpha", "bravo", "charlie"])
    );

    // Rejection needs a reason; then both go, nothing is published.
    let rest = json!(&ids[3..]);
    let r = api
        .send(
            Method::POST,
            "/api/v1/anchors/reject",
            &admin,
            Some(json!({"ids": rest})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .send(
            Method::POST,
            "/api/v1/anchors/reject",
            &admin,
            Some(json!({"ids": rest, "reason": "unknown members"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["published"], json!([]));
    assert_eq!(api.state(ids[3]), "rejected");
    assert_eq!(api.state(ids[4]), "rejected");
    assert_eq!(api.authority.bundle_changelog(BUNDLE).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pruned_versions_answer_410_and_keep_their_changelog_entries() {
    let api = Api::new(|c| {
        c.bundles.keep_versions = 2;
        c.bundles.keep_days = 0;
    });
    let members = ["alpha", "bravo", "charlie", "delta"];
    for m in members {
        let id = api.submit(m);
        api.authority.approve_anchor(id, "admin", "").unwrap();
    }
    let changelog = api.authority.bundle_changelog(BUNDLE).unwrap();
    let pruned: Vec<(u64, bool)> = changelog
        .iter()
        .map(|v| (v.version, v.pruned_at.is_some()))
        .collect();
    assert_eq!(pruned, [(1, true), (2, true), (3, false), (4, false)]);

    // The pruned files are gone for good (410, saying why); the kept ones are whole.
    for file in ["1.p7b", "1.p7m", "2.p7b"] {
        let r = api
            .send(
                Method::GET,
                &format!("/bundles/{BUNDLE}/v/{file}"),
                "",
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::GONE, "{file}");
        let body = r.json();
        assert_eq!(body["code"], "gone");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("pruned") && message.contains("keep_versions"),
            "{message}"
        );
    }
    let r = api
        .send(Method::GET, &format!("/bundles/{BUNDLE}/v/3.p7b"), "", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v3.p7b");
    std::fs::write(&file, &r.body).unwrap();
    assert_eq!(openssl_print_certs(&file), sorted(&members[..3]));
    let current = api
        .send(Method::GET, &format!("/bundles/{BUNDLE}.p7b"), "", None)
        .await;
    assert_eq!(current.status, StatusCode::OK);
    std::fs::write(&file, &current.body).unwrap();
    assert_eq!(openssl_print_certs(&file), sorted(&members));

    // The changelog and the Atom feed still list every version, the pruned ones marked.
    let r = api
        .send(
            Method::GET,
            &format!("/bundles/{BUNDLE}/changes.json"),
            "",
            None,
        )
        .await;
    let changes = r.json();
    let listed: Vec<(u64, bool)> = changes["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["pruned_at"].is_string()))
        .collect();
    assert_eq!(listed, [(4, false), (3, false), (2, true), (1, true)]);
    assert_eq!(
        changes["versions"][3]["added"][0]["fingerprint"],
        crate::bundles::fp("alpha")
    );
    let r = api
        .send(
            Method::GET,
            &format!("/bundles/{BUNDLE}/changes.atom"),
            "",
            None,
        )
        .await;
    let atom = String::from_utf8(r.body).unwrap();
    for n in 1..=4 {
        assert!(
            atom.contains(&format!("/bundles/{BUNDLE}/v/{n}.p7b")),
            "version {n} missing from the feed: {atom}"
        );
    }

    // Pruning is audited: after version 3 it pruned 1, after version 4 it pruned 2.
    let admin = api.token("admin");
    let r = api
        .send(
            Method::GET,
            "/api/v1/audit?action=bundle.prune",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut prunes: Vec<Value> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == BUNDLE)
        .map(|e| e["details"]["versions"].clone())
        .collect();
    prunes.reverse();
    assert_eq!(prunes, [json!([1]), json!([2])]);
}
