//! The HTTP surface: `router(state)` builds the whole axum app (testable with `oneshot`, never
//! binds), `serve` binds and runs it with graceful shutdown. Handlers are thin calls into
//! `authority`; errors map to statuses in exactly one place (`ApiError`).

pub(crate) mod accounts;
mod audit;
pub mod bundles;
mod certs;
pub mod connections;
mod discovery;
pub mod downloads;
mod external;
pub mod openapi;
pub mod organisations;
mod prepared;
mod public;
pub mod tls;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::accounts::Principal;
use crate::authority::Authority;
use crate::error::Error;
use crate::policy::Reason;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub authority: Arc<Authority>,
    /// Wakes the CRL publisher after a revocation.
    pub crl_dirty: Arc<Notify>,
    /// Bundles, CRLs and CA certificates, prepared and served from memory.
    pub downloads: downloads::Downloads,
    /// SHA-256 of the local control token `serve` writes into the data directory, so the CLI
    /// can act through the running server while the store is locked.
    pub control_hash: Option<Arc<str>>,
    /// Sign-in throttle and one-time downloads of the web interface.
    pub web: web::WebState,
}

impl AppState {
    pub fn new(authority: Arc<Authority>) -> AppState {
        let downloads = downloads::Downloads::new(authority.clone());
        let web = web::WebState::new(&authority.config().web);
        AppState {
            authority,
            crl_dirty: Arc::new(Notify::new()),
            downloads,
            control_hash: None,
            web,
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limits = &state.authority.config().api;
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    Router::new()
        .merge(public::routes())
        .merge(bundles::files::routes())
        .merge(web::routes(&state))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::document),
        )
        .merge(external::public_routes())
        .nest(
            "/api/v1",
            certs::routes()
                .merge(bundles::routes())
                .merge(accounts::routes())
                .merge(audit::routes())
                .merge(organisations::routes())
                .merge(discovery::routes())
                .merge(external::routes())
                .fallback(api_not_found)
                .method_not_allowed_fallback(api_method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // A client that sends its body too slowly is cut off (408).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_secs(
                state
                    .authority
                    .config()
                    .server
                    .body_read_timeout_secs
                    .max(1),
            ),
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Method, path and status only: bodies may hold keys or passwords.
        .layer(TraceLayer::new_for_http())
        // After the layers: prepared downloads answer on their own (see `downloads`).
        .merge(downloads::routes(&state))
        .with_state(state)
}

/// An `/api/v1` path no route serves: the JSON error body, not an empty 404.
async fn api_not_found() -> ApiError {
    ApiError(Error::NotFound("no such API resource".into()))
}

/// A method an `/api/v1` route does not take: 405 with the JSON error body.
async fn api_method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody {
            code: "method_not_allowed".into(),
            message: "this resource does not take that method".into(),
            reasons: Vec::new(),
        }),
    )
        .into_response()
}

/// Headers every response carries. The pages use no inline script or style and are never
/// framed; HSTS only over TLS (RFC 6797 §7.2: never over plain HTTP).
async fn security_headers(request: Request, next: axum::middleware::Next) -> Response {
    let tls = request.extensions().get::<web::OverTls>().is_some();
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in prepared::SECURITY_HEADERS {
        h.entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
    if tls {
        let (name, value) = prepared::HSTS;
        h.entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
    response
}

/// Removes expired browser sessions and idempotency records older than their 24 hours every
/// hour (both are refused or ignored when presented anyway; this keeps the trees small).
pub fn spawn_session_sweeper(state: &AppState) -> tokio::task::JoinHandle<()> {
    let authority = state.authority.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let a = authority.clone();
            match tokio::task::spawn_blocking(move || a.purge_expired()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(removed = n, "expired sessions removed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "session sweep failed"),
                Err(e) => tracing::warn!(error = %e, "session sweep task failed"),
            }
        }
    })
}

/// Reopens the store after a write failure as soon as its file system has room again (see
/// `store::StoreHandle`): every second, and free of I/O while nothing failed.
pub fn spawn_store_healer(state: &AppState) -> tokio::task::JoinHandle<()> {
    let authority = state.authority.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let a = authority.clone();
            match tokio::task::spawn_blocking(move || a.heal_store()).await {
                Ok(crate::authority::Healing::Healed) => {
                    // Publication that failed meanwhile is redone now.
                    authority.queue_zone_publication().notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "store healer task failed"),
            }
        }
    })
}

