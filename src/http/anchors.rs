//! `/api/v1` trust-bundle resources: members submit anchors, administrators approve, reject,
//! retire and promote them, and any change that alters a bundle publishes a new version and
//! swaps the in-memory copy the bundle endpoints serve.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Admins, Allowed, ApiError, ApiJson, AppState, Caller, Submitters};
use crate::authority::Submission;
use crate::error::Error;
use crate::store::{AnchorRecord, BundleVersion};

const REVIEWERS: &[&str] = &["admin"];
const SUBMITTERS: &[&str] = &["member", "admin"];

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The anchor file: PEM, or base64 of DER / .p7b.
    pub file: String,
    #[serde(default)]
    pub samples: Vec<String>,
    pub organization: String,
    pub contact: String,
}

/// The public view of an anchor record (no sample bodies, no raw subject).
#[derive(Debug, Serialize)]
pub struct AnchorJson {
    pub id: u64,
    pub bundle: String,
    pub state: &'static str,
    pub fingerprint: String,
    pub subject: String,
    pub not_after: String,
    pub key: String,
    pub organization: String,
    pub contact: String,
    pub samples: usize,
    pub promoted_from: Option<u64>,
    pub history: Vec<crate::store::AnchorEvent>,
}

impl From<&AnchorRecord> for AnchorJson {
    fn from(a: &AnchorRecord) -> Self {
        AnchorJson {
            id: a.id,
            bundle: a.bundle.clone(),
            state: a.state.as_str(),
            fingerprint: a.fingerprint.0.clone(),
            subject: a.subject.clone(),
            not_after: a
                .not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            key: a.key.clone(),
            organization: a.organization.clone(),
            contact: a.contact.clone(),
            samples: a.samples.len(),
            promoted_from: a.promoted_from,
            history: a.history.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Published {
    pub bundle: String,
    pub version: u64,
    pub sha256: String,
    pub anchors: usize,
}

impl From<&BundleVersion> for Published {
    fn from(v: &BundleVersion) -> Self {
        Published {
            bundle: v.bundle.clone(),
            version: v.version,
            sha256: v.sha256.clone(),
            anchors: v.anchors.len(),
        }
    }
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

/// Rebuilds a bundle and, when a version was published, swaps the served copy.
pub(crate) async fn publish(
    state: &AppState,
    bundle: String,
    actor: String,
) -> Result<Option<Published>, ApiError> {
    let authority = state.authority.clone();
    let version = blocking(move || authority.rebuild_bundle(&bundle, &actor)).await?;
    if version.is_some() {
        let authority = state.authority.clone();
        let cache = state.bundles.clone();
        blocking(move || cache.reload(&authority)).await?;
    }
    Ok(version.as_ref().map(Published::from))
}

async fn list_bundles(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let list = blocking(move || authority.bundle_summaries()).await?;
    Ok(Json(list).into_response())
}

async fn submit(
    State(state): State<AppState>,
    caller: Allowed<Submitters>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SubmitBody>,
) -> Result<Response, ApiError> {
    caller.require(SUBMITTERS)?;
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
    };
    let authority = state.authority.clone();
    let actor = caller.actor();
    let records = blocking(move || authority.submit_anchor(&submission, &actor)).await?;
    let anchors: Vec<AnchorJson> = records.iter().map(AnchorJson::from).collect();
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": ids.first(), "ids": ids, "anchors": anchors})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub bundle: Option<String>,
    pub state: Option<String>,
}

async fn list_anchors(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AnchorJson>>, ApiError> {
    caller.require(SUBMITTERS)?;
    let authority = state.authority.clone();
    let all = blocking(move || authority.store.anchors()).await?;
    let principal = caller.principal();
    Ok(Json(
        all.iter()
            .filter(|a| principal.may_use_bundle(&a.bundle))
            .filter(|a| q.bundle.as_ref().is_none_or(|b| *b == a.bundle))
            .filter(|a| q.state.as_ref().is_none_or(|s| s == a.state.as_str()))
            .map(AnchorJson::from)
            .collect(),
    ))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<AnchorJson>, ApiError> {
    caller.require(SUBMITTERS)?;
    let authority = state.authority.clone();
    let record = blocking(move || authority.anchor(id)).await?;
    if !caller.principal().may_use_bundle(&record.bundle) {
        return Err(Error::NotFound(format!("no anchor #{id}")).into());
    }
    Ok(Json(AnchorJson::from(&record)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub reason: String,
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
    Json(serde_json::json!({"anchor": AnchorJson::from(record), "published": published}))
        .into_response()
}

async fn approve(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(REVIEWERS)?;
    let note = optional_body(&body)?.note;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let record = blocking(move || authority.approve_anchor(id, &actor, &note)).await?;
    let published = publish(&state, record.bundle.clone(), caller.actor()).await?;
    let record = state.authority.anchor(id)?;
    Ok(decided(&record, published))
}

async fn reject(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    caller.require(REVIEWERS)?;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let record = blocking(move || authority.reject_anchor(id, &body.reason, &actor)).await?;
    Ok(decided(&record, None))
}

async fn retire(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.require(REVIEWERS)?;
    let note = optional_body(&body)?.note;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let record = blocking(move || authority.retire_anchor(id, &actor, &note)).await?;
    let published = publish(&state, record.bundle.clone(), caller.actor()).await?;
    Ok(decided(&record, published))
}

async fn promote(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    caller.require(REVIEWERS)?;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let to = body.to.clone();
    let record = blocking(move || authority.promote_anchor(id, &to, &actor)).await?;
    let published = publish(&state, record.bundle.clone(), caller.actor()).await?;
    let record = state.authority.anchor(record.id)?;
    Ok((StatusCode::CREATED, decided(&record, published)).into_response())
}

async fn build(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(REVIEWERS)?;
    state.authority.inventory.get(&name)?;
    let published = publish(&state, name.clone(), caller.actor()).await?;
    let current = state.authority.store.latest_bundle_version(&name)?;
    Ok(Json(serde_json::json!({
        "bundle": name,
        "published": published.is_some(),
        "version": current.as_ref().map(|v| v.version),
        "sha256": current.map(|v| v.sha256),
    }))
    .into_response())
}
