//! Trust boundaries: organisations own their identifiers, every certificate operation is
//! scoped to the holder's organisation, and credentials follow their owners. The matrix
//! crosses every certificate route and page with every kind of principal and a holder of each
//! of two organisations, and asserts every cell (status, and for lists the exact rows); the
//! three holes the issue reported are reproduced and refused with the store, the zone and the
//! LDIF unchanged.

use std::collections::BTreeSet;

use anchorage::accounts::{Principal, Role, Scope};
use anchorage::authority::{NewUser, OrganisationChange};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::web::{hidden, Browser, Reply, Web, DOMAIN, OTHER_DOMAIN, PASSWORD};

const ORG_A: &str = "org-a";
const ORG_B: &str = "org-b";
const ALICE: &str = "alice@direct.example.com";
const BOB: &str = "bob@direct.other.example";

/// Who acts in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Member,
    Dns,
    RegistrarA,
    RegistrarB,
    DomainRegistrar,
    Unrestricted,
    Admin,
    DisabledOwner,
}

const EVERYONE: [Who; 9] = [
    Who::Anonymous,
    Who::Member,
    Who::Dns,
    Who::RegistrarA,
    Who::RegistrarB,
    Who::DomainRegistrar,
    Who::Unrestricted,
    Who::Admin,
    Who::DisabledOwner,
];

impl Who {
    fn user(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Member => Some("member"),
            Who::Dns => Some("dns"),
            Who::RegistrarA => Some("reg-a"),
            Who::RegistrarB => Some("reg-b"),
            Who::DomainRegistrar => Some("reg-domain"),
            Who::Unrestricted => Some("reg-all"),
            Who::Admin => Some("admin"),
            Who::DisabledOwner => Some("gone"),
        }
    }

    /// Whether the certificates of `holder` are this principal's to see and act on.
    fn sees(self, holder: &str) -> bool {
        match self {
            Who::Admin | Who::Unrestricted => true,
            Who::RegistrarA | Who::DomainRegistrar => holder == ALICE,
            Who::RegistrarB => holder == BOB,
            _ => false,
        }
    }

    /// Statuses for an operation on a certificate of `holder`, through the API.
    fn api_status(self, holder: &str, ok: StatusCode) -> StatusCode {
        match self {
            Who::Anonymous | Who::DisabledOwner => StatusCode::UNAUTHORIZED,
            Who::Member | Who::Dns => StatusCode::FORBIDDEN,
            w if w.sees(holder) => ok,
            _ => StatusCode::NOT_FOUND,
        }
    }

    /// Issuing a new certificate for `holder` (already bound), through the API.
    fn issue_status(self, holder: &str) -> (StatusCode, &'static str) {
        match self {
            Who::Anonymous => (StatusCode::UNAUTHORIZED, "unauthorised"),
            Who::DisabledOwner => (StatusCode::UNAUTHORIZED, "owner_disabled"),
            Who::Member | Who::Dns => (StatusCode::FORBIDDEN, "forbidden"),
            w if w.sees(holder) => (StatusCode::CREATED, ""),
            // Another organisation's holder in a domain it may issue in.
            Who::RegistrarA | Who::RegistrarB => (StatusCode::CONFLICT, "holder_owned_elsewhere"),
            // A domain outside its scope.
            _ => (StatusCode::FORBIDDEN, "forbidden"),
        }
    }
}

/// The web interface answers anonymous users with the sign-in page, other roles with 403,
/// out-of-scope certificates with 404.
fn web_status(who: Who, holder: &str, ok: StatusCode) -> StatusCode {
    match who {
        Who::Anonymous | Who::DisabledOwner => StatusCode::SEE_OTHER,
        Who::Member | Who::Dns => StatusCode::FORBIDDEN,
        w if w.sees(holder) => ok,
        _ => StatusCode::NOT_FOUND,
    }
}

struct World {
    web: Web,
    tokens: Vec<(Who, Option<String>)>,
    browsers: Vec<(Who, Option<Browser>)>,
    csr_alice: String,
    csr_bob: String,
}

fn op() -> Principal {
    Principal::operator("test")
}

fn org(web: &Web, id: &str, domains: &[&str]) {
    web.authority
        .add_organisation(
            &op(),
            id,
            OrganisationChange {
                name: Some(format!("Organisation {id}")),
                contacts: Some(vec![format!("pki@{id}.example")]),
                domains: Some(domains.iter().map(|d| d.to_string()).collect()),
            },
        )
        .unwrap();
}

fn user(web: &Web, name: &str, role: Role, scope: Scope) {
    web.authority
        .add_user(
            NewUser {
                username: name.into(),
                display_name: name.into(),
                role,
                scope,
            },
            PASSWORD,
            "test",
        )
        .unwrap();
}

fn scope_orgs(orgs: &[&str]) -> Scope {
    Scope {
        organisations: orgs.iter().map(|o| o.to_string()).collect(),
        ..Scope::default()
    }
}

fn scope_domains(domains: &[&str]) -> Scope {
    Scope {
        domains: domains.iter().map(|d| d.to_string()).collect(),
        ..Scope::default()
    }
}

/// A token created by `owner` (as the admin console does: the owner is recorded).
fn owned_token(web: &Web, owner: &str, role: Role, scope: Scope) -> String {
    web.authority
        .create_scoped_token(role, scope, "matrix", Some(30), Some(owner), "test")
        .unwrap()
        .0
        .to_string()
}

