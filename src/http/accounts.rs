//! `/api/v1` account resources for administrators: users, API tokens and the audit log, with
//! the same rules as the admin console.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::anchors::blocking;
use super::{Admins, Allowed, ApiError, ApiJson, AppState, Caller};
use crate::accounts::{Role, Scope, UserRecord};
use crate::audit::AuditEntry;
use crate::authority::NewUser;
use crate::error::Error;
use crate::store::TokenRecord;

const ADMIN: &[&str] = &["admin"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{name}", get(show_user))
        .route("/users/{name}/disable", post(disable_user))
        .route("/users/{name}/enable", post(enable_user))
        .route("/users/{name}/password", post(set_password))
        .route("/tokens", get(list_tokens).post(add_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit", get(audit))
}

/// A user as the API shows it: never the password hash.
#[derive(Debug, Serialize)]
pub struct UserJson {
    pub username: String,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: String,
    pub disabled: bool,
}

impl From<&UserRecord> for UserJson {
    fn from(u: &UserRecord) -> Self {
        UserJson {
            username: u.username.clone(),
            name: u.display_name.clone(),
            role: u.role,
            scope: u.scope.clone(),
            created_at: u.created_at.to_string(),
            disabled: u.disabled_at.is_some(),
        }
    }
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserJson>>, ApiError> {
    caller.require(ADMIN)?;
    let mut users = state.authority.users()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(Json(users.iter().map(UserJson::from).collect()))
}

async fn show_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<UserJson>, ApiError> {
    caller.require(ADMIN)?;
    Ok(Json(UserJson::from(&state.authority.user(&name)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    pub username: String,
    #[serde(default)]
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub scope: Scope,
    /// Generated and returned once when absent.
    pub password: Option<String>,
}

async fn add_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, ApiError> {
    caller.require(ADMIN)?;
    let role = Role::parse(&body.role)?;
    let (password, generated) = match body.password {
        Some(p) => (zeroize::Zeroizing::new(p), false),
        None => (
            zeroize::Zeroizing::new(crate::accounts::random_secret()?),
            true,
        ),
    };
    let new = NewUser {
        username: body.username.trim().to_ascii_lowercase(),
        display_name: body.name,
        role,
        scope: body.scope,
    };
    let (authority, actor, pw) = (state.authority.clone(), caller.actor(), password.clone());
    let user = blocking(move || authority.add_user(new, &pw, &actor)).await?;
    let mut v =
        serde_json::to_value(UserJson::from(&user)).map_err(|e| Error::Store(e.to_string()))?;
    if generated {
        v["password"] = serde_json::json!(password.as_str());
    }
    let mut r = (StatusCode::CREATED, Json(v)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

async fn set_disabled(
    state: AppState,
    caller: Caller,
    name: String,
    disabled: bool,
) -> Result<Json<UserJson>, ApiError> {
    caller.require(ADMIN)?;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let user = blocking(move || authority.set_user_disabled(&name, disabled, &actor)).await?;
    Ok(Json(UserJson::from(&user)))
}

async fn disable_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(name): Path<String>,
) -> Result<Json<UserJson>, ApiError> {
    set_disabled(state, caller.0, name, true).await
}

async fn enable_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(name): Path<String>,
) -> Result<Json<UserJson>, ApiError> {
    set_disabled(state, caller.0, name, false).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// Generated and returned once when absent.
    pub password: Option<String>,
}

/// Sets a new password (ends the user's sessions); a generated one is returned once.
async fn set_password(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    let (password, generated) = match body.password {
        Some(p) => (zeroize::Zeroizing::new(p), false),
        None => (
            zeroize::Zeroizing::new(crate::accounts::random_secret()?),
            true,
        ),
    };
    let (authority, actor, pw, n) = (
        state.authority.clone(),
        caller.actor(),
        password.clone(),
        name.clone(),
    );
    blocking(move || authority.set_password(&n, &pw, &actor)).await?;
    let mut v = serde_json::json!({"username": name, "password_changed": true});
    if generated {
        v["password"] = serde_json::json!(password.as_str());
    }
    let mut r = Json(v).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// A token as the API shows it: never the secret or its hash.
#[derive(Debug, Serialize)]
pub struct TokenJson {
    pub id: String,
    pub role: String,
    pub label: String,
    pub scope: Scope,
    pub owner: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `live`, `expired` or `revoked` when listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
}

impl TokenJson {
    fn with_state(t: &TokenRecord, now: time::OffsetDateTime) -> TokenJson {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "live"
        };
        TokenJson {
            state: Some(state),
            ..TokenJson::from(t)
        }
    }
}

impl From<&TokenRecord> for TokenJson {
    fn from(t: &TokenRecord) -> Self {
        TokenJson {
            id: t.id.clone(),
            role: t.role.clone(),
            label: t.label.clone(),
            scope: t.scope.clone(),
            owner: t.owner.clone(),
            created_at: t.created_at.to_string(),
            expires_at: t.expires_at.map(|x| x.to_string()),
            revoked_at: t.revoked_at.map(|x| x.to_string()),
            state: None,
        }
    }
}

async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenJson>>, ApiError> {
    caller.require(ADMIN)?;
    let now = state.authority.now();
    Ok(Json(
        state
            .authority
            .tokens()?
            .iter()
            .map(|t| TokenJson::with_state(t, now))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    pub role: String,
    #[serde(default)]
    pub label: String,
    /// Days until expiry (default 90, at most 3650).
    pub valid_days: Option<u32>,
    /// Without a scope a registrar token may issue for every managed domain and a member
    /// token may submit to every bundle.
    pub scope: Option<Scope>,
}

async fn add_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, ApiError> {
    caller.require(ADMIN)?;
    let role = Role::parse(&body.role)?;
    let days = body.valid_days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(Error::InvalidInput("valid_days must be 1 to 3650".into()).into());
    }
    let scope = body.scope.unwrap_or_else(|| Scope::widest(role));
    let owner = caller.principal().user.clone();
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let (secret, record) = blocking(move || {
        authority.create_scoped_token(
            role,
            scope,
            &body.label,
            Some(days),
            owner.as_deref(),
            &actor,
        )
    })
    .await?;
    let mut v =
        serde_json::to_value(TokenJson::from(&record)).map_err(|e| Error::Store(e.to_string()))?;
    v["token"] = serde_json::json!(secret.as_str());
    let mut r = (StatusCode::CREATED, Json(v)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    Path(id): Path<String>,
) -> Result<Json<TokenJson>, ApiError> {
    caller.require(ADMIN)?;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let t = blocking(move || authority.revoke_token(&id, &actor)).await?;
    Ok(Json(TokenJson::from(&t)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Text contained in the actor.
    #[serde(default)]
    pub actor: String,
    /// Prefix of the action (`user.`, `cert.issue`).
    #[serde(default)]
    pub action: String,
    /// Text contained in the target.
    #[serde(default)]
    pub target: String,
    /// Only entries with a smaller sequence number (paging backwards).
    pub before: Option<u64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page.
    pub older: Option<u64>,
}

async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(ADMIN)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let authority = state.authority.clone();
    let (entries, older) = blocking(move || {
        crate::authority::audit_page(&authority, &q.actor, &q.action, &q.target, q.before, limit)
    })
    .await?;
    Ok(Json(AuditPage { entries, older }))
}
