//! `/api/v1/organisations` and `/api/v1/holders`: the organisations served by this CA, which
//! domains (or parts of domains) each may hold identifiers in, and which organisation each
//! address or domain belongs to. Admins manage them; registrars and members read the
//! organisations in their scope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{
    blocking, Admins, Allowed, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, ErrorBody,
};
pub use crate::authority::views::OrganisationJson;
use crate::authority::{OrganisationChange, UnresolvedHolder};
use crate::organisations::HolderBinding;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organisations", get(list).post(add))
        .route("/organisations/{id}", get(show).post(edit))
        .route("/organisations/{id}/disable", post(disable))
        .route("/organisations/{id}/enable", post(enable))
        .route("/holders", get(holders))
        .route("/holders/unresolved", get(unresolved))
        .route("/holders/{holder}", get(holder))
        .route("/holders/{holder}/transfer", post(transfer))
}

/// A new organisation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisationBody {
    /// 2-64 lower-case letters, digits and '-'.
    #[schema(example = "good-clinic")]
    pub id: String,
    /// Display name (written into its certificates' O attribute); the id when absent.
    pub name: Option<String>,
    #[serde(default)]
    pub contacts: Vec<String>,
    #[serde(default)]
    #[schema(example = json!(["good.direct.example.com", "*@direct.example.com"]))]
    pub domains: Vec<String>,
}

/// An edit: absent fields stay; given lists replace the old ones.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditOrganisationBody {
    pub name: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
}

/// The organisations the caller may see (admins: all).
#[utoipa::path(
    get,
    path = "/api/v1/organisations",
    operation_id = "list_organisations",
    tag = "organisations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organisations in the caller's scope, by id", body = Vec<OrganisationJson>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<OrganisationJson>>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let orgs = blocking(move || authority.organisations_for(&principal)).await?;
    Ok(Json(orgs.iter().map(OrganisationJson::from).collect()))
}

/// One organisation, if it is in the caller's scope.
#[utoipa::path(
    get,
    path = "/api/v1/organisations/{id}",
    operation_id = "get_organisation",
    tag = "organisations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Organisation id")),
    responses(
        (status = 200, description = "The organisation", body = OrganisationJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such organisation in the caller's scope", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrganisationJson>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let org = blocking(move || authority.organisation_for(&principal, &id)).await?;
    Ok(Json(OrganisationJson::from(&org)))
}

/// Create an organisation.
#[utoipa::path(
    post,
    path = "/api/v1/organisations",
    operation_id = "create_organisation",
    tag = "organisations",
    security(("bearer" = [])),
    request_body = NewOrganisationBody,
    responses(
        (status = 201, description = "Created", body = OrganisationJson),
        (status = 400, description = "Bad id, name, contact or domain entry (or a domain that is not managed)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage organisations", body = ErrorBody),
        (status = 409, description = "The id is taken, or a whole domain overlaps another organisation's entries", body = ErrorBody),
    )
)]
async fn add(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<NewOrganisationBody>,
) -> Result<Response, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let org = blocking(move || {
        authority.add_organisation(
            &principal,
            &body.id,
            OrganisationChange {
                name: body.name,
                contacts: Some(body.contacts),
                domains: Some(body.domains),
            },
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(OrganisationJson::from(&org))).into_response())
}

/// Change an organisation's name, contacts or domains.
#[utoipa::path(
    post,
    path = "/api/v1/organisations/{id}",
    operation_id = "edit_organisation",
    tag = "organisations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Organisation id")),
    request_body = EditOrganisationBody,
    responses(
        (status = 200, description = "The organisation as changed", body = OrganisationJson),
        (status = 400, description = "Bad name, contact or domain entry", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage organisations", body = ErrorBody),
        (status = 404, description = "No such organisation", body = ErrorBody),
        (status = 409, description = "A whole domain overlaps another organisation's entries", body = ErrorBody),
    )
)]
async fn edit(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EditOrganisationBody>,
) -> Result<Json<OrganisationJson>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let org = blocking(move || {
        authority.edit_organisation(
            &principal,
            &id,
            OrganisationChange {
                name: body.name,
                contacts: body.contacts,
                domains: body.domains,
            },
        )
    })
    .await?;
    Ok(Json(OrganisationJson::from(&org)))
}

