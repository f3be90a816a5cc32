//! Trust-bundle publication over HTTP(S): the current .p7b/.p7m/.sha256/.json of every bundle,
//! the changelog as JSON and Atom, and an HTML and JSON index, rendered here once per published
//! version and served from memory by `downloads`; older versions are read from the store on
//! request. Strong ETags, Last-Modified, conditional GET and HEAD throughout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::authority::Authority;
use crate::authority::BundleVersion;
use crate::error::{Error, Result};
use crate::http::prepared::{Prepared, CURRENT_CACHE};
use crate::http::{ApiError, ApiPath, AppState};

const P7_TYPE: &str = "application/pkcs7-mime";
/// A numbered version never changes.
const IMMUTABLE_CACHE: &str = "public, max-age=31536000, immutable";

/// Every current bundle file by request path (`/bundles/{name}.p7b`, ...), the changelogs and
/// the index pages (`/bundles` for the HTML page, `/bundles.json`).
pub(in crate::http) fn prepare(authority: &Authority) -> Result<HashMap<String, Arc<Prepared>>> {
    let mut served = BTreeMap::new();
    let mut table = HashMap::new();
    for name in authority.inventory().bundles.keys() {
        // The changelog without files, and the files of the current version only: a bundle's
        // old versions stay on disk (or are pruned), not in memory.
        let versions = authority.bundle_changelog(name)?;
        if let Some(last) = versions.last() {
            let Some(latest) = authority.bundle_version(name, last.version)? else {
                continue;
            };
            let bundle = served_bundle(authority, &latest, &versions);
            for (ext, file) in &bundle.files {
                let path = match *ext {
                    "changes.json" | "changes.atom" => format!("/bundles/{name}/{ext}"),
                    _ => format!("/bundles/{name}.{ext}"),
                };
                table.insert(path, file.clone());
            }
            served.insert(name.clone(), bundle);
        }
    }
    let (html, json) = index_pages(authority, &served);
    table.insert("/bundles".into(), Arc::new(html));
    table.insert("/bundles.json".into(), Arc::new(json));
    Ok(table)
}

/// Everything served for one bundle's current version.
struct ServedBundle {
    version: u64,
    sha256: String,
    files: BTreeMap<&'static str, Arc<Prepared>>,
}

fn system_time(t: time::OffsetDateTime) -> SystemTime {
    SystemTime::from(t)
}

fn served_bundle(authority: &Authority, v: &BundleVersion, all: &[BundleVersion]) -> ServedBundle {
    let at = system_time(v.published_at);
    let name = &v.bundle;
    let mut files = BTreeMap::new();
    files.insert("p7b", prepared(v.p7b.clone(), P7_TYPE, at));
    if let Some(p7m) = &v.p7m {
        files.insert("p7m", prepared(p7m.clone(), P7_TYPE, at));
    }
    files.insert(
        "sha256",
        prepared(
            format!("{}  {name}.p7b\n", v.sha256).into_bytes(),
            "text/plain; charset=utf-8",
            at,
        ),
    );
    let base = authority.config().bundle_base_url();
    let signer = authority.bundle_signer_cert().ok().flatten();
    let status = json!({
        "name": name,
        "version": v.version,
        "published_at": rfc3339(v.published_at),
        "sha256": v.sha256,
        "signed": v.p7m.is_some(),
        "p7b": format!("{base}/bundles/{name}.p7b"),
        "p7m": v.p7m.as_ref().map(|_| format!("{base}/bundles/{name}.p7m")),
        "signer_sha256": signer.as_ref().map(|s| crate::model::Fingerprint::of(s).0),
        "anchors": v.anchors.iter().map(|a| json!({
            "subject": a.subject,
            "fingerprint": a.fingerprint,
            "not_after": rfc3339(a.not_after),
            "organization": a.organization,
        })).collect::<Vec<_>>(),
    });
    files.insert("json", prepared(pretty(&status), "application/json", at));
    let changes: Vec<serde_json::Value> = all
        .iter()
        .rev()
        .map(|v| json!({
            "version": v.version,
            "published_at": rfc3339(v.published_at),
            "sha256": v.sha256,
            "anchors": v.anchors.len(),
            "added": v.added.iter().map(|a| json!({"subject": a.subject, "fingerprint": a.fingerprint})).collect::<Vec<_>>(),
            "removed": v.removed.iter().map(|a| json!({"subject": a.subject, "fingerprint": a.fingerprint})).collect::<Vec<_>>(),
            "p7b": format!("{base}/bundles/{name}/v/{}.p7b", v.version),
            "pruned_at": v.pruned_at.map(rfc3339),
        }))
        .collect();
    files.insert(
        "changes.json",
        prepared(
            pretty(&json!({"name": name, "versions": changes})),
            "application/json",
            at,
        ),
    );
    files.insert(
        "changes.atom",
        prepared(
            atom(&base, name, all).into_bytes(),
            "application/atom+xml",
            at,
        ),
    );
    ServedBundle {
        version: v.version,
        sha256: v.sha256.clone(),
        files,
    }
}

