//! Unauthenticated plain-HTTP resources that relying parties fetch: CRLs and CA certificates
//! at the URLs written into certificates (CDP, AIA caIssuers), and a health check.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, ApiPath, AppState};
use crate::ca::CaRole;
use crate::error::Error;
use crate::x509;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/crl/{file}", get(crl))
        .route("/ca/{file}", get(ca_cert))
}

async fn health(State(state): State<AppState>) -> Response {
    let authority = state.authority.clone();
    let checked = tokio::task::spawn_blocking(move || {
        authority.is_initialised().and_then(|ready| match ready {
            true => authority.health_problems().map(Some),
            false => Ok(None),
        })
    })
    .await;
    match checked {
        // Still serving, but something will soon hurt relying parties or issuance: degraded,
        // with HTTP 200 so CRLs, CA certificates and bundles keep being served behind
        // balancers; monitoring alerts on `status`.
        // The store cannot be written: issuance and revocation fail. An error, not a
        // degradation, so balancers and monitoring see it; reads still answer.
        Ok(Ok(Some(problems))) if problems.iter().any(|p| p.is_error()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "problems": problems})),
        )
            .into_response(),
        Ok(Ok(Some(problems))) if !problems.is_empty() => {
            let stale: Vec<&str> = problems
                .iter()
                .filter(|p| p.code == "external_source_stale")
                .map(|p| p.subject.as_str())
                .collect();
            Json(json!({"status": "degraded", "problems": problems, "stale_sources": stale}))
                .into_response()
        }
        Ok(Ok(Some(_))) => Json(json!({"status": "ok"})).into_response(),
        Ok(Ok(None)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_initialised"})),
        )
            .into_response(),
        // The check itself failed: most often the store cannot be read. Never 200, and the
        // body names the failing part without internals (the cause goes to the log).
        Ok(Err(e)) => {
            tracing::error!(error = %e, code = e.code(), "health check failed");
            let problem = match &e {
                Error::Store(_) | Error::StoreEngine(_) | Error::Io { .. } => json!({
                    "code": "store_unreadable",
                    "subject": "store",
                    "message": "the store could not be read; the cause is in the service log",
                }),
                other => json!({
                    "code": "health_check_failed",
                    "subject": other.code(),
                    "message": "the health check failed; the cause is in the service log",
                }),
            };
            health_error(problem)
        }
        Err(e) => {
            tracing::error!(error = %e, "health check task failed");
            health_error(json!({
                "code": "health_check_failed",
                "subject": "task",
                "message": "the health check task failed; the cause is in the service log",
            }))
        }
    }
}

/// HTTP 503 with status `error` and the one problem that made the check fail.
fn health_error(problem: serde_json::Value) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "error", "problems": [problem]})),
    )
        .into_response()
}

fn role_of(file: &str, suffix: &str) -> Result<CaRole, ApiError> {
    file.strip_suffix(suffix)
        .and_then(CaRole::parse)
        .ok_or_else(|| ApiError(Error::NotFound(format!("no such resource '{file}'"))))
}

fn binary(content_type: &'static str, body: Vec<u8>, max_age: u64) -> Response {
    let etag = format!("\"{}\"", crate::model::Fingerprint::of(&body));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    response
}

async fn crl(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let role = role_of(&file, ".crl")?;
    let crl = state.authority.stored_crl(role)?.ok_or_else(|| {
        ApiError(Error::NotFound(format!(
            "the {} CA has no CRL here",
            role.as_str()
        )))
    })?;
    // Short caching: a new CRL follows a revocation within seconds.
    Ok(binary("application/pkix-crl", crl.der, 300))
}

async fn ca_cert(
    State(state): State<AppState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    if file == "chain.pem" {
        let pem: String = state
            .authority
            .ca_chain()?
            .iter()
            .map(|d| x509::to_pem("CERTIFICATE", d))
            .collect();
        return Ok(binary(
            "application/pem-certificate-chain",
            pem.into_bytes(),
            3600,
        ));
    }
    let (role, pem) = match file.strip_suffix(".pem") {
        Some(name) => (CaRole::parse(name), true),
        None => (file.strip_suffix(".cer").and_then(CaRole::parse), false),
    };
    let role =
        role.ok_or_else(|| ApiError(Error::NotFound(format!("no such resource '{file}'"))))?;
    let der = state.authority.ca_cert(role)?;
    Ok(if pem {
        binary(
            "application/x-pem-file",
            x509::to_pem("CERTIFICATE", &der).into_bytes(),
            3600,
        )
    } else {
        binary("application/pkix-cert", der, 3600)
    })
}
