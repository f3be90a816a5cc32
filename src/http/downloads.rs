//! What relying parties download without signing in: the current trust bundles (with their
//! digests, metadata, changelogs and index), the CRLs and the CA certificates. STAs and mail
//! servers poll these all day, so they are served the way a static file server serves files:
//! each one is prepared once per publication (body, strong ETag, Last-Modified, content type,
//! Cache-Control and the security headers, all as ready header values) and a request costs a
//! table lookup and a header-map copy. The routes sit outside the router's per-request layers
//! (tracing span, timeouts, body limits): a GET of a prepared file has no body to read and no
//! work to time out.
//!
//! The table is rebuilt from the store on the first request after this process published a
//! bundle version, a CRL or a CA hierarchy ([`Authority::publication_generation`] moved), so
//! no use case and no front end has to remember to refresh it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode,
};
use axum::Router;

use super::{AppState, ErrorBody};
use crate::authority::{Authority, PublicFiles};

/// Security headers every response carries (see `super::security_headers`), as values.
pub(super) const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Only over TLS (RFC 6797 §7.2).
pub(super) const HSTS: (&str, &str) = ("strict-transport-security", "max-age=31536000");

/// Current bundle files change; clients should revalidate (STAs poll daily).
pub const CURRENT_CACHE: &str = "public, max-age=300, must-revalidate";
/// A new CRL follows a revocation within seconds.
const CRL_CACHE: &str = "public, max-age=300";
/// CA certificates change only with a new hierarchy.
const CA_CACHE: &str = "public, max-age=3600";

/// One file, ready to send.
pub struct Prepared {
    body: Bytes,
    etag: String,
    last_modified: SystemTime,
    /// The headers of a 200: content type, ETag, Last-Modified, Cache-Control, security.
    full: HeaderMap,
    /// The headers of a 304: the same without the content type.
    not_modified: HeaderMap,
}

impl Prepared {
    pub fn new(
        body: impl Into<Bytes>,
        content_type: &'static str,
        cache: &'static str,
        last_modified: SystemTime,
    ) -> Prepared {
        let body = body.into();
        let etag = format!("\"{}\"", crate::model::Fingerprint::of(&body));
        let mut not_modified = HeaderMap::with_capacity(10);
        for (name, value) in SECURITY_HEADERS {
            not_modified.insert(name, HeaderValue::from_static(value));
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            not_modified.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(last_modified)) {
            not_modified.insert(header::LAST_MODIFIED, v);
        }
        not_modified.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        let mut full = not_modified.clone();
        full.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(&body.len().to_string()) {
            full.insert(header::CONTENT_LENGTH, v);
        }
        Prepared {
            body,
            etag,
            last_modified,
            full,
            not_modified,
        }
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn last_modified(&self) -> SystemTime {
        self.last_modified
    }

    /// 304 when the client's validators match (If-None-Match wins over If-Modified-Since).
    pub fn respond(&self, method: &Method, request: &HeaderMap, tls: bool) -> Response<Body> {
        let not_modified = match request.get(header::IF_NONE_MATCH) {
            Some(list) => list.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
                    .any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag)
            }),
            None => request
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|since| {
                    // HTTP dates have whole seconds.
                    let modified =
                        httpdate::parse_http_date(&httpdate::fmt_http_date(self.last_modified))
                            .unwrap_or(self.last_modified);
                    modified <= since
                }),
        };
        let (status, headers, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, &self.not_modified, Body::empty())
        } else if method == Method::HEAD {
            (StatusCode::OK, &self.full, Body::empty())
        } else {
            (StatusCode::OK, &self.full, Body::from(self.body.clone()))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers.clone();
        if tls {
            response
                .headers_mut()
                .insert(HSTS.0, HeaderValue::from_static(HSTS.1));
        }
        response
    }
}

/// Every prepared file by request path.
type Table = HashMap<String, Arc<Prepared>>;

/// The download table shared by the routes; cheap to clone.
#[derive(Clone)]
pub struct Downloads {
    inner: Arc<Inner>,
}

struct Inner {
    authority: Arc<Authority>,
    /// The files, with the publication generation they were built at.
    table: ArcSwap<(u64, Table)>,
    /// One rebuild at a time; other requests serve the previous table meanwhile. Holds when
    /// the last rebuild failed, so a broken store is not re-read on every request.
    rebuilding: Mutex<Option<std::time::Instant>>,
}

/// How long after a failed rebuild requests keep the previous table without retrying.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

