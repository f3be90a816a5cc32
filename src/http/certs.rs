//! `/api/v1` certificate resources: issue (CSR or server-generated key), list, fetch, revoke,
//! and CA status. Same rules as the CLI because both call `authority`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Allowed, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, ErrorBody, Issuers};
use crate::authority::{CaStatus, CertFilter, CertStatus, CertView, IssuedCert, PageStart};
use crate::error::Error;
use crate::model::{RevocationReason, Serial};
use crate::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use crate::x509;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificates", post(issue).get(list))
        .route("/certificates/{serial}", get(show))
        .route("/certificates/{serial}/pem", get(pem))
        .route("/certificates/{serial}/der", get(der))
        .route("/certificates/{serial}/chain", get(chain))
        .route("/certificates/{serial}/revoke", post(revoke))
        .route("/certificates/{serial}/renew", post(renew))
        .route("/ca", get(ca_status))
}

/// A certificate request: `address` or `domain`, then either `csr` or `keygen: true`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    /// Direct address the certificate is bound to (`local@domain`).
    pub address: Option<String>,
    /// Health domain the certificate is bound to, for a domain-bound certificate.
    pub domain: Option<String>,
    /// `dual`, `signing`, `encryption`, or `pair` (one signing and one encryption certificate).
    #[schema(example = "dual")]
    pub usage: String,
    /// Certificate profile; the configured default when absent.
    pub profile: Option<String>,
    /// Category offered by the profile; the profile default when absent.
    pub category: Option<String>,
    /// PEM, or base64 of DER.
    pub csr: Option<String>,
    /// The encryption certificate's CSR of a `pair` (PEM, or base64 of DER).
    pub encryption_csr: Option<String>,
    /// The server generates the key(s) and returns them once in PKCS#12 files.
    #[serde(default)]
    pub keygen: bool,
    /// Optional PKCS#12 password; generated and returned once when absent.
    pub p12_password: Option<String>,
    pub subscriber: Subscriber,
    /// The organisation (id) the holder belongs to. Needed for a holder's first certificate
    /// when the caller works for several organisations; later certificates take it from the
    /// holder's binding, and naming another one is refused (409 `holder_owned_elsewhere`).
    pub organisation: Option<String>,
    pub proofing: Proofing,
}

/// A server-generated key and its certificate, once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pkcs12Out {
    pub serial: Serial,
    pub usage: String,
    #[schema(format = Byte)]
    pub pkcs12_base64: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssueResponse {
    /// The first (for a pair: the signing) certificate's serial.
    pub serial: Serial,
    pub serials: Vec<Serial>,
    pub certificates: Vec<IssuedCert>,
    /// Present only with `keygen`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pkcs12: Vec<Pkcs12Out>,
    /// The generated PKCS#12 password, when the request named none; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p12_password: Option<String>,
}

/// The `Idempotency-Key` header, when sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v.to_str().map(|k| Some(k.trim().to_string())).map_err(|_| {
            ApiError(Error::InvalidInput(
                "the Idempotency-Key must be visible ASCII".into(),
            ))
        }),
    }
}

pub fn csr_bytes(text: &str) -> Vec<u8> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        return t.as_bytes().to_vec();
    }
    base64::engine::general_purpose::STANDARD
        .decode(t.split_whitespace().collect::<String>())
        .unwrap_or_else(|_| t.as_bytes().to_vec())
}

