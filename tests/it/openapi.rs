//! The OpenAPI document at `/api/v1/openapi.json` (issue 5, requirement 6), fetched from the
//! router in process with `oneshot`:
//!
//! - it is JSON, OpenAPI 3.x, with a title and version, and an independent validator
//!   (`openapi-spec-validator`, installed by `ops/test.sh`) accepts it;
//! - every route the router registers under `/api/v1` is documented with its method. The list
//!   of routes is read from the router's source (`src/http/mod.rs` and the modules it nests
//!   under `/api/v1`), so a route added without an annotation fails here;
//! - every documented operation is served by the router, and answers an anonymous caller the
//!   way its `security` says (401 for bearer-only operations);
//! - the documented request body of certificate issuance has the fields the API reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anchorage::authority::Authority;
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::http::{router, AppState};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

use crate::tools::{run, venv_bin};

const DOC_PATH: &str = "/api/v1/openapi.json";
const API_PREFIX: &str = "/api/v1";
/// The HTTP methods OpenAPI path items can hold, as axum's routing functions name them.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The router over an authority that was opened but never initialised: the document needs no
/// CA, and neither does refusing an anonymous caller.
fn app() -> (TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let authority = Arc::new(Authority::open(config, Arc::new(SystemClock)).unwrap());
    (dir, router(AppState::new(authority)))
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let mut request = Request::builder().method(method.clone()).uri(uri);
    let body = if method == Method::POST || method == Method::PUT || method == Method::PATCH {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, bytes)
}

async fn served_document(app: &Router) -> (Value, Vec<u8>) {
    let (status, content_type, body) = call(app, "get", DOC_PATH).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "GET {DOC_PATH} (anonymous): {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
    let doc: Value = serde_json::from_slice(&body).expect("the document is JSON");
    (doc, body)
}

/// (method, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths object");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("path item object") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.clone(), path.clone()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The routes the router registers, read from its source.

fn src_http() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http")
}

/// The text from `open` (the index of an opening bracket) to its matching close, exclusive,
/// skipping string literals.
fn balanced(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (o, c) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("not an opening bracket: {}", other as char),
    };
    let mut depth = 0usize;
    let mut i = open;
    let mut in_str = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if b == o {
            depth += 1;
        } else if b == c {
            depth -= 1;
            if depth == 0 {
                return &text[open + 1..i];
            }
        }
        i += 1;
    }
    panic!("unbalanced bracket at {open}");
}

/// The first string literal in `args` and the text after it.
fn leading_literal(args: &str) -> Option<(&str, &str)> {
    let rest = args.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some((&rest[..end], &rest[end + 1..]))
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The axum method routers (`get(..)`, `.post(..)`, `routing::delete(..)`) in a route's
/// arguments.
fn methods_in(args: &str) -> BTreeSet<String> {
    let bytes = args.as_bytes();
    let mut out = BTreeSet::new();
    for m in METHODS {
        let pattern = format!("{m}(");
        let mut from = 0;
        while let Some(at) = args[from..].find(&pattern) {
            let start = from + at;
            if start == 0 || !is_ident(bytes[start - 1]) {
                out.insert((*m).to_string());
            }
            from = start + pattern.len();
        }
    }
    out
}

/// (method, path) of each `.route("path", ...)` call in `text`, the path prefixed.
fn routes_in(text: &str, prefix: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(".route(") {
        let open = from + at + ".route".len();
        let args = balanced(text, open);
        let (path, rest) = leading_literal(args)
            .unwrap_or_else(|| panic!("a route whose path is not a literal: .route({args})"));
        let methods = methods_in(rest);
        assert!(!methods.is_empty(), "no method router in .route({args})");
        for m in methods {
            out.insert((m, format!("{prefix}{path}")));
        }
        from = open + args.len();
    }
    out
}

/// The body of `fn name(` in `text`.
fn fn_body<'a>(text: &'a str, name: &str) -> &'a str {
    let at = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no fn {name} in the source"));
    let open = at + text[at..].find('{').unwrap();
    balanced(text, open)
}

