//! Member pages: submit an anchor (with optional sample certificates) to a bundle the account
//! may use, follow its review, see every rejection reason and the bundles it is in.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::forms::read_multipart;
use super::{render, Nav, Notice, WebError, WebPath, WebSession};
use crate::accounts::Role;
use crate::authority::AnchorRecord;
use crate::authority::{BundleSummary, Submission};
use crate::error::Error;
use crate::http::blocking;
use crate::http::AppState;
use crate::policy::Reason;

const MEMBERS: &[Role] = &[Role::Member, Role::Admin];

pub fn routes(form_limit: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/member/anchors",
            get(list)
                .post(submit)
                .layer(axum::extract::DefaultBodyLimit::max(form_limit)),
        )
        .route("/member/anchors/{id}", get(detail))
}

#[derive(Debug, Default)]
pub struct SubmitValues {
    pub bundle: String,
    pub organization: String,
    pub contact: String,
    /// The key rollover box.
    pub rollover: bool,
}

#[derive(askama::Template)]
#[template(path = "member.html", config = "src/http/web/askama.toml")]
struct MemberPage {
    nav: Nav,
    csrf: String,
    bundles: Vec<BundleSummary>,
    anchors: Vec<AnchorRecord>,
    v: SubmitValues,
    reasons: Vec<Reason>,
}

/// Members see what they submitted (or their organisations'), in bundles they may use.
fn visible(session: &WebSession, a: &AnchorRecord) -> bool {
    let submitted_by = a
        .history
        .first()
        .map(|e| e.actor.as_str())
        .unwrap_or_default();
    session
        .principal()
        .sees_anchor(&a.bundle, submitted_by, &a.organization)
}

async fn page(
    state: &AppState,
    session: &WebSession,
    v: SubmitValues,
    reasons: Vec<Reason>,
    flash: Option<Notice>,
) -> Result<MemberPage, WebError> {
    let authority = state.authority.clone();
    let (bundles, anchors) =
        blocking(move || Ok((authority.bundle_summaries()?, authority.anchors()?)))
            .await
            .map_err(|e| WebError::from(e.0))?;
    let principal = session.principal();
    Ok(MemberPage {
        nav: session.nav("/member/anchors").with_flash(flash),
        csrf: session.csrf().to_string(),
        bundles: bundles
            .into_iter()
            .filter(|b| principal.may_use_bundle(&b.name))
            .collect(),
        anchors: anchors
            .into_iter()
            .filter(|a| visible(session, a))
            .rev()
            .collect(),
        v,
        reasons,
    })
}

async fn list(State(state): State<AppState>, session: WebSession) -> Result<Response, WebError> {
    session.require(MEMBERS)?;
    let page = page(&state, &session, SubmitValues::default(), Vec::new(), None).await?;
    Ok(render(&page, true))
}

async fn submit(
    State(state): State<AppState>,
    session: WebSession,
    multipart: Multipart,
) -> Result<Response, WebError> {
    session.require(MEMBERS)?;
    let form = read_multipart(multipart, &["anchor_file", "samples"]).await?;
    session.check_csrf(&form.get("csrf"))?;
    let v = SubmitValues {
        bundle: form.get("bundle"),
        organization: form.get("organization"),
        contact: form.get("contact"),
        rollover: !form.get("rollover").is_empty(),
    };
    let refuse = |reasons: Vec<Reason>, v: SubmitValues| async {
        let mut r = render(&page(&state, &session, v, reasons, None).await?, true);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<Response, WebError>(r)
    };
    if !session.principal().may_use_bundle(&v.bundle) {
        return refuse(
            vec![reason(
                "bundle",
                "This account may not submit to that bundle.",
            )],
            v,
        )
        .await;
    }
    let Some(file) = form.file("anchor_file").map(<[u8]>::to_vec) else {
        return refuse(
            vec![reason(
                "anchor_file",
                "Choose the anchor certificate file to upload.",
            )],
            v,
        )
        .await;
    };
    let submission = Submission {
        bundle: v.bundle.clone(),
        file,
        samples: form.all_files("samples"),
        organization: v.organization.clone(),
        contact: v.contact.clone(),
        rollover: v.rollover,
    };
    let authority = state.authority.clone();
    let actor = session.actor();
    let result = blocking(move || authority.submit_anchor(&submission, &actor)).await;
    match result {
        Ok(_) => {
            let flash = Some(Notice::AnchorSubmitted);
            Ok(render(
                &page(&state, &session, SubmitValues::default(), Vec::new(), flash).await?,
                true,
            ))
        }
        Err(crate::http::ApiError(Error::Denied(d))) => refuse(d.reasons, v).await,
        Err(crate::http::ApiError(
            Error::InvalidInput(m) | Error::Conflict(m) | Error::NotFound(m),
        )) => refuse(vec![reason("anchor_file", &m)], v).await,
        Err(e) => Err(WebError::from(e.0)),
    }
}

fn reason(field: &'static str, message: &str) -> Reason {
    Reason {
        code: "field_invalid",
        message: message.to_string(),
        field: Some(field),
    }
}

#[derive(askama::Template)]
#[template(path = "anchor.html", config = "src/http/web/askama.toml")]
struct AnchorPage {
    nav: Nav,
    a: AnchorRecord,
}

async fn detail(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(id): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(MEMBERS)?;
    // Parsed here, not by the extractor, whose refusal would quote the URL's text back.
    let id: u64 = id
        .parse()
        .map_err(|_| WebError::status(StatusCode::NOT_FOUND, "There is no such anchor."))?;
    let authority = state.authority.clone();
    let a = blocking(move || authority.anchor(id))
        .await
        .map_err(|e| WebError::from(e.0))?;
    if !visible(&session, &a) {
        return Err(WebError::from(Error::NotFound(format!("no anchor #{id}"))));
    }
    Ok(render(
        &AnchorPage {
            nav: session.nav("/member/anchors"),
            a,
        },
        true,
    ))
}
