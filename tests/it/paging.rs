//! Certificate listings page with a cursor (issue 14, requirement 3): the pages of
//! `GET /api/v1/certificates?after=` cover every certificate exactly once while certificates
//! are issued and revoked between fetches, a cursor never reveals a certificate outside the
//! caller's organisations, a holder moved to another organisation moves in the index, and a
//! malformed cursor is a 400 naming it. Speed and memory are measured by
//! `ops/bench/list_pages.sh`, not here.

use std::collections::{BTreeMap, BTreeSet};

use anchorage::accounts::{Principal, Role, Scope};
use anchorage::authority::OrganisationChange;
use axum::http::{Method, StatusCode};
use base64::Engine;
use serde_json::{json, Value};

use crate::web::{Web, DOMAIN, OTHER_DOMAIN};

const SOUTH: &str = "south";
const NORTH: &str = "north";

fn op() -> Principal {
    Principal::operator("test")
}

/// A world with two organisations: `south` holds addresses in DOMAIN, `north` addresses in
/// DOMAIN and the whole OTHER_DOMAIN.
fn world() -> Web {
    let web = Web::with_config(|c| {
        c.issuance.rate_limit_per_minute = 0;
        c.issuance.rate_limit_per_day = 0;
        c.policies_dir = None;
    });
    web.authority
        .edit_organisation(
            &op(),
            crate::harness::TEST_ORG,
            OrganisationChange {
                domains: Some(vec![]),
                ..OrganisationChange::default()
            },
        )
        .unwrap();
    for (id, domains) in [
        (SOUTH, vec![format!("*@{DOMAIN}")]),
        (NORTH, vec![format!("*@{DOMAIN}"), OTHER_DOMAIN.to_string()]),
    ] {
        web.authority
            .add_organisation(
                &op(),
                id,
                OrganisationChange {
                    name: Some(format!("Organisation {id}")),
                    contacts: Some(vec![format!("pki@{id}.example")]),
                    domains: Some(domains),
                },
            )
            .unwrap();
    }
    web
}