fn issue_body(holder: &str, csr: &str, organisation: Option<&str>) -> Value {
    let mut b = json!({"address": holder, "usage": "dual", "csr": csr,
        "subscriber": {"name": "Subscriber"},
        "proofing": {"method": "in-person", "evidence_reference": "case-1"}});
    if let Some(o) = organisation {
        b["organisation"] = json!(o);
    }
    b
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn code_of(r: &Reply) -> String {
    json_of(r)["code"].as_str().unwrap_or_default().to_string()
}

impl World {
    async fn new() -> World {
        // No rate limits here: the matrix issues many certificates per principal.
        let web = Web::with_config(|c| {
            c.issuance.rate_limit_per_minute = 0;
            c.issuance.rate_limit_per_day = 0;
            c.policies_dir = None;
        });
        // The shared test organisation owns both domains whole; this world divides them.
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
        org(&web, ORG_A, &[&format!("*@{DOMAIN}")]);
        org(&web, ORG_B, &[&format!("*@{DOMAIN}"), OTHER_DOMAIN]);
        user(&web, "reg-a", Role::Registrar, scope_orgs(&[ORG_A]));
        user(&web, "reg-b", Role::Registrar, scope_orgs(&[ORG_B]));
        user(
            &web,
            "reg-domain",
            Role::Registrar,
            scope_domains(&[DOMAIN]),
        );
        user(&web, "reg-all", Role::Registrar, scope_domains(&["*"]));
        user(&web, "gone", Role::Registrar, scope_domains(&["*"]));
        let csr_alice = web.csr("alice");
        let csr_bob = web.csr("bob");
        let mut tokens = Vec::new();
        let mut browsers = Vec::new();
        for who in EVERYONE {
            let token = match who {
                Who::Anonymous => None,
                Who::Member => {
                    Some(web.token(Role::Member, crate::harness::wide_scope(Role::Member)))
                }
                Who::Dns => Some(web.token(Role::DnsOperator, Scope::default())),
                Who::Admin => Some(web.token(Role::Admin, Scope::default())),
                Who::RegistrarA => Some(owned_token(
                    &web,
                    "reg-a",
                    Role::Registrar,
                    scope_domains(&["*"]),
                )),
                Who::RegistrarB => Some(owned_token(
                    &web,
                    "reg-b",
                    Role::Registrar,
                    scope_domains(&["*"]),
                )),
                Who::DomainRegistrar => Some(owned_token(
                    &web,
                    "reg-domain",
                    Role::Registrar,
                    scope_domains(&["*"]),
                )),
                Who::Unrestricted => Some(owned_token(
                    &web,
                    "reg-all",
                    Role::Registrar,
                    scope_domains(&["*"]),
                )),
                Who::DisabledOwner => Some(owned_token(
                    &web,
                    "gone",
                    Role::Registrar,
                    scope_domains(&["*"]),
                )),
            };
            tokens.push((who, token));
            let browser = match who.user() {
                Some(u) => Some(web.login(u).await),
                None => None,
            };
            browsers.push((who, browser));
        }
        let world = World {
            web,
            tokens,
            browsers,
            csr_alice,
            csr_bob,
        };
        // The holders: alice bound to A (her first certificate, by A's registrar), bob to B.
        let r = world
            .api(
                Who::RegistrarA,
                Method::POST,
                "/api/v1/certificates",
                Some(issue_body(ALICE, &world.csr_alice, None)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = world
            .api(
                Who::RegistrarB,
                Method::POST,
                "/api/v1/certificates",
                Some(issue_body(BOB, &world.csr_bob, None)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        // Then the owner of the last token is disabled: its token and its session stop.
        world
            .web
            .authority
            .set_user_disabled("gone", true, "test")
            .unwrap();
        world
    }

    fn token(&self, who: Who) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, t)| t.as_deref())
    }

    fn browser(&self, who: Who) -> Option<&Browser> {
        self.browsers
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, b)| b.as_ref())
    }

    async fn api(&self, who: Who, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.web.api(method, uri, self.token(who), body).await
    }

    fn csr(&self, holder: &str) -> &str {
        if holder == ALICE {
            &self.csr_alice
        } else {
            &self.csr_bob
        }
    }

    /// A fresh certificate of `holder`, issued by an admin (for destructive cells).
    async fn fresh(&self, holder: &str) -> String {
        let r = self
            .api(
                Who::Admin,
                Method::POST,
                "/api/v1/certificates",
                Some(issue_body(holder, self.csr(holder), None)),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        json_of(&r)["serial"].as_str().unwrap().to_string()
    }

    fn revoked(&self, serial: &str) -> bool {
        let serial = anchorage::model::Serial::parse(serial).unwrap();
        self.web
            .authority
            .danger_store()
            .unwrap()
            .revocation(&serial)
            .unwrap()
            .is_some()
    }

    fn serials_of(&self, holder: &str) -> BTreeSet<String> {
        self.web
            .authority
            .danger_store()
            .unwrap()
            .certs()
            .map(|c| c.unwrap())
            .filter(|c| c.holder.to_string() == holder)
            .map(|c| c.serial.as_str().to_string())
            .collect()
    }
}

#[tokio::test]
async fn authorisation_matrix_every_certificate_route_every_principal_both_organisations() {
    let w = World::new().await;
    let first: Vec<(&str, String)> = [ALICE, BOB]
        .into_iter()
        .map(|h| (h, w.serials_of(h).into_iter().next().unwrap()))
        .collect();
    let mut cells = 0;

    // Lists first, while each holder has exactly one certificate: the exact rows.
    for who in EVERYONE {
        let r = w.api(who, Method::GET, "/api/v1/certificates", None).await;
        let expected_status = match who {
            Who::Anonymous | Who::DisabledOwner => StatusCode::UNAUTHORIZED,
            Who::Member | Who::Dns => StatusCode::FORBIDDEN,
            _ => StatusCode::OK,
        };
        assert_eq!(r.status, expected_status, "{who:?} GET list: {}", r.body);
        if r.status == StatusCode::OK {
            let rows: BTreeSet<String> = json_of(&r)
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["serial"].as_str().unwrap().to_string())
                .collect();
            let want: BTreeSet<String> = first
                .iter()
                .filter(|(h, _)| who.sees(h))
                .map(|(_, s)| s.clone())
                .collect();
            assert_eq!(rows, want, "{who:?} list rows");
            assert_eq!(
                r.header("x-total-count"),
                Some(want.len().to_string().as_str())
            );
        }
        cells += 1;
        let page = w.web.get("/registrar/certs", w.browser(who)).await;
        let expected = match who {
            Who::Anonymous | Who::DisabledOwner => StatusCode::SEE_OTHER,
            Who::Member | Who::Dns => StatusCode::FORBIDDEN,
            _ => StatusCode::OK,
        };
        assert_eq!(page.status, expected, "{who:?} web list");
        if page.status == StatusCode::OK {
            for (h, serial) in &first {
                assert_eq!(
                    page.body.contains(serial.as_str()),
                    who.sees(h),
                    "{who:?} web list row of {h}"
                );
            }
        }
        cells += 1;
    }

    // Reads of one certificate.
    for who in EVERYONE {
        for (holder, serial) in &first {
            for (suffix, ok) in [
                ("", StatusCode::OK),
                ("/pem", StatusCode::OK),
                ("/der", StatusCode::OK),
                ("/chain", StatusCode::OK),
            ] {
                let uri = format!("/api/v1/certificates/{serial}{suffix}");
                let r = w.api(who, Method::GET, &uri, None).await;
                assert_eq!(
                    r.status,
                    who.api_status(holder, ok),
                    "{who:?} GET {uri}: {}",
                    r.body
                );
                if r.status == StatusCode::NOT_FOUND {
                    // Exactly like a serial that does not exist.
                    let none = w
                        .api(
                            who,
                            Method::GET,
                            &format!("/api/v1/certificates/0123456789abcdef{suffix}"),
                            None,
                        )
                        .await;
                    assert_eq!(code_of(&r), code_of(&none));
                }
                if suffix.is_empty() && r.status == StatusCode::OK {
                    let org = if *holder == ALICE { ORG_A } else { ORG_B };
                    assert_eq!(json_of(&r)["organisation"]["id"], json!(org));
                }
                if suffix == "/chain" && r.status == StatusCode::OK {
                    assert_eq!(r.body.matches("BEGIN CERTIFICATE").count(), 3);
                }
                cells += 1;
                let page = format!("/registrar/certs/{serial}{suffix}");
                let r = w.web.get(&page, w.browser(who)).await;
                assert_eq!(
                    r.status,
                    web_status(who, holder, StatusCode::OK),
                    "{who:?} GET {page}"
                );
                if suffix.is_empty() && r.status == StatusCode::OK {
                    let org = if *holder == ALICE { ORG_A } else { ORG_B };
                    assert!(
                        r.body.contains(&format!("({org})")),
                        "the page shows the organisation"
                    );
                }
                cells += 1;
            }
            for page in [
                format!("/registrar/certs/{serial}/revoke"),
                format!("/registrar/issue?renew={serial}"),
            ] {
                let r = w.web.get(&page, w.browser(who)).await;
                assert_eq!(
                    r.status,
                    web_status(who, holder, StatusCode::OK),
                    "{who:?} GET {page}"
                );
                cells += 1;
            }
        }
    }

    // Revocation, renewal and issuance change things: each allowed cell acts on a fresh
    // certificate, each refused one must leave it untouched.
    for who in EVERYONE {
        for holder in [ALICE, BOB] {
            let serial = w.fresh(holder).await;
            let uri = format!("/api/v1/certificates/{serial}/revoke");
            let r = w
                .api(
                    who,
                    Method::POST,
                    &uri,
                    Some(json!({"reason": "superseded"})),
                )
                .await;
            assert_eq!(
                r.status,
                who.api_status(holder, StatusCode::OK),
                "{who:?} revoke {holder}: {}",
                r.body
            );
            assert_eq!(
                w.revoked(&serial),
                r.status == StatusCode::OK,
                "{who:?} revoke {holder}"
            );
            cells += 1;

            let serial = w.fresh(holder).await;
            let page = format!("/registrar/certs/{serial}/revoke");
            let csrf = w.browser(who).map(|b| b.csrf.clone()).unwrap_or_default();
            let r = w
                .web
                .post_form(
                    &page,
                    w.browser(who),
                    &[
                        ("csrf", &csrf),
                        ("reason", "superseded"),
                        ("confirm", "yes"),
                    ],
                )
                .await;
            assert_eq!(
                r.status,
                web_status(who, holder, StatusCode::SEE_OTHER),
                "{who:?} web revoke {holder}: {}",
                r.body
            );
            assert_eq!(
                w.revoked(&serial),
                who.sees(holder),
                "{who:?} web revoke {holder}"
            );
            cells += 1;

            let before = w.serials_of(holder);
            let renew = json!({"csr": w.csr(holder), "proofing": {"method": "in-person", "evidence_reference": "renewal"}});
            let r = w
                .api(
                    who,
                    Method::POST,
                    &format!("/api/v1/certificates/{serial}/renew"),
                    Some(renew),
                )
                .await;
            assert_eq!(
                r.status,
                who.api_status(holder, StatusCode::CREATED),
                "{who:?} renew {holder}: {}",
                r.body
            );
            assert_eq!(
                w.serials_of(holder).len(),
                before.len() + usize::from(r.status == StatusCode::CREATED)
            );
            cells += 1;

            let before = w.serials_of(holder);
            let r = w
                .api(
                    who,
                    Method::POST,
                    "/api/v1/certificates",
                    Some(issue_body(holder, w.csr(holder), None)),
                )
                .await;
            let (status, code) = who.issue_status(holder);
            assert_eq!(r.status, status, "{who:?} issue for {holder}: {}", r.body);
            if !code.is_empty() {
                assert_eq!(code_of(&r), code, "{who:?} issue for {holder}");
            }
            assert_eq!(
                w.serials_of(holder).len(),
                before.len() + usize::from(r.status == StatusCode::CREATED)
            );
            cells += 1;

            let before = w.serials_of(holder);
            let r = web_issue(&w, who, holder).await;
            let want = match who {
                Who::Anonymous | Who::DisabledOwner => StatusCode::SEE_OTHER,
                _ => match who.issue_status(holder).0 {
                    StatusCode::CREATED => StatusCode::OK,
                    s => s,
                },
            };
            assert_eq!(r.status, want, "{who:?} web issue for {holder}: {}", r.body);
            assert_eq!(
                w.serials_of(holder).len(),
                before.len() + usize::from(r.status == StatusCode::OK)
            );
            cells += 1;
        }
    }
    // 9 principals: 2 list cells; per holder 8 read cells + 2 page cells + 5 changing cells.
    assert_eq!(cells, 9 * (2 + 2 * (8 + 2 + 5)));
    println!("authorisation matrix: {cells} cells asserted");
}