impl Downloads {
    /// Builds the table now (start-up), so the first client does not pay for it.
    pub fn new(authority: Arc<Authority>) -> Downloads {
        let downloads = Downloads {
            inner: Arc::new(Inner {
                authority,
                // u64::MAX: never a real generation, so the first look builds it.
                table: ArcSwap::from_pointee((u64::MAX, Table::new())),
                rebuilding: Mutex::new(None),
            }),
        };
        downloads.refresh();
        downloads
    }

    /// The prepared file at `path`, from a table no older than the last publication.
    pub fn file(&self, path: &str) -> Option<Arc<Prepared>> {
        if self.inner.table.load().0 != self.inner.authority.publication_generation() {
            self.refresh();
        }
        self.inner.table.load().1.get(path).cloned()
    }

    /// Rebuilds the table from the store when something was published since the last build.
    /// A failure keeps the previous files (and is logged); the next request tries again.
    fn refresh(&self) {
        let Ok(mut failed) = self.inner.rebuilding.try_lock() else {
            return;
        };
        let authority = &self.inner.authority;
        let generation = authority.publication_generation();
        let now = crate::clock::monotonic_now();
        if self.inner.table.load().0 == generation
            || failed.is_some_and(|at| now.duration_since(at) < RETRY_AFTER_FAILURE)
        {
            return;
        }
        let built = super::bundles::files(authority).and_then(|mut table| {
            table.extend(hierarchy_table(authority.public_files()?));
            Ok(table)
        });
        match built {
            Ok(table) => {
                self.inner.table.store(Arc::new((generation, table)));
                *failed = None;
            }
            Err(e) => {
                *failed = Some(now);
                tracing::error!(error = %e, code = e.code(), "preparing the public downloads failed")
            }
        }
    }
}

fn hierarchy_table(files: PublicFiles) -> Table {
    let mut table = Table::new();
    for crl in files.crls {
        table.insert(
            format!("/crl/{}.crl", crl.ca.as_str()),
            Arc::new(Prepared::new(
                crl.der,
                "application/pkix-crl",
                CRL_CACHE,
                SystemTime::from(crl.this_update),
            )),
        );
    }
    let mut chain = String::new();
    let mut chain_at = SystemTime::UNIX_EPOCH;
    for (role, der, created) in files.ca_certs {
        let at = SystemTime::from(created);
        let pem = crate::x509::to_pem("CERTIFICATE", &der);
        chain.push_str(&pem);
        chain_at = chain_at.max(at);
        table.insert(
            format!("/ca/{}.pem", role.as_str()),
            Arc::new(Prepared::new(
                pem.into_bytes(),
                "application/x-pem-file",
                CA_CACHE,
                at,
            )),
        );
        table.insert(
            format!("/ca/{}.cer", role.as_str()),
            Arc::new(Prepared::new(der, "application/pkix-cert", CA_CACHE, at)),
        );
    }
    if !chain.is_empty() {
        table.insert(
            "/ca/chain.pem".into(),
            Arc::new(Prepared::new(
                chain.into_bytes(),
                "application/pem-certificate-chain",
                CA_CACHE,
                chain_at,
            )),
        );
    }
    table
}

/// The download routes. Merge them after the router's layers: they answer on their own.
pub fn routes(state: &AppState) -> Router<AppState> {
    let serve = |downloads: Downloads| {
        tower::service_fn(move |request: Request<Body>| {
            let response = downloads.answer(&request);
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        })
    };
    let d = state.downloads.clone();
    Router::new()
        .route_service("/bundles", serve(d.clone()))
        .route_service("/bundles/", serve(d.clone()))
        .route_service("/bundles.json", serve(d.clone()))
        .route_service("/bundles/{file}", serve(d.clone()))
        .route_service("/bundles/{name}/{file}", serve(d.clone()))
        .route_service("/crl/{file}", serve(d.clone()))
        .route_service("/ca/{file}", serve(d))
}

impl Downloads {
    fn answer(&self, request: &Request<Body>) -> Response<Body> {
        let tls = request.extensions().get::<super::web::OverTls>().is_some();
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let mut r = self.error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not take that method".into(),
                tls,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
            return r;
        }
        let Ok(path) = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8()
        else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "the URL path is malformed: it is not UTF-8 once percent-decoded".into(),
                tls,
            );
        };
        let file = match &*path {
            "/bundles/" => self.file("/bundles"),
            p => self.file(p),
        };
        match file {
            Some(file) => file.respond(method, request.headers(), tls),
            None => self.error(StatusCode::NOT_FOUND, "not_found", missing(&path), tls),
        }
    }

    fn error(&self, status: StatusCode, code: &str, message: String, tls: bool) -> Response<Body> {
        let body = serde_json::to_vec(&ErrorBody {
            code: code.into(),
            message,
            reasons: Vec::new(),
        })
        .unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in SECURITY_HEADERS {
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        if tls {
            h.insert(HSTS.0, HeaderValue::from_static(HSTS.1));
        }
        response
    }
}

