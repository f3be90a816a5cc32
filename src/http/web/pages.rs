//! Public pages: the bundle index with downloads and SHA-256 digests, the CA certificates and
//! CRLs; and the one stylesheet (no inline styles or scripts, so the CSP can forbid them).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{render, MaybeSession, Nav, WebError};
use crate::authority::{BundleSummary, CaStatus};
use crate::http::AppState;

const STYLESHEET: &str = include_str!("templates/app.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(stylesheet))
}

#[derive(askama::Template)]
#[template(path = "home.html", config = "src/http/web/askama.toml")]
struct HomePage {
    nav: Nav,
    bundles: Vec<BundleSummary>,
    cas: Vec<CaStatus>,
    base: String,
}

async fn home(State(state): State<AppState>, session: MaybeSession) -> Result<Response, WebError> {
    let authority = state.authority.clone();
    let (bundles, cas) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::error::Error>((authority.bundle_summaries()?, authority.ca_status()?))
    })
    .await
    .map_err(|e| crate::error::Error::Generation(format!("page task failed: {e}")))??;
    let page = HomePage {
        nav: Nav::for_role(session.0.as_ref(), "/"),
        bundles,
        cas,
        base: state.authority.config().bundle_base_url(),
    };
    Ok(render(&page, session.0.is_some()))
}

async fn stylesheet() -> Response {
    let mut r = STYLESHEET.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}
