//! The web interface: server-rendered HTML (askama), usable without JavaScript. Sessions are
//! cookies holding a random secret (HttpOnly, SameSite=Strict, Secure over TLS); every form
//! carries the session's CSRF token, and every POST checks it. Pages call the same
//! `authority` use cases as the REST API, with the same scope checks.

mod admin;
mod auth;
mod forms;
mod member;
mod notice;
mod organisations;
mod pages;
mod registrar;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Router;
use time::OffsetDateTime;

use super::AppState;
use crate::accounts::{Principal, Role, Throttle};
use crate::authority::SignedIn;
use crate::error::Error;

pub use auth::SESSION_COOKIE;
pub use notice::Notice;

/// Marks requests that arrived over the HTTPS listener (Secure cookies, HSTS).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Web state beside the authority: the sign-in throttle and one-time PKCS#12 downloads.
#[derive(Clone)]
pub struct WebState {
    pub throttle: Arc<Throttle>,
    pub downloads: Arc<Mutex<HashMap<String, Download>>>,
    /// The result page of each issuance form (by user and form nonce), so a reload or a
    /// double click shows the first result instead of issuing again.
    pub issued: Arc<Mutex<HashMap<(String, String), IssuedForm>>>,
}

/// What an issuance form produced, kept in memory for the download window.
#[derive(Clone)]
pub struct IssuedForm {
    pub rows: Vec<registrar::IssuedRow>,
    pub password: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// A PKCS#12 waiting for its single download; it lives in memory only, for minutes.
pub struct Download {
    pub owner: String,
    pub filename: String,
    pub bytes: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

impl WebState {
    pub fn new(config: &crate::config::WebConfig) -> WebState {
        WebState {
            throttle: Arc::new(Throttle::new(
                config.login_free_failures,
                time::Duration::seconds(i64::from(config.login_delay_secs)),
                time::Duration::seconds(i64::from(config.login_max_delay_secs)),
            )),
            downloads: Arc::new(Mutex::new(HashMap::new())),
            issued: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

pub fn routes(state: &AppState) -> Router<AppState> {
    let form_limit = state.authority.config().web.max_form_bytes;
    Router::new()
        .merge(pages::routes())
        .merge(auth::routes())
        .merge(registrar::routes(form_limit))
        .merge(member::routes(form_limit))
        .merge(admin::routes())
        .merge(organisations::routes())
}

/// The client address as the audit log records it.
pub fn client_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<crate::http::tls::ClientAddr>>()
        .map(|c| c.0 .0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A signed-in user, from the session cookie. Pages that need one redirect to the sign-in
/// page when it is missing or expired.
pub struct WebSession {
    pub signed_in: SignedIn,
    pub client: String,
    pub tls: bool,
}

impl WebSession {
    /// The user as the audit log and issued records show it: who, and from where.
    pub fn principal(&self) -> Principal {
        let mut p = self.signed_in.principal.clone();
        p.actor = format!("{} from {}", p.actor, self.client);
        p
    }

    pub fn role(&self) -> Role {
        self.signed_in.user.role
    }

    pub fn csrf(&self) -> &str {
        &self.signed_in.session.csrf
    }

    pub fn actor(&self) -> String {
        self.principal().actor
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), WebError> {
        let expected = self.signed_in.session.csrf.as_bytes();
        if aws_lc_rs::constant_time::verify_slices_are_equal(expected, presented.as_bytes()).is_ok()
        {
            Ok(())
        } else {
            Err(WebError::status(
                StatusCode::FORBIDDEN,
                "The form has expired or did not come from this site. Go back, reload the page and try again.",
            ))
        }
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), WebError> {
        if roles.contains(&self.role()) {
            Ok(())
        } else {
            Err(WebError::status(
                StatusCode::FORBIDDEN,
                "Your account may not use this page.",
            ))
        }
    }

    pub fn nav(&self, current: &str) -> Nav {
        Nav::for_role(Some(self), current)
    }
}

/// The value of a cookie sent by the browser.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

impl FromRequestParts<AppState> for WebSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let next = if parts.method == axum::http::Method::GET {
                next
            } else {
                "/"
            };
            Redirect::to(&format!("/login?next={}", forms::url_encode(next))).into_response()
        };
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(to_login());
        };
        match state.authority.session(&secret) {
            Ok(signed_in) => Ok(WebSession {
                signed_in,
                client: client_of(parts),
                tls: parts.extensions.get::<OverTls>().is_some(),
            }),
            Err(Error::Unauthorised(_)) => Err(to_login()),
            Err(e) => Err(WebError::from(e).into_response()),
        }
    }
}

/// An optional session, for public pages that show who is signed in.
pub struct MaybeSession(pub Option<WebSession>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeSession(
            WebSession::from_request_parts(parts, state).await.ok(),
        ))
    }
}

