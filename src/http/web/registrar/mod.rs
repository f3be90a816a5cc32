//! Registrar pages: the issuance form (CSR or server-generated key) with its result page and
//! one-time PKCS#12 downloads (`issue.rs`), and the certificates a registrar may see: the
//! list with search and filters, the detail page with downloads, revocation (`certs.rs`);
//! renewal is the issuance form filled from an existing certificate. Both halves see only
//! what the session's scope allows, through `scoped` and `domains_of` here.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::{WebError, WebSession};
use crate::accounts::Role;
use crate::authority::CertView;
use crate::http::AppState;
use crate::model::Serial;

mod certs;
mod issue;

pub use certs::status_word;
pub use issue::IssuedRow;

const ISSUERS: &[Role] = &[Role::Registrar, Role::Admin];

pub fn routes(form_limit: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/registrar/issue",
            get(issue::issue_page)
                .post(issue::issue)
                .layer(axum::extract::DefaultBodyLimit::max(form_limit)),
        )
        .route("/registrar/download/{ticket}", get(issue::download))
        .route("/registrar/certs", get(certs::list))
        .route("/registrar/certs/{serial}", get(certs::detail))
        .route("/registrar/certs/{serial}/pem", get(certs::pem))
        .route("/registrar/certs/{serial}/der", get(certs::der))
        .route("/registrar/certs/{serial}/chain", get(certs::chain))
        .route(
            "/registrar/certs/{serial}/revoke",
            get(certs::revoke_page).post(certs::revoke),
        )
}

/// The managed domains a principal may issue for and list.
fn domains_of(state: &AppState, principal: &crate::accounts::Principal) -> Vec<String> {
    state
        .authority
        .config()
        .managed_domains
        .iter()
        .map(|d| d.as_str().to_string())
        .filter(|d| principal.sees_domain(d))
        .collect()
}

/// A certificate the session may see; others are "not found".
fn scoped(state: &AppState, session: &WebSession, serial: &str) -> Result<CertView, WebError> {
    // The parse error would quote the URL's text back into the page: say it in our words.
    let serial = Serial::parse(serial).map_err(|_| {
        WebError::status(
            StatusCode::BAD_REQUEST,
            "That is not a certificate serial number (even-length hexadecimal, at most 20 bytes).",
        )
    })?;
    state
        .authority
        .cert_for(&session.principal(), &serial)
        .map_err(WebError::from)
}
