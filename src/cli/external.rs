//! The external flow at the console, `anchorage refresh run|status`: refresh external bundles
//! (other communities' bundles fetched from their URLs) now and show how their last attempts
//! went. While `serve` holds the store, both act through the running server, like the other
//! bundle commands. `run` exits non-zero when an attempt failed. Also the refresh scheduler
//! that `serve` starts and stops.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::Value;

use super::remote::{call, target, Target};
use super::{cli_actor, emit, Output};
use crate::authority::Authority;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::refresh;

#[derive(Debug, Subcommand)]
pub enum RefreshCommand {
    /// Fetch, verify and republish an external bundle now (every enabled one without NAME).
    Run {
        name: Option<String>,
        /// Accept a copy signed earlier than the last accepted one, which is otherwise
        /// refused as `rollback` (audited with both signing times). Needs NAME.
        #[arg(long, requires = "name")]
        accept_older: bool,
    },
    /// The refresh status of an external bundle (every one without NAME).
    Status { name: Option<String> },
}

pub fn refresh(config: Config, cmd: RefreshCommand, out: Output) -> Result<()> {
    match (target(config)?, cmd) {
        (Target::Direct(a), RefreshCommand::Status { name }) => {
            let value = match name {
                Some(n) => to_value(a.source_view(&n)?),
                None => to_value(a.source_views()?),
            };
            show_status(out, value)
        }
        (Target::Server { url, token }, RefreshCommand::Status { name }) => {
            let path = match name {
                Some(n) => format!("/bundles/{n}/status"),
                None => "/sources".to_string(),
            };
            show_status(out, call(&url, &token, reqwest::Method::GET, &path, None)?)
        }
        (Target::Direct(a), RefreshCommand::Run { name, accept_older }) => {
            let a: Arc<Authority> = Arc::from(a);
            let names = match name {
                Some(n) => vec![n],
                None => refresh::enabled_sources(&a),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Error::io("tokio runtime", e))?;
            let mut reports = Vec::new();
            for n in names {
                let report = runtime.block_on(refresh::refresh_with(
                    a.clone(),
                    &n,
                    &cli_actor(),
                    accept_older,
                ))?;
                reports.push(to_value(report));
            }
            show_run(out, reports)
        }
        (Target::Server { url, token }, RefreshCommand::Run { name, accept_older }) => {
            let names = match name {
                Some(n) => vec![n],
                None => call(&url, &token, reqwest::Method::GET, "/sources", None)?
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter(|v| v.get("enabled").unwrap_or(&Value::Null) == true)
                            .filter_map(|v| {
                                v.get("name").and_then(Value::as_str).map(str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut reports = Vec::new();
            for n in names {
                let path = if accept_older {
                    format!("/bundles/{n}/refresh?accept_older=true")
                } else {
                    format!("/bundles/{n}/refresh")
                };
                reports.push(call(&url, &token, reqwest::Method::POST, &path, None)?);
            }
            show_run(out, reports)
        }
    }
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn show_run(out: Output, reports: Vec<Value>) -> Result<()> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| {
            !matches!(
                r.get("status").and_then(Value::as_str),
                Some("ok" | "not_modified")
            )
        })
        .map(|r| {
            format!(
                "{}: {}",
                r.get("source").and_then(Value::as_str).unwrap_or(""),
                r.get("status").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    let value = match reports.as_slice() {
        [one] => one.clone(),
        _ => Value::Array(reports.clone()),
    };
    emit(out, value, || {
        reports.iter().map(run_line).collect::<Vec<_>>().join("\n")
    })?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::RefreshFailed(failed.join(", ")))
    }
}

fn run_line(r: &Value) -> String {
    let mut line = format!(
        "{}: {}{} - {}",
        r.get("source").and_then(Value::as_str).unwrap_or(""),
        r.get("status").and_then(Value::as_str).unwrap_or(""),
        r.get("http_code")
            .and_then(Value::as_u64)
            .map(|c| format!(" {c}"))
            .unwrap_or_default(),
        r.get("reason").and_then(Value::as_str).unwrap_or("")
    );
    if let Some(v) = r.get("published_version").and_then(Value::as_u64) {
        line.push_str(&format!("; published version {v}"));
    }
    for pair in r
        .get("republished")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        line.push_str(&format!("; republished {} version {}", pair[0], pair[1]));
    }
    line
}

fn show_status(out: Output, value: Value) -> Result<()> {
    emit(out, value.clone(), || match &value {
        Value::Array(list) => list
            .iter()
            .map(status_text)
            .collect::<Vec<_>>()
            .join("\n\n"),
        one => status_text(one),
    })
}

fn status_text(v: &Value) -> String {
    let admitted = v.get("anchors").and_then(Value::as_array).map_or(0, |a| {
        a.iter()
            .filter(|x| x.get("admitted").unwrap_or(&Value::Null) == true)
            .count()
    });
    let mut text = format!(
        "{} ({}{})\n  url:          {}\n  last attempt: {} {}{}\n  reason:       {}\n  last success: {}\n  failures:     {} consecutive\n  staleness:    {}\n  published:    version {} with {} anchors ({} admitted), {}",
        v.get("name").and_then(Value::as_str).unwrap_or(""),
        if v.get("enabled").unwrap_or(&Value::Null) == true { "enabled" } else { "disabled" },
        if v.get("pinned").unwrap_or(&Value::Null) == true { ", signer pinned" } else { ", no signer pinned" },
        v.get("url").and_then(Value::as_str).unwrap_or(""),
        v.get("last_attempt_at").and_then(Value::as_str).unwrap_or("never"),
        v.get("status").and_then(Value::as_str).unwrap_or("-"),
        v.get("http_code").and_then(Value::as_u64).map(|c| format!(" {c}")).unwrap_or_default(),
        v.get("reason").and_then(Value::as_str).unwrap_or("-"),
        v.get("last_success_at").and_then(Value::as_str).unwrap_or("never"),
        v.get("consecutive_failures").unwrap_or(&Value::Null),
        v.get("staleness").and_then(Value::as_str).unwrap_or(""),
        v.get("version").unwrap_or(&Value::Null),
        v.get("anchors").and_then(Value::as_array).map_or(0, Vec::len),
        admitted,
        v.pointer("/verification/note").unwrap_or(&Value::Null).as_str().unwrap_or("not verified")
    );
    if let Some(t) = v
        .pointer("/verification/signing_time")
        .unwrap_or(&Value::Null)
        .as_str()
    {
        text.push_str(&format!("\n  signed at:    {t}"));
    }
    for a in v
        .get("last_attempt_anchors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if a.get("reasons")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
        {
            let reasons: Vec<&str> = a
                .get("reasons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("message").and_then(Value::as_str))
                .collect();
            text.push_str(&format!(
                "\n  {} {} {}: {}",
                if a.get("admitted").unwrap_or(&Value::Null) == true {
                    "report"
                } else {
                    "rejected"
                },
                a.get("fingerprint").and_then(Value::as_str).unwrap_or(""),
                a.get("subject").and_then(Value::as_str).unwrap_or(""),
                reasons.join("; ")
            ));
        }
    }
    text
}

/// Starts the external-bundle jobs for `serve` (what they publish is served at once).
pub(super) async fn start_scheduler(
    state: &crate::http::AppState,
) -> Result<tokio_cron_scheduler::JobScheduler> {
    refresh::start(state.authority.clone()).await
}

/// Stops the jobs when the server stops.
pub(super) async fn stop_scheduler(mut scheduler: tokio_cron_scheduler::JobScheduler) {
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "stopping the refresh scheduler");
    }
}