fn module_source(module: &str) -> String {
    let dir = src_http();
    for path in [
        dir.join(format!("{module}.rs")),
        dir.join(module).join("mod.rs"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
    }
    panic!("no source for http::{module}");
}

/// Every (method, path) the router serves under `/api/v1`: the routes of the modules that
/// `router()` nests under the prefix, and any route `router()` adds with the prefix itself.
fn registered_api_routes() -> BTreeSet<(String, String)> {
    let mod_rs = std::fs::read_to_string(src_http().join("mod.rs")).unwrap();
    let body = fn_body(&mod_rs, "router");
    let mut out: BTreeSet<(String, String)> = routes_in(body, "")
        .into_iter()
        .filter(|(_, p)| p.starts_with(API_PREFIX))
        .collect();
    let mut nested = Vec::new();
    let mut from = 0;
    while let Some(at) = body[from..].find(".nest(") {
        let open = from + at + ".nest".len();
        let args = balanced(body, open);
        from = open + args.len();
        let Some((prefix, rest)) = leading_literal(args) else {
            continue;
        };
        if !prefix.starts_with(API_PREFIX) {
            continue;
        }
        // `certs::routes().merge(anchors::routes())...`: each `name::routes()` is a module.
        let mut i = 0;
        while let Some(at) = rest[i..].find("::routes(") {
            let end = i + at;
            let start = rest[..end]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            nested.push((prefix.to_string(), rest[start..end].to_string()));
            i = end + "::routes(".len();
        }
    }
    assert!(
        !nested.is_empty(),
        "found no modules nested under {API_PREFIX} in router(); has its shape changed?"
    );
    for (prefix, module) in nested {
        let text = module_source(&module);
        let routes = routes_in(fn_body(&text, "routes"), &prefix);
        assert!(!routes.is_empty(), "no routes read from http::{module}");
        out.extend(routes);
    }
    out
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_is_openapi_3_json_with_title_and_version() {
    let (_dir, app) = app();
    let (doc, _) = served_document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi field");
    assert!(version.starts_with("3."), "openapi = {version}");
    let title = doc["info"]["title"].as_str().unwrap_or_default();
    assert!(!title.is_empty(), "no info.title");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{}",
        doc["components"]
    );
    // The error body every handler answers with.
    let error = &doc["components"]["schemas"]["ErrorBody"];
    for field in ["code", "message", "reasons"] {
        assert!(
            error["properties"][field].is_object(),
            "ErrorBody lacks {field}: {error}"
        );
    }
    // Operation ids are what client generators name methods after: unique.
    let mut ids = BTreeMap::new();
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][&method];
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_string();
        if let Some(other) = ids.insert(id.clone(), format!("{method} {path}")) {
            panic!("operationId {id} used by {other} and {method} {path}");
        }
    }
}

#[tokio::test]
async fn openapi_documents_every_api_route_with_its_method() {
    let registered = registered_api_routes();
    // The source reading is itself checked against routes known to exist, so a parser that
    // finds nothing cannot pass.
    for known in [
        ("post", "/api/v1/certificates"),
        ("get", "/api/v1/certificates"),
        ("post", "/api/v1/bundles/{name}/anchors"),
        ("get", "/api/v1/audit"),
        ("get", DOC_PATH),
    ] {
        assert!(
            registered.contains(&(known.0.to_string(), known.1.to_string())),
            "the source reader missed {known:?}; it read {registered:#?}"
        );
    }

    let (_dir, app) = app();
    let (doc, _) = served_document(&app).await;
    let documented = documented(&doc);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an OpenAPI operation (add #[utoipa::path] and list the handler in \
         src/http/openapi.rs): {undocumented:#?}"
    );
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unserved.is_empty(),
        "documented operations with no route: {unserved:#?}"
    );

    // And the router agrees with the document: each operation exists, and an anonymous caller
    // is refused exactly where the document says a bearer token is needed.
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let uri = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "01" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let (status, _, body) = call(&app, method, &uri).await;
        let needs_bearer = op["security"]
            .as_array()
            .or_else(|| doc["security"].as_array())
            .is_some_and(|reqs| {
                !reqs.is_empty()
                    && reqs
                        .iter()
                        .all(|r| r.as_object().is_some_and(|o| o.contains_key("bearer")))
            });
        if needs_bearer {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} documented as needing a bearer token: {}",
                String::from_utf8_lossy(&body)
            );
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} does not document its 401"
            );
        } else {
            // Public: no credentials needed (a placeholder name may well be 404).
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {uri} documented as public answered {status}"
            );
        }
    }
}

