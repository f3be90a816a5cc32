//! The external-bundle endpoints, the HTTP side of the external flow (bundles fetched from
//! other communities' URLs): each source's status (public: monitoring and STAs' operators
//! read it without a token; it holds nothing secret), a manual refresh for admins, and the
//! Prometheus metrics of all sources.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{blocking, Admins, Allowed, ApiError, ApiPath, ApiQuery, AppState, ErrorBody};
use crate::authority::{RefreshReport, SourceView, Staleness};
use crate::external::RefreshStatus;

/// Routes under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bundles/{name}/status", get(status))
        .route("/bundles/{name}/refresh", post(refresh))
        .route("/sources", get(sources))
}

/// Top-level routes.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// One external source's refresh status (public: it holds nothing secret).
#[utoipa::path(
    get,
    path = "/api/v1/bundles/{name}/status",
    operation_id = "external_bundle_status",
    tag = "bundles",
    params(("name" = String, Path, description = "Name of an external bundle")),
    responses(
        (status = 200, description = "Last attempt, last success, staleness and the anchors of the published copy and of the last attempt", body = SourceView),
        (status = 404, description = "No external bundle of that name", body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let view = blocking(move || authority.source_view(&name)).await?;
    Ok(Json(view).into_response())
}

/// Every external source's refresh status (public).
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    operation_id = "external_sources",
    tag = "bundles",
    responses(
        (status = 200, description = "All declared external sources", body = Vec<SourceView>),
    )
)]
pub async fn sources(State(state): State<AppState>) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let views = blocking(move || authority.source_views()).await?;
    Ok(Json(views).into_response())
}

/// Options of a manual refresh.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefreshQuery {
    /// Accept a copy signed earlier than the last accepted one (otherwise refused as
    /// `rollback`); audited with both signing times. `anchorage refresh run NAME
    /// --accept-older` sends it.
    #[serde(default)]
    pub accept_older: bool,
}

/// Runs one refresh now; the answer is the attempt's report whatever its status (the
/// request itself succeeded), so callers branch on `status`.
/// Refresh an external bundle now; the answer reports the attempt whatever its status.
#[utoipa::path(
    post,
    path = "/api/v1/bundles/{name}/refresh",
    operation_id = "refresh_external_bundle",
    tag = "bundles",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Name of an external bundle"), RefreshQuery),
    responses(
        (status = 200, description = "The attempt: status (ok, not_modified, or a failure; the last good copy stays published on failure), reason, new version", body = RefreshReport),
        (status = 400, description = "The source is disabled", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "Only administrators trigger refreshes", body = ErrorBody),
        (status = 404, description = "No external bundle of that name", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Allowed<Admins>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RefreshQuery>,
) -> Result<Response, ApiError> {
    let report = crate::refresh::refresh_with(
        state.authority.clone(),
        &name,
        &caller.actor(),
        q.accept_older,
    )
    .await?;
    Ok(Json(report).into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let authority = state.authority.clone();
    let views = blocking(move || authority.source_views()).await?;
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "anchorage_external_refresh_attempts_total",
        "counter",
        "Refresh attempts of external bundles, by final status.",
    );
    let mut lines = String::new();
    for v in &views {
        for status in RefreshStatus::ALL {
            let count = v.attempts.get(status.as_str()).copied().unwrap_or(0);
            let _ = writeln!(
                lines,
                "anchorage_external_refresh_attempts_total{{source=\"{}\",status=\"{status}\"}} {count}",
                v.name
            );
        }
    }
    text.push_str(&lines);
    type Value = fn(&SourceView) -> i64;
    let gauges: [(&str, &str, &str, Value); 6] = [
        (
            "anchorage_external_last_success_timestamp_seconds",
            "Unix time of the last successful refresh (0: never).",
            "",
            |v| unix_of(v.last_success_at),
        ),
        (
            "anchorage_external_last_good_timestamp_seconds",
            "Unix time the publisher last confirmed the published copy (0: none).",
            "",
            |v| unix_of(v.last_good_at),
        ),
        (
            "anchorage_external_anchors",
            "Anchors of the published copy, by admission verdict.",
            ",verdict=\"admitted\"",
            |v| v.anchors.iter().filter(|a| a.admitted).count() as i64,
        ),
        (
            "anchorage_external_anchors",
            "",
            ",verdict=\"rejected\"",
            |v| v.anchors.iter().filter(|a| !a.admitted).count() as i64,
        ),
        (
            "anchorage_external_stale",
            "0 fresh, 1 past stale_warn_hours (or no copy yet), 2 past stale_fail_hours.",
            "",
            |v| match v.staleness {
                Staleness::Fresh => 0,
                Staleness::StaleWarn | Staleness::NoCopy => 1,
                Staleness::StaleFail => 2,
            },
        ),
        (
            "anchorage_external_consecutive_failures",
            "Failed refresh attempts since the last success.",
            "",
            |v| i64::try_from(v.consecutive_failures).unwrap_or(i64::MAX),
        ),
    ];
    for (name, help, labels, value) in gauges {
        if !help.is_empty() {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        }
        for v in &views {
            let _ = writeln!(text, "{name}{{source=\"{}\"{labels}}} {}", v.name, value(v));
        }
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

fn unix_of(t: Option<time::OffsetDateTime>) -> i64 {
    t.map_or(0, |t| t.unix_timestamp())
}
