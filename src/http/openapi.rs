//! The OpenAPI document of `/api/v1`, served at `GET /api/v1/openapi.json`.
//!
//! Nothing here is written by hand but the list of handlers: each operation comes from the
//! `#[utoipa::path]` annotation on its handler (method, path, parameters, body, responses), and
//! each schema from the `ToSchema` derive on the type the handler actually reads or writes, so
//! the document changes with the code. The integration test `openapi` checks that every
//! `/api/v1` route the router registers is listed here, validates the document with an
//! independent validator, and checks real responses (successes and error bodies) against the
//! schemas documented for them, undocumented fields included.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, audit, bundles, certs, discovery, external, organisations, ErrorBody};

/// The name of the bearer-token security scheme the operations refer to.
pub const BEARER: &str = "bearer";

/// The document. Add a handler's path here when adding a route under `/api/v1`; the
/// integration test fails until it is.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "anchorage API",
        description = "Certificate authority and trust-bundle service for Direct secure health \
messaging. Every operation but this document needs `Authorization: Bearer <token>` (an API token \
scoped to one role). Errors share one JSON body, `{code, message, reasons}`: `code` is stable, \
`reasons` lists every failed rule of a policy refusal (HTTP 422)."
    ),
    paths(
        document,
        certs::issue,
        certs::list,
        certs::show,
        certs::pem,
        certs::der,
        certs::chain,
        certs::revoke,
        certs::renew,
        certs::ca_status,
        bundles::list_bundles,
        bundles::submit,
        bundles::build,
        bundles::list_anchors,
        bundles::show,
        bundles::approve,
        bundles::reject,
        bundles::approve_batch,
        bundles::reject_batch,
        bundles::retire,
        bundles::promote,
        accounts::list_users,
        accounts::add_user,
        accounts::show_user,
        accounts::edit_user,
        accounts::disable_user,
        accounts::enable_user,
        accounts::set_password,
        accounts::list_tokens,
        accounts::add_token,
        accounts::revoke_token,
        accounts::audit,
        audit::checkpoint,
        accounts::backup,
        organisations::list,
        organisations::show,
        organisations::add,
        organisations::edit,
        organisations::disable,
        organisations::enable,
        organisations::holders,
        organisations::unresolved,
        organisations::holder,
        organisations::transfer,
        external::status,
        external::sources,
        external::refresh,
        discovery::list,
        discovery::zone,
        discovery::ldif,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "certificates", description = "Issue, list, download and revoke certificates; CA status"),
        (name = "bundles", description = "Trust bundles and the anchors members submit to them"),
        (name = "discovery", description = "DNS CERT zone files for the authoritative DNS server; the LDIF export for the LDAP directory"),
        (name = "accounts", description = "Users, API tokens and the audit log (administrators)"),
        (name = "organisations", description = "Organisations, the domains they may hold identifiers in, and which organisation each address or domain belongs to"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme the `security(("bearer" = []))` annotations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`anchorage token create`, or POST /api/v1/tokens)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once: it depends only on the code.
fn document_json() -> &'static Result<Bytes, serde_json::Error> {
    static JSON: OnceLock<Result<Bytes, serde_json::Error>> = OnceLock::new();
    JSON.get_or_init(|| ApiDoc::openapi().to_json().map(Bytes::from))
}

/// This OpenAPI document. Public: it describes the API and exposes no data.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "get_openapi_document",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI document of /api/v1", content_type = "application/json"),
    )
)]
pub async fn document() -> Response {
    match document_json() {
        Ok(json) => {
            let mut r = json.clone().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "serialising the OpenAPI document failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(ErrorBody {
                    code: "internal".into(),
                    message: "the service could not complete the request".into(),
                    reasons: Vec::new(),
                }),
            )
                .into_response()
        }
    }
}