#[tokio::test]
async fn openapi_document_passes_an_independent_validator() {
    let (_dir, app) = app();
    let (_, body) = served_document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &body).unwrap();
    let out = run(venv_bin("openapi-spec-validator"), &[&file]);
    out.assert_success("openapi-spec-validator");
    assert!(
        out.stdout.contains("OK"),
        "openapi-spec-validator printed no verdict: {}",
        out.describe()
    );
}

/// Resolves a local `$ref` (`#/components/schemas/X`) against the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).expect("$ref target exists"))
        }
        None => schema,
    }
}

#[tokio::test]
async fn openapi_issue_request_has_the_fields_the_api_reads() {
    let (_dir, app) = app();
    let (doc, _) = served_document(&app).await;
    let op = &doc["paths"]["/api/v1/certificates"]["post"];
    let schema = resolve(
        &doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    );
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("issue body has no properties: {schema}"));
    for field in [
        "address",
        "domain",
        "usage",
        "csr",
        "keygen",
        "subscriber",
        "proofing",
    ] {
        assert!(
            properties.contains_key(field),
            "POST /api/v1/certificates body lacks {field}: {schema}"
        );
    }
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for field in ["usage", "subscriber", "proofing"] {
        assert!(required.contains(field), "{field} not required: {schema}");
    }
    let proofing = resolve(&doc, &properties["proofing"]);
    assert!(
        proofing["properties"]["evidence_reference"].is_object(),
        "proofing: {proofing}"
    );
    // Success and the policy refusal with its reasons.
    assert!(op["responses"]["201"].is_object(), "{op}");
    let refusal = resolve(
        &doc,
        &op["responses"]["422"]["content"]["application/json"]["schema"],
    );
    assert!(refusal["properties"]["reasons"].is_object(), "{refusal}");
}

// ---------------------------------------------------------------------------------------------
// The schemas describe what the API sends.

/// Validates each recorded response against the schema the document gives for its operation
/// and status, with the OpenAPI 3.1 validator of `openapi-schema-validator`; and, stricter
/// than JSON Schema's defaults, reports every property the response carries that its schema
/// does not name (an undocumented field is a documentation bug too).
const PY_VALIDATE: &str = r#"
import json, sys
from openapi_schema_validator import OAS31Validator

doc = json.load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
problems = []

def resolve(schema):
    while isinstance(schema, dict) and '$ref' in schema:
        node = doc
        for part in schema['$ref'].lstrip('#/').split('/'):
            node = node[part]
        schema = node
    return schema

def properties(schema):
    """The property names an object schema allows, merged over allOf; None when free-form."""
    schema = resolve(schema)
    if 'allOf' in schema:
        merged = {}
        for part in schema['allOf']:
            p = properties(part)
            if p is None:
                return None
            merged.update(p)
        return merged
    if 'properties' in schema:
        return dict(schema['properties'])
    return None

def undocumented(value, schema, where):
    schema = resolve(schema)
    if 'oneOf' in schema and value is not None:
        branches = [b for b in schema['oneOf'] if resolve(b).get('type') != 'null']
        if len(branches) == 1:
            schema = resolve(branches[0])
    if isinstance(value, dict):
        props = properties(schema)
        if props is None:
            return
        for key, item in value.items():
            if key not in props:
                problems.append(f'{where}: property {key!r} is not in the schema')
            else:
                undocumented(item, props[key], f'{where}.{key}')
    elif isinstance(value, list) and 'items' in schema:
        for i, item in enumerate(value):
            undocumented(item, schema['items'], f'{where}[{i}]')

