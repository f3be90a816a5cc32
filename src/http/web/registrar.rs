//! Registrar pages: the issuance form (CSR or server-generated key), the certificate list
//! with search and filters, the detail page with downloads, revocation and renewal.

use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::forms::{read_multipart, FormData};
use super::{render, see_other, Download, Nav, Notice, WebError, WebPath, WebQuery, WebSession};
use crate::accounts::Role;
use crate::authority::{CertFilter, CertStatus, CertView, IssueOutcome};
use crate::error::Error;
use crate::http::certs::csr_bytes;
use crate::http::AppState;
use crate::model::{RevocationReason, Serial};
use crate::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use crate::policy::Reason;
use crate::x509;

const ISSUERS: &[Role] = &[Role::Registrar, Role::Admin];
/// A generated PKCS#12 can be fetched once, within this time.
const DOWNLOAD_MINUTES: i64 = 15;

pub fn routes(form_limit: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/registrar/issue",
            get(issue_page)
                .post(issue)
                .layer(axum::extract::DefaultBodyLimit::max(form_limit)),
        )
        .route("/registrar/download/{ticket}", get(download))
        .route("/registrar/certs", get(list))
        .route("/registrar/certs/{serial}", get(detail))
        .route("/registrar/certs/{serial}/pem", get(pem))
        .route("/registrar/certs/{serial}/der", get(der))
        .route("/registrar/certs/{serial}/chain", get(chain))
        .route(
            "/registrar/certs/{serial}/revoke",
            get(revoke_page).post(revoke),
        )
}

/// What the form shows: the values typed so far and the errors beside each field.
#[derive(Debug, Default, Clone)]
pub struct IssueValues {
    pub address: String,
    pub domain: String,
    pub subscriber_name: String,
    pub organisation: String,
    pub usage: String,
    pub level_of_assurance: String,
    pub category: String,
    pub proofing_method: String,
    pub evidence_reference: String,
    pub key_source: String,
    pub csr: String,
    pub encryption_csr: String,
}

#[derive(askama::Template)]
#[template(path = "issue.html", config = "src/http/web/askama.toml")]
struct IssuePage {
    nav: Nav,
    csrf: String,
    v: IssueValues,
    errors: Vec<Reason>,
    general: Vec<String>,
    levels: Vec<String>,
    categories: Vec<String>,
    usages: Vec<&'static str>,
    methods: Vec<&'static str>,
    domains: Vec<String>,
    /// (id, name) of the organisations the registrar may issue for.
    organisations: Vec<(String, String)>,
    /// One-time value: a reload or double submit of this form issues once.
    nonce: String,
}

impl IssuePage {
    /// The messages for one field (the template shows them beside it).
    fn errors_for(&self, field: &str) -> Vec<&str> {
        self.errors
            .iter()
            .filter(|r| {
                r.field == Some(field)
                    || (field == "csr" && r.field.is_some_and(|f| f.starts_with("key")))
            })
            .map(|r| r.message.as_str())
            .collect()
    }

    fn invalid(&self, field: &str) -> bool {
        !self.errors_for(field).is_empty()
    }
}

const METHODS: [&str; 4] = [
    "in-person",
    "remote-supervised",
    "antecedent",
    "trusted-referee",
];

fn issue_page_for(
    state: &AppState,
    session: &WebSession,
    v: IssueValues,
    errors: Vec<Reason>,
) -> IssuePage {
    let profile = &state.authority.profiles().address;
    let (levels, categories) = profile
        .policies
        .as_ref()
        .map(|p| {
            (
                p.levels_of_assurance.keys().cloned().collect(),
                p.categories.keys().cloned().collect(),
            )
        })
        .unwrap_or_default();
    let principal = session.principal();
    let domains = domains_of(state, &principal);
    let organisations = state
        .authority
        .organisations_for(&principal)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.enabled())
        .map(|o| (o.id, o.name))
        .collect();
    let (field_errors, general) = errors
        .into_iter()
        .partition(|r| r.field.is_some_and(|f| f != "registrar" && f != "field"));
    IssuePage {
        nav: session.nav("/registrar/issue"),
        csrf: session.csrf().to_string(),
        v,
        errors: field_errors,
        general: general.into_iter().map(|r: Reason| r.message).collect(),
        levels,
        categories,
        usages: vec!["dual", "signing", "encryption", "pair"],
        methods: METHODS.to_vec(),
        domains,
        organisations,
        nonce: crate::accounts::random_secret().unwrap_or_default(),
    }
}

