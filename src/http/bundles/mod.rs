//! The trust-bundle flow over HTTP. Here, the `/api/v1` resources: members submit anchors,
//! administrators approve, reject, retire and promote them (a change that alters a bundle
//! publishes a new version inside the use case). `files` renders what relying parties download
//! (the bundles, their changelogs and the index), served by `downloads`.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

mod batch;
pub mod files;

pub(in crate::http) use batch::{__path_approve_batch, __path_reject_batch};
pub(in crate::http) use batch::{approve_batch, reject_batch};

use super::{
    blocking, Admins, Allowed, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, ErrorBody,
    Submitters,
};
pub use crate::authority::views::{AnchorJson, Published};
use crate::authority::AnchorRecord;
use crate::authority::{BundleSummary, Submission};
use crate::error::Error;

/// Body limit of an anchor submission: the files travel base64-encoded, and the admission
/// policy accepts files up to 1 MiB by default, so the general API limit (64 KiB) would refuse
/// anchors the policy admits, and answer a file over the policy's limit with `body_too_large`
/// instead of its `upload_too_large`. Room for a maximal file and samples.
const SUBMIT_BODY_LIMIT: usize = 4 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bundles", get(list_bundles))
        .route(
            "/bundles/{name}/anchors",
            post(submit).layer(DefaultBodyLimit::max(SUBMIT_BODY_LIMIT)),
        )
        .route("/bundles/{name}/build", post(build))
        .route("/anchors", get(list_anchors))
        .route("/anchors/{id}", get(show))
        .route(
            "/anchors/approve",
            post(approve_batch).layer(DefaultBodyLimit::max(batch::BATCH_BODY_LIMIT)),
        )
        .route(
            "/anchors/reject",
            post(reject_batch).layer(DefaultBodyLimit::max(batch::BATCH_BODY_LIMIT)),
        )
        .route("/anchors/{id}/approve", post(approve))
        .route("/anchors/{id}/reject", post(reject))
        .route("/anchors/{id}/retire", post(retire))
        .route("/anchors/{id}/promote", post(promote))
}

/// Files travel as PEM text or base64 DER.
fn file_bytes(text: &str) -> Vec<u8> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        return t.as_bytes().to_vec();
    }
    base64::engine::general_purpose::STANDARD
        .decode(t.split_whitespace().collect::<String>())
        .unwrap_or_else(|_| t.as_bytes().to_vec())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The anchor file: PEM, or base64 of DER / .p7b.
    pub file: String,
    /// Sample end-entity certificates the anchor issued (PEM, or base64 of DER).
    #[serde(default)]
    pub samples: Vec<String>,
    /// The organisation operating the anchor.
    pub organization: String,
    /// How the reviewers reach the submitter.
    pub contact: String,
    /// Declares a key rollover: the anchor carries the CA's new key under the subject of an
    /// anchor the bundle already holds (pending, approved or published). Without it such an
    /// anchor is refused with `anchor_same_subject_different_key`; with it, it is admitted for
    /// review, marked as replacing those anchors (`rollover_of`).
    #[serde(default)]
    pub rollover: bool,
}

/// The anchors one submission created (a .p7b may hold several).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    /// The first anchor's id.
    pub id: Option<u64>,
    pub ids: Vec<u64>,
    pub anchors: Vec<AnchorJson>,
}

/// An anchor after a review decision, and the bundle version the decision published, if any.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Decided {
    pub anchor: AnchorJson,
    pub published: Option<Published>,
}

/// The outcome of a bundle rebuild.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Built {
    pub bundle: String,
    /// Whether this rebuild published a new version (false when nothing changed).
    pub published: bool,
    /// The current version, if any was ever published.
    pub version: Option<u64>,
    /// SHA-256 of the current version's file, hex.
    pub sha256: Option<String>,
}

/// Who submitted an anchor (the first event of its history).
fn submitter(a: &AnchorRecord) -> &str {
    a.history
        .first()
        .map(|e| e.actor.as_str())
        .unwrap_or_default()
}

/// The bundles with their current version and digest. Any role.
#[utoipa::path(
    get,
    path = "/api/v1/bundles",
    operation_id = "list_bundles",
    tag = "bundles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every declared bundle", body = Vec<BundleSummary>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn list_bundles(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let list = blocking(move || authority.bundle_summaries()).await?;
    Ok(Json(list).into_response())
}

