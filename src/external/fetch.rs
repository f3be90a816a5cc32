//! Downloading an external bundle: verified TLS (plus the source's extra CA), connect, read
//! and total timeouts, a streamed size cap that stops reading past the maximum, bounded
//! redirects that never leave HTTPS, conditional GET, and a few retries with back-off for
//! network failures. Every error is mapped to the precise status an operator acts on.

use std::time::Duration;

use reqwest::header::{
    CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, USER_AGENT,
};
use reqwest::StatusCode;

use super::source::ExternalSource;
use super::{Failure, RefreshStatus};

/// The validators of the last good copy, sent for a conditional GET.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A successful download.
#[derive(Debug, Clone)]
pub enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        validators: Validators,
        content_type: Option<String>,
    },
}

/// Fetches the source, retrying network failures `source.retries` times with doubling
/// back-off. Returns the result and the number of tries made.
pub async fn fetch(
    source: &ExternalSource,
    validators: &Validators,
) -> (Result<Fetched, Failure>, u32) {
    let client = match client(source) {
        Ok(c) => c,
        Err(f) => return (Err(f), 0),
    };
    let mut backoff = Duration::from_millis(source.retry_backoff_ms);
    let mut tries = 0;
    loop {
        tries += 1;
        let total = Duration::from_secs(source.total_timeout_secs);
        let result = match tokio::time::timeout(total, once(&client, source, validators)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                RefreshStatus::Timeout,
                format!(
                    "the download did not finish within total_timeout_secs = {}",
                    source.total_timeout_secs
                ),
            )),
        };
        let retry = match &result {
            Err(f) => {
                f.status.is_transient()
                    || (f.status == RefreshStatus::HttpStatus
                        && f.http_code.is_some_and(|c| c >= 500 || c == 429))
            }
            Ok(_) => false,
        };
        if !retry || tries > source.retries {
            return (result, tries);
        }
        if let Err(f) = &result {
            tracing::info!(url = %source.redacted_url(), try_number = tries, status = %f.status, reason = %f.reason, "refresh try failed; retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
}

fn client(source: &ExternalSource) -> Result<reqwest::Client, Failure> {
    let max_redirects = source.max_redirects;
    let allow_http = source.danger_allow_http;
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            attempt.error(format!(
                "more than max_redirects = {max_redirects} redirects"
            ))
        } else if attempt.url().scheme() != "https" && !allow_http {
            attempt.error("a redirect away from HTTPS")
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(source.connect_timeout_secs))
        .read_timeout(Duration::from_secs(source.read_timeout_secs))
        .timeout(Duration::from_secs(source.total_timeout_secs))
        .https_only(!allow_http);
    if let Some(pem) = &source.tls_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            Failure::new(
                RefreshStatus::TlsError,
                format!("tls_ca_file cannot be used: {e}"),
            )
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| {
        Failure::new(
            RefreshStatus::TlsError,
            format!("the HTTPS client cannot be built: {e}"),
        )
    })
}

async fn once(
    client: &reqwest::Client,
    source: &ExternalSource,
    validators: &Validators,
) -> Result<Fetched, Failure> {
    let mut request = client
        .get(&source.url)
        .header(USER_AGENT, concat!("anchorage/", env!("CARGO_PKG_VERSION")));
    if let Some(etag) = &validators.etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(date) = &validators.last_modified {
        request = request.header(IF_MODIFIED_SINCE, date);
    }
    let mut response = request.send().await.map_err(|e| classify(e, source))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(Failure {
            status: RefreshStatus::HttpStatus,
            reason: format!("the server answered {status}"),
            http_code: Some(status.as_u16()),
        });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let validators = Validators {
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let too_large = || {
        Failure::new(
            RefreshStatus::TooLarge,
            format!("the bundle is larger than max_bytes = {}", source.max_bytes),
        )
    };
    let announced = header(CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if announced.is_some_and(|l| l > source.max_bytes) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(
        usize::try_from(announced.unwrap_or(0).min(source.max_bytes)).unwrap_or(0),
    );
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, source))? {
        if (bytes.len() + chunk.len()) as u64 > source.max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body {
        bytes,
        validators,
        content_type,
    })
}

/// Maps a reqwest error to a status by walking its causes: DNS, TLS, timeout, connection.
/// The URL is left out of the text so that words in it ("tls", "certificates") cannot
/// masquerade as causes, and whatever of it a cause still embeds is scrubbed of its
/// credentials and query string: the reason is shown and logged.
fn classify(e: reqwest::Error, source: &ExternalSource) -> Failure {
    let e = e.without_url();
    let chain = causes(&e);
    let text = source.scrub(&chain.join(": "));
    let lower = text.to_ascii_lowercase();
    let status = if e.is_timeout() || lower.contains("timed out") || lower.contains("timeout") {
        RefreshStatus::Timeout
    } else if has_tls_cause(&e) || lower.contains("certificate") || lower.contains("tls") {
        RefreshStatus::TlsError
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
    {
        RefreshStatus::DnsError
    } else if e.is_redirect() {
        return Failure {
            status: RefreshStatus::HttpStatus,
            reason: format!("redirect refused: {text}"),
            http_code: e.status().map(|s| s.as_u16()),
        };
    } else {
        RefreshStatus::ConnectError
    };
    Failure::new(status, text)
}

fn causes(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if out.last() != Some(&text) {
            out.push(text);
        }
        next = cause.source();
    }
    out
}

fn has_tls_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if cause.is::<tokio_rustls::rustls::Error>() {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
            {
                return true;
            }
        }
        next = cause.source();
    }
    false
}