async fn set_disabled(
    state: AppState,
    caller: Allowed<Admins>,
    id: String,
    disabled: bool,
) -> Result<Json<OrganisationJson>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let org =
        blocking(move || authority.set_organisation_disabled(&principal, &id, disabled)).await?;
    Ok(Json(OrganisationJson::from(&org)))
}

/// Disable an organisation: nothing more is issued for its holders.
#[utoipa::path(
    post,
    path = "/api/v1/organisations/{id}/disable",
    operation_id = "disable_organisation",
    tag = "organisations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Organisation id")),
    responses(
        (status = 200, description = "The organisation, disabled", body = OrganisationJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage organisations", body = ErrorBody),
        (status = 404, description = "No such organisation", body = ErrorBody),
    )
)]
async fn disable(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrganisationJson>, ApiError> {
    set_disabled(state, caller, id, true).await
}

/// Enable a disabled organisation.
#[utoipa::path(
    post,
    path = "/api/v1/organisations/{id}/enable",
    operation_id = "enable_organisation",
    tag = "organisations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Organisation id")),
    responses(
        (status = 200, description = "The organisation, enabled", body = OrganisationJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage organisations", body = ErrorBody),
        (status = 404, description = "No such organisation", body = ErrorBody),
    )
)]
async fn enable(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrganisationJson>, ApiError> {
    set_disabled(state, caller, id, false).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoldersQuery {
    /// Only the holders of this organisation (id).
    pub organisation: Option<String>,
}

/// Every holder and its organisation.
#[utoipa::path(
    get,
    path = "/api/v1/holders",
    operation_id = "list_holders",
    tag = "organisations",
    security(("bearer" = [])),
    params(HoldersQuery),
    responses(
        (status = 200, description = "Holder bindings, by holder", body = Vec<HolderBinding>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators", body = ErrorBody),
    )
)]
async fn holders(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiQuery(q): ApiQuery<HoldersQuery>,
) -> Result<Json<Vec<HolderBinding>>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    let list =
        blocking(move || authority.holder_bindings(&principal, false, q.organisation.as_deref()))
            .await?;
    Ok(Json(list))
}

/// Holders whose certificates named different organisations (or none): admins only may use
/// them until settled with a transfer (`anchorage org check`).
#[utoipa::path(
    get,
    path = "/api/v1/holders/unresolved",
    operation_id = "list_unresolved_holders",
    tag = "organisations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unsettled holders", body = Vec<UnresolvedHolder>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators", body = ErrorBody),
    )
)]
async fn unresolved(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
) -> Result<Json<Vec<UnresolvedHolder>>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    Ok(Json(
        blocking(move || authority.unresolved_holders(&principal)).await?,
    ))
}

/// The organisation one holder belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/holders/{holder}",
    operation_id = "get_holder",
    tag = "organisations",
    security(("bearer" = [])),
    params(("holder" = String, Path, description = "Direct address or health domain")),
    responses(
        (status = 200, description = "The binding", body = HolderBinding),
        (status = 400, description = "Not an address or domain", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators", body = ErrorBody),
        (status = 404, description = "The holder has no certificate", body = ErrorBody),
    )
)]
async fn holder(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(holder): ApiPath<String>,
) -> Result<Json<HolderBinding>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    Ok(Json(
        blocking(move || authority.holder_binding(&principal, &holder)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The organisation (id) the holder moves to.
    pub organisation: String,
}

/// Move a holder, with all its certificates, to another organisation (or settle an
/// unresolved one). Audited as `holder.transfer`.
#[utoipa::path(
    post,
    path = "/api/v1/holders/{holder}/transfer",
    operation_id = "transfer_holder",
    tag = "organisations",
    security(("bearer" = [])),
    params(("holder" = String, Path, description = "Direct address or health domain")),
    request_body = TransferBody,
    responses(
        (status = 200, description = "The new binding", body = HolderBinding),
        (status = 400, description = "Not an address or domain", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators", body = ErrorBody),
        (status = 404, description = "No such holder or organisation", body = ErrorBody),
        (status = 409, description = "The organisation may not hold it (`holder_outside_organisation`, `holder_owned_elsewhere`)", body = ErrorBody),
    )
)]
async fn transfer(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(holder): ApiPath<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<Json<HolderBinding>, ApiError> {
    let (authority, principal) = (state.authority.clone(), caller.principal().clone());
    Ok(Json(
        blocking(move || authority.transfer_holder(&principal, &holder, &body.organisation))
            .await?,
    ))
}
