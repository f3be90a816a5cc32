//! The admin page for organisations: list them with their domains and contacts, add or change
//! one, disable or enable it, and see the holders the upgrade could not settle. The same
//! `authority` use cases as `/api/v1/organisations`; every change is audited there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::admin::list_of;
use super::{render, see_other, Nav, WebError, WebPath, WebSession};
use crate::accounts::Role;
use crate::authority::{OrganisationChange, UnresolvedHolder};
use crate::error::Error;
use crate::http::{blocking, AppState};
use crate::organisations::OrganisationRecord;

const ADMIN: &[Role] = &[Role::Admin];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/organisations", get(page).post(save))
        .route("/admin/organisations/{id}/{action}", post(action))
}

#[derive(askama::Template)]
#[template(path = "admin_orgs.html", config = "src/http/web/askama.toml")]
struct OrgsPage {
    nav: Nav,
    csrf: String,
    orgs: Vec<OrganisationRecord>,
    unresolved: Vec<UnresolvedHolder>,
    error: Option<String>,
}

async fn render_page(
    state: &AppState,
    session: &WebSession,
    error: Option<String>,
) -> Result<Response, WebError> {
    let (authority, principal) = (state.authority.clone(), session.principal());
    let (orgs, unresolved) = blocking(move || {
        Ok((
            authority.organisations()?,
            authority.unresolved_holders(&principal)?,
        ))
    })
    .await
    .map_err(|e| WebError::from(e.0))?;
    let failed = error.is_some();
    let mut r = render(
        &OrgsPage {
            nav: session.nav("/admin/organisations"),
            csrf: session.csrf().to_string(),
            orgs,
            unresolved,
            error,
        },
        true,
    );
    if failed {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(r)
}

async fn page(State(state): State<AppState>, session: WebSession) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    render_page(&state, &session, None).await
}

#[derive(Deserialize)]
pub struct OrgForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    contacts: String,
}

async fn save(
    State(state): State<AppState>,
    session: WebSession,
    Form(form): Form<OrgForm>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let (authority, principal) = (state.authority.clone(), session.principal());
    let result = blocking(move || {
        let id = form.id.trim().to_string();
        let change = OrganisationChange {
            name: Some(form.name.trim().to_string()).filter(|n| !n.is_empty()),
            contacts: Some(list_of(&form.contacts)),
            domains: Some(list_of(&form.domains)),
        };
        authority.save_organisation(&principal, &id, change)
    })
    .await;
    match result {
        Ok(_) => Ok(see_other("/admin/organisations")),
        Err(crate::http::ApiError(
            e @ (Error::InvalidInput(_) | Error::Conflict(_) | Error::NotFound(_)),
        )) => render_page(&state, &session, Some(e.to_string())).await,
        Err(e) => Err(WebError::from(e.0)),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn action(
    State(state): State<AppState>,
    session: WebSession,
    WebPath((id, action)): WebPath<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(WebError::from(Error::NotFound("no such action".into()))),
    };
    let (authority, principal) = (state.authority.clone(), session.principal());
    blocking(move || authority.set_organisation_disabled(&principal, &id, disabled))
        .await
        .map_err(|e| WebError::from(e.0))?;
    Ok(see_other("/admin/organisations"))
}