/// Runs the CRL publisher: coalesces revocation bursts and re-signs before nextUpdate.
pub fn spawn_crl_publisher(state: &AppState) -> tokio::task::JoinHandle<()> {
    let authority = state.authority.clone();
    let dirty = state.crl_dirty.clone();
    let coalesce = Duration::from_millis(authority.config().crl.coalesce_millis);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = dirty.notified() => tokio::time::sleep(coalesce).await,
                _ = tick.tick() => {}
            }
            let a = authority.clone();
            match tokio::task::spawn_blocking(move || a.refresh_crls()).await {
                Ok(Ok(published)) => {
                    for crl in published {
                        tracing::info!(ca = crl.ca.as_str(), number = crl.number, "published CRL");
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, code = e.code(), "CRL publication failed")
                }
                Err(e) => tracing::error!(error = %e, "CRL publisher task failed"),
            }
        }
    })
}

/// Binds nothing itself: serves on an already bound listener (and an optional TLS one for
/// the same app) until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    tls: Option<tls::TlsListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let publisher = spawn_crl_publisher(&state);
    let sweeper = discovery::spawn_sweeper(&state);
    let sessions = spawn_session_sweeper(&state);
    let healer = spawn_store_healer(&state);
    let checkpointer = audit::spawn_checkpointer(&state);
    let limits = connections::Limits::from_config(&state.authority.config().server);
    let registry = connections::Registry::default();
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    let downloads = Some(state.downloads.clone());
    let app = router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let https = tls.map(|listener| {
        let (app, downloads, registry) = (app.clone(), downloads.clone(), registry.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            connections::serve(
                listener,
                app,
                downloads,
                registry,
                limits,
                true,
                async move {
                    let _ = stop.changed().await;
                },
            )
            .await
        })
    });
    connections::serve(
        listener,
        app,
        downloads,
        registry,
        limits,
        false,
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        },
    )
    .await;
    if let Some(task) = https {
        let _ = task.await;
    }
    publisher.abort();
    sessions.abort();
    if let Some(task) = checkpointer {
        task.abort();
    }
    sweeper.abort();
    healer.abort();
    Ok(())
}

/// The JSON error body: `{code, message, reasons}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, such as `invalid_input`, `not_found` or `request_denied`.
    pub code: String,
    /// A sentence for people; never internals (5xx bodies say only that the request failed).
    pub message: String,
    /// Every failed rule of a policy refusal (422); absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

/// Every handler error goes through here.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// What a client is told while the store cannot be written (the cause goes to the log).
pub const STORE_UNWRITABLE_MESSAGE: &str = "the store cannot be written now: the data \
     directory's file system is full or failing. Nothing was stored; writes resume by themselves \
     once it has room again, so retry later";

/// `Retry-After` while the store cannot be written: `serve` retries the store every second.
const STORE_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match &self.0 {
            Error::Denied(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Gone(_) => StatusCode::GONE,
            Error::Conflict(_)
            | Error::IssuingCaRevoked(_)
            | Error::HolderOwnedElsewhere(_)
            | Error::HolderOutsideOrganisation(_)
            | Error::HolderUnresolved(_)
            | Error::OrganisationDisabled(_) => StatusCode::CONFLICT,
            Error::OrganisationRequired(_) | Error::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::Unauthorised(_) | Error::OwnerDisabled(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::DomainNotCovered(_) => StatusCode::FORBIDDEN,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NotInitialised
            | Error::CaKey(_)
            | Error::Passphrase(_)
            | Error::StoreUnwritable(_)
            | Error::AuditKeyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let e = self.0;
        let retry_after = match &e {
            Error::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Error::StoreUnwritable(_) => Some(STORE_RETRY_AFTER_SECS),
            _ => None,
        };
        let (message, reasons) = match &e {
            Error::Denied(d) => (
                "the request was refused; see reasons".to_string(),
                d.reasons.clone(),
            ),
            Error::StoreUnwritable(_) => {
                tracing::error!(error = %e, code = e.code(), "request failed");
                (STORE_UNWRITABLE_MESSAGE.to_string(), Vec::new())
            }
            // 5xx bodies never carry internals: the cause goes to the log.
            _ if status.is_server_error() => {
                tracing::error!(error = %e, code = e.code(), "request failed");
                (
                    "the service could not complete the request".to_string(),
                    Vec::new(),
                )
            }
            _ => (e.to_string(), Vec::new()),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code: e.code().to_string(),
                message,
                reasons,
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `Json` whose rejections use the error body above.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                // axum answers 422 for JSON that does not fit the type (unknown field, wrong
                // type); here 422 means a policy refusal with reasons, so that is a 400.
                let (status, code) = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                    }
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_input")
                    }
                    _ => (StatusCode::BAD_REQUEST, "invalid_input"),
                };
                Err((
                    status,
                    Json(ErrorBody {
                        code: code.into(),
                        message: rejection.body_text(),
                        reasons: Vec::new(),
                    }),
                )
                    .into_response())
            }
        }
    }
}

