//! The admin console: the anchor review queue, bundles and external sources (`bundles.rs`),
//! users and API tokens (`accounts.rs`), CA status, and the audit-log viewer (here). Every
//! action is a POST with the CSRF token, followed by a redirect back to the page
//! (post/redirect/get).

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::{render, see_other, Nav, WebError, WebQuery, WebSession};
use crate::accounts::Role;
use crate::audit::AuditEntry;
use crate::authority::CaStatus;
use crate::http::blocking;
use crate::http::AppState;

mod accounts;
mod bundles;

pub(in crate::http::web) use accounts::list_of;

const ADMIN: &[Role] = &[Role::Admin];
const AUDIT_PAGE: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(console))
        .route("/admin/queue", get(bundles::queue))
        .route("/admin/anchors/{id}/{action}", post(bundles::decide))
        .route("/admin/bundles", get(bundles::bundles))
        .route("/admin/bundles/{name}/build", post(bundles::build))
        .route(
            "/admin/sources/{name}/refresh",
            post(bundles::refresh_source),
        )
        .route(
            "/admin/users",
            get(accounts::users).post(accounts::add_user),
        )
        .route("/admin/users/{name}/{action}", post(accounts::user_action))
        .route(
            "/admin/tokens",
            get(accounts::tokens).post(accounts::add_token),
        )
        .route("/admin/tokens/{id}/revoke", post(accounts::revoke_token))
        .route("/admin/ca", get(ca))
        .route("/admin/audit", get(audit))
}

async fn console(session: WebSession) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    Ok(see_other("/admin/queue"))
}

fn err(e: crate::http::ApiError) -> WebError {
    WebError::from(e.0)
}

#[derive(Debug, Deserialize)]
pub struct Done {
    /// A [`Notice`](crate::http::web::Notice) id; anything else shows no banner.
    done: Option<String>,
    /// Zero-based page of the users and tokens lists.
    #[serde(default)]
    page: usize,
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

#[derive(askama::Template)]
#[template(path = "admin_ca.html", config = "src/http/web/askama.toml")]
struct CaPage {
    nav: Nav,
    cas: Vec<CaStatus>,
    signer: Option<String>,
}

async fn ca(State(state): State<AppState>, session: WebSession) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let authority = state.authority.clone();
    let (cas, signer) = blocking(move || {
        let signer = authority
            .bundle_signer_cert()?
            .and_then(|der| crate::x509::summarize(&der).ok())
            .map(|s| format!("{} (until {})", s.subject, s.not_after.date()));
        Ok((authority.ca_status()?, signer))
    })
    .await
    .map_err(err)?;
    Ok(render(
        &CaPage {
            nav: session.nav("/admin/ca"),
            cas,
            signer,
        },
        true,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    before: Option<u64>,
}

#[derive(askama::Template)]
#[template(path = "admin_audit.html", config = "src/http/web/askama.toml")]
struct AuditPage {
    nav: Nav,
    q: AuditQuery,
    entries: Vec<AuditEntry>,
    older: Option<u64>,
    query_base: String,
}

async fn audit(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(q): WebQuery<AuditQuery>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let authority = state.authority.clone();
    let q2 = AuditQuery {
        actor: q.actor.clone(),
        action: q.action.clone(),
        target: q.target.clone(),
        before: q.before,
    };
    let (entries, older) = blocking(move || {
        crate::authority::audit_page(
            &authority, &q2.actor, &q2.action, &q2.target, q2.before, AUDIT_PAGE,
        )
    })
    .await
    .map_err(err)?;
    let query_base = format!(
        "actor={}&action={}&target={}",
        super::forms::url_encode(&q.actor),
        super::forms::url_encode(&q.action),
        super::forms::url_encode(&q.target)
    );
    Ok(render(
        &AuditPage {
            nav: session.nav("/admin/audit"),
            q,
            entries,
            older,
            query_base,
        },
        true,
    ))
}
