//! The health check. The CRLs and CA certificates at the URLs written into certificates (CDP,
//! AIA caIssuers) are prepared downloads (see `downloads`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::error::Error;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
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