/// The issuance form as a browser posts it (fresh nonce, the session's CSRF token).
async fn web_issue(w: &World, who: Who, holder: &str) -> Reply {
    match w.browser(who) {
        None => {
            w.web
                .post_form("/registrar/issue", None, &[("csrf", "")])
                .await
        }
        Some(b) => {
            let nonce = anchorage::accounts::random_secret().unwrap();
            w.web
                .post_multipart(
                    "/registrar/issue",
                    b,
                    &[
                        ("csrf", &b.csrf),
                        ("nonce", &nonce),
                        ("address", holder),
                        ("domain", ""),
                        ("subscriber_name", "Subscriber"),
                        ("organisation", ""),
                        ("usage", "dual"),
                        ("level_of_assurance", ""),
                        ("category", ""),
                        ("proofing_method", "in-person"),
                        ("evidence_reference", "case-9"),
                        ("key_source", "csr"),
                        ("csr", w.csr(holder)),
                        ("encryption_csr", ""),
                    ],
                    &[],
                )
                .await
        }
    }
}

/// What must not change when a request is refused: the store's certificates, the zone file
/// and the LDIF export.
fn published(w: &World) -> (BTreeSet<String>, String, String) {
    let a = &w.web.authority;
    let certs = a
        .danger_store()
        .unwrap()
        .certs()
        .map(|c| c.unwrap().serial.as_str().to_string())
        .collect();
    let domain = anchorage::model::HealthDomain::parse(DOMAIN).unwrap();
    let zone = String::from_utf8(a.zone_text(&domain).unwrap().1).unwrap();
    let ldif = String::from_utf8(a.ldif_bytes(None).unwrap().1).unwrap();
    (certs, zone, ldif)
}