/// Issue a certificate (or a pair) from a CSR or a server-generated key.
#[utoipa::path(
    post,
    path = "/api/v1/certificates",
    operation_id = "issue_certificate",
    tag = "certificates",
    security(("bearer" = [])),
    request_body = IssueBody,
    responses(
        (status = 201, description = "Issued; PKCS#12 files and password are shown only in this response", body = IssueResponse),
        (status = 400, description = "Malformed body, or neither/both of csr and keygen", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role or scope does not allow issuing for this domain or organisation (`forbidden`, `domain_not_covered`)", body = ErrorBody),
        (status = 409, description = "The holder belongs to another organisation (`holder_owned_elsewhere`), lies outside the organisation's domains (`holder_outside_organisation`), is unsettled (`holder_unresolved`), or its organisation is disabled (`organisation_disabled`)", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Refused by the issuance policy (`request_denied`; `reasons` lists every failed rule, e.g. `key_reused`), no organisation could be determined (`organisation_required`), or the Idempotency-Key was used for another request (`idempotency_key_reused`)", body = ErrorBody),
        (status = 429, description = "Rate limit reached (`rate_limited`); see Retry-After", body = ErrorBody),
    ),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat within 24 hours returns the first result (same serials, status 201, header Idempotent-Replayed: true, no PKCS#12)")),
)]
async fn issue(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<IssueBody>,
) -> Result<Response, ApiError> {
    let key = key_source(
        body.keygen,
        body.csr.as_deref(),
        body.encryption_csr.as_deref(),
    )?;
    let request = IssueRequest {
        address: body.address,
        domain: body.domain,
        usage: body.usage,
        profile: body.profile,
        category: body.category,
        key,
        subscriber: body.subscriber,
        organisation: body.organisation,
        registrar: caller.actor(),
        proofing: body.proofing,
    };
    let password = body.p12_password.map(Zeroizing::new);
    issue_response(
        &state,
        &caller,
        request,
        password,
        idempotency_key(&headers)?,
    )
    .await
}

fn key_source(
    keygen: bool,
    csr: Option<&str>,
    encryption_csr: Option<&str>,
) -> Result<KeySource, ApiError> {
    match (keygen, csr) {
        (true, None) => Ok(KeySource::Generate),
        (false, Some(csr)) => Ok(KeySource::Csr {
            signing: csr_bytes(csr),
            encryption: encryption_csr.map(csr_bytes),
        }),
        (true, Some(_)) => {
            Err(Error::InvalidInput("give either csr or keygen: true, not both".into()).into())
        }
        (false, None) => Err(Error::InvalidInput(
            "give a csr, or keygen: true for a server-generated key".into(),
        )
        .into()),
    }
}

/// Issues as the caller and answers 201 with the certificates (and, once, the PKCS#12).
async fn issue_response(
    state: &AppState,
    caller: &Caller,
    request: IssueRequest,
    password: Option<Zeroizing<String>>,
    idempotency: Option<String>,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let principal = caller.principal().clone();
    let outcome = super::blocking(move || {
        authority.issue_as(&principal, &request, password, idempotency.as_deref())
    })
    .await?;
    let serials: Vec<Serial> = outcome.certs.iter().map(|c| c.serial.clone()).collect();
    let pkcs12 = outcome
        .certs
        .iter()
        .filter_map(|c| {
            c.pkcs12.as_ref().map(|p| Pkcs12Out {
                serial: c.serial.clone(),
                usage: c.usage.as_str().to_string(),
                pkcs12_base64: base64::engine::general_purpose::STANDARD.encode(p),
            })
        })
        .collect();
    let replayed = outcome.replayed;
    let response = IssueResponse {
        serial: serials
            .first()
            .cloned()
            .ok_or_else(|| Error::Generation("nothing was issued".into()))?,
        serials,
        certificates: outcome.certs,
        pkcs12,
        p12_password: outcome.generated_password.map(|p| p.to_string()),
    };
    let mut r = (StatusCode::CREATED, Json(response)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(r)
}

/// A renewal: a new certificate for the same holder, usage and subscriber, with a new key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// PEM, or base64 of DER: the new key's CSR.
    pub csr: Option<String>,
    /// The encryption certificate's CSR of a `pair`.
    pub encryption_csr: Option<String>,
    /// The server generates the new key(s).
    #[serde(default)]
    pub keygen: bool,
    pub p12_password: Option<String>,
    /// The identity proofing, confirmed again for the renewal.
    pub proofing: Proofing,
}

/// Renew a certificate: same holder (and organisation), usage, profile and subscriber.
#[utoipa::path(
    post,
    path = "/api/v1/certificates/{serial}/renew",
    operation_id = "renew_certificate",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number of the certificate to renew")),
    request_body = RenewBody,
    responses(
        (status = 201, description = "Issued", body = IssueResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not issue", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
        (status = 409, description = "The holder's organisation forbids it", body = ErrorBody),
        (status = 422, description = "Refused by the issuance policy", body = ErrorBody),
        (status = 429, description = "Rate limit reached; see Retry-After", body = ErrorBody),
    )
)]
async fn renew(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    headers: HeaderMap,
    ApiPath(serial): ApiPath<String>,
    ApiJson(body): ApiJson<RenewBody>,
) -> Result<Response, ApiError> {
    let old = state
        .authority
        .cert_for(caller.principal(), &serial_of(&serial)?)?;
    let key = key_source(
        body.keygen,
        body.csr.as_deref(),
        body.encryption_csr.as_deref(),
    )?;
    let r = &old.record;
    let (address, domain) = match old.binding {
        crate::model::Binding::Address => (Some(r.holder.to_string()), None),
        crate::model::Binding::Domain => (None, Some(r.holder.to_string())),
    };
    let request = IssueRequest {
        address,
        domain,
        usage: r.requested_usage.as_str().to_string(),
        profile: Some(r.profile.clone()),
        category: Some(r.category.clone()),
        key,
        subscriber: r.subscriber.clone(),
        organisation: old.organisation.as_ref().map(|o| o.id.clone()),
        registrar: caller.actor(),
        proofing: body.proofing,
    };
    let password = body.p12_password.map(Zeroizing::new);
    issue_response(
        &state,
        &caller,
        request,
        password,
        idempotency_key(&headers)?,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Text contained in the holder, subscriber or organisation, or an exact serial.
    pub q: Option<String>,
    /// Exact holder (address or domain).
    pub holder: Option<String>,
    /// Health domain of the holder.
    pub domain: Option<String>,
    /// `valid`, `revoked`, `expired` or `not_yet_valid`.
    pub status: Option<String>,
    /// Only certificates that expire within this many days.
    pub expiring_within_days: Option<u32>,
    /// Only holders bound to this organisation (id).
    pub organisation: Option<String>,
    /// Page size (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// The cursor: where the next page starts, as given in the `Link: rel="next"` header of
    /// the previous page (opaque). A short page is not the end; the end is the absence of
    /// `Link: rel="next"`.
    pub after: Option<String>,
    /// Deprecated (costs O(offset)): certificates to skip. Use `after`.
    pub offset: Option<usize>,
}

/// Default and largest page of a listing: a store of 100,000 certificates would otherwise
/// be one response of hundreds of megabytes.
const PAGE_DEFAULT: usize = 1000;
const PAGE_MAX: usize = 10_000;
/// About how many bytes one entry takes in a listing (most of it the DER in base64): the
/// response buffer starts at this times the page size, so it is not regrown while filled.
const ENTRY_BYTES: usize = 2_500;

/// A certificate with its record, status and PEM.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertJson {
    #[serde(flatten)]
    view: CertView,
    /// The certificate, PEM.
    pem: String,
}

