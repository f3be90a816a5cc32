//! The registrar's issuance form: the values typed so far with each field's errors beside it,
//! the request it becomes (one `issue_as` call; a policy denial comes back as every failed
//! rule, shown on the form), the result page kept per form nonce so a reload or double submit
//! issues once, and the single download of a server-generated PKCS#12.

use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{domains_of, scoped, ISSUERS};
use crate::authority::{CertView, IssueOutcome};
use crate::error::Error;
use crate::http::certs::csr_bytes;
use crate::http::web::forms::{read_multipart, FormData};
use crate::http::web::{
    render, Download, IssuedForm, Nav, WebError, WebPath, WebQuery, WebSession,
};
use crate::http::AppState;
use crate::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use crate::policy::Reason;

/// A generated PKCS#12 can be fetched once, within this time.
const DOWNLOAD_MINUTES: i64 = 15;

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

pub(super) async fn issue_page(
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

pub(super) async fn issue(
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
            IssuedForm {
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

pub(super) async fn download(
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
