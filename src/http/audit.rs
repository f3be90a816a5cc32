//! The audit log's checkpoints over HTTP: `POST /api/v1/audit/checkpoint` (administrators;
//! the CLI's `audit checkpoint` goes through it while `serve` holds the store), and the
//! scheduled checkpoints `serve` writes to `[audit]` checkpoint_path / checkpoint_url.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::{blocking, Admins, Allowed, ApiError, ApiJson, AppState, ErrorBody};
use crate::audit::Checkpoint;
use crate::authority::{checkpoint_destinations, send_checkpoint, write_checkpoint};

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit/checkpoint", post(checkpoint))
}

/// Where the caller will keep the checkpoint, for the audit entry.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointRequest {
    /// Files or URLs (without credentials) the checkpoint goes to; recorded in the log.
    pub destinations: Vec<String>,
}

/// A checkpoint of the audit log as it is now: entry count, head hash and time, MACed with
/// the audit key, after the whole chain verified. Recorded as `audit.checkpoint`. Keep it
/// where whoever can write the store cannot; `anchorage audit verify --checkpoint FILE` then
/// detects any rewrite, truncation or deletion since.
#[utoipa::path(
    post,
    path = "/api/v1/audit/checkpoint",
    operation_id = "audit_checkpoint",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = CheckpointRequest,
    responses(
        (status = 200, description = "The checkpoint", body = Checkpoint),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators make checkpoints", body = ErrorBody),
        (status = 500, description = "The audit log does not verify (the cause is in the service log)", body = ErrorBody),
        (status = 503, description = "The audit key is not loaded", body = ErrorBody),
    )
)]
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(request): ApiJson<CheckpointRequest>,
) -> Result<Json<Checkpoint>, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let cp = blocking(move || authority.audit_checkpoint(&actor, &request.destinations)).await?;
    Ok(Json(cp))
}

/// Writes a checkpoint at start and then every `[audit] checkpoint_interval_secs` (none when
/// 0) to the configured file and URL; failures are logged and retried at the next tick.
pub fn spawn_checkpointer(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let config = state.authority.config().audit.clone();
    if config.checkpoint_interval_secs == 0 {
        return None;
    }
    let authority = state.authority.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(config.checkpoint_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (path, url) = (config.checkpoint_path, config.checkpoint_url);
        let destinations = checkpoint_destinations(path.as_deref(), url.as_deref());
        loop {
            tick.tick().await;
            let (a, d) = (authority.clone(), destinations.clone());
            let made = tokio::task::spawn_blocking(move || a.audit_checkpoint("system", &d)).await;
            let cp = match made {
                Ok(Ok(cp)) => cp,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, code = e.code(), "audit checkpoint failed");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit checkpoint task failed");
                    continue;
                }
            };
            if let Some(p) = path.clone() {
                let c = cp.clone();
                match tokio::task::spawn_blocking(move || write_checkpoint(&p, &c)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "writing the audit checkpoint failed")
                    }
                    Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
                }
            }
            if let Some(u) = &url {
                if let Err(e) = send_checkpoint(u, &cp).await {
                    tracing::error!(error = %e, "sending the audit checkpoint failed");
                }
            }
            tracing::info!(entries = cp.entries, "audit checkpoint written");
        }
    }))
}