fn parse_status(s: &str) -> Result<CertStatus, ApiError> {
    match s {
        "valid" => Ok(CertStatus::Valid),
        "revoked" => Ok(CertStatus::Revoked),
        "expired" => Ok(CertStatus::Expired),
        "not_yet_valid" => Ok(CertStatus::NotYetValid),
        other => Err(Error::InvalidInput(format!(
            "status '{other}' is unknown; use valid, revoked, expired or not_yet_valid"
        ))
        .into()),
    }
}

/// The opaque cursor of a serial: base64url of its hex.
pub fn cursor_of(serial: &Serial) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serial.as_str())
}

/// The serial a cursor names; a malformed cursor is a 400 naming it.
pub fn serial_of_cursor(cursor: &str) -> Result<Serial, Error> {
    let bad = || {
        Error::InvalidInput(
            "the cursor 'after' is malformed: give the value from the Link rel=\"next\" header"
                .into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    Serial::parse(&text).map_err(|_| bad())
}

/// List the certificates the caller may see, filtered, one page in serial order.
#[utoipa::path(
    get,
    path = "/api/v1/certificates",
    operation_id = "list_certificates",
    tag = "certificates",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Matching certificates in the caller's scope, one page in serial order. When more may follow, `Link: <...?after=CURSOR>; rel=\"next\"` (a short page, even an empty one, is not the end: a page stops after a bounded scan; the end is the absence of the link). `X-Total-Count` when the total is known without a scan (an admin listing everything, one organisation or one domain, or a first page that holds every match)", body = Vec<CertView>),
        (status = 400, description = "Unknown status, malformed cursor (`after`), or malformed query", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not list certificates", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if limit == 0 || limit > PAGE_MAX {
        return Err(Error::InvalidInput(format!("limit must be 1 to {PAGE_MAX}")).into());
    }
    let start = match (&q.after, q.offset) {
        (Some(_), Some(_)) => {
            return Err(
                Error::InvalidInput("give the cursor 'after' or offset, not both".into()).into(),
            )
        }
        (Some(cursor), None) => PageStart::After(Some(serial_of_cursor(cursor)?)),
        (None, Some(offset)) => PageStart::Offset(offset),
        (None, None) => PageStart::After(None),
    };
    let offset = q.offset;
    let filter = CertFilter {
        search: q.q.clone(),
        holder: q.holder.clone(),
        domain: q.domain.clone(),
        status: q.status.as_deref().map(parse_status).transpose()?,
        expiring_within_days: q.expiring_within_days,
        organisation: q.organisation.clone(),
    };
    let principal = caller.principal().clone();
    let authority = state.authority.clone();
    // Each entry is serialised as it is read and dropped: the page holds its bytes only.
    let (body, page) = super::blocking(move || {
        let mut body = Vec::with_capacity(ENTRY_BYTES.saturating_mul(limit.min(PAGE_DEFAULT)));
        body.push(b'[');
        let page = authority.cert_page_each(&principal, &filter, start, limit, |view| {
            if body.len() > 1 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, &view)
                .map_err(|e| Error::Generation(format!("a certificate entry: {e}")))
        })?;
        body.push(b']');
        Ok((body, page))
    })
    .await?;
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    if let Some(total) = page.total {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            h.insert("x-total-count", v);
        }
    }
    let Some(next_serial) = page.next else {
        return Ok(r);
    };
    let mut next = match offset {
        // Saturating: an offset near usize::MAX must not wrap into a bogus next page.
        Some(offset) => format!(
            "/api/v1/certificates?limit={limit}&offset={}",
            offset.saturating_add(limit)
        ),
        None => format!(
            "/api/v1/certificates?limit={limit}&after={}",
            cursor_of(&next_serial)
        ),
    };
    for (k, v) in [
        ("q", &q.q),
        ("holder", &q.holder),
        ("domain", &q.domain),
        ("status", &q.status),
        ("organisation", &q.organisation),
    ] {
        if let Some(v) = v {
            next.push_str(&format!(
                "&{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
    }
    if let Some(d) = q.expiring_within_days {
        next.push_str(&format!("&expiring_within_days={d}"));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
        h.insert(header::LINK, v);
    }
    Ok(r)
}

fn serial_of(s: &str) -> Result<Serial, ApiError> {
    Serial::parse(s).map_err(|e| ApiError(Error::InvalidInput(e.to_string())))
}

/// One certificate: record, status, revocation and PEM.
#[utoipa::path(
    get,
    path = "/api/v1/certificates/{serial}",
    operation_id = "get_certificate",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number, hex (colons and 0x allowed)")),
    responses(
        (status = 200, description = "The certificate", body = CertJson),
        (status = 400, description = "Not a serial number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read certificates", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Json<CertJson>, ApiError> {
    let view = state
        .authority
        .cert_for(caller.principal(), &serial_of(&serial)?)?;
    let pem = x509::to_pem("CERTIFICATE", &view.record.der);
    Ok(Json(CertJson { view, pem }))
}

/// Download one certificate as PEM.
#[utoipa::path(
    get,
    path = "/api/v1/certificates/{serial}/pem",
    operation_id = "get_certificate_pem",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number, hex (colons and 0x allowed)")),
    responses(
        (status = 200, description = "The certificate, PEM", body = String, content_type = "application/x-pem-file"),
        (status = 400, description = "Not a serial number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read certificates", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
    )
)]
async fn pem(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state
        .authority
        .cert_for(caller.principal(), &serial_of(&serial)?)?;
    let mut r = x509::to_pem("CERTIFICATE", &view.record.der).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(r)
}

/// Download one certificate as DER.
#[utoipa::path(
    get,
    path = "/api/v1/certificates/{serial}/der",
    operation_id = "get_certificate_der",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number, hex (colons and 0x allowed)")),
    responses(
        (status = 200, description = "The certificate, DER (binary)", content_type = "application/pkix-cert"),
        (status = 400, description = "Not a serial number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read certificates", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
    )
)]
async fn der(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state
        .authority
        .cert_for(caller.principal(), &serial_of(&serial)?)?;
    let mut r = view.record.der.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-cert"),
    );
    Ok(r)
}

/// Download one certificate with its CA chain (issuing CA, then root), PEM.
#[utoipa::path(
    get,
    path = "/api/v1/certificates/{serial}/chain",
    operation_id = "get_certificate_chain",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number, hex (colons and 0x allowed)")),
    responses(
        (status = 200, description = "The certificate, the issuing CA and the root, PEM", body = String, content_type = "application/x-pem-file"),
        (status = 400, description = "Not a serial number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read certificates", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
    )
)]
async fn chain(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiPath(serial): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state
        .authority
        .cert_for(caller.principal(), &serial_of(&serial)?)?;
    let mut text = x509::to_pem("CERTIFICATE", &view.record.der);
    for der in state.authority.ca_chain()? {
        text.push_str(&x509::to_pem("CERTIFICATE", &der));
    }
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// RFC 5280 reason: `unspecified`, `key-compromise`, `ca-compromise`,
    /// `affiliation-changed`, `superseded`, `cessation-of-operation` or `privilege-withdrawn`
    /// (the RFC's camelCase names are accepted too).
    #[schema(example = "key-compromise")]
    pub reason: String,
}