/// Submit a trust anchor (with optional sample certificates) to a bundle for review.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{name}/anchors",
    operation_id = "submit_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Bundle name, as in the bundle inventory")),
    request_body = SubmitBody,
    responses(
        (status = 201, description = "Submitted, pending review", body = Submitted),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role or scope may not submit to this bundle", body = ErrorBody),
        (status = 404, description = "No such bundle", body = ErrorBody),
        (status = 409, description = "A concurrent submission of the same anchor won", body = ErrorBody),
        (status = 413, description = "Body over the submission size limit", body = ErrorBody),
        (status = 422, description = "Refused by the bundle's admission policy (including an anchor already in the bundle, and `anchor_same_subject_different_key` for the subject of an anchor of the bundle with another key when `rollover` is not set); `reasons` lists every failed rule", body = ErrorBody),
    )
)]
async fn submit(
    State(state): State<AppState>,
    caller: Allowed<Submitters>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SubmitBody>,
) -> Result<Response, ApiError> {
    if !caller.principal().may_use_bundle(&name) {
        return Err(Error::Forbidden(format!(
            "this account may not submit to the bundle '{name}'"
        ))
        .into());
    }
    let submission = Submission {
        bundle: name,
        file: file_bytes(&body.file),
        samples: body.samples.iter().map(|s| file_bytes(s)).collect(),
        organization: body.organization,
        contact: body.contact,
        rollover: body.rollover,
    };
    let authority = state.authority.clone();
    let actor = caller.actor();
    let records = blocking(move || authority.submit_anchor(&submission, &actor)).await?;
    let anchors: Vec<AnchorJson> = records.iter().map(AnchorJson::from).collect();
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            id: ids.first().copied(),
            ids,
            anchors,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only anchors of this bundle.
    pub bundle: Option<String>,
    /// Only anchors in this state (`pending`, `approved`, `published`, `rejected`, `retired`).
    pub state: Option<String>,
}