/// Issues one certificate for `holder` in `organisation`; returns its serial.
async fn issue(web: &Web, admin: &str, holder: &str, organisation: &str) -> String {
    let body = json!({"address": holder, "usage": "dual", "csr": web.csr(&holder.replace(['@', '.'], "-")),
        "organisation": organisation, "subscriber": {"name": "Paging"},
        "proofing": {"method": "in-person", "evidence_reference": "p"}});
    let r = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(admin),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    serde_json::from_str::<Value>(&r.body).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn revoke(web: &Web, admin: &str, serial: &str) {
    let r = web
        .api(
            Method::POST,
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(admin),
            Some(json!({"reason": "superseded"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The target of a `Link: <...>; rel="next"` header.
fn next_of(link: Option<&str>) -> Option<String> {
    let link = link?;
    assert!(link.contains("rel=\"next\""), "{link}");
    Some(
        link.trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string(),
    )
}

/// One page: its (serial, status) rows and the next page's URI.
async fn page(web: &Web, token: &str, uri: &str) -> (Vec<(String, String)>, Option<String>) {
    let r = web.api(Method::GET, uri, Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    let rows = serde_json::from_str::<Value>(&r.body).unwrap();
    let rows = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["serial"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (rows, next_of(r.header("link")))
}

/// Every row of a listing, following the cursor from `first`.
async fn walk(web: &Web, token: &str, first: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut uri = Some(first.to_string());
    while let Some(u) = uri {
        assert!(
            !u.contains("offset="),
            "a cursor listing links by cursor: {u}"
        );
        let (rows, next) = page(web, token, &u).await;
        out.extend(rows.into_iter().map(|(s, _)| s));
        uri = next;
    }
    out
}

fn cursor(serial: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serial)
}

#[tokio::test]
async fn cursor_pages_cover_every_certificate_once_while_certificates_are_issued_and_revoked() {
    let web = world();
    let admin = web.token(Role::Admin, Scope::default());
    let mut before = BTreeSet::new();
    for i in 0..10 {
        before.insert(issue(&web, &admin, &format!("s{i}@{DOMAIN}"), SOUTH).await);
    }
    for i in 0..4 {
        before.insert(issue(&web, &admin, &format!("n{i}@{OTHER_DOMAIN}"), NORTH).await);
    }
    let first = web
        .api(
            Method::GET,
            "/api/v1/certificates?limit=3",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(first.header("x-total-count"), Some("14"));

    // Page by page; between two fetches one certificate is issued and one revoked (in turn
    // one already listed and one not yet listed).
    let mut listed: Vec<String> = Vec::new();
    let mut statuses: BTreeMap<String, String> = BTreeMap::new();
    let mut issued_during = BTreeSet::new();
    let mut revoked_unseen = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    let mut uri = Some("/api/v1/certificates?limit=3".to_string());
    let mut round = 0;
    while let Some(u) = uri {
        let (rows, next) = page(&web, &admin, &u).await;
        assert!(rows.len() <= 3, "{u}: page over the limit");
        for (serial, status) in rows {
            listed.push(serial.clone());
            statuses.insert(serial, status);
        }
        uri = next;
        if uri.is_some() {
            issued_during
                .insert(issue(&web, &admin, &format!("late{round}@{DOMAIN}"), SOUTH).await);
            let target = if round % 2 == 0 {
                before
                    .iter()
                    .find(|s| !statuses.contains_key(*s) && !revoked.contains(*s))
            } else {
                before
                    .iter()
                    .find(|s| statuses.contains_key(*s) && !revoked.contains(*s))
            };
            if let Some(target) = target.cloned() {
                revoke(&web, &admin, &target).await;
                revoked.insert(target.clone());
                if !statuses.contains_key(&target) {
                    revoked_unseen.insert(target);
                }
            }
            round += 1;
        }
    }
    assert!(round >= 4, "the walk had {round} page turns");
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a certificate was listed twice: {listed:?}"
    );
    let missing: Vec<&String> = before.difference(&unique).collect();
    assert!(missing.is_empty(), "no gaps: missing {missing:?}");
    let unknown: Vec<&String> = unique
        .iter()
        .filter(|s| !before.contains(*s) && !issued_during.contains(*s))
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    assert!(!revoked_unseen.is_empty());
    for s in &revoked_unseen {
        assert_eq!(statuses[s], "revoked", "{s} was revoked before its page");
    }
    // Pages come in serial order (the cursor's order).
    let order: Vec<Vec<u8>> = listed.iter().map(|s| hex::decode(s).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{listed:?}");

    // The counters followed: the total is every certificate now.
    let all = web
        .api(Method::GET, "/api/v1/certificates", Some(&admin), None)
        .await;
    let total = before.len() + issued_during.len();
    assert_eq!(
        all.header("x-total-count"),
        Some(total.to_string().as_str())
    );
    assert_eq!(
        walk(&web, &admin, "/api/v1/certificates?limit=5")
            .await
            .len(),
        total
    );

    // The deprecated offset still pages, and links by offset.
    let (rows, next) = page(&web, &admin, "/api/v1/certificates?limit=4&offset=4").await;
    assert_eq!(rows.len(), 4);
    assert!(next.unwrap().contains("offset=8"));
}

#[tokio::test]
async fn a_cursor_never_reveals_certificates_outside_the_callers_organisations() {
    let web = world();
    let admin = web.token(Role::Admin, Scope::default());
    let mut south = BTreeSet::new();
    let mut north = BTreeSet::new();
    for i in 0..6 {
        south.insert(issue(&web, &admin, &format!("s{i}@{DOMAIN}"), SOUTH).await);
        north.insert(issue(&web, &admin, &format!("n{i}@{DOMAIN}"), NORTH).await);
    }
    let registrar = web.token(
        Role::Registrar,
        Scope {
            domains: vec!["*".into()],
            organisations: vec![NORTH.into()],
            ..Scope::default()
        },
    );
    let seen: BTreeSet<String> = walk(&web, &registrar, "/api/v1/certificates?limit=2")
        .await
        .into_iter()
        .collect();
    assert_eq!(
        seen, north,
        "the registrar's pages are its organisation's certificates"
    );

    // Cursors taken from the other organisation's serials (and every serial) start a walk
    // that still shows only the caller's certificates.
    for s in south.iter().chain(north.iter()) {
        let rows = walk(
            &web,
            &registrar,
            &format!("/api/v1/certificates?limit=2&after={}", cursor(s)),
        )
        .await;
        let want: BTreeSet<String> = north
            .iter()
            .filter(|n| hex::decode(n).unwrap() > hex::decode(s).unwrap())
            .cloned()
            .collect();
        assert_eq!(
            rows.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "after {s}"
        );
    }
    // Naming the other organisation lists nothing.
    let (rows, next) = page(
        &web,
        &registrar,
        &format!("/api/v1/certificates?organisation={SOUTH}"),
    )
    .await;
    assert!(rows.is_empty() && next.is_none(), "{rows:?}");

    // A holder moved to the other organisation moves in the index, and the counters with it.
    let moved = issue(&web, &admin, &format!("mover@{DOMAIN}"), SOUTH).await;
    let count = |org: &'static str| {
        let (web, admin) = (&web, &admin);
        async move {
            web.api(
                Method::GET,
                &format!("/api/v1/certificates?organisation={org}"),
                Some(admin),
                None,
            )
            .await
            .header("x-total-count")
            .map(str::to_string)
        }
    };
    assert_eq!(count(SOUTH).await.as_deref(), Some("7"));
    web.authority
        .transfer_holder(&op(), &format!("mover@{DOMAIN}"), NORTH)
        .unwrap();
    assert_eq!(count(SOUTH).await.as_deref(), Some("6"));
    assert_eq!(count(NORTH).await.as_deref(), Some("7"));
    let seen = walk(&web, &registrar, "/api/v1/certificates?limit=3").await;
    assert!(
        seen.contains(&moved),
        "the moved holder's certificate is north's now"
    );
    assert_eq!(seen.len(), 7);
}

#[tokio::test]
async fn a_malformed_cursor_is_a_400_naming_it() {
    let web = world();
    let admin = web.token(Role::Admin, Scope::default());
    for bad in ["!!!", "bm90LWEtc2VyaWFs", ""] {
        let r = web
            .api(
                Method::GET,
                &format!("/api/v1/certificates?after={bad}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "after={bad}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["code"], "invalid_input", "after={bad}: {}", r.body);
        assert!(
            v["message"].as_str().unwrap().contains("'after'"),
            "after={bad}: {}",
            r.body
        );
    }
    let r = web
        .api(
            Method::GET,
            &format!("/api/v1/certificates?after={}&offset=2", cursor("0a")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}