/// One link of the navigation bar.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every page's frame needs.
pub struct Nav {
    pub items: Vec<NavItem>,
    pub user: Option<String>,
    pub csrf: String,
    /// The status banner: only ever one of the server's fixed messages.
    pub flash: Option<Notice>,
}

impl Nav {
    pub fn for_role(session: Option<&WebSession>, current: &str) -> Nav {
        let mut links: Vec<(&'static str, &'static str)> = vec![("/", "Trust bundles")];
        let role = session.map(|s| s.role());
        if matches!(role, Some(Role::Registrar | Role::Admin)) {
            links.push(("/registrar/issue", "Issue"));
            links.push(("/registrar/certs", "Certificates"));
        }
        if matches!(role, Some(Role::Member | Role::Admin)) {
            links.push(("/member/anchors", "Anchors"));
        }
        if role == Some(Role::Admin) {
            links.extend([
                ("/admin/queue", "Review"),
                ("/admin/bundles", "Bundles"),
                ("/admin/organisations", "Organisations"),
                ("/admin/users", "Users"),
                ("/admin/tokens", "Tokens"),
                ("/admin/ca", "CA"),
                ("/admin/audit", "Audit"),
            ]);
        }
        Nav {
            items: links
                .into_iter()
                .map(|(href, label)| NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            user: session.map(|s| {
                let u = &s.signed_in.user;
                if u.display_name.is_empty() {
                    format!("{} ({})", u.username, u.role.as_str())
                } else {
                    format!("{} ({})", u.display_name, u.role.as_str())
                }
            }),
            csrf: session.map(|s| s.csrf().to_string()).unwrap_or_default(),
            flash: None,
        }
    }

    pub fn with_flash(mut self, flash: Option<Notice>) -> Nav {
        self.flash = flash;
        self
    }
}

/// Renders a template; authenticated pages are never cached.
pub fn render<T: askama::Template>(page: &T, private: bool) -> Response {
    match page.render() {
        Ok(html) => {
            let mut r = Html(html).into_response();
            if private {
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            WebError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
            .into_response()
        }
    }
}

/// An error shown as a page. 5xx pages never carry internals: the cause goes to the log.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn status(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        let api = super::ApiError(e);
        let status = api.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %api.0, code = api.0.code(), "page request failed");
            "The service could not complete the request.".to_string()
        } else {
            api.0.to_string()
        };
        WebError { status, message }
    }
}

#[derive(askama::Template)]
#[template(path = "error.html", config = "src/http/web/askama.toml")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    title: String,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            nav: Nav::for_role(None, ""),
            status: self.status.as_u16(),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            message: self.message,
        };
        let mut r = render(&page, true);
        *r.status_mut() = self.status;
        r
    }
}

/// `Query` for pages: a query string that does not parse is a 400 error page with a fixed
/// sentence (axum's own rejection is text/plain and quotes the input back).
pub struct WebQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for WebQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| WebQuery(v))
            .map_err(|_| {
                WebError::status(
                    StatusCode::BAD_REQUEST,
                    "The address has a malformed query.",
                )
            })
    }
}

/// `Path` for pages: a segment that does not parse (not a number, not UTF-8) is a 400 error
/// page with a fixed sentence, never the input quoted back.
pub struct WebPath<T>(pub T);

impl<T, S> FromRequestParts<S> for WebPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| WebPath(v))
            .map_err(|_| WebError::status(StatusCode::BAD_REQUEST, "The address is malformed."))
    }
}

/// Sends the browser on after a successful POST (post/redirect/get).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// One page of a long list (certificates, users, tokens): the page stays bounded however
/// many rows the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Zero-based, clamped to the last page.
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

/// Rows per page of the web lists.
pub const PAGE_SIZE: usize = 100;

/// Cuts `items` to page `page` (clamped) of `size`-row pages.
pub fn paginate<T>(items: Vec<T>, page: usize, size: usize) -> (Vec<T>, Paging) {
    let total = items.len();
    let pages = total.div_ceil(size.max(1)).max(1);
    let page = page.min(pages - 1);
    let rows = items.into_iter().skip(page * size).take(size).collect();
    (rows, Paging { page, pages, total })
}

#[cfg(test)]
mod paging_tests {
    use super::{paginate, Paging};

    #[test]
    fn pages_are_cut_and_clamped() {
        let (rows, p) = paginate((0..250).collect::<Vec<_>>(), 2, 100);
        assert_eq!(rows, (200..250).collect::<Vec<_>>());
        assert_eq!(
            p,
            Paging {
                page: 2,
                pages: 3,
                total: 250
            }
        );
        let (rows, p) = paginate((0..250).collect::<Vec<_>>(), 9, 100);
        assert_eq!(
            (rows.len(), p.page),
            (50, 2),
            "past the end shows the last page"
        );
        let (rows, p) = paginate(Vec::<u8>::new(), 0, 100);
        assert!(rows.is_empty());
        assert_eq!(
            p,
            Paging {
                page: 0,
                pages: 1,
                total: 0
            }
        );
    }
}
