//! The certificates a registrar may see: the list with search, filters and pages, the detail
//! page with PEM, DER and chain downloads, and revocation behind a confirmation (one
//! `revoke_as` call; the CRL follows through the publisher's queue).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::{domains_of, scoped, ISSUERS};
use crate::authority::{CertFilter, CertStatus, CertView, PageStart};
use crate::error::Error;
use crate::http::web::{render, see_other, Nav, Notice, WebError, WebPath, WebQuery, WebSession};
use crate::http::AppState;
use crate::model::RevocationReason;
use crate::x509;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    expiring: String,
    /// The cursor of the next page (from the "Next" link).
    #[serde(default)]
    after: String,
}

#[derive(askama::Template)]
#[template(path = "certs.html", config = "src/http/web/askama.toml")]
struct CertsPage {
    nav: Nav,
    q: ListQuery,
    domains: Vec<String>,
    rows: Vec<CertView>,
    /// Known without a scan only for some listings (see `Authority::cert_page_for`).
    total: Option<u64>,
    /// The "Next" link's cursor, when more may follow.
    next: Option<String>,
    query_base: String,
}

fn status_of(s: &str) -> Option<CertStatus> {
    match s {
        "valid" => Some(CertStatus::Valid),
        "revoked" => Some(CertStatus::Revoked),
        "expired" => Some(CertStatus::Expired),
        "not_yet_valid" => Some(CertStatus::NotYetValid),
        _ => None,
    }
}

pub fn status_word(s: &CertStatus) -> &'static str {
    s.as_str()
}

pub(super) async fn list(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(q): WebQuery<ListQuery>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let expiring = q.expiring.trim();
    let expiring_within_days = if expiring.is_empty() {
        None
    } else {
        Some(expiring.parse::<u32>().map_err(|_| {
            WebError::status(
                StatusCode::BAD_REQUEST,
                "\"Expiring within\" must be a number of days.",
            )
        })?)
    };
    let filter = CertFilter {
        search: Some(q.q.clone()).filter(|s| !s.trim().is_empty()),
        holder: None,
        domain: Some(q.domain.clone()).filter(|s| !s.is_empty()),
        status: status_of(&q.status),
        expiring_within_days,
        organisation: None,
    };
    let principal = session.principal();
    let authority = state.authority.clone();
    let list_as = principal.clone();
    let after = if q.after.trim().is_empty() {
        None
    } else {
        Some(crate::http::certs::serial_of_cursor(&q.after)?)
    };
    let page = tokio::task::spawn_blocking(move || {
        authority.cert_page_for(
            &list_as,
            &filter,
            PageStart::After(after),
            crate::http::web::PAGE_SIZE,
        )
    })
    .await
    .map_err(|e| Error::Generation(format!("listing task failed: {e}")))??;
    let domains = domains_of(&state, &principal);
    let query_base = format!(
        "q={}&domain={}&status={}&expiring={}",
        crate::http::web::forms::url_encode(&q.q),
        crate::http::web::forms::url_encode(&q.domain),
        crate::http::web::forms::url_encode(&q.status),
        crate::http::web::forms::url_encode(&q.expiring)
    );
    let page_view = CertsPage {
        nav: session.nav("/registrar/certs"),
        q,
        domains,
        rows: page.items,
        total: page.total,
        next: page.next.as_ref().map(crate::http::certs::cursor_of),
        query_base,
    };
    Ok(render(&page_view, true))
}

#[derive(askama::Template)]
#[template(path = "cert.html", config = "src/http/web/askama.toml")]
struct CertPage {
    nav: Nav,
    v: CertView,
    status: &'static str,
    pem: String,
    ca_url: String,
}

#[derive(Debug, Deserialize)]
pub struct FlashQuery {
    /// A [`Notice`] id; anything else shows no banner.
    done: Option<String>,
}

pub(super) async fn detail(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
    WebQuery(f): WebQuery<FlashQuery>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let v = scoped(&state, &session, &serial)?;
    // "Revoked" only about a certificate the store holds as revoked.
    let flash = Notice::from_query(f.done.as_deref(), "/registrar/certs")
        .filter(|_| matches!(v.status, CertStatus::Revoked));
    let page = CertPage {
        nav: session.nav("/registrar/certs").with_flash(flash),
        status: status_word(&v.status),
        pem: x509::to_pem("CERTIFICATE", &v.record.der),
        ca_url: state
            .authority
            .config()
            .public_url
            .trim_end_matches('/')
            .to_string(),
        v,
    };
    Ok(render(&page, true))
}

fn file_response(bytes: Vec<u8>, content_type: &'static str, filename: String) -> Response {
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub(super) async fn pem(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let v = scoped(&state, &session, &serial)?;
    let text = x509::to_pem("CERTIFICATE", &v.record.der);
    Ok(file_response(
        text.into_bytes(),
        "application/x-pem-file",
        format!("{}.pem", v.record.serial.as_str()),
    ))
}

pub(super) async fn der(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let v = scoped(&state, &session, &serial)?;
    Ok(file_response(
        v.record.der.clone(),
        "application/pkix-cert",
        format!("{}.cer", v.record.serial.as_str()),
    ))
}

pub(super) async fn chain(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let v = scoped(&state, &session, &serial)?;
    let mut text = x509::to_pem("CERTIFICATE", &v.record.der);
    for der in state.authority.ca_chain()? {
        text.push_str(&x509::to_pem("CERTIFICATE", &der));
    }
    Ok(file_response(
        text.into_bytes(),
        "application/x-pem-file",
        format!("{}-chain.pem", v.record.serial.as_str()),
    ))
}

#[derive(askama::Template)]
#[template(path = "revoke.html", config = "src/http/web/askama.toml")]
struct RevokePage {
    nav: Nav,
    csrf: String,
    v: CertView,
    reasons: Vec<&'static str>,
    error: Option<String>,
}

const REASONS: [&str; 6] = [
    "unspecified",
    "key-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
];

pub(super) async fn revoke_page(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let v = scoped(&state, &session, &serial)?;
    let page = RevokePage {
        nav: session.nav("/registrar/certs"),
        csrf: session.csrf().to_string(),
        v,
        reasons: REASONS.to_vec(),
        error: None,
    };
    Ok(render(&page, true))
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(serial): WebPath<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    session.check_csrf(&form.csrf)?;
    let v = scoped(&state, &session, &serial)?;
    let refuse = |v: CertView, error: String| {
        let page = RevokePage {
            nav: session.nav("/registrar/certs"),
            csrf: session.csrf().to_string(),
            v,
            reasons: REASONS.to_vec(),
            error: Some(error),
        };
        let mut r = render(&page, true);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(r)
    };
    let reason = match RevocationReason::parse(&form.reason) {
        Ok(r) if form.confirm == "yes" => r,
        Ok(_) => {
            return refuse(
                v,
                "Tick the box to confirm the revocation: it cannot be undone.".into(),
            )
        }
        Err(e) => return refuse(v, e.to_string()),
    };
    let authority = state.authority.clone();
    let principal = session.principal();
    let serial_v = v.record.serial.clone();
    tokio::task::spawn_blocking(move || authority.revoke_as(&principal, &serial_v, reason))
        .await
        .map_err(|e| Error::Generation(format!("revocation task failed: {e}")))??;
    state.crl_dirty.notify_one();
    Ok(see_other(&Notice::CertRevoked.redirect_to(&format!(
        "/registrar/certs/{}",
        v.record.serial.as_str()
    ))))
}
