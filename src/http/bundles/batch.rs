//! Batch review over HTTP: `POST /api/v1/anchors/approve` and `POST /api/v1/anchors/reject`
//! take a list of anchor ids, so an administrator approving a thousand submissions publishes
//! one bundle version instead of a thousand. The use case (`Authority::approve_anchors`)
//! checks every id before it changes any, audits each anchor, and refuses the whole batch
//! naming the first bad id.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{AnchorJson, Published};
use crate::authority::BatchDecision;
use crate::http::{blocking, Admins, Allowed, ApiError, ApiJson, AppState, ErrorBody};

/// Body limit of a batch: 10,000 ids with room for a note.
pub(super) const BATCH_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The anchors to decide (1 to 10,000, each once).
    pub ids: Vec<u64>,
    /// A note recorded with each approval.
    #[serde(default)]
    pub note: String,
    /// Why the anchors are rejected (required to reject).
    #[serde(default)]
    pub reason: String,
}

/// Every anchor of a batch as it is now, in the order asked, and the versions the batch
/// published (one per affected bundle whose content changed; none for a rejection).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchDecided {
    pub anchors: Vec<AnchorJson>,
    pub published: Vec<Published>,
}

impl From<&BatchDecision> for BatchDecided {
    fn from(d: &BatchDecision) -> Self {
        BatchDecided {
            anchors: d.anchors.iter().map(AnchorJson::from).collect(),
            published: d.published.iter().map(Published::from).collect(),
        }
    }
}

/// Approve several pending anchors; each affected bundle publishes ONE new version.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/approve",
    operation_id = "approve_anchors",
    tag = "bundles",
    security(("bearer" = [])),
    request_body(content = BatchBody, description = "`ids` is required; `note` is optional"),
    responses(
        (status = 200, description = "All approved", body = BatchDecided),
        (status = 400, description = "Malformed body, no ids, an id listed twice, or over 10,000 ids", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators review anchors", body = ErrorBody),
        (status = 404, description = "An id names no anchor (nothing approved)", body = ErrorBody),
        (status = 409, description = "An anchor is not pending (nothing approved)", body = ErrorBody),
        (status = 422, description = "An anchor no longer passes the admission policy (nothing approved)", body = ErrorBody),
    )
)]
pub(in crate::http) async fn approve_batch(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Response, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let decision =
        blocking(move || authority.approve_anchors(&body.ids, &actor, &body.note)).await?;
    Ok(Json(BatchDecided::from(&decision)).into_response())
}

/// Reject several pending anchors with one reason the submitters see; nothing is published.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/reject",
    operation_id = "reject_anchors",
    tag = "bundles",
    security(("bearer" = [])),
    request_body(content = BatchBody, description = "`ids` and `reason` are required"),
    responses(
        (status = 200, description = "All rejected", body = BatchDecided),
        (status = 400, description = "Malformed body, no ids or no reason, an id listed twice, or over 10,000 ids", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators review anchors", body = ErrorBody),
        (status = 404, description = "An id names no anchor (nothing rejected)", body = ErrorBody),
        (status = 409, description = "An anchor is neither pending nor approved (nothing rejected)", body = ErrorBody),
    )
)]
pub(in crate::http) async fn reject_batch(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Response, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let decision =
        blocking(move || authority.reject_anchors(&body.ids, &body.reason, &actor)).await?;
    Ok(Json(BatchDecided::from(&decision)).into_response())
}