/// A current bundle file: revalidated by clients (STAs poll daily).
fn prepared(body: Vec<u8>, content_type: &'static str, at: SystemTime) -> Arc<Prepared> {
    Arc::new(Prepared::new(body, content_type, CURRENT_CACHE, at))
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The RFC 4287 changelog feed: one entry per version, newest first.
#[derive(Template)]
#[template(path = "bundle_changes.xml", config = "src/http/web/askama.toml")]
struct ChangesFeed<'a> {
    base: &'a str,
    name: &'a str,
    updated: String,
    entries: Vec<FeedEntry>,
}

struct FeedEntry {
    version: u64,
    updated: String,
    summary: String,
}

fn atom(base: &str, name: &str, all: &[BundleVersion]) -> String {
    let entries = all
        .iter()
        .rev()
        .map(|v| {
            let mut summary = format!("{} anchors, SHA-256 {}.", v.anchors.len(), v.sha256);
            for a in &v.added {
                summary.push_str(&format!(" Added: {} ({}).", a.subject, a.fingerprint));
            }
            for a in &v.removed {
                summary.push_str(&format!(" Removed: {} ({}).", a.subject, a.fingerprint));
            }
            FeedEntry {
                version: v.version,
                updated: rfc3339(v.published_at),
                summary,
            }
        })
        .collect();
    let feed = ChangesFeed {
        base,
        name,
        updated: all
            .last()
            .map(|v| rfc3339(v.published_at))
            .unwrap_or_default(),
        entries,
    };
    render(&feed)
}

/// The public HTML index of every declared bundle.
#[derive(Template)]
#[template(path = "bundles_index.html", config = "src/http/web/askama.toml")]
struct IndexPage<'a> {
    rows: Vec<IndexRow<'a>>,
}

struct IndexRow<'a> {
    name: &'a str,
    title: &'a str,
    description: &'a str,
    test: bool,
    served: Option<ServedRow<'a>>,
}

struct ServedRow<'a> {
    version: u64,
    sha256: &'a str,
    signed: bool,
}

/// A template that fails to render is a programming error; log it and serve what rendered.
fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a bundle publication template failed to render");
        String::new()
    })
}

