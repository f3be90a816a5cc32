//! The admin console: the anchor review queue, bundles and their versions, users and API
//! tokens, CA status, and the audit-log viewer. Every action is a POST with the CSRF token,
//! followed by a redirect back to the page (post/redirect/get).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{
    paginate, render, see_other, Nav, Notice, Paging, WebError, WebPath, WebQuery, WebSession,
    PAGE_SIZE,
};
use crate::accounts::{Role, Scope, UserRecord};
use crate::audit::AuditEntry;
use crate::authority::{AnchorRecord, AnchorState, BundleVersion, TokenRecord};
use crate::authority::{BundleSummary, CaStatus, NewUser, SourceView, Staleness};
use crate::error::Error;
use crate::http::blocking;
use crate::http::AppState;

const ADMIN: &[Role] = &[Role::Admin];
const AUDIT_PAGE: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(console))
        .route("/admin/queue", get(queue))
        .route("/admin/anchors/{id}/{action}", post(decide))
        .route("/admin/bundles", get(bundles))
        .route("/admin/bundles/{name}/build", post(build))
        .route("/admin/sources/{name}/refresh", post(refresh_source))
        .route("/admin/users", get(users).post(add_user))
        .route("/admin/users/{name}/{action}", post(user_action))
        .route("/admin/tokens", get(tokens).post(add_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
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
    /// A [`Notice`] id; anything else shows no banner.
    done: Option<String>,
    /// Zero-based page of the users and tokens lists.
    #[serde(default)]
    page: usize,
}

#[derive(askama::Template)]
#[template(path = "admin_queue.html", config = "src/http/web/askama.toml")]
struct QueuePage {
    nav: Nav,
    csrf: String,
    pending: Vec<AnchorRecord>,
    promotable: Vec<(AnchorRecord, String)>,
    published: Vec<AnchorRecord>,
}

async fn queue(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(d): WebQuery<Done>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let authority = state.authority.clone();
    let (anchors, summaries) =
        blocking(move || Ok((authority.anchors()?, authority.bundle_summaries()?)))
            .await
            .map_err(err)?;
    let promote_to = |bundle: &str| {
        summaries
            .iter()
            .find(|s| s.name == bundle)
            .and_then(|s| s.promote_to.clone())
    };
    let pending = anchors
        .iter()
        .filter(|a| a.state == AnchorState::Pending)
        .cloned()
        .collect();
    let promotable = anchors
        .iter()
        .filter(|a| matches!(a.state, AnchorState::Approved | AnchorState::Published))
        .filter_map(|a| promote_to(&a.bundle).map(|to| (a.clone(), to)))
        .filter(|(a, to)| {
            !anchors
                .iter()
                .any(|b| b.bundle == *to && b.fingerprint == a.fingerprint && b.state.is_live())
        })
        .collect();
    let published = anchors
        .iter()
        .filter(|a| a.state == AnchorState::Published)
        .cloned()
        .collect();
    let page = QueuePage {
        nav: session
            .nav("/admin/queue")
            .with_flash(Notice::from_query(d.done.as_deref(), "/admin/queue")),
        csrf: session.csrf().to_string(),
        pending,
        promotable,
        published,
    };
    Ok(render(&page, true))
}

#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    to: String,
}

