//! The admin console's account pages: users of the web interface (add, edit, enable,
//! disable, reset a password) and scoped API tokens (create, shown once; revoke).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::{err, CsrfOnly, Done, ADMIN};
use crate::accounts::{Role, Scope, UserRecord};
use crate::authority::{NewUser, TokenRecord};
use crate::error::Error;
use crate::http::blocking;
use crate::http::web::{
    paginate, render, see_other, Nav, Notice, Paging, WebError, WebPath, WebQuery, WebSession,
    PAGE_SIZE,
};
use crate::http::AppState;

#[derive(askama::Template)]
#[template(path = "admin_users.html", config = "src/http/web/askama.toml")]
struct UsersPage {
    nav: Nav,
    csrf: String,
    users: Vec<UserRecord>,
    paging: Paging,
    error: Option<String>,
    generated: Option<(String, String)>,
    roles: Vec<&'static str>,
}

fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

async fn users_page(
    state: &AppState,
    session: &WebSession,
    error: Option<String>,
    generated: Option<(String, String)>,
    flash: Option<Notice>,
    page: usize,
) -> Result<Response, WebError> {
    let mut users = state.authority.users()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let (users, paging) = paginate(users, page, PAGE_SIZE);
    let page = UsersPage {
        nav: session.nav("/admin/users").with_flash(flash),
        csrf: session.csrf().to_string(),
        users,
        paging,
        error,
        generated,
        roles: roles(),
    };
    Ok(render(&page, true))
}

pub(super) async fn users(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(d): WebQuery<Done>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let flash = Notice::from_query(d.done.as_deref(), "/admin/users");
    users_page(&state, &session, None, None, flash, d.page).await
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    organisations: String,
    #[serde(default)]
    bundles: String,
}

/// Comma- or line-separated list field.
pub(in crate::http::web) fn list_of(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) async fn add_user(
    State(state): State<AppState>,
    session: WebSession,
    Form(form): Form<UserForm>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let role = match Role::parse(form.role.trim()) {
        Ok(r) => r,
        Err(e) => return users_page(&state, &session, Some(e.to_string()), None, None, 0).await,
    };
    let password = zeroize::Zeroizing::new(crate::accounts::random_secret()?);
    let new = NewUser {
        username: form.username.trim().to_ascii_lowercase(),
        display_name: form.name,
        role,
        scope: Scope {
            domains: list_of(&form.domains),
            organisations: list_of(&form.organisations),
            bundles: list_of(&form.bundles),
        },
    };
    let authority = state.authority.clone();
    let actor = session.actor();
    let pw = password.clone();
    match blocking(move || authority.add_user(new, &pw, &actor)).await {
        Ok(user) => {
            let generated = Some((user.username.clone(), password.to_string()));
            users_page(
                &state,
                &session,
                None,
                generated,
                Some(Notice::UserCreated),
                0,
            )
            .await
        }
        Err(crate::http::ApiError(e @ (Error::InvalidInput(_) | Error::Conflict(_)))) => {
            let mut r = users_page(&state, &session, Some(e.to_string()), None, None, 0).await?;
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(r)
        }
        Err(e) => Err(err(e)),
    }
}

pub(super) async fn user_action(
    State(state): State<AppState>,
    session: WebSession,
    WebPath((name, action)): WebPath<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let (authority, actor) = (state.authority.clone(), session.actor());
    let notice = match action.as_str() {
        "disable" if name == session.signed_in.user.username => {
            return Err(WebError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "You cannot disable your own account.",
            ))
        }
        "disable" | "enable" => {
            let disable = action == "disable";
            let n = name.clone();
            blocking(move || authority.set_user_disabled(&n, disable, &actor))
                .await
                .map_err(err)?;
            if disable {
                Notice::UserDisabled
            } else {
                Notice::UserEnabled
            }
        }
        "reset" => {
            let password = zeroize::Zeroizing::new(crate::accounts::random_secret()?);
            let (n, pw) = (name.clone(), password.clone());
            blocking(move || authority.set_password(&n, &pw, &actor))
                .await
                .map_err(err)?;
            return users_page(
                &state,
                &session,
                None,
                Some((name.clone(), password.to_string())),
                Some(Notice::PasswordReset),
                0,
            )
            .await;
        }
        _ => return Err(WebError::status(StatusCode::NOT_FOUND, "No such action.")),
    };
    Ok(see_other(&notice.redirect_to("/admin/users")))
}

#[derive(askama::Template)]
#[template(path = "admin_tokens.html", config = "src/http/web/askama.toml")]
struct TokensPage {
    nav: Nav,
    csrf: String,
    tokens: Vec<(TokenRecord, &'static str)>,
    paging: Paging,
    created: Option<(String, String)>,
    error: Option<String>,
    roles: Vec<&'static str>,
}

async fn tokens_page(
    state: &AppState,
    session: &WebSession,
    created: Option<(String, String)>,
    error: Option<String>,
    flash: Option<Notice>,
    page: usize,
) -> Result<Response, WebError> {
    let now = state.authority.now();
    let mut all = state.authority.tokens()?;
    // Newest first: the one just created or revoked is on the first page.
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let (all, paging) = paginate(all, page, PAGE_SIZE);
    let tokens = all
        .into_iter()
        .map(|t| {
            let status = t.state(now);
            (t, status)
        })
        .collect();
    let page = TokensPage {
        nav: session.nav("/admin/tokens").with_flash(flash),
        csrf: session.csrf().to_string(),
        tokens,
        paging,
        created,
        error,
        roles: roles(),
    };
    Ok(render(&page, true))
}

pub(super) async fn tokens(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(d): WebQuery<Done>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let flash = Notice::from_query(d.done.as_deref(), "/admin/tokens");
    tokens_page(&state, &session, None, None, flash, d.page).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    valid_days: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    organisations: String,
    #[serde(default)]
    bundles: String,
}

pub(super) async fn add_token(
    State(state): State<AppState>,
    session: WebSession,
    Form(form): Form<TokenForm>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let parsed = Role::parse(form.role.trim()).and_then(|role| {
        let days = form
            .valid_days
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| Error::InvalidInput("validity must be 1 to 3650 days".into()))?;
        Ok((role, days))
    });
    let (role, days) = match parsed {
        Ok(x) => x,
        Err(e) => return tokens_page(&state, &session, None, Some(e.to_string()), None, 0).await,
    };
    let scope = Scope {
        domains: list_of(&form.domains),
        organisations: list_of(&form.organisations),
        bundles: list_of(&form.bundles),
    };
    let owner = session.signed_in.user.username.clone();
    let (authority, actor, label) = (state.authority.clone(), session.actor(), form.label.clone());
    match blocking(move || {
        authority.create_scoped_token(role, scope, &label, Some(days), Some(&owner), &actor)
    })
    .await
    {
        Ok((secret, record)) => {
            tokens_page(
                &state,
                &session,
                Some((record.id.clone(), secret.to_string())),
                None,
                None,
                0,
            )
            .await
        }
        Err(crate::http::ApiError(e @ Error::InvalidInput(_))) => {
            tokens_page(&state, &session, None, Some(e.to_string()), None, 0).await
        }
        Err(e) => Err(err(e)),
    }
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(id): WebPath<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let (authority, actor) = (state.authority.clone(), session.actor());
    blocking(move || authority.revoke_token(&id, &actor))
        .await
        .map_err(err)?;
    Ok(see_other(
        &Notice::TokenRevoked.redirect_to("/admin/tokens"),
    ))
}
