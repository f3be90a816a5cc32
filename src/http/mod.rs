//! The HTTP surface: `router(state)` builds the whole axum app (testable with `oneshot`, never
//! binds), `serve` binds and runs it with graceful shutdown. Handlers are thin calls into
//! `authority`; errors map to statuses in exactly one place (`ApiError`).

pub mod anchors;
pub mod bundles;
mod certs;
mod public;
mod refresh;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::authority::Authority;
use crate::error::Error;
use crate::policy::Reason;
use crate::store::TokenRecord;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub authority: Arc<Authority>,
    /// Wakes the CRL publisher after a revocation.
    pub crl_dirty: Arc<Notify>,
    /// The published trust bundles, served from memory.
    pub bundles: bundles::BundleCache,
    /// SHA-256 of the local control token `serve` writes into the data directory, so the CLI
    /// can act through the running server while the store is locked.
    pub control_hash: Option<Arc<str>>,
}

impl AppState {
    pub fn new(authority: Arc<Authority>) -> AppState {
        let bundles = bundles::BundleCache::default();
        if let Err(e) = bundles.reload(&authority) {
            tracing::error!(error = %e, "loading the published bundles failed");
        }
        AppState {
            authority,
            crl_dirty: Arc::new(Notify::new()),
            bundles,
            control_hash: None,
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let limits = &state.authority.config.api;
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    Router::new()
        .merge(public::routes())
        .merge(bundles::routes())
        .merge(refresh::routes())
        .nest(
            "/api/v1",
            certs::routes()
                .merge(anchors::routes())
                .merge(refresh::api_routes()),
        )
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Method, path and status only: bodies may hold keys or passwords.
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Runs the CRL publisher: coalesces revocation bursts and re-signs before nextUpdate.
pub fn spawn_crl_publisher(state: &AppState) -> tokio::task::JoinHandle<()> {
    let authority = state.authority.clone();
    let dirty = state.crl_dirty.clone();
    let coalesce = Duration::from_millis(authority.config.crl.coalesce_millis);
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
    let app = router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let https = tls.map(|listener| {
        let app = app.clone().into_make_service();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    });
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(task) = https {
        let _ = task.await;
    }
    publisher.abort();
    result
}

/// The JSON error body: `{code, message, reasons}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match &e {
            Error::Denied(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthorised(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotInitialised | Error::CaKey(_) | Error::Passphrase(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let (message, reasons) = match &e {
            Error::Denied(d) => (
                "the request was refused; see reasons".to_string(),
                d.reasons.clone(),
            ),
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

/// The local CLI acting through the server; it names its operator in `X-Anchorage-Actor`.
fn control_caller(parts: &Parts) -> TokenRecord {
    let actor: String = parts
        .headers
        .get("x-anchorage-actor")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("cli")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    TokenRecord {
        record_version: crate::store::RECORD_VERSION,
        id: "control".into(),
        hash: String::new(),
        role: "admin".into(),
        label: actor,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
    }
}

/// A caller authenticated by `Authorization: Bearer <token>`.
pub struct Caller(pub TokenRecord);

impl Caller {
    pub fn require(&self, roles: &[&str]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role.as_str()) {
            Ok(())
        } else {
            Err(ApiError(Error::Forbidden(format!(
                "the '{}' role may not do this (needs {})",
                self.0.role,
                roles.join(" or ")
            ))))
        }
    }

    /// How the caller appears in records and the audit log.
    pub fn actor(&self) -> String {
        let label = if self.0.label.is_empty() {
            "token"
        } else {
            &self.0.label
        };
        format!("{label} ({} token {})", self.0.role, self.0.id)
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
        Ok(Caller(state.authority.authenticate(secret)?))
    }
}
