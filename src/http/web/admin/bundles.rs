//! The admin console's bundle pages: the anchor review queue with its decisions (approve,
//! reject, retire, promote: one authority call each), the bundles with their published
//! versions, and the external sources with a manual refresh.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::{err, CsrfOnly, Done, ADMIN};
use crate::authority::{AnchorRecord, AnchorState, BundleSummary, BundleVersion};
use crate::authority::{SourceView, Staleness};
use crate::http::blocking;
use crate::http::web::{render, see_other, Nav, Notice, WebError, WebPath, WebQuery, WebSession};
use crate::http::AppState;

#[derive(askama::Template)]
#[template(path = "admin_queue.html", config = "src/http/web/askama.toml")]
struct QueuePage {
    nav: Nav,
    csrf: String,
    pending: Vec<AnchorRecord>,
    promotable: Vec<(AnchorRecord, String)>,
    published: Vec<AnchorRecord>,
}

pub(super) async fn queue(
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

pub(super) async fn decide(
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

pub(super) async fn bundles(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(d): WebQuery<Done>,
) -> Result<Response, WebError> {
    session.require(ADMIN)?;
    let authority = state.authority.clone();
    let (bundles, sources) = blocking(move || {
        let mut out = Vec::new();
        for s in authority.bundle_summaries()? {
            let mut versions = authority.bundle_changelog(&s.name)?;
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

pub(super) async fn build(
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
pub(super) async fn refresh_source(
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