#[derive(Debug, Deserialize)]
pub struct RenewQuery {
    renew: Option<String>,
}

async fn issue_page(
    State(state): State<AppState>,
    session: WebSession,
    WebQuery(q): WebQuery<RenewQuery>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let mut v = IssueValues {
        usage: "dual".into(),
        key_source: "csr".into(),
        ..IssueValues::default()
    };
    if let Some(serial) = q.renew.as_deref() {
        let view = scoped(&state, &session, serial)?;
        v = renewal_values(&view);
    }
    Ok(render(
        &issue_page_for(&state, &session, v, Vec::new()),
        true,
    ))
}

/// A renewal starts from the old certificate's holder, subscriber and usage; the registrar
/// confirms the proofing again and supplies a new key.
fn renewal_values(view: &CertView) -> IssueValues {
    let r = &view.record;
    let (address, domain) = match view.binding {
        crate::model::Binding::Address => (r.holder.to_string(), String::new()),
        crate::model::Binding::Domain => (String::new(), r.holder.to_string()),
    };
    IssueValues {
        address,
        domain,
        subscriber_name: r.subscriber.name.clone(),
        organisation: view
            .organisation
            .as_ref()
            .map(|o| o.id.clone())
            .unwrap_or_default(),
        usage: r.requested_usage.as_str().to_string(),
        level_of_assurance: r.level_of_assurance.clone(),
        category: r.category.clone(),
        proofing_method: r.proofing.method.clone(),
        evidence_reference: String::new(),
        key_source: "csr".into(),
        csr: String::new(),
        encryption_csr: String::new(),
    }
}

fn values_of(form: &FormData) -> IssueValues {
    IssueValues {
        address: form.get("address"),
        domain: form.get("domain"),
        subscriber_name: form.get("subscriber_name"),
        organisation: form.get("organisation"),
        usage: form.get("usage"),
        level_of_assurance: form.get("level_of_assurance"),
        category: form.get("category"),
        proofing_method: form.get("proofing_method"),
        evidence_reference: form.get("evidence_reference"),
        key_source: form.get("key_source"),
        csr: form.get("csr"),
        encryption_csr: form.get("encryption_csr"),
    }
}

fn csr_input(form: &FormData, file: &str, text: &str) -> Option<Vec<u8>> {
    form.file(file)
        .map(<[u8]>::to_vec)
        .or_else(|| form.opt(text).map(|t| csr_bytes(&t)))
}

fn form_reason(field: &'static str, message: &str) -> Reason {
    Reason {
        code: "field_invalid",
        message: message.to_string(),
        field: Some(field),
    }
}

/// Turns the form into a request, or the reasons it cannot be one.
fn request_of(
    form: &FormData,
    v: &IssueValues,
    actor: String,
) -> Result<IssueRequest, Vec<Reason>> {
    let key = match v.key_source.as_str() {
        "generate" => KeySource::Generate,
        _ => match csr_input(form, "csr_file", "csr") {
            Some(signing) => KeySource::Csr {
                signing,
                encryption: csr_input(form, "encryption_csr_file", "encryption_csr"),
            },
            None => {
                return Err(vec![form_reason(
                    "csr",
                    "Paste or upload a CSR, or choose a server-generated key.",
                )])
            }
        },
    };
    Ok(IssueRequest {
        address: Some(v.address.clone()).filter(|s| !s.is_empty()),
        domain: Some(v.domain.clone()).filter(|s| !s.is_empty()),
        usage: v.usage.clone(),
        profile: None,
        category: Some(v.category.clone()).filter(|s| !s.is_empty()),
        key,
        subscriber: Subscriber {
            name: v.subscriber_name.clone(),
            organization: None,
        },
        organisation: Some(v.organisation.clone()).filter(|s| !s.is_empty()),
        registrar: actor,
        proofing: Proofing {
            method: v.proofing_method.clone(),
            level_of_assurance: Some(v.level_of_assurance.clone()).filter(|s| !s.is_empty()),
            evidence_reference: v.evidence_reference.clone(),
        },
    })
}