#[tokio::test]
async fn the_three_reported_holes_are_closed() {
    let w = World::new().await;
    let alice = w.serials_of(ALICE).into_iter().next().unwrap();
    // B's registrar may issue in DOMAIN (org B holds addresses there too).
    let before = published(&w);

    // 1. Listing, opening and revoking another organisation's certificate in its own domain.
    let list = w
        .api(
            Who::RegistrarB,
            Method::GET,
            &format!("/api/v1/certificates?domain={DOMAIN}"),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        json_of(&list).as_array().unwrap().len(),
        0,
        "B sees none of A's certificates"
    );
    let show = w
        .api(
            Who::RegistrarB,
            Method::GET,
            &format!("/api/v1/certificates/{alice}"),
            None,
        )
        .await;
    assert_eq!(show.status, StatusCode::NOT_FOUND);
    let revoke = w
        .api(
            Who::RegistrarB,
            Method::POST,
            &format!("/api/v1/certificates/{alice}/revoke"),
            Some(json!({"reason": "key-compromise"})),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND, "{}", revoke.body);
    assert!(!w.revoked(&alice));

    // 2. Issuing for an address A holds by writing B's name (or A's!) into the request.
    let csr = w.web.csr("mallory");
    for named in [Some(ORG_B), Some("Organisation org-b"), None, Some(ORG_A)] {
        let mut body = issue_body(ALICE, &csr, None);
        if let Some(n) = named {
            body["subscriber"]["organization"] = json!(n);
        }
        let r = w
            .api(
                Who::RegistrarB,
                Method::POST,
                "/api/v1/certificates",
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{named:?}: {}", r.body);
        assert_eq!(code_of(&r), "holder_owned_elsewhere");
        assert!(
            !r.body.contains(ORG_A),
            "a stranger is not told who owns it: {}",
            r.body
        );
    }
    // Even an admin cannot move alice by naming another organisation in a request.
    let r = w
        .api(
            Who::Admin,
            Method::POST,
            "/api/v1/certificates",
            Some(issue_body(ALICE, &w.csr_alice, Some(ORG_B))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(code_of(&r), "holder_owned_elsewhere");

    // 3. A domain-bound certificate for the whole domain by an organisation's registrar.
    let mut body = issue_body(ALICE, &csr, None);
    body.as_object_mut().unwrap().remove("address");
    body["domain"] = json!(DOMAIN);
    for who in [Who::RegistrarA, Who::RegistrarB] {
        let r = w
            .api(
                who,
                Method::POST,
                "/api/v1/certificates",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who:?}: {}", r.body);
        assert_eq!(code_of(&r), "domain_not_covered");
    }
    let after = published(&w);
    assert_eq!(before, after, "store, zone and LDIF unchanged");
    assert!(
        after.1.contains("alice"),
        "the zone holds alice's one record"
    );
    assert_eq!(
        after.1.matches("alice.direct.example.com").count(),
        1,
        "{}",
        after.1
    );
}

#[tokio::test]
async fn tokens_follow_their_owner_and_scopes_must_name_what_exists() {
    let w = World::new().await;
    let a = &w.web.authority;
    // A token created by an admin stops when the admin is disabled.
    user(&w.web, "boss", Role::Admin, Scope::default());
    let token = owned_token(&w.web, "boss", Role::Registrar, scope_domains(&["*"]));
    let r = w
        .web
        .api(Method::GET, "/api/v1/certificates", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(json_of(&r).as_array().unwrap().len(), 2);
    a.set_user_disabled("boss", true, "test").unwrap();
    let r = w
        .web
        .api(Method::GET, "/api/v1/certificates", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(code_of(&r), "owner_disabled");
    a.set_user_disabled("boss", false, "test").unwrap();

    // Narrowing the owner narrows the token at once: admin -> registrar of A.
    a.edit_user(
        "boss",
        Some(Role::Registrar),
        Some(scope_orgs(&[ORG_A])),
        "test",
    )
    .unwrap();
    let r = w
        .web
        .api(Method::GET, "/api/v1/certificates", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rows = json_of(&r);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["holder"], json!(ALICE));
    // An admin token of an owner who is no longer an admin is refused.
    a.edit_user("boss", Some(Role::Admin), Some(Scope::default()), "test")
        .unwrap();
    let admin_token = owned_token(&w.web, "boss", Role::Admin, Scope::default());
    a.edit_user(
        "boss",
        Some(Role::Registrar),
        Some(scope_domains(&["*"])),
        "test",
    )
    .unwrap();
    let r = w
        .web
        .api(Method::GET, "/api/v1/users", Some(&admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(code_of(&r), "owner_disabled");

    // Intersection: a token for DOMAIN of an owner limited to OTHER_DOMAIN sees nothing.
    user(
        &w.web,
        "other",
        Role::Registrar,
        scope_domains(&[OTHER_DOMAIN]),
    );
    let t = owned_token(&w.web, "other", Role::Registrar, scope_domains(&[DOMAIN]));
    let r = w
        .web
        .api(Method::GET, "/api/v1/certificates", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(json_of(&r).as_array().unwrap().len(), 0, "{}", r.body);
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&t),
            Some(issue_body(
                "new@direct.example.com",
                &w.web.csr("n"),
                Some(ORG_A),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let t = owned_token(&w.web, "other", Role::Registrar, scope_domains(&["*"]));
    let r = w
        .web
        .api(Method::GET, "/api/v1/certificates", Some(&t), None)
        .await;
    let rows = json_of(&r);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["holder"], json!(BOB));

    // Registrar and member tokens need an explicit scope; names must exist (400).
    let admin = w.token(Who::Admin).unwrap();
    for (body, why) in [
        (json!({"role": "registrar", "label": "x"}), "no scope"),
        (json!({"role": "member", "label": "x"}), "no scope"),
        (
            json!({"role": "registrar", "scope": {"organisations": ["no-such-org"]}}),
            "unknown organisation",
        ),
        (
            json!({"role": "registrar", "scope": {"domains": ["unmanaged.example"]}}),
            "unknown domain",
        ),
        (
            json!({"role": "member", "scope": {"bundles": ["no-such-bundle"]}}),
            "unknown bundle",
        ),
    ] {
        let r = w
            .web
            .api(Method::POST, "/api/v1/tokens", Some(admin), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.body);
        assert_eq!(code_of(&r), "invalid_input");
    }
    let r = w
        .web
        .api(Method::POST, "/api/v1/users", Some(admin), Some(json!({"username": "nobody", "role": "registrar", "scope": {"organisations": ["ghost"]}})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/tokens",
            Some(admin),
            Some(json!({"role": "registrar", "scope": {"organisations": [ORG_A]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn idempotency_keys_and_the_form_nonce_issue_once() {
    let w = World::new().await;
    let csr = w.web.csr("carol");
    let body = issue_body("carol@direct.example.com", &csr, Some(ORG_A));
    let send = |key: &'static str, body: Value| {
        let token = w.token(Who::RegistrarA).unwrap().to_string();
        let web = &w.web;
        async move {
            web.request(
                Method::POST,
                "/api/v1/certificates",
                &[
                    ("authorization", format!("Bearer {token}")),
                    ("idempotency-key", key.to_string()),
                ],
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
                "192.0.2.20",
            )
            .await
        }
    };
    let first = send("order-42", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = send("order-42", body.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(json_of(&again)["serial"], json_of(&first)["serial"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        w.serials_of("carol@direct.example.com").len(),
        1,
        "one certificate"
    );
    let mut other = body.clone();
    other["usage"] = json!("signing");
    let clash = send("order-42", other).await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code_of(&clash), "idempotency_key_reused");
    let new_key = send("order-43", body).await;
    assert_eq!(new_key.status, StatusCode::CREATED);
    assert_eq!(w.serials_of("carol@direct.example.com").len(), 2);

    // The web form: the same nonce twice (a reload, a double click) issues once.
    let b = w.browser(Who::RegistrarA).unwrap();
    let form = w.web.get("/registrar/issue", Some(b)).await;
    let nonce = hidden(&form.body, "nonce");
    assert!(nonce.len() >= 32);
    let fields: Vec<(&str, &str)> = vec![
        ("csrf", &b.csrf),
        ("nonce", &nonce),
        ("address", "dave@direct.example.com"),
        ("subscriber_name", "Dave"),
        ("organisation", ORG_A),
        ("usage", "dual"),
        ("proofing_method", "in-person"),
        ("evidence_reference", "case-7"),
        ("key_source", "generate"),
    ];
    let post = || w.web.post_multipart("/registrar/issue", b, &fields, &[]);
    let (one, two) = tokio::join!(post(), post());
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(two.status, StatusCode::OK, "{}", two.body);
    assert_eq!(
        w.serials_of("dave@direct.example.com").len(),
        1,
        "a double submit issues once"
    );
    let replayed = [&one, &two]
        .iter()
        .filter(|r| r.body.contains("id=\"replayed\""))
        .count();
    assert_eq!(
        replayed, 1,
        "one of the two answers says it is the first result again"
    );
    let reload = post().await;
    assert!(reload.body.contains("id=\"replayed\""));
    assert_eq!(w.serials_of("dave@direct.example.com").len(), 1);
}

#[tokio::test]
async fn rate_limits_answer_429_and_are_audited_and_keys_are_not_reused() {
    let web = Web::with_config(|c| {
        c.issuance.rate_limit_per_minute = 2;
        c.issuance.rate_limit_per_day = 100;
        c.policies_dir = None;
    });
    let token = web.token(Role::Registrar, crate::harness::wide_scope(Role::Registrar));
    let mut codes = Vec::new();
    for i in 0..3 {
        let csr = web.csr(&format!("r{i}"));
        let r = web
            .api(
                Method::POST,
                "/api/v1/certificates",
                Some(&token),
                Some(issue_body(&format!("r{i}@{DOMAIN}"), &csr, None)),
            )
            .await;
        codes.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code_of(&r), "rate_limited");
            let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
        }
    }
    assert_eq!(
        codes,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let audit = web
        .authority
        .danger_store()
        .unwrap()
        .audit_entries()
        .map(|e| e.unwrap())
        .filter(|e| e.action == "cert.rate_limited")
        .count();
    assert_eq!(audit, 1, "the refusal is audited");
    // A minute later the window has room again.
    web.advance(time::Duration::seconds(61));

    // One key, one holder: the same CSR for another holder is refused; for the same holder
    // (a renewal with the same key) it is not.
    let csr = web.csr("shared");
    let r = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&token),
            Some(issue_body(&format!("k1@{DOMAIN}"), &csr, None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&token),
            Some(issue_body(&format!("k2@{DOMAIN}"), &csr, None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        json_of(&r)["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == "key_reused"),
        "{}",
        r.body
    );
    web.advance(time::Duration::seconds(61));
    let r = web
        .api(
            Method::POST,
            "/api/v1/certificates",
            Some(&token),
            Some(issue_body(&format!("k1@{DOMAIN}"), &csr, None)),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// A store written by the previous release: no organisation records, no holder bindings, no
/// key index, organisations as free text on certificates and in scopes. Built here from a
/// store of this release by taking those away again with sled itself.
#[tokio::test]
async fn a_store_of_the_previous_release_is_migrated() {
    use anchorage::authority::{Authority, InitOptions};
    use anchorage::clock::SystemClock;
    use anchorage::config::Config;
    use anchorage::keyseal::Passphrase;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        managed_domains: vec![anchorage::model::HealthDomain::parse(DOMAIN).unwrap()],
        ..Config::default()
    };
    let pass = Passphrase::new("migration test passphrase".into()).unwrap();
    let csr = |name: &str| {
        let key = dir.path().join(format!("{name}.key"));
        let req = dir.path().join(format!("{name}.csr"));
        crate::tools::run_in(
            dir.path(),
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                req.to_str().unwrap(),
                "-subj",
                "/CN=m",
            ],
        )
        .assert_success("openssl req");
        std::fs::read(req).unwrap()
    };
    let serial_of_carol_2;
    {
        let a = Authority::open(config.clone(), Arc::new(SystemClock)).unwrap();
        a.init(InitOptions::default(), &pass, "test").unwrap();
        a.edit_organisation(
            &op(),
            "default",
            OrganisationChange {
                domains: Some(vec![]),
                ..OrganisationChange::default()
            },
        )
        .unwrap();
        for (id, name) in [("good-clinic", "Good Clinic"), ("bad-clinic", "Bad Clinic")] {
            a.add_organisation(
                &op(),
                id,
                OrganisationChange {
                    name: Some(name.into()),
                    contacts: None,
                    domains: Some(vec![format!("*@{DOMAIN}")]),
                },
            )
            .unwrap();
        }
        let issue = |who: &str, org: &str, key: Vec<u8>| {
            let req = anchorage::policy::issuance::IssueRequest {
                address: Some(format!("{who}@{DOMAIN}")),
                domain: None,
                usage: "dual".into(),
                profile: None,
                category: None,
                key: anchorage::policy::issuance::KeySource::Csr {
                    signing: key,
                    encryption: None,
                },
                subscriber: anchorage::policy::issuance::Subscriber {
                    name: who.into(),
                    organization: None,
                },
                organisation: Some(org.into()),
                registrar: "test".into(),
                proofing: anchorage::policy::issuance::Proofing {
                    method: "in-person".into(),
                    level_of_assurance: None,
                    evidence_reference: "m".into(),
                },
            };
            a.issue(&req, None).unwrap().certs.remove(0).serial
        };
        issue("alice", "good-clinic", csr("alice"));
        issue("bob", "bad-clinic", csr("bob"));
        issue("carol", "good-clinic", csr("carol1"));
        serial_of_carol_2 = issue("carol", "good-clinic", csr("carol2"));
        issue("dave", "good-clinic", csr("dave"));
        user_in(&a, "reg", Role::Registrar, scope_orgs(&["good-clinic"]));
        user_in(&a, "old", Role::Registrar, scope_domains(&["*"]));
    }
    // Back to the old format.
    {
        // sled lets go of its lock when its background flusher has stopped.
        let db = (0..100)
            .find_map(|_| {
                sled::open(dir.path().join("data/store"))
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(100)))
                    .ok()
            })
            .expect("the store opens once the authority is gone");
        for tree in ["organisations", "holders", "key_holders", "idempotency"] {
            assert!(db.drop_tree(tree).unwrap(), "{tree}");
        }
        let meta = db.open_tree("meta").unwrap();
        meta.remove("schema").unwrap();
        let certs = db.open_tree("certs").unwrap();
        for item in certs.iter() {
            let (k, v) = item.unwrap();
            let mut rec: Value = serde_json::from_slice(&v).unwrap();
            let holder = rec["holder"].as_str().unwrap().to_string();
            let serial = rec["serial"].as_str().unwrap().to_string();
            // Carol's newer certificate named another organisation; dave's none.
            if serial == serial_of_carol_2.as_str() {
                rec["subscriber"]["organization"] = json!("Bad Clinic");
            }
            if holder.starts_with("dave@") {
                rec["subscriber"]
                    .as_object_mut()
                    .unwrap()
                    .remove("organization");
            }
            certs.insert(k, serde_json::to_vec(&rec).unwrap()).unwrap();
        }
        let users = db.open_tree("users").unwrap();
        for (name, orgs) in [
            ("reg", json!(["Good Clinic"])),
            ("old", json!(["Nameless Practice"])),
        ] {
            let mut u: Value = serde_json::from_slice(&users.get(name).unwrap().unwrap()).unwrap();
            u["scope"]["organisations"] = orgs;
            users.insert(name, serde_json::to_vec(&u).unwrap()).unwrap();
        }
        db.flush().unwrap();
    }
    // The new release opens it and migrates; a domain added at the upgrade, which nobody holds
    // anything in, goes to the default organisation so issuance there keeps working.
    let mut config = config;
    config
        .managed_domains
        .push(anchorage::model::HealthDomain::parse(OTHER_DOMAIN).unwrap());
    // The migration writes audit entries, and the audit log is keyed: the passphrase must be
    // at hand (as `passphrase_file`, as an operator's configuration has it).
    let pass_file = dir.path().join("passphrase");
    std::fs::write(&pass_file, pass.expose()).unwrap();
    std::fs::set_permissions(
        &pass_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    config.passphrase_file = Some(pass_file);
    let a = open_retrying(&config);
    let mut ids: Vec<(String, String)> = a
        .organisations()
        .unwrap()
        .into_iter()
        .map(|o| (o.id, o.name))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("bad-clinic".to_string(), "Bad Clinic".to_string()),
            ("default".into(), "anchorage evaluation".into()),
            ("good-clinic".into(), "Good Clinic".into()),
            ("nameless-practice".into(), "Nameless Practice".into()),
            ("unassigned".into(), "Unassigned (migrated)".into()),
        ]
    );
    let bound = |h: &str| {
        a.danger_store()
            .unwrap()
            .holder_binding(&format!("{h}@{DOMAIN}"))
            .unwrap()
            .unwrap()
    };
    assert_eq!(a.organisation("default").unwrap().domains, [OTHER_DOMAIN]);
    assert_eq!(bound("alice").organisation, "good-clinic");
    assert!(bound("alice").resolved());
    assert_eq!(bound("bob").organisation, "bad-clinic");
    assert_eq!(
        bound("carol").organisation,
        "bad-clinic",
        "the newest certificate's"
    );
    assert!(!bound("carol").resolved());
    assert!(!bound("dave").resolved());
    assert_eq!(a.user("reg").unwrap().scope.organisations, ["good-clinic"]);
    assert_eq!(
        a.user("old").unwrap().scope.organisations,
        ["nameless-practice"]
    );
    assert!(a
        .danger_store()
        .unwrap()
        .audit_entries()
        .any(|e| e.unwrap().action == "store.migrate"));
    assert!(a.verify_audit().is_ok());
    // Keys were indexed: alice's key for another holder is refused.
    let r = a.issue(
        &anchorage::policy::issuance::IssueRequest {
            address: Some(format!("eve@{DOMAIN}")),
            domain: None,
            usage: "dual".into(),
            profile: None,
            category: None,
            key: anchorage::policy::issuance::KeySource::Csr {
                signing: std::fs::read(dir.path().join("alice.csr")).unwrap(),
                encryption: None,
            },
            subscriber: anchorage::policy::issuance::Subscriber {
                name: "eve".into(),
                organization: None,
            },
            organisation: Some("good-clinic".into()),
            registrar: "test".into(),
            proofing: anchorage::policy::issuance::Proofing {
                method: "in-person".into(),
                level_of_assurance: None,
                evidence_reference: "m".into(),
            },
        },
        None,
    );
    match r {
        Err(anchorage::error::Error::Denied(d)) => {
            assert!(d.codes().contains(&"key_reused"), "{d}")
        }
        other => panic!(
            "expected key_reused, got {:?}",
            other.map(|o| o.certs.len())
        ),
    }
    // The registrar of Good Clinic sees alice, not the unresolved carol, until an admin settles it.
    let reg = a.user_principal(&a.user("reg").unwrap()).unwrap();
    let seen = |a: &Authority| -> Vec<String> {
        a.certs_for(&reg, &anchorage::authority::CertFilter::default())
            .unwrap()
            .into_iter()
            .map(|v| v.record.holder.to_string())
            .collect()
    };
    assert_eq!(seen(&a), [format!("alice@{DOMAIN}")]);
    // An admin's page (organisations merged from the index) marks the unsettled holders.
    let unresolved = |a: &Authority| -> Vec<(String, bool)> {
        let page = a
            .cert_page_for(
                &anchorage::accounts::Principal::operator("test"),
                &anchorage::authority::CertFilter::default(),
                anchorage::authority::PageStart::After(None),
                100,
            )
            .unwrap();
        let mut marks: Vec<(String, bool)> = page
            .items
            .iter()
            .map(|v| {
                let org = v
                    .organisation
                    .as_ref()
                    .expect("every holder has an organisation");
                (v.record.holder.to_string(), org.unresolved)
            })
            .collect();
        marks.sort();
        marks.dedup();
        marks
    };
    assert_eq!(
        unresolved(&a),
        [
            (format!("alice@{DOMAIN}"), false),
            (format!("bob@{DOMAIN}"), false),
            (format!("carol@{DOMAIN}"), true),
            (format!("dave@{DOMAIN}"), true)
        ]
    );
    drop(a);
    // `anchorage org check` lists the two unsettled holders.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["org", "check", "-o", "json"])
        .env_remove("ANCHORAGE_PASSPHRASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let holders: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["holder"].as_str().unwrap())
        .collect();
    assert_eq!(
        holders,
        [format!("carol@{DOMAIN}"), format!("dave@{DOMAIN}")]
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "holder",
            "transfer",
            &format!("carol@{DOMAIN}"),
            "--to",
            "good-clinic",
            "-o",
            "json",
        ])
        .env("ANCHORAGE_PASSPHRASE", pass.expose())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = open_retrying(&config);
    let mut now_seen = seen(&a);
    now_seen.sort();
    assert_eq!(
        now_seen,
        [
            format!("alice@{DOMAIN}"),
            format!("carol@{DOMAIN}"),
            format!("carol@{DOMAIN}")
        ]
    );
    assert!(a
        .danger_store()
        .unwrap()
        .audit_entries()
        .any(|e| e.unwrap().action == "holder.transfer"));
    // Settled: carol is no longer marked, dave still is.
    assert_eq!(
        unresolved(&a),
        [
            (format!("alice@{DOMAIN}"), false),
            (format!("bob@{DOMAIN}"), false),
            (format!("carol@{DOMAIN}"), false),
            (format!("dave@{DOMAIN}"), true)
        ]
    );
}

fn user_in(a: &anchorage::authority::Authority, name: &str, role: Role, scope: Scope) {
    a.add_user(
        NewUser {
            username: name.into(),
            display_name: name.into(),
            role,
            scope,
        },
        PASSWORD,
        "test",
    )
    .unwrap();
}

/// `anchorage org ...` and `holder ...` on the store; the binding in `cert show -o json`; every
/// change audited; bad entries refused with a clear code and nothing stored.
#[test]
fn organisations_are_managed_on_the_cli_and_audited() {
    use crate::harness::{Ca, KeyAlg};
    let ca = Ca::init(&[DOMAIN, OTHER_DOMAIN]);
    // `init` made the default organisation owning both domains.
    let list = ca.json(&["org", "list"]);
    assert_eq!(list[0]["id"], json!("default"));
    assert_eq!(list[0]["domains"], json!([DOMAIN, OTHER_DOMAIN]));
    // A whole domain belongs to one organisation: taking part of it is refused until the
    // default organisation lets go.
    let e = ca.json_err(&[
        "org",
        "add",
        "clinic",
        "--name",
        "Good Clinic",
        "--domain",
        &format!("*@{DOMAIN}"),
    ]);
    assert_eq!(e["code"], json!("conflict"), "{e}");
    ca.json(&["org", "edit", "default", "--domain", OTHER_DOMAIN]);
    let clinic = ca.json(&[
        "org",
        "add",
        "clinic",
        "--name",
        "Good Clinic",
        "--contact",
        "pki@good.example",
        "--domain",
        &format!("*@{DOMAIN}"),
        "--domain",
        &format!("dr-*@{DOMAIN}"),
    ]);
    assert_eq!(
        clinic["domains"],
        json!([format!("*@{DOMAIN}"), format!("dr-*@{DOMAIN}")])
    );
    for (args, code) in [
        (
            vec!["org", "add", "Bad Id", "--domain", DOMAIN],
            "invalid_input",
        ),
        (
            vec!["org", "add", "elsewhere", "--domain", "x.example.org"],
            "invalid_input",
        ),
        (vec!["org", "add", "clinic"], "conflict"),
        (vec!["org", "show", "nobody"], "not_found"),
    ] {
        let e = ca.json_err(&args);
        assert_eq!(e["code"], json!(code), "{args:?}: {e}");
    }
    assert_eq!(
        ca.json(&["org", "show", "clinic"])["contacts"],
        json!(["pki@good.example"])
    );

    // The first certificate binds the holder; `cert show` says to whom.
    let csr = ca.csr("jones", KeyAlg::Rsa2048);
    let issued = ca.issue_json(&[
        "--address",
        &format!("jones@{DOMAIN}"),
        "--usage",
        "dual",
        "--csr",
        &csr,
        "--organisation",
        "clinic",
        "--out",
        "jones.pem",
    ]);
    let serial = issued["serial"].as_str().unwrap().to_string();
    let shown = ca.json(&["cert", "show", &serial]);
    assert_eq!(
        shown["organisation"],
        json!({"id": "clinic", "name": "Good Clinic"})
    );
    // The certificate names the organisation as its record says.
    let subject = crate::tools::run_in(
        ca.dir(),
        "openssl",
        &["x509", "-in", "jones.pem", "-noout", "-subject"],
    );
    assert!(subject.stdout.contains("Good Clinic"), "{}", subject.stdout);
    assert_eq!(
        ca.json(&["holder", "show", &format!("jones@{DOMAIN}")])["organisation"],
        json!("clinic")
    );
    // Naming another organisation for a bound holder is refused; so is moving it to an
    // organisation whose domains do not cover it.
    let csr2 = ca.csr("jones2", KeyAlg::Rsa2048);
    let e = ca.json_err(&[
        "cert",
        "issue",
        "--address",
        &format!("jones@{DOMAIN}"),
        "--usage",
        "dual",
        "--csr",
        &csr2,
        "--organisation",
        "default",
    ]);
    assert_eq!(e["code"], json!("holder_owned_elsewhere"), "{e}");
    let e = ca.json_err(&[
        "holder",
        "transfer",
        &format!("jones@{DOMAIN}"),
        "--to",
        "default",
    ]);
    assert_eq!(e["code"], json!("holder_outside_organisation"), "{e}");
    // Disabled: nothing more is issued for its holders; enabled again, it works.
    ca.json(&["org", "disable", "clinic"]);
    let e = ca.json_err(&[
        "cert",
        "issue",
        "--address",
        &format!("jones@{DOMAIN}"),
        "--usage",
        "dual",
        "--csr",
        &csr2,
    ]);
    assert_eq!(e["code"], json!("organisation_disabled"), "{e}");
    ca.json(&["org", "enable", "clinic"]);
    ca.issue_json(&[
        "--address",
        &format!("jones@{DOMAIN}"),
        "--usage",
        "dual",
        "--csr",
        &csr2,
        "--out",
        "jones2.pem",
    ]);
    assert_eq!(
        ca.json(&["cert", "list", "--organisation", "clinic"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let out = ca.path("audit.jsonl");
    ca.run(&["audit", "export", "--out", out.to_str().unwrap()])
        .assert_success("audit export");
    let actions: Vec<String> = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for want in [
        "org.create",
        "org.edit",
        "org.disable",
        "org.enable",
        "cert.issue",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} audited: {actions:?}"
        );
    }
    assert!(ca.json(&["audit", "verify"])["entries"].as_u64().unwrap() > 5);
}

/// The API and the admin page for organisations; registrars see only theirs.
#[tokio::test]
async fn organisations_through_the_api_and_the_admin_page() {
    let w = World::new().await;
    let admin = w.token(Who::Admin).unwrap();
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/organisations",
            Some(admin),
            Some(
                json!({"id": "hisp", "name": "The HISP", "domains": [format!("*@{OTHER_DOMAIN}")]}),
            ),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "whole domain of org-b: {}",
        r.body
    );
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/organisations",
            Some(admin),
            Some(json!({"id": "hisp", "name": "The HISP", "contacts": ["ops@hisp.example"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/organisations/hisp",
            Some(admin),
            Some(json!({"domains": [format!("ops-*@{DOMAIN}")]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(json_of(&r)["domains"], json!([format!("ops-*@{DOMAIN}")]));
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/organisations/hisp/disable",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(json_of(&r)["disabled"], json!(true));
    // A registrar of A lists only A; another organisation is "not found"; it may not create.
    let reg_a = w.token(Who::RegistrarA).unwrap();
    let r = w
        .web
        .api(Method::GET, "/api/v1/organisations", Some(reg_a), None)
        .await;
    let ids: Vec<String> = json_of(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [ORG_A]);
    let r = w
        .web
        .api(
            Method::GET,
            "/api/v1/organisations/org-b",
            Some(reg_a),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .web
        .api(
            Method::POST,
            "/api/v1/organisations",
            Some(reg_a),
            Some(json!({"id": "mine"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .web
        .api(
            Method::POST,
            &format!("/api/v1/holders/{ALICE}/transfer"),
            Some(reg_a),
            Some(json!({"organisation": ORG_B})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The admin moves alice to B: A's registrar no longer sees her, B's does.
    let r = w
        .web
        .api(
            Method::POST,
            &format!("/api/v1/holders/{ALICE}/transfer"),
            Some(admin),
            Some(json!({"organisation": ORG_B})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = |t: &str| {
        let t = t.to_string();
        let web = &w.web;
        async move {
            let r = web
                .api(Method::GET, "/api/v1/certificates", Some(&t), None)
                .await;
            json_of(&r)
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["holder"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(list(reg_a).await.is_empty());
    // Listings come in serial order (cursor pages): compare the holders, not their order.
    let mut holders = list(w.token(Who::RegistrarB).unwrap()).await;
    holders.sort();
    assert_eq!(holders, [ALICE.to_string(), BOB.to_string()]);
    // The admin page lists them and saves a new one (CSRF-checked form).
    let b = w.browser(Who::Admin).unwrap();
    let page = w.web.get("/admin/organisations", Some(b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Organisation org-a") && page.body.contains("The HISP"));
    let r = w
        .web
        .post_form(
            "/admin/organisations",
            Some(b),
            &[
                ("csrf", &b.csrf),
                ("id", "lab"),
                ("name", "City Lab"),
                ("domains", &format!("lab-*@{DOMAIN}")),
                ("contacts", "lab@city.example"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        w.web.authority.organisation("lab").unwrap().name,
        "City Lab"
    );
    let r = w
        .web
        .post_form(
            "/admin/organisations",
            Some(b),
            &[("csrf", &b.csrf), ("id", "bad"), ("domains", OTHER_DOMAIN)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"org-error\""));
    let reg_page = w
        .web
        .get("/admin/organisations", w.browser(Who::RegistrarA))
        .await;
    assert_eq!(reg_page.status, StatusCode::FORBIDDEN);
}

/// Opens the store once the previous holder of its lock (a sled flusher, a child process) has
/// let go.
fn open_retrying(config: &anchorage::config::Config) -> anchorage::authority::Authority {
    for _ in 0..100 {
        match anchorage::authority::Authority::open(
            config.clone(),
            std::sync::Arc::new(anchorage::clock::SystemClock),
        ) {
            Ok(a) => return a,
            Err(anchorage::error::Error::Locked(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store stayed locked");
}

/// The `cert` commands go through a running `serve` (its control token: the operator), or act
/// as a registrar with `ANCHORAGE_TOKEN`: then the server applies that registrar's scope, and
/// another organisation's certificate is "not found" to `cert show` and `cert revoke`.
#[test]
fn cli_forwarding_applies_the_callers_scope() {
    use crate::server::{anchorage, cli_json, Server};
    const PASS: &str = "cli forwarding test passphrase";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}", crate::tools::free_port());
    cli_json(
        &data,
        PASS,
        &["init", "--managed-domain", DOMAIN, "--public-url", &url],
    );
    cli_json(
        &data,
        PASS,
        &[
            "org",
            "edit",
            "default",
            "--domain",
            &format!("ops-*@{DOMAIN}"),
        ],
    );
    for id in [ORG_A, ORG_B] {
        cli_json(
            &data,
            PASS,
            &["org", "add", id, "--domain", &format!("*@{DOMAIN}")],
        );
    }
    let server = Server::start(&data, PASS);
    let base = format!("http://{}", server.addr);
    // Users, tokens and certificates through the running server (the control token).
    for (user, org) in [("reg-a", ORG_A), ("reg-b", ORG_B)] {
        let mut add = anchorage(&data, PASS);
        add.env("ANCHORAGE_USER_PASSWORD", PASSWORD).args([
            "-o",
            "json",
            "user",
            "add",
            user,
            "--role",
            "registrar",
            "--organisation",
            org,
        ]);
        assert!(add.output().unwrap().status.success());
    }
    let token_of = |user: &str| {
        // Made by the operator for each organisation's registrar desk.
        let org = if user == "reg-a" { ORG_A } else { ORG_B };
        cli_json(
            &data,
            PASS,
            &[
                "token",
                "create",
                "--role",
                "registrar",
                "--organisation",
                org,
            ],
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (token_a, token_b) = (token_of("reg-a"), token_of("reg-b"));
    let csr = |name: &str| {
        crate::tools::run_in(
            dir.path(),
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/CN=f",
            ],
        )
        .assert_success("openssl req");
        dir.path().join(format!("{name}.csr")).display().to_string()
    };
    let as_token = |token: &str, args: &[&str]| {
        let mut cmd = anchorage(&data, PASS);
        cmd.env("ANCHORAGE_URL", &base)
            .env("ANCHORAGE_TOKEN", token)
            .args(["-o", "json"])
            .args(args);
        let out = cmd.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), v)
    };
    let (ok, issued) = as_token(
        &token_a,
        &[
            "cert",
            "issue",
            "--address",
            ALICE,
            "--usage",
            "dual",
            "--csr",
            &csr("alice"),
        ],
    );
    assert!(ok, "{issued}");
    let alice = issued["serial"].as_str().unwrap().to_string();
    let (ok, v) = as_token(
        &token_b,
        &[
            "cert",
            "issue",
            "--address",
            &format!("bob@{DOMAIN}"),
            "--usage",
            "dual",
            "--csr",
            &csr("bob"),
        ],
    );
    assert!(ok, "{v}");

    // B cannot see, show or revoke A's certificate, nor issue for A's holder.
    let (ok, list) = as_token(&token_b, &["cert", "list"]);
    assert!(ok);
    let holders: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["holder"].as_str().unwrap())
        .collect();
    assert_eq!(holders, [format!("bob@{DOMAIN}")]);
    let (ok, e) = as_token(&token_b, &["cert", "show", &alice]);
    assert!(!ok);
    assert_eq!(e["code"], json!("not_found"), "{e}");
    let (ok, e) = as_token(
        &token_b,
        &["cert", "revoke", &alice, "--reason", "key-compromise"],
    );
    assert!(!ok);
    assert_eq!(e["code"], json!("not_found"), "{e}");
    let (ok, e) = as_token(
        &token_b,
        &[
            "cert",
            "issue",
            "--address",
            ALICE,
            "--usage",
            "dual",
            "--csr",
            &csr("mallory"),
            "--organisation",
            ORG_B,
        ],
    );
    assert!(!ok);
    assert_eq!(e["code"], json!("holder_owned_elsewhere"), "{e}");
    // A can; the operator's CLI (control token) sees both.
    let (ok, shown) = as_token(&token_a, &["cert", "show", &alice]);
    assert!(ok, "{shown}");
    assert_eq!(shown["organisation"]["id"], json!(ORG_A));
    let all = cli_json(&data, PASS, &["cert", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (ok, v) = as_token(
        &token_a,
        &["cert", "revoke", &alice, "--reason", "superseded"],
    );
    assert!(ok, "{v}");
    let shown = cli_json(&data, PASS, &["cert", "show", &alice]);
    assert_eq!(shown["status"], json!("revoked"));
    drop(server);
}