fn index_pages(
    authority: &Authority,
    map: &BTreeMap<String, ServedBundle>,
) -> (Prepared, Prepared) {
    let base = authority.config().bundle_base_url();
    let latest = map
        .values()
        .filter_map(|b| b.files.get("p7b").map(|r| r.last_modified()))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let inventory = authority.inventory();
    let mut rows = Vec::new();
    let mut list = Vec::new();
    for (name, declared) in &inventory.bundles {
        let d = &declared.declaration;
        let served = map.get(name);
        rows.push(IndexRow {
            name,
            title: &d.title,
            description: &d.description,
            test: d.test,
            served: served.map(|s| ServedRow {
                version: s.version,
                sha256: &s.sha256,
                signed: s.files.contains_key("p7m"),
            }),
        });
        list.push(json!({
            "name": name,
            "title": d.title,
            "description": d.description,
            "test": d.test,
            "signed": d.signed,
            "version": served.map(|s| s.version),
            "sha256": served.map(|s| s.sha256.clone()),
            "p7b": served.map(|_| format!("{base}/bundles/{name}.p7b")),
            "p7m": served.filter(|s| s.files.contains_key("p7m")).map(|_| format!("{base}/bundles/{name}.p7m")),
            "json": served.map(|_| format!("{base}/bundles/{name}.json")),
        }));
    }
    let html = render(&IndexPage { rows });
    (
        Prepared::new(
            html.into_bytes(),
            "text/html; charset=utf-8",
            CURRENT_CACHE,
            latest,
        ),
        Prepared::new(
            pretty(&json!({"bundles": list})),
            "application/json",
            CURRENT_CACHE,
            latest,
        ),
    )
}

/// Older versions, read from the store; the current files are `downloads` routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/bundles/{name}/v/{file}", get(older))
}

fn not_found(what: &str) -> ApiError {
    ApiError(Error::NotFound(format!("no such bundle resource '{what}'")))
}

async fn older(
    State(state): State<AppState>,
    ApiPath((name, file)): ApiPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (number, ext) = file.rsplit_once('.').ok_or_else(|| not_found(&file))?;
    let number: u64 = number.parse().map_err(|_| not_found(&file))?;
    let authority = state.authority.clone();
    let version = tokio::task::spawn_blocking(move || authority.bundle_version(&name, number))
        .await
        .map_err(|e| Error::Store(e.to_string()))??
        .ok_or_else(|| not_found(&file))?;
    if let Some(pruned) = version.pruned_at {
        return Err(ApiError(Error::Gone(format!(
            "version {} of bundle '{}' was pruned on {} by the retention policy ([bundles] keep_versions, keep_days); its changelog entry stays in changes.json and changes.atom, and the current version is /bundles/{}.p7b",
            version.version,
            version.bundle,
            rfc3339(pruned),
            version.bundle
        ))));
    }
    let at = system_time(version.published_at);
    let body = match ext {
        "p7b" => version.p7b,
        "p7m" => version.p7m.ok_or_else(|| not_found(&file))?,
        _ => return Err(not_found(&file)),
    };
    Ok(Prepared::new(body, P7_TYPE, IMMUTABLE_CACHE, at).respond(&method, &headers, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_and_the_index_escape_what_they_are_given() {
        let feed = atom("https://ca.example/<x>", "a&b", &[]);
        assert!(feed.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"));
        assert!(
            feed.contains("<title>a&#38;b trust bundle changes</title>"),
            "{feed}"
        );
        assert!(
            feed.contains("https://ca.example/&#60;x&#62;/bundles/a&#38;b.p7b"),
            "{feed}"
        );
        assert!(!feed.contains("<entry>"), "{feed}");

        let page = render(&IndexPage {
            rows: vec![
                IndexRow {
                    name: "p\"q",
                    title: "<script>",
                    description: "d",
                    test: true,
                    served: None,
                },
                IndexRow {
                    name: "provider",
                    title: "Providers",
                    description: "",
                    test: false,
                    served: Some(ServedRow {
                        version: 3,
                        sha256: "ab",
                        signed: false,
                    }),
                },
            ],
        });
        assert!(page.contains("&#60;script&#62;"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("<em>(test)</em>"), "{page}");
        assert!(page.contains("not published yet"), "{page}");
        assert!(page.contains("<a href=\"provider.p7b\">.p7b</a>"), "{page}");
        assert!(!page.contains("provider.p7m"), "{page}");
        assert!(page.contains("<td>3</td>"), "{page}");
    }
}
