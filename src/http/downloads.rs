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
use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;

use super::prepared::{Prepared, CA_CACHE, CRL_CACHE, HSTS, SECURITY_HEADERS};
use super::{AppState, ErrorBody};
use crate::authority::{Authority, PublicFiles};

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
    /// `/bundles/` is the index page, like `/bundles`.
    pub fn file(&self, path: &str) -> Option<Arc<Prepared>> {
        if self.inner.table.load().0 != self.inner.authority.publication_generation() {
            self.refresh();
        }
        let path = if path == "/bundles/" {
            "/bundles"
        } else {
            path
        };
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
        let built = super::bundles::files::prepare(authority).and_then(|mut table| {
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
    /// The prepared file for a GET or HEAD of exactly its path, answered before any routing
    /// (the accept loop calls this first); `None` for anything else, which the router answers,
    /// errors included.
    pub fn hit<B>(&self, request: &Request<B>, tls: bool) -> Option<Response<Body>> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let path = request.uri().path();
        // Only download paths consult the table (an API or page request never rebuilds it);
        // prepared paths are plain ASCII, so a percent-encoded one takes the router's way.
        let download = ["/bundles", "/crl/", "/ca/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
        if !download || path.contains('%') {
            return None;
        }
        let file = self.file(path)?;
        Some(file.respond(method, request.headers(), tls))
    }

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
        match self.file(&path) {
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