checked = 0
for s in samples:
    where = f"{s['method'].upper()} {s['path']} -> {s['status']}" + (' [canary]' if s.get('canary') else '')
    op = doc['paths'][s['path']][s['method']]
    response = op['responses'].get(str(s['status']))
    if response is None:
        problems.append(f'{where}: status not documented')
        continue
    content = response.get('content', {}).get('application/json')
    if content is None or 'schema' not in content:
        problems.append(f'{where}: no application/json schema documented')
        continue
    # Local references resolve against the document root.
    schema = dict(content['schema'])
    schema['components'] = doc['components']
    for error in OAS31Validator(schema).iter_errors(s['body']):
        problems.append(f'{where}: {error.message} at {list(error.absolute_path)}')
    undocumented(s['body'], content['schema'], where)
    checked += 1

print(json.dumps({'checked': checked, 'problems': problems}))
"#;

/// One request through the router with an optional bearer token and JSON body.
async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{uri}: HTTP {status} body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

#[tokio::test]
async fn openapi_schemas_describe_the_json_the_api_sends() {
    use anchorage::authority::InitOptions;
    use anchorage::keyseal::Passphrase;
    use anchorage::model::HealthDomain;
    use serde_json::json;

    const DOMAIN: &str = "direct.example.com";
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        public_url: "http://pki.direct.example.com:8080".into(),
        managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    let passphrase = Passphrase::new("openapi test passphrase (not a secret)".into()).unwrap();
    authority
        .init(InitOptions::default(), &passphrase, "openapi-test")
        .unwrap();
    authority.refresh_crls().unwrap();
    let (admin, _) = crate::harness::token(&authority, "admin", "openapi tests", Some(1));
    let admin = admin.to_string();
    let app = router(AppState::new(Arc::new(authority)));
    let (_, doc_bytes) = served_document(&app).await;

    // (method, documented path, uri, body, expected status): successes and the error bodies.
    let issue = json!({
        "address": format!("openapi@{DOMAIN}"),
        "usage": "pair",
        "keygen": true,
        "subscriber": {"name": "OpenAPI Clinic", "organization": "default"},
        "proofing": {"method": "in-person", "evidence_reference": "case 1"},
    });
    let (status, issued) = send(
        &app,
        Method::POST,
        "/api/v1/certificates",
        &admin,
        Some(issue),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let serial = issued["serial"].as_str().unwrap().to_string();
    let mut samples = vec![json!({
        "method": "post", "path": "/api/v1/certificates", "status": 201, "body": issued,
    })];

    let cert = format!("/api/v1/certificates/{serial}");
    let revoke = format!("{cert}/revoke");
    let calls: Vec<(Method, &str, String, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/api/v1/certificates",
            "/api/v1/certificates".into(),
            Some(json!({
                "address": "not an address",
                "usage": "quadruple",
                "keygen": true,
                "subscriber": {"name": ""},
                "proofing": {"method": "", "evidence_reference": ""},
            })),
            422,
        ),
        (
            Method::POST,
            "/api/v1/certificates",
            "/api/v1/certificates".into(),
            Some(json!({"usage": "dual", "unknown": 1})),
            400,
        ),
        (
            Method::GET,
            "/api/v1/certificates",
            "/api/v1/certificates".into(),
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/certificates/{serial}",
            cert.clone(),
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/certificates/{serial}",
            "/api/v1/certificates/00ff".into(),
            None,
            404,
        ),
        (
            Method::POST,
            "/api/v1/certificates/{serial}/revoke",
            revoke.clone(),
            Some(json!({"reason": "superseded"})),
            200,
        ),
        (
            Method::POST,
            "/api/v1/certificates/{serial}/revoke",
            revoke,
            Some(json!({"reason": "superseded"})),
            409,
        ),
        (Method::GET, "/api/v1/ca", "/api/v1/ca".into(), None, 200),
        (
            Method::GET,
            "/api/v1/bundles",
            "/api/v1/bundles".into(),
            None,
            200,
        ),
        (
            Method::POST,
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({
                "username": "reg1", "name": "Registrar One", "role": "registrar",
                "scope": {"domains": [DOMAIN]},
            })),
            201,
        ),
        (
            Method::POST,
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({
                "username": "reg1", "role": "registrar", "scope": {"domains": [DOMAIN]},
            })),
            409,
        ),
        (
            Method::GET,
            "/api/v1/users",
            "/api/v1/users".into(),
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/users/{name}",
            "/api/v1/users/reg1".into(),
            None,
            200,
        ),
        (
            Method::POST,
            "/api/v1/users/{name}/disable",
            "/api/v1/users/reg1/disable".into(),
            None,
            200,
        ),
        (
            Method::POST,
            "/api/v1/users/{name}/enable",
            "/api/v1/users/reg1/enable".into(),
            None,
            200,
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            Some(
                json!({"role": "member", "label": "feed", "valid_days": 7, "scope": {"bundles": ["*"]}}),
            ),
            201,
        ),
        (
            Method::GET,
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit?limit=5".into(),
            None,
            200,
        ),
        (
            Method::POST,
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/checkpoint".into(),
            Some(json!({"destinations": ["openapi-test"]})),
            200,
        ),
        (
            Method::GET,
            "/api/v1/anchors",
            "/api/v1/anchors".into(),
            None,
            200,
        ),
        (
            Method::GET,
            "/api/v1/anchors/{id}",
            "/api/v1/anchors/999".into(),
            None,
            404,
        ),
    ];
    for (method, path, uri, body, expected) in calls {
        let (status, value) = send(&app, method.clone(), &uri, &admin, body).await;
        assert_eq!(status.as_u16(), expected, "{method} {uri}: {value}");
        samples.push(json!({
            "method": method.as_str().to_ascii_lowercase(),
            "path": path,
            "status": expected,
            "body": value,
        }));
    }
    // A token the API just created: list it, revoke it.
    let (_, tokens) = send(&app, Method::GET, "/api/v1/tokens", &admin, None).await;
    let member = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "feed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, value) = send(
        &app,
        Method::POST,
        &format!("/api/v1/tokens/{member}/revoke"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    samples.push(json!({
        "method": "post", "path": "/api/v1/tokens/{id}/revoke", "status": 200, "body": value,
    }));
    // A caller without a valid token gets the documented 401 body.
    let (status, value) = send(&app, Method::GET, "/api/v1/ca", "not-a-token", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    samples.push(json!({"method": "get", "path": "/api/v1/ca", "status": 401, "body": value}));

    // The samples must exercise what the schemas are for: a refusal with reasons, the
    // one-time secrets, a flattened record.
    let refusal = &samples[1]["body"];
    assert!(
        refusal["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "{refusal}"
    );
    assert!(samples[0]["body"]["p12_password"].is_string());
    assert_eq!(samples[0]["body"]["pkcs12"].as_array().unwrap().len(), 2);

    check_samples(&doc_bytes, samples);
}

/// Runs `PY_VALIDATE` over `samples` ({method, path, status, body}) and fails on any mismatch.
/// Two canaries, a copy of an object response with an undocumented field and a response of
/// the wrong type, must be caught, so a checker that passes everything fails here.
fn check_samples(doc_bytes: &[u8], mut samples: Vec<Value>) {
    use serde_json::json;

    let mut extra = samples
        .iter()
        .find(|s| s["body"].is_object())
        .expect("an object response among the samples")
        .clone();
    extra["body"]["undocumented_canary"] = json!(1);
    extra["canary"] = json!(true);
    let mut wrong_type = samples[0].clone();
    wrong_type["body"] = json!("canary");
    wrong_type["canary"] = json!(true);
    samples.extend([extra, wrong_type]);

    let work = tempfile::tempdir().unwrap();
    let doc_file = work.path().join("openapi.json");
    let samples_file = work.path().join("samples.json");
    let script = work.path().join("validate.py");
    std::fs::write(&doc_file, doc_bytes).unwrap();
    std::fs::write(&samples_file, Value::Array(samples.clone()).to_string()).unwrap();
    std::fs::write(&script, PY_VALIDATE).unwrap();
    let out = run(
        venv_bin("python"),
        &[
            script.as_os_str(),
            doc_file.as_os_str(),
            samples_file.as_os_str(),
        ],
    );
    out.assert_success("validating responses against the OpenAPI schemas");
    let report: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
    assert_eq!(report["checked"], json!(samples.len()), "{report}");
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let (canaries, real): (Vec<&str>, Vec<&str>) =
        problems.iter().partition(|p| p.contains("[canary]"));
    assert!(
        real.is_empty(),
        "responses that do not match the OpenAPI document:\n{}",
        real.join("\n")
    );
    assert!(
        canaries.iter().any(|p| p.contains("undocumented_canary"))
            && canaries
                .iter()
                .any(|p| p.contains("'canary' is not of type")),
        "the checker missed the canary's faults: {canaries:?}"
    );
}

/// The trust-bundle operations: submission, refusal, review decisions, promotion and builds.
#[tokio::test]
async fn openapi_schemas_describe_the_json_the_bundle_api_sends() {
    use anchorage::authority::InitOptions;
    use anchorage::keyseal::Passphrase;
    use serde_json::json;

    // Two member anchors and an end-entity certificate the admission policy refuses.
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("openssl.cnf"),
        "[ req ]\ndistinguished_name = dn\n[ dn ]\n\
         [ v3_ca ]\nbasicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n\
         [ v3_ee ]\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\n",
    )
    .unwrap();
    let mut pems = BTreeMap::new();
    for (stem, ext, subject) in [
        (
            "alpha",
            "v3_ca",
            "/O=Alpha Health HISP/CN=Alpha Trust Anchor",
        ),
        (
            "bravo",
            "v3_ca",
            "/O=Bravo Clinic Network/CN=Bravo Trust Anchor",
        ),
        (
            "leaf",
            "v3_ee",
            "/O=Alpha Health HISP/CN=jones@direct.alpha.example",
        ),
        // alpha's CA with a new key: a key rollover.
        (
            "alpha-next",
            "v3_ca",
            "/O=Alpha Health HISP/CN=Alpha Trust Anchor",
        ),
    ] {
        let args = [
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            ext,
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &format!("{stem}.key"),
            "-days",
            "3650",
            "-sha256",
            "-subj",
            subject,
            "-out",
            &format!("{stem}.pem"),
        ];
        crate::tools::run_in(files.path(), "openssl", &args).assert_success("openssl req");
        let pem = std::fs::read_to_string(files.path().join(format!("{stem}.pem"))).unwrap();
        pems.insert(stem, pem);
    }

    // The shipped bundle declarations, in a directory of this test's own.
    let dir = tempfile::tempdir().unwrap();
    let bundles_dir = dir.path().join("bundles");
    std::fs::create_dir_all(&bundles_dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&path, bundles_dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let config = Config {
        data_dir: dir.path().join("data"),
        bundles_dir,
        public_url: "http://pki.direct.example.com:8080".into(),
        managed_domains: vec![anchorage::model::HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    let passphrase = Passphrase::new("openapi test passphrase (not a secret)".into()).unwrap();
    authority
        .init(InitOptions::default(), &passphrase, "openapi-test")
        .unwrap();
    let (admin, _) = crate::harness::token(&authority, "admin", "openapi tests", Some(1));
    let admin = admin.to_string();
    let app = router(AppState::new(Arc::new(authority)));
    let (_, doc_bytes) = served_document(&app).await;

    let mut samples = Vec::new();
    let mut call = async |method: Method, path: &str, uri: &str, body: Option<Value>, want: u16| {
        let (status, value) = send(&app, method.clone(), uri, &admin, body).await;
        assert_eq!(status.as_u16(), want, "{method} {uri}: {value}");
        samples.push(json!({
            "method": method.as_str().to_ascii_lowercase(),
            "path": path,
            "status": want,
            "body": value.clone(),
        }));
        value
    };
    let submit = |stem: &str| {
        Some(json!({
            "file": pems[stem],
            "organization": "Alpha Health HISP",
            "contact": "pki@alpha.example",
        }))
    };
    let submit_path = "/api/v1/bundles/{name}/anchors";
    let submit_uri = "/api/v1/bundles/provider-test/anchors";

    let alpha = call(Method::POST, submit_path, submit_uri, submit("alpha"), 201).await;
    let alpha = alpha["id"].as_u64().unwrap();
    // A duplicate is a policy refusal with a reason, not a bare conflict.
    let duplicate = call(Method::POST, submit_path, submit_uri, submit("alpha"), 422).await;
    assert_eq!(duplicate["reasons"][0]["code"], "duplicate_fingerprint");
    let refused = call(Method::POST, submit_path, submit_uri, submit("leaf"), 422).await;
    assert!(
        refused["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "{refused}"
    );
    // The same subject with another key is refused, unless declared as a key rollover.
    let same_subject = call(
        Method::POST,
        submit_path,
        submit_uri,
        submit("alpha-next"),
        422,
    )
    .await;
    assert_eq!(
        same_subject["reasons"][0]["code"], "anchor_same_subject_different_key",
        "{same_subject}"
    );
    let mut rollover = submit("alpha-next");
    if let Some(body) = rollover.as_mut() {
        body["rollover"] = json!(true);
    }
    let rolled = call(Method::POST, submit_path, submit_uri, rollover, 201).await;
    assert_eq!(
        rolled["anchors"][0]["rollover_of"],
        json!([alpha]),
        "{rolled}"
    );
    let bravo = call(Method::POST, submit_path, submit_uri, submit("bravo"), 201).await;
    let bravo = bravo["id"].as_u64().unwrap();
    call(
        Method::POST,
        submit_path,
        "/api/v1/bundles/no-such-bundle/anchors",
        submit("alpha"),
        404,
    )
    .await;
    call(
        Method::GET,
        "/api/v1/anchors",
        "/api/v1/anchors?bundle=provider-test",
        None,
        200,
    )
    .await;
    let approved = call(
        Method::POST,
        "/api/v1/anchors/{id}/approve",
        &format!("/api/v1/anchors/{alpha}/approve"),
        None,
        200,
    )
    .await;
    assert!(approved["published"].is_object(), "{approved}");
    call(
        Method::GET,
        "/api/v1/anchors/{id}",
        &format!("/api/v1/anchors/{alpha}"),
        None,
        200,
    )
    .await;
    call(
        Method::POST,
        "/api/v1/anchors/{id}/reject",
        &format!("/api/v1/anchors/{bravo}/reject"),
        Some(json!({"reason": "not a member of the community"})),
        200,
    )
    .await;
    call(
        Method::POST,
        "/api/v1/anchors/{id}/approve",
        &format!("/api/v1/anchors/{bravo}/approve"),
        Some(json!({"note": "too late"})),
        409,
    )
    .await;
    call(
        Method::POST,
        "/api/v1/anchors/{id}/promote",
        &format!("/api/v1/anchors/{alpha}/promote"),
        Some(json!({"to": "provider"})),
        201,
    )
    .await;
    call(
        Method::POST,
        "/api/v1/bundles/{name}/build",
        "/api/v1/bundles/provider/build",
        None,
        200,
    )
    .await;
    call(
        Method::POST,
        "/api/v1/anchors/{id}/retire",
        &format!("/api/v1/anchors/{alpha}/retire"),
        Some(json!({"note": "key rollover"})),
        200,
    )
    .await;
    call(Method::GET, "/api/v1/bundles", "/api/v1/bundles", None, 200).await;
    check_samples(&doc_bytes, samples);
}
