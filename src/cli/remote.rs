//! How a command reaches the store: directly, or - when `serve` holds the store, or the
//! environment names a server (`ANCHORAGE_URL`, `ANCHORAGE_TOKEN`) - through the running
//! server's API. This is the one home of that forwarding: choosing the target, the files
//! `serve` leaves for the CLI (where it listens, the local control token), one API call, and
//! turning the server's error bodies back into our errors, so a command behaves the same on
//! either side.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cli_actor;
use crate::authority::Authority;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::error::{Error, Result};

/// Where `serve` says how to reach it.
pub const SERVE_FILE: &str = "serve.json";
/// The local control token (0600) `serve` writes for the CLI.
pub const CONTROL_TOKEN_FILE: &str = "control-token";

/// Opens the store, or says where the running server is when it holds the store.
pub(super) enum Target {
    Direct(Box<Authority>),
    Server { url: String, token: String },
}

/// The server and credential named by the environment: `ANCHORAGE_URL` (a running anchorage,
/// local or not) and `ANCHORAGE_TOKEN` (the caller's own API token, so its scope applies).
pub const URL_ENV: &str = "ANCHORAGE_URL";
pub const TOKEN_ENV: &str = "ANCHORAGE_TOKEN";

pub(super) fn target(config: Config) -> Result<Target> {
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    if let (Ok(url), Some(token)) = (std::env::var(URL_ENV), &token) {
        return Ok(Target::Server {
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        });
    }
    let data_dir = config.data_dir.clone();
    match Authority::open(config, Arc::new(SystemClock)) {
        Ok(a) if a.is_initialised()? => Ok(Target::Direct(Box::new(a))),
        Ok(_) => Err(Error::NotInitialised),
        Err(Error::Locked(dir)) => match server_target(&data_dir) {
            // The caller's own token instead of the operator's control token.
            Some(Target::Server { url, .. }) if token.is_some() => Ok(Target::Server {
                url,
                token: token.unwrap_or_default().trim().to_string(),
            }),
            found => found.ok_or(Error::Locked(dir)),
        },
        Err(e) => Err(e),
    }
}

fn server_target(data_dir: &Path) -> Option<Target> {
    let (url, token) = running_server(data_dir)?;
    Some(Target::Server { url, token })
}

/// Where the running `serve` listens and its local control token.
pub(super) fn running_server(data_dir: &Path) -> Option<(String, String)> {
    let serve: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join(SERVE_FILE)).ok()?).ok()?;
    let token = std::fs::read_to_string(data_dir.join(CONTROL_TOKEN_FILE)).ok()?;
    Some((
        serve
            .get("url")
            .and_then(Value::as_str)?
            .trim_end_matches('/')
            .to_string(),
        token.trim().to_string(),
    ))
}

/// One API call to the running server; API errors come back as our error codes.
pub(super) fn call(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client
            .request(method, format!("{url}/api/v1{path}"))
            .bearer_auth(token)
            .header("x-anchorage-actor", cli_actor());
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.map_err(|e| {
            Error::Store(format!("the running server at {url} did not answer: {e}"))
        })?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| Error::Store(format!("unreadable answer from the server: {e}")))?;
        if status.is_success() {
            return Ok(value);
        }
        Err(remote_error(&value, Error::Store))
    })
}

/// The pages of one listing from the running server: one runtime and one client (so one
/// kept-alive connection) for all of them. A runtime, a client and a connection per page cost
/// more than the page itself once a listing runs to hundreds of pages.
pub(super) struct Pager {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Pager {
    pub(super) fn new(url: &str, token: &str) -> Result<Pager> {
        Ok(Pager {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("tokio runtime", e))?,
            client: reqwest::Client::new(),
            url: url.to_string(),
            token: token.to_string(),
        })
    }

    /// A GET of one page: its entries (each parsed as `T`, so fields a listing does not
    /// print are skipped, not built) and the `Link` header (where the next page is).
    pub(super) fn page<T: DeserializeOwned>(&self, path: &str) -> Result<(Vec<T>, Option<String>)> {
        let url = &self.url;
        self.runtime.block_on(async {
            let response = self
                .client
                .get(format!("{url}/api/v1{path}"))
                .bearer_auth(&self.token)
                .header("x-anchorage-actor", cli_actor())
                .send()
                .await
                .map_err(|e| {
                    Error::Store(format!("the running server at {url} did not answer: {e}"))
                })?;
            let status = response.status();
            let link = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await.map_err(|e| {
                Error::Store(format!("the running server at {url} did not answer: {e}"))
            })?;
            let unreadable = |e: serde_json::Error| {
                Error::Store(format!("unreadable answer from the server: {e}"))
            };
            if status.is_success() {
                return Ok((serde_json::from_slice(&body).map_err(unreadable)?, link));
            }
            let value: Value = serde_json::from_slice(&body).map_err(unreadable)?;
            Err(remote_error(&value, Error::Store))
        })
    }
}

/// The error a running server answered with (`{code, message, reasons}`), as ours; codes
/// with no counterpart here become `fallback`.
pub(super) fn remote_error(value: &Value, fallback: fn(String) -> Error) -> Error {
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("request failed")
        .to_string();
    match value
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "request_denied" => Error::Denied(crate::policy::Denial {
            reasons: serde_json::from_value::<Vec<RemoteReason>>(
                value.get("reasons").unwrap_or(&Value::Null).clone(),
            )
            .unwrap_or_default()
            .into_iter()
            .map(RemoteReason::into_reason)
            .collect(),
        }),
        "not_found" => Error::NotFound(message),
        "conflict" => Error::Conflict(message),
        "invalid_input" | "body_too_large" => Error::InvalidInput(message),
        "forbidden" => Error::Forbidden(message),
        "unauthorised" => Error::Unauthorised(message),
        "holder_owned_elsewhere" => Error::HolderOwnedElsewhere(message),
        "holder_outside_organisation" => Error::HolderOutsideOrganisation(message),
        "holder_unresolved" => Error::HolderUnresolved(message),
        "domain_not_covered" => Error::DomainNotCovered(message),
        "organisation_disabled" => Error::OrganisationDisabled(message),
        "organisation_required" => Error::OrganisationRequired(message),
        "audit_key_unavailable" => Error::AuditKeyUnavailable(message),
        "audit_integrity" => Error::AuditIntegrity(message),
        _ => fallback(message),
    }
}

#[derive(serde::Deserialize)]
struct RemoteReason {
    code: String,
    message: String,
}

impl RemoteReason {
    fn into_reason(self) -> crate::policy::Reason {
        // Reason codes are &'static str in-process; remote ones are leaked once per CLI run.
        crate::policy::Reason {
            code: Box::leak(self.code.into_boxed_str()),
            message: self.message,
            field: None,
        }
    }
}

/// One GET of a file (not JSON) from the running server, e.g. a zone, the LDIF export or a
/// backup: its headers and bytes. Failures to reach or read the server, and the server's
/// own error codes without a counterpart here, become `fallback`.
pub(super) fn download(
    url: &str,
    token: &str,
    path: &str,
    fallback: fn(String) -> Error,
) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let (status, headers, body) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(path)
            .bearer_auth(token)
            .header("x-anchorage-actor", cli_actor())
            .send()
            .await
            .map_err(|e| fallback(format!("the running server at {url} did not answer: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| fallback(format!("unreadable answer from the server: {e}")))?;
        Ok::<_, Error>((status, headers, body))
    })?;
    if !status.is_success() {
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        return Err(remote_error(&value, fallback));
    }
    Ok((headers, body.to_vec()))
}