/// Revoke a certificate, permanently; the next CRL lists it.
#[utoipa::path(
    post,
    path = "/api/v1/certificates/{serial}/revoke",
    operation_id = "revoke_certificate",
    tag = "certificates",
    security(("bearer" = [])),
    params(("serial" = String, Path, description = "Serial number, hex (colons and 0x allowed)")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "The revocation", body = crate::authority::Revocation),
        (status = 400, description = "Not a serial number, or an unknown reason", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not revoke", body = ErrorBody),
        (status = 404, description = "No such certificate in the caller's scope", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Allowed<Issuers>,
    ApiPath(serial): ApiPath<String>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<crate::authority::Revocation>, ApiError> {
    let reason = RevocationReason::parse(&body.reason)
        .map_err(|e| ApiError(Error::InvalidInput(e.to_string())))?;
    let serial = serial_of(&serial)?;
    let authority = state.authority.clone();
    let principal = caller.principal().clone();
    let revocation =
        super::blocking(move || authority.revoke_as(&principal, &serial, reason)).await?;
    state.crl_dirty.notify_one();
    Ok(Json(revocation))
}

/// The CAs: subjects, key fingerprints, CRL numbers and next updates.
#[utoipa::path(
    get,
    path = "/api/v1/ca",
    operation_id = "get_ca_status",
    tag = "certificates",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Root and issuing CA", body = Vec<CaStatus>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Role may not read the CA status", body = ErrorBody),
        (status = 503, description = "The CA is not initialised or its key is unavailable", body = ErrorBody),
    )
)]
async fn ca_status(
    State(state): State<AppState>,
    _caller: Allowed<Issuers>,
) -> Result<Response, ApiError> {
    Ok(Json(state.authority.ca_status()?).into_response())
}
