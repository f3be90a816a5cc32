//! The discovery endpoints, where relying parties' directories get this CA's certificates:
//! `/api/v1/zones` lets a DNS operator download a health domain's CERT zone file (RFC 4027
//! `text/dns`), e.g. for a hidden primary elsewhere; `/api/v1/directory/ldif` is the LDAP
//! directory view (LDIF) of the issued certificates while `serve` holds the store, so an LDAP
//! operator's cron job (`anchorage publish ldif`) runs without stopping the CA (the export is
//! the one `publish ldif` writes, byte for byte). Also the scheduled sweep that keeps zone
//! files current while `serve` runs (expired certificates leave DNS without any request).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{blocking, Allowed, ApiError, ApiPath, ApiQuery, AppState, DnsReaders, ErrorBody};
use crate::authority::{LdifOutcome, ZoneOutcome};
use crate::error::Error;
use crate::model::HealthDomain;

/// LDIF (RFC 2849) has no registered media type (`application/ldif` is not in the IANA
/// registry), and the export is 7-bit text (binary values are base64), so plain UTF-8 text
/// is the honest label and what tools and browsers display as is.
const LDIF_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/zones", get(list))
        .route("/zones/{domain}", get(zone))
        .route("/directory/ldif", get(ldif))
}

/// Rewrite every managed domain's zone file when its content changed, and list them.
#[utoipa::path(
    get,
    path = "/api/v1/zones",
    operation_id = "list_zones",
    tag = "discovery",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One entry per managed domain: file, mode, SOA serial, records, reload outcome", body = Vec<ZoneOutcome>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only DNS operators and administrators read zones", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Allowed<DnsReaders>,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let zones = tokio::task::spawn_blocking(move || authority.publish_zones(None, None))
        .await
        .map_err(|e| Error::Publish(format!("zone task failed: {e}")))??;
    Ok(Json(zones).into_response())
}

/// One managed domain's CERT zone file (RFC 4027 `text/dns`), current as of this request.
#[utoipa::path(
    get,
    path = "/api/v1/zones/{domain}",
    operation_id = "get_zone",
    tag = "discovery",
    security(("bearer" = [])),
    params(("domain" = String, Path, description = "A managed health domain")),
    responses(
        (status = 200, description = "The zone file (fragment or complete zone, per configuration); header X-Zone-Serial", content_type = "text/dns", body = String),
        (status = 400, description = "Not a domain name", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only DNS operators and administrators read zones", body = ErrorBody),
        (status = 404, description = "Not a managed domain", body = ErrorBody),
    )
)]
pub async fn zone(
    State(state): State<AppState>,
    _caller: Allowed<DnsReaders>,
    ApiPath(domain): ApiPath<String>,
) -> Result<Response, ApiError> {
    let domain = HealthDomain::parse(&domain).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let authority = state.authority.clone();
    let (outcome, bytes) = tokio::task::spawn_blocking(move || authority.zone_text(&domain))
        .await
        .map_err(|e| Error::Publish(format!("zone task failed: {e}")))??;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/dns"));
    if let Ok(v) = HeaderValue::from_str(&outcome.serial.to_string()) {
        headers.insert("x-zone-serial", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        outcome
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
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

/// Sweeps the zones at start and then every `publish.sweep_interval_secs` (see
/// `Authority::sweep_zones`: only what expired, became valid or was not yet published), and
/// republishes the zones of domains changed by issuance or revocation shortly after the change
/// (changes within `publish.coalesce_millis` share one rewrite). Rewriting a small zone reads
/// all of its certificates (a sharded one only the touched shards), so under a sustained burst
/// the wait grows with the last rewrite's duration (see [`coalesce_wait`]): publication then
/// takes a bounded share of a core instead of starving issuance.
pub fn spawn_sweeper(state: &AppState) -> tokio::task::JoinHandle<()> {
    let authority = state.authority.clone();
    let dirty = authority.queue_zone_publication();
    let every = Duration::from_secs(authority.config().publish.sweep_interval_secs.max(1));
    let coalesce = Duration::from_millis(authority.config().publish.coalesce_millis);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_run = Duration::ZERO;
        loop {
            let sweep = tokio::select! {
                _ = dirty.notified() => {
                    tokio::time::sleep(coalesce_wait(coalesce, last_run)).await;
                    false
                }
                _ = tick.tick() => true,
            };
            let a = authority.clone();
            let started = crate::clock::monotonic_now();
            let task = tokio::task::spawn_blocking(move || {
                if sweep {
                    a.sweep_zones();
                }
                a.publish_queued_zones();
            });
            if let Err(e) = task.await {
                tracing::error!(error = %e, "zone publication task failed");
            }
            last_run = started.elapsed();
        }
    })
}

/// How long a change-triggered rewrite waits: at least `coalesce`, and at least
/// `BUSY_FACTOR` times the previous run, so back-to-back rewrites use at most
/// 1 / (1 + BUSY_FACTOR) of a core.
pub fn coalesce_wait(coalesce: Duration, last_run: Duration) -> Duration {
    const BUSY_FACTOR: u32 = 4;
    // A rewrite that took minutes is an outlier (a stalled disk); do not wait for hours.
    const MAX_WAIT: Duration = Duration::from_secs(60);
    coalesce.max((last_run * BUSY_FACTOR).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::coalesce_wait;
    use std::time::Duration;

    #[test]
    fn wait_grows_with_the_last_rewrite_and_is_capped() {
        let ms = Duration::from_millis;
        assert_eq!(coalesce_wait(ms(200), Duration::ZERO), ms(200));
        assert_eq!(coalesce_wait(ms(200), ms(30)), ms(200));
        assert_eq!(coalesce_wait(ms(200), ms(150)), ms(600));
        assert_eq!(coalesce_wait(ms(0), ms(10)), ms(40));
        assert_eq!(
            coalesce_wait(ms(200), Duration::from_secs(300)),
            Duration::from_secs(60)
        );
    }
}