/// The 404 message, as the resource's own handler worded it.
fn missing(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/bundles/") {
        let what = match rest.split_once('/') {
            Some((name, file)) if file.starts_with("changes.") => name,
            Some((_, file)) => file,
            None => rest,
        };
        return format!("no such bundle resource '{what}'");
    }
    if path.starts_with("/bundles") {
        return "no such bundle resource 'index'".into();
    }
    match path
        .strip_prefix("/crl/")
        .and_then(|f| f.strip_suffix(".crl"))
        .and_then(crate::model::ca::CaRole::parse)
    {
        Some(role) => format!("the {} CA has no CRL here", role.as_str()),
        None => format!("no such resource '{last}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn a_prepared_file_answers_200_304_and_head_with_the_same_validators() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let file = Prepared::new(b"crl bytes".to_vec(), "application/pkix-crl", CRL_CACHE, at);
        let etag = file
            .full
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let cases: Vec<(&str, Method, HeaderMap, StatusCode, usize)> = vec![
            ("pass/plain", Method::GET, request(&[]), StatusCode::OK, 9),
            ("pass/head", Method::HEAD, request(&[]), StatusCode::OK, 0),
            (
                "pass/inm",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, &etag)]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "pass/inm-weak-in-list",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, &format!("\"x\", W/{etag}"))]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "pass/inm-star",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, "*")]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "fail/inm-other",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, "\"other\"")]),
                StatusCode::OK,
                9,
            ),
            // If-None-Match wins over a matching If-Modified-Since.
            (
                "fail/inm-other-ims-match",
                Method::GET,
                request(&[
                    (header::IF_NONE_MATCH, "\"other\""),
                    (header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(at)),
                ]),
                StatusCode::OK,
                9,
            ),
            (
                "pass/ims-same",
                Method::GET,
                request(&[(header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(at))]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "fail/ims-earlier",
                Method::GET,
                request(&[(
                    header::IF_MODIFIED_SINCE,
                    &httpdate::fmt_http_date(at - std::time::Duration::from_secs(1)),
                )]),
                StatusCode::OK,
                9,
            ),
            (
                "fail/ims-garbage",
                Method::GET,
                request(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
                StatusCode::OK,
                9,
            ),
        ];
        for (name, method, headers, status, length) in cases {
            for tls in [false, true] {
                let r = file.respond(&method, &headers, tls);
                assert_eq!(r.status(), status, "{name}");
                let h = r.headers();
                assert_eq!(h.get(header::ETAG).unwrap(), etag.as_str(), "{name}");
                assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), CRL_CACHE, "{name}");
                assert_eq!(
                    h.get(header::LAST_MODIFIED).unwrap(),
                    httpdate::fmt_http_date(at).as_str(),
                    "{name}"
                );
                assert_eq!(
                    h.get("x-content-type-options").unwrap(),
                    "nosniff",
                    "{name}"
                );
                assert_eq!(h.contains_key(HSTS.0), tls, "{name}: HSTS only over TLS");
                if status == StatusCode::OK {
                    assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/pkix-crl");
                    assert_eq!(h.get(header::CONTENT_LENGTH).unwrap(), "9", "{name}");
                }
                let body = futures_body_len(r);
                assert_eq!(body, length, "{name}");
            }
        }
    }

    fn futures_body_len(r: Response<Body>) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(axum::body::to_bytes(r.into_body(), usize::MAX))
            .unwrap()
            .len()
    }

    #[test]
    fn missing_files_are_named_as_their_routes_named_them() {
        for (path, message) in [
            ("/bundles/nope.p7b", "no such bundle resource 'nope.p7b'"),
            (
                "/bundles/nope/changes.atom",
                "no such bundle resource 'nope'",
            ),
            (
                "/bundles/local/other.txt",
                "no such bundle resource 'other.txt'",
            ),
            ("/crl/root.crl", "the root CA has no CRL here"),
            ("/crl/nothing.crl", "no such resource 'nothing.crl'"),
            ("/ca/nothing.cer", "no such resource 'nothing.cer'"),
        ] {
            assert_eq!(missing(path), message, "{path}");
        }
    }
}