async fn decide(
    State(state): State<AppState>,
    session: WebSession,
    WebPath((id, action)): WebPath<(u64, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let (authority, actor) = (state.authority.clone(), session.actor());
    let note = form.note.trim().to_string();
    let decision = match action.as_str() {
        "approve" => blocking(move || authority.approve_anchor(id, &actor, &note)).await,
        "reject" if note.is_empty() => {
            return Err(WebError::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A rejection needs a reason for the member. Go back and write one.",
            ))
        }
        "reject" => blocking(move || authority.reject_anchor(id, &note, &actor)).await,
        "retire" => blocking(move || authority.retire_anchor(id, &actor, &note)).await,
        "promote" => {
            let to = form.to.clone();
            blocking(move || authority.promote_anchor(id, &to, &actor)).await
        }
        _ => return Err(WebError::status(StatusCode::NOT_FOUND, "No such action.")),
    }
    .map_err(err)?;
    let published = decision.published.is_some();
    let notice = match (action.as_str(), published) {
        ("approve", false) => Notice::AnchorApproved,
        ("approve", true) => Notice::AnchorApprovedPublished,
        ("retire", false) => Notice::AnchorRetired,
        ("retire", true) => Notice::AnchorRetiredPublished,
        ("promote", false) => Notice::AnchorPromoted,
        ("promote", true) => Notice::AnchorPromotedPublished,
        _ => Notice::AnchorRejected,
    };
    Ok(see_other(&notice.redirect_to("/admin/queue")))
}

#[derive(askama::Template)]
#[template(path = "admin_bundles.html", config = "src/http/web/askama.toml")]
struct BundlesPage {
    nav: Nav,
    csrf: String,
    bundles: Vec<(BundleSummary, Vec<BundleVersion>)>,
    sources: Vec<SourceRow>,
}

/// One external source as the console shows it.
struct SourceRow {
    view: SourceView,
    status: String,
    staleness: &'static str,
}

fn staleness_word(s: Staleness) -> &'static str {
    match s {
        Staleness::Fresh => "fresh",
        Staleness::StaleWarn => "stale",
        Staleness::StaleFail => "stale (failing health)",
        Staleness::NoCopy => "no copy yet",
    }
}

async fn bundles(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(d): WebQuery<Done>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let authority = state.authority.clone();
    let (bundles, sources) = blocking(move || {
        let mut out = Vec::new();
        for s in authority.bundle_summaries()? {
            let mut versions = authority.bundle_versions(&s.name)?;
            versions.reverse();
            versions.truncate(10);
            out.push((s, versions));
        }
        Ok((out, authority.source_views()?))
    })
    .await
    .map_err(err)?;
    let sources = sources
        .into_iter()
        .map(|view| SourceRow {
            status: match (&view.status, view.http_code) {
                (Some(s), Some(code)) => format!("{s} ({code})"),
                (Some(s), None) => s.to_string(),
                (None, _) => "never tried".into(),
            },
            staleness: staleness_word(view.staleness),
            view,
        })
        .collect();
    let page = BundlesPage {
        nav: session
            .nav("/admin/bundles")
            .with_flash(Notice::from_query(d.done.as_deref(), "/admin/bundles")),
        csrf: session.csrf().to_string(),
        bundles,
        sources,
    };
    Ok(render(&page, true))
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn build(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(name): WebPath<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let (authority, actor) = (state.authority.clone(), session.actor());
    let built = blocking(move || authority.build_bundle(&name, &actor))
        .await
        .map_err(err)?;
    let notice = match built.published {
        Some(_) => Notice::BundlePublished,
        None => Notice::BundleUnchanged,
    };
    Ok(see_other(&notice.redirect_to("/admin/bundles")))
}

/// "Refresh now" for one external source; the outcome (whatever its status) is shown.
async fn refresh_source(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(name): WebPath<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    session.check_csrf(&form.csrf)?;
    let report = crate::refresh::refresh(state.authority.clone(), &name, &session.actor()).await?;
    let published = report.published_version.is_some() || !report.republished.is_empty();
    // The status and reason are the source's row on the page, read from the store.
    let notice = if published {
        Notice::SourceRefreshedPublished
    } else if report.status.is_success() {
        Notice::SourceRefreshed
    } else {
        Notice::SourceRefreshFailed
    };
    Ok(see_other(&notice.redirect_to("/admin/bundles")))
}

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

async fn users(
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
pub(super) fn list_of(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

async fn add_user(
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

async fn user_action(
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

async fn tokens(
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

async fn add_token(
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

async fn revoke_token(
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