#[derive(askama::Template)]
#[template(path = "issued.html", config = "src/http/web/askama.toml")]
struct IssuedPage {
    nav: Nav,
    certs: Vec<IssuedRow>,
    password: Option<String>,
    /// This form was submitted before: the first result again, nothing new issued.
    replayed: bool,
}

#[derive(Debug, Clone)]
pub struct IssuedRow {
    serial: String,
    usage: String,
    holder: String,
    not_after: String,
    fingerprint: String,
    download: Option<String>,
}

async fn issue(
    State(state): State<AppState>,
    session: WebSession,
    multipart: Multipart,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let form = read_multipart(multipart, &["csr_file", "encryption_csr_file"]).await?;
    session.check_csrf(&form.get("csrf"))?;
    let mut v = values_of(&form);
    let retry = |state: &AppState, v: IssueValues, errors: Vec<Reason>| {
        let mut r = render(&issue_page_for(state, &session, v, errors), true);
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(r)
    };
    let nonce = form.get("nonce");
    if nonce.len() < 16 {
        return retry(
            &state,
            v,
            vec![form_reason(
                "field",
                "The form is incomplete (no one-time value); reload the page and try again.",
            )],
        );
    }
    let request = match request_of(&form, &v, session.actor()) {
        Ok(r) => r,
        Err(reasons) => return retry(&state, v, reasons),
    };
    let authority = state.authority.clone();
    let principal = session.principal();
    let key = format!("web-form:{nonce}");
    let outcome = tokio::task::spawn_blocking(move || {
        authority.issue_as(&principal, &request, None, Some(&key))
    })
    .await
    .map_err(|e| Error::Generation(format!("issuance task failed: {e}")))?;
    match outcome {
        Ok(outcome) => Ok(issued(&state, &session, &nonce, outcome)),
        Err(Error::Denied(denial)) => {
            // The CSR text stays; a typed password or key never reaches this form.
            v.key_source = if v.key_source == "generate" {
                "generate".into()
            } else {
                "csr".into()
            };
            retry(&state, v, denial.reasons)
        }
        Err(Error::InvalidInput(message)) => retry(&state, v, vec![form_reason("csr", &message)]),
        Err(
            e @ (Error::HolderOwnedElsewhere(_)
            | Error::HolderOutsideOrganisation(_)
            | Error::HolderUnresolved(_)
            | Error::DomainNotCovered(_)
            | Error::OrganisationDisabled(_)
            | Error::OrganisationRequired(_)
            | Error::Forbidden(_)
            | Error::RateLimited { .. }),
        ) => {
            let field = match &e {
                Error::OrganisationRequired(_) | Error::OrganisationDisabled(_) => "organisation",
                _ if v.address.is_empty() => "domain",
                _ => "address",
            };
            let message = e.to_string();
            // The status the API answers the same refusal with.
            let status = crate::http::ApiError(e).status();
            let mut r = render(
                &issue_page_for(&state, &session, v, vec![form_reason(field, &message)]),
                true,
            );
            *r.status_mut() = status;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// The page after an issuance. A replay of the same form (reload, double click) shows the
/// first result again, with its one-time downloads while they are unused.
fn issued(state: &AppState, session: &WebSession, nonce: &str, outcome: IssueOutcome) -> Response {
    let user = session.signed_in.user.username.clone();
    let now = state.authority.now();
    if outcome.replayed {
        let first = state.web.issued.lock().ok().and_then(|mut m| {
            m.retain(|_, f| f.expires_at > now);
            m.get(&(user.clone(), nonce.to_string())).cloned()
        });
        let (certs, password, again) = match first {
            Some(f) => (f.rows, f.password, true),
            None => (
                outcome
                    .certs
                    .iter()
                    .map(|c| IssuedRow {
                        serial: c.serial.as_str().to_string(),
                        usage: c.usage.as_str().to_string(),
                        holder: c.holder.clone(),
                        not_after: c.not_after.date().to_string(),
                        fingerprint: c.fingerprint.to_string(),
                        download: None,
                    })
                    .collect(),
                None,
                true,
            ),
        };
        let page = IssuedPage {
            nav: session.nav("/registrar/issue"),
            certs,
            password,
            replayed: again,
        };
        return render(&page, true);
    }
    let expires_at = now + time::Duration::minutes(DOWNLOAD_MINUTES);
    let mut rows = Vec::new();
    for cert in outcome.certs {
        let download = cert.pkcs12.map(|bytes| {
            let ticket = crate::accounts::random_secret().unwrap_or_default();
            if let Ok(mut downloads) = state.web.downloads.lock() {
                let now = state.authority.now();
                downloads.retain(|_, d| d.expires_at > now);
                downloads.insert(
                    ticket.clone(),
                    Download {
                        owner: session.signed_in.user.username.clone(),
                        filename: format!(
                            "{}-{}.p12",
                            cert.holder.replace('@', "_at_"),
                            cert.usage.as_str()
                        ),
                        bytes,
                        expires_at,
                    },
                );
            }
            ticket
        });
        rows.push(IssuedRow {
            serial: cert.serial.as_str().to_string(),
            usage: cert.usage.as_str().to_string(),
            holder: cert.holder.clone(),
            not_after: cert.not_after.date().to_string(),
            fingerprint: cert.fingerprint.to_string(),
            download,
        });
    }
    let password = outcome.generated_password.map(|p| p.to_string());
    if let Ok(mut m) = state.web.issued.lock() {
        m.insert(
            (user, nonce.to_string()),
            super::IssuedForm {
                rows: rows.clone(),
                password: password.clone(),
                expires_at,
            },
        );
    }
    let page = IssuedPage {
        nav: session.nav("/registrar/issue"),
        certs: rows,
        password,
        replayed: false,
    };
    render(&page, true)
}

async fn download(
    State(state): State<AppState>,
    session: WebSession,
    WebPath(ticket): WebPath<String>,
) -> Result<Response, WebError> {
    session.require(ISSUERS)?;
    let now = state.authority.now();
    let taken = state.web.downloads.lock().ok().and_then(|mut d| {
        let found = d
            .get(&ticket)
            .is_some_and(|x| x.owner == session.signed_in.user.username && x.expires_at > now);
        if found {
            d.remove(&ticket)
        } else {
            None
        }
    });
    let Some(file) = taken else {
        return Err(WebError::status(
            StatusCode::GONE,
            "This PKCS#12 was already downloaded, or its download window has passed. It is not stored: revoke the certificate and issue a new one.",
        ));
    };
    let mut r = file.bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pkcs12"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

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
    #[serde(default)]
    page: usize,
}

#[derive(askama::Template)]
#[template(path = "certs.html", config = "src/http/web/askama.toml")]
struct CertsPage {
    nav: Nav,
    q: ListQuery,
    domains: Vec<String>,
    rows: Vec<CertView>,
    total: usize,
    page: usize,
    pages: usize,
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
    match s {
        CertStatus::Valid => "valid",
        CertStatus::Revoked => "revoked",
        CertStatus::Expired => "expired",
        CertStatus::NotYetValid => "not_yet_valid",
    }
}

async fn list(
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
    let rows = tokio::task::spawn_blocking(move || authority.certs_for(&list_as, &filter))
        .await
        .map_err(|e| Error::Generation(format!("listing task failed: {e}")))??;
    let (rows, paging) = super::paginate(rows, q.page, super::PAGE_SIZE);
    let domains = domains_of(&state, &principal);
    let query_base = format!(
        "q={}&domain={}&status={}&expiring={}",
        super::forms::url_encode(&q.q),
        super::forms::url_encode(&q.domain),
        super::forms::url_encode(&q.status),
        super::forms::url_encode(&q.expiring)
    );
    let page_view = CertsPage {
        nav: session.nav("/registrar/certs"),
        q,
        domains,
        rows,
        total: paging.total,
        page: paging.page,
        pages: paging.pages,
        query_base,
    };
    Ok(render(&page_view, true))
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

async fn detail(
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

async fn pem(
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

async fn der(
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

async fn chain(
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

async fn revoke_page(
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

async fn revoke(
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
