//! `/api/v1/directory/ldif`: the LDAP directory view (LDIF) of the issued certificates while
//! `serve` holds the store, so an LDAP operator's cron job (`anchorage publish ldif`) runs
//! without stopping the CA. The export is the one `publish ldif` writes, byte for byte.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{blocking, Allowed, ApiError, ApiQuery, AppState, DnsReaders, ErrorBody};
use crate::authority::LdifOutcome;

/// LDIF (RFC 2849) has no registered media type (`application/ldif` is not in the IANA
/// registry), and the export is 7-bit text (binary values are base64), so plain UTF-8 text
/// is the honest label and what tools and browsers display as is.
const LDIF_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/directory/ldif", get(ldif))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LdifQuery {
    /// Directory revision the target directory holds (`X-Directory-Revision` of an earlier
    /// export): answer with the change records since then instead of the whole directory.
    pub since: Option<u64>,
}

/// The whole directory as LDIF add records, or with `since` the changes for `ldapmodify`.
#[utoipa::path(
    get,
    path = "/api/v1/directory/ldif",
    operation_id = "get_directory_ldif",
    tag = "discovery",
    security(("bearer" = [])),
    params(LdifQuery),
    responses(
        (status = 200, description = "The LDIF export (RFC 2849); headers X-Directory-Revision (pass it as `since` next time), X-Ldif-Entries, X-Ldif-Certificates", content_type = "text/plain", body = String),
        (status = 400, description = "`since` is not a number or is ahead of the directory revision", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only DNS operators and administrators read the directory", body = ErrorBody),
    )
)]
pub async fn ldif(
    State(state): State<AppState>,
    _caller: Allowed<DnsReaders>,
    ApiQuery(q): ApiQuery<LdifQuery>,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let (outcome, bytes) = blocking(move || authority.ldif_bytes(q.since)).await?;
    let mut response = bytes.into_response();
    set_headers(response.headers_mut(), &outcome);
    Ok(response)
}

fn set_headers(headers: &mut HeaderMap, outcome: &LdifOutcome) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(LDIF_CONTENT_TYPE),
    );
    // Every request records view changes and may answer differently: never from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-directory-revision", HeaderValue::from(outcome.revision));
    headers.insert("x-ldif-entries", HeaderValue::from(outcome.entries));
    headers.insert(
        "x-ldif-certificates",
        HeaderValue::from(outcome.certificates),
    );
}
