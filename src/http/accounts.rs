//! `/api/v1` account resources for administrators: users, API tokens and the audit log, with
//! the same rules as the admin console.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::blocking;
use super::{Admins, Allowed, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, ErrorBody};
use crate::accounts::{Role, Scope};
use crate::audit::AuditEntry;
pub use crate::authority::views::{TokenJson, UserJson};
use crate::authority::NewUser;
use crate::error::Error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(add_user))
        .route("/users/{name}", get(show_user).post(edit_user))
        .route("/users/{name}/disable", post(disable_user))
        .route("/users/{name}/enable", post(enable_user))
        .route("/users/{name}/password", post(set_password))
        .route("/tokens", get(list_tokens).post(add_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit", get(audit))
        .route("/backup", get(backup))
}

/// Every user, by username.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "list_users",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The users", body = Vec<UserJson>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
) -> Result<Json<Vec<UserJson>>, ApiError> {
    let mut users = state.authority.users()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(Json(users.iter().map(UserJson::from).collect()))
}

/// One user.
#[utoipa::path(
    get,
    path = "/api/v1/users/{name}",
    operation_id = "get_user",
    tag = "accounts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "The user", body = UserJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn show_user(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UserJson>, ApiError> {
    Ok(Json(UserJson::from(&state.authority.user(&name)?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// Stored lower-case.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// `admin`, `registrar`, `member` or `dns_operator`.
    #[schema(example = "registrar")]
    pub role: String,
    /// A registrar names its domains (or organisations), a member its bundles.
    #[serde(default)]
    pub scope: Scope,
    /// Generated and returned once when absent.
    pub password: Option<String>,
}

/// Create a user; a generated password is returned once.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "create_user",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created", body = NewUserJson),
        (status = 400, description = "Malformed body, unknown role, invalid scope or weak password", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 409, description = "The username is taken", body = ErrorBody),
    )
)]
async fn add_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, ApiError> {
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
    let v = NewUserJson {
        user: UserJson::from(&user),
        password: generated.then(|| password.to_string()),
    };
    let mut r = (StatusCode::CREATED, Json(v)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// A change of a user's role and/or scope (absent fields stay).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditUserBody {
    /// `admin`, `registrar`, `member` or `dns_operator`.
    pub role: Option<String>,
    pub scope: Option<Scope>,
}

/// Change a user's role or scope. Takes effect at once for its sessions and every token it
/// created.
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}",
    operation_id = "edit_user",
    tag = "accounts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    request_body = EditUserBody,
    responses(
        (status = 200, description = "The user as changed", body = UserJson),
        (status = 400, description = "Unknown role, or a scope naming nothing that exists", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn edit_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<EditUserBody>,
) -> Result<Json<UserJson>, ApiError> {
    let role = body.role.as_deref().map(Role::parse).transpose()?;
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let user = blocking(move || authority.edit_user(&name, role, body.scope, &actor)).await?;
    Ok(Json(UserJson::from(&user)))
}

/// A user just created, with the password when the server generated it (shown once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewUserJson {
    #[serde(flatten)]
    pub user: UserJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

async fn set_disabled(
    state: AppState,
    caller: Caller,
    name: String,
    disabled: bool,
) -> Result<Json<UserJson>, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let user = blocking(move || authority.set_user_disabled(&name, disabled, &actor)).await?;
    Ok(Json(UserJson::from(&user)))
}

/// Disable a user: sign-in is refused and the user's sessions end.
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/disable",
    operation_id = "disable_user",
    tag = "accounts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "The user, disabled", body = UserJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn disable_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UserJson>, ApiError> {
    set_disabled(state, caller.0, name, true).await
}

/// Enable a disabled user.
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/enable",
    operation_id = "enable_user",
    tag = "accounts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "The user, enabled", body = UserJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn enable_user(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UserJson>, ApiError> {
    set_disabled(state, caller.0, name, false).await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// Generated and returned once when absent.
    pub password: Option<String>,
}

/// The answer to a password change.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasswordChanged {
    pub username: String,
    pub password_changed: bool,
    /// The generated password, shown only in this response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Set a new password for a user; the user's sessions end.
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/password",
    operation_id = "set_user_password",
    tag = "accounts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "Changed; a generated password is in the body once", body = PasswordChanged),
        (status = 400, description = "Malformed body or weak password", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn set_password(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
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
    let body = PasswordChanged {
        username: name,
        password_changed: true,
        password: generated.then(|| password.to_string()),
    };
    let mut r = Json(body).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// Every API token (never the secrets).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenJson>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage tokens", body = ErrorBody),
    )
)]
async fn list_tokens(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
) -> Result<Json<Vec<TokenJson>>, ApiError> {
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// `admin`, `registrar`, `member` or `dns_operator`.
    #[schema(example = "registrar")]
    pub role: String,
    #[serde(default)]
    pub label: String,
    /// Days until expiry (default 90, at most 3650).
    pub valid_days: Option<u32>,
    /// Required for registrar tokens (domains and/or organisations) and member tokens
    /// (bundles); `*` must be written out. The token's effective scope is always also limited
    /// by its creator's current scope.
    pub scope: Option<Scope>,
}

/// Create an API token; its secret is returned once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewTokenBody,
    responses(
        (status = 201, description = "Created; `token` is the secret, shown only here", body = NewTokenJson),
        (status = 400, description = "Malformed body, unknown role, invalid scope or validity", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage tokens", body = ErrorBody),
    )
)]
async fn add_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&body.role)?;
    let days = body.valid_days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(Error::InvalidInput("valid_days must be 1 to 3650".into()).into());
    }
    // No silent '*': registrar and member tokens must name their scope.
    let scope = body.scope.unwrap_or_default();
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
    let v = NewTokenJson {
        record: TokenJson::from(&record),
        token: secret.to_string(),
    };
    let mut r = (StatusCode::CREATED, Json(v)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// A token just created, with its secret (shown once; only its hash is stored).
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewTokenJson {
    #[serde(flatten)]
    pub record: TokenJson,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// Revoke an API token.
#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/revoke",
    operation_id = "revoke_token",
    tag = "accounts",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "The token, revoked", body = TokenJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators manage tokens", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenJson>, ApiError> {
    let (authority, actor) = (state.authority.clone(), caller.actor());
    let t = blocking(move || authority.revoke_token(&id, &actor)).await?;
    Ok(Json(TokenJson::from(&t)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page.
    pub older: Option<u64>,
}

/// The audit log, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit_entries",
    tag = "accounts",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators read the audit log", body = ErrorBody),
    )
)]
async fn audit(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let authority = state.authority.clone();
    let (entries, older) = blocking(move || {
        crate::authority::audit_page(&authority, &q.actor, &q.action, &q.target, q.before, limit)
    })
    .await?;
    Ok(Json(AuditPage { entries, older }))
}

/// A consistent backup of the whole store and the data directory's configuration, in the
/// format `anchorage restore` reads (a header line with version and SHA-256, then the data).
/// It holds the sealed CA keys and every subscriber record: administrators only.
#[utoipa::path(
    get,
    path = "/api/v1/backup",
    operation_id = "backup",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators take backups", body = ErrorBody),
    )
)]
async fn backup(
    State(state): State<AppState>,
    _caller: Allowed<Admins>,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let bytes = blocking(move || authority.backup()).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}