/// `Query` whose rejections (a value that does not parse, an unknown enum word) answer 400
/// with the JSON error body above and code `invalid_input`, not axum's text/plain.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(ApiError(Error::InvalidInput(format!(
                "the query string is malformed: {}",
                rejection.body_text()
            )))
            .into_response()),
        }
    }
}

/// `Path` whose rejections answer with the JSON error body above: 400 `invalid_input` for a
/// segment that does not parse (not UTF-8, not a number); a route that does not fit its
/// handler is a bug, answered 500 without details.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) if rejection.status().is_server_error() => {
                tracing::error!(rejection = %rejection.body_text(), "path parameters do not fit the handler");
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(ErrorBody {
                        code: "internal_error".into(),
                        message: "the service could not complete the request".into(),
                        reasons: Vec::new(),
                    }),
                )
                    .into_response())
            }
            Err(rejection) => Err(ApiError(Error::InvalidInput(format!(
                "the URL path is malformed: {}",
                rejection.body_text()
            )))
            .into_response()),
        }
    }
}

/// The local CLI acting through the server; it names its operator in `X-Anchorage-Actor`.
fn control_caller(parts: &Parts) -> Principal {
    let actor: String = parts
        .headers
        .get("x-anchorage-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("cli")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    Principal::operator(&format!("{actor} (admin token control)"))
}

/// Runs blocking store and signing work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Store(format!("task failed: {e}"))))?
        .map_err(ApiError)
}

/// A caller authenticated by `Authorization: Bearer <token>`.
pub struct Caller(pub Principal);

/// A set of roles a route admits.
pub trait Roles: Send + Sync {
    const ROLES: &'static [&'static str];
}

/// Registrars and admins.
pub struct Issuers;
impl Roles for Issuers {
    const ROLES: &'static [&'static str] = &["registrar", "admin"];
}

/// Members and admins.
pub struct Submitters;
impl Roles for Submitters {
    const ROLES: &'static [&'static str] = &["member", "admin"];
}

/// DNS operators (zone downloads) and admins.
pub struct DnsReaders;
impl Roles for DnsReaders {
    const ROLES: &'static [&'static str] = &["dns_operator", "admin"];
}

/// Admins only.
pub struct Admins;
impl Roles for Admins {
    const ROLES: &'static [&'static str] = &["admin"];
}

/// A caller whose role is checked before the body is read, so a caller without the role
/// gets 403 whatever it sent (and learns nothing from body validation).
pub struct Allowed<R: Roles>(pub Caller, std::marker::PhantomData<R>);

impl<R: Roles> std::ops::Deref for Allowed<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<R: Roles> FromRequestParts<AppState> for Allowed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(R::ROLES)?;
        Ok(Allowed(caller, std::marker::PhantomData))
    }
}

impl Caller {
    pub fn require(&self, roles: &[&str]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role.as_str()) {
            Ok(())
        } else {
            Err(ApiError(Error::Forbidden(format!(
                "the '{}' role may not do this (needs {})",
                self.0.role.as_str(),
                roles.join(" or ")
            ))))
        }
    }

    /// How the caller appears in records and the audit log.
    pub fn actor(&self) -> String {
        self.0.actor.clone()
    }

    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError(Error::Unauthorised(
                    "an Authorization: Bearer token is required".into(),
                ))
            })?;
        let secret = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError(Error::Unauthorised(
                "use Authorization: Bearer <token>".into(),
            ))
        })?;
        if let Some(control) = &state.control_hash {
            if crate::authority::token_hash(secret) == **control {
                return Ok(Caller(control_caller(parts)));
            }
        }
        let mut principal = state.authority.authenticate(secret)?;
        // The audit log records from where, not only who.
        principal.actor = format!("{} from {}", principal.actor, web::client_of(parts));
        Ok(Caller(principal))
    }
}