/// The anchors of the bundles the caller may use, filtered.
#[utoipa::path(
    get,
    path = "/api/v1/anchors",
    operation_id = "list_anchors",
    tag = "bundles",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Matching anchors in the caller's scope", body = Vec<AnchorJson>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read anchors", body = ErrorBody),
    )
)]
async fn list_anchors(
    State(state): State<AppState>,
    caller: Allowed<Submitters>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AnchorJson>>, ApiError> {
    let authority = state.authority.clone();
    let all = blocking(move || authority.anchors()).await?;
    let principal = caller.principal();
    Ok(Json(
        all.iter()
            .filter(|a| principal.sees_anchor(&a.bundle, submitter(a), &a.organization))
            .filter(|a| q.bundle.as_ref().is_none_or(|b| *b == a.bundle))
            .filter(|a| q.state.as_ref().is_none_or(|s| s == a.state.as_str()))
            .map(AnchorJson::from)
            .collect(),
    ))
}

/// One anchor with its review history.
#[utoipa::path(
    get,
    path = "/api/v1/anchors/{id}",
    operation_id = "get_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "Anchor id")),
    responses(
        (status = 200, description = "The anchor", body = AnchorJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read anchors", body = ErrorBody),
        (status = 404, description = "No such anchor in the caller's scope", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Allowed<Submitters>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<AnchorJson>, ApiError> {
    let authority = state.authority.clone();
    let record = blocking(move || authority.anchor(id)).await?;
    if !caller
        .principal()
        .sees_anchor(&record.bundle, submitter(&record), &record.organization)
    {
        return Err(Error::NotFound(format!("no anchor #{id}")).into());
    }
    Ok(Json(AnchorJson::from(&record)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// A note recorded with an approval or retirement.
    #[serde(default)]
    pub note: String,
    /// Why an anchor is rejected (required to reject).
    #[serde(default)]
    pub reason: String,
    /// The production bundle a test-bundle anchor is promoted to.
    #[serde(default)]
    pub to: String,
}

/// An optional JSON body: empty means all defaults.
fn optional_body(bytes: &[u8]) -> Result<DecisionBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(Error::InvalidInput(format!("invalid JSON body: {e}"))))
}

/// The decided anchor and the version its decision published, if any.
fn decided(record: &AnchorRecord, published: Option<Published>) -> Response {
    Json(Decided {
        anchor: AnchorJson::from(record),
        published,
    })
    .into_response()
}

/// Approve a pending anchor; its bundle publishes a new version.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/{id}/approve",
    operation_id = "approve_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "Anchor id")),
    request_body(content = Option<DecisionBody>, description = "Optional; only `note` is read"),
    responses(
        (status = 200, description = "Approved", body = Decided),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators review anchors", body = ErrorBody),
        (status = 404, description = "No such anchor", body = ErrorBody),
        (status = 409, description = "The anchor is not pending", body = ErrorBody),
        (status = 422, description = "The anchor no longer passes the admission policy", body = ErrorBody),
    )
)]
async fn approve(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<u64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note = optional_body(&body)?.note;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let decision = blocking(move || authority.approve_anchor(id, &actor, &note)).await?;
    let published = decision.published.as_ref().map(Published::from);
    Ok(decided(&decision.anchor, published))
}

/// Reject a pending anchor with a reason the submitter sees.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/{id}/reject",
    operation_id = "reject_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "Anchor id")),
    request_body(content = DecisionBody, description = "`reason` is required"),
    responses(
        (status = 200, description = "Rejected", body = Decided),
        (status = 400, description = "Malformed body or no reason", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators review anchors", body = ErrorBody),
        (status = 404, description = "No such anchor", body = ErrorBody),
        (status = 409, description = "The anchor is not pending", body = ErrorBody),
    )
)]
async fn reject(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let decision = blocking(move || authority.reject_anchor(id, &body.reason, &actor)).await?;
    Ok(decided(&decision.anchor, None))
}

/// Retire an anchor; its bundle publishes a new version without it.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/{id}/retire",
    operation_id = "retire_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "Anchor id")),
    request_body(content = Option<DecisionBody>, description = "Optional; only `note` is read"),
    responses(
        (status = 200, description = "Retired", body = Decided),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators retire anchors", body = ErrorBody),
        (status = 404, description = "No such anchor", body = ErrorBody),
        (status = 409, description = "The anchor is neither approved nor published", body = ErrorBody),
    )
)]
async fn retire(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<u64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note = optional_body(&body)?.note;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let decision = blocking(move || authority.retire_anchor(id, &actor, &note)).await?;
    let published = decision.published.as_ref().map(Published::from);
    Ok(decided(&decision.anchor, published))
}

/// Promote an anchor from a test bundle into its production bundle.
#[utoipa::path(
    post,
    path = "/api/v1/anchors/{id}/promote",
    operation_id = "promote_anchor",
    tag = "bundles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "Anchor id")),
    request_body(content = DecisionBody, description = "`to` names the production bundle"),
    responses(
        (status = 201, description = "The new anchor in the production bundle", body = Decided),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators promote anchors", body = ErrorBody),
        (status = 404, description = "No such anchor or bundle", body = ErrorBody),
        (status = 409, description = "Not promotable (not published, or already in the target)", body = ErrorBody),
        (status = 422, description = "Refused by the target bundle's admission policy", body = ErrorBody),
    )
)]
async fn promote(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let to = body.to.clone();
    let decision = blocking(move || authority.promote_anchor(id, &to, &actor)).await?;
    let published = decision.published.as_ref().map(Published::from);
    Ok((StatusCode::CREATED, decided(&decision.anchor, published)).into_response())
}

/// Rebuild a bundle now; publishes a new version only if its content changed.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{name}/build",
    operation_id = "build_bundle",
    tag = "bundles",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Bundle name, as in the bundle inventory")),
    responses(
        (status = 200, description = "The bundle's current version", body = Built),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators rebuild bundles", body = ErrorBody),
        (status = 404, description = "No such bundle", body = ErrorBody),
    )
)]
async fn build(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (authority, actor, bundle) = (state.authority.clone(), caller.actor(), name.clone());
    let built = blocking(move || authority.build_bundle(&bundle, &actor)).await?;
    let published = built.published.as_ref().map(Published::from);
    Ok(Json(Built {
        bundle: name,
        published: published.is_some(),
        version: built.current.as_ref().map(|v| v.version),
        sha256: built.current.map(|v| v.sha256),
    })
    .into_response())
}
