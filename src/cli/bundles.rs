//! `anchor` and `bundle` commands. They act on the store directly, or - when `serve` holds the
//! store - through the running server's API with the local control token it wrote into the
//! data directory (`remote.rs`), so a change made at the console is published without a
//! restart.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use super::remote::{call, target, Target};
use super::{cli_actor, emit, Output};
use crate::authority::views::{AnchorJson, Published};
use crate::authority::Submission;
use crate::config::Config;
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// Submit a trust anchor (PEM, DER, .cer/.crt, or a .p7b/.p7m holding several) to a bundle.
    /// Several files are several submissions, in order (each all or nothing); the first
    /// refused file stops the command, the files before it stay submitted.
    Submit {
        #[arg(long)]
        bundle: String,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// A sample end-entity certificate issued under the anchor (repeatable).
        #[arg(long = "sample")]
        samples: Vec<PathBuf>,
        /// The member organisation (default: the anchor's subject O or CN).
        #[arg(long)]
        organization: Option<String>,
        /// A contact for the member (default: the CLI user).
        #[arg(long)]
        contact: Option<String>,
        /// Declare a key rollover: the anchor carries the CA's new key under the subject of an
        /// anchor the bundle already holds (refused as anchor_same_subject_different_key
        /// without this flag).
        #[arg(long)]
        rollover: bool,
    },
    /// List anchors.
    List {
        #[arg(long)]
        bundle: Option<String>,
        /// pending, approved, published, rejected or retired.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve pending anchors (and publish each affected bundle once). Several ids are one
    /// batch: all approved or, when one is refused, none.
    Approve {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<u64>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject anchors with a reason. Several ids are one batch: all rejected or none.
    Reject {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Remove a published anchor from its bundle (and publish the bundle).
    Retire {
        id: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Copy an approved anchor of a test bundle to its production bundle.
    Promote {
        id: u64,
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// List the declared bundles and their published versions.
    List,
    /// Build a bundle; publishes a new version only when its membership changed.
    Build { name: String },
}

fn decided(decision: crate::authority::Decision) -> Value {
    let published = decision.published.as_ref().map(Published::from);
    json!({"anchor": AnchorJson::from(&decision.anchor), "published": published})
}

/// A batch decision as the API answers it: every anchor, and the versions it published.
fn batch_decided(decision: &crate::authority::BatchDecision) -> Value {
    let anchors: Vec<AnchorJson> = decision.anchors.iter().map(AnchorJson::from).collect();
    let published: Vec<Published> = decision.published.iter().map(Published::from).collect();
    json!({"anchors": anchors, "published": published})
}

/// One submission, on the store or through the server; answers `{id, ids, anchors}`.
fn submit(t: &Target, submission: &Submission) -> Result<Value> {
    match t {
        Target::Direct(a) => {
            let records = a.submit_anchor(submission, &cli_actor())?;
            let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
            let anchors: Vec<AnchorJson> = records.iter().map(AnchorJson::from).collect();
            Ok(json!({"id": ids.first(), "ids": ids, "anchors": anchors}))
        }
        Target::Server { url, token } => {
            use base64::Engine;
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            call(
                url,
                token,
                reqwest::Method::POST,
                &format!("/bundles/{}/anchors", submission.bundle),
                Some(json!({
                    "file": b64(&submission.file),
                    "samples": submission.samples.iter().map(|s| b64(s)).collect::<Vec<_>>(),
                    "organization": submission.organization,
                    "contact": submission.contact,
                    "rollover": submission.rollover,
                })),
            )
        }
    }
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A refused file of a several-file submission: its name, and what was submitted before it.
fn in_file(e: Error, file: &Path, files: usize, done: &[Value]) -> Error {
    if files < 2 {
        return e;
    }
    let before = match done.len() {
        0 => "nothing was submitted".to_string(),
        _ => format!(
            "the files before it were submitted (anchors {})",
            done.iter()
                .map(|v| format!("#{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let name = |m: String| format!("{}: {m} ({before})", file.display());
    match e {
        Error::Denied(mut denial) => {
            for r in &mut denial.reasons {
                r.message = name(std::mem::take(&mut r.message));
            }
            Error::Denied(denial)
        }
        Error::InvalidInput(m) => Error::InvalidInput(name(m)),
        Error::Conflict(m) => Error::Conflict(name(m)),
        Error::NotFound(m) => Error::NotFound(name(m)),
        other => other,
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The anchor's subject O, else its CN: read from the attributes, not from the name's text
/// (where an escaped comma would cut the value short).
fn default_organization(file: &[u8]) -> String {
    crate::policy::admission::read_anchor_upload(file, usize::MAX)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            let subject = cert.subject();
            let organization = subject.iter_organization().next();
            organization
                .or_else(|| subject.iter_common_name().next())
                .and_then(|a| a.as_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unnamed member".into())
}

pub fn anchor(config: Config, cmd: AnchorCommand, out: Output) -> Result<()> {
    let value = match (target(config)?, cmd) {
        (
            t,
            AnchorCommand::Submit {
                bundle,
                files,
                samples,
                organization,
                contact,
                rollover,
            },
        ) => {
            let samples = samples
                .iter()
                .map(|p| read(p))
                .collect::<Result<Vec<_>>>()?;
            let (mut ids, mut anchors) = (Vec::new(), Vec::new());
            for file in &files {
                let bytes = read(file)?;
                let submission = Submission {
                    organization: organization
                        .clone()
                        .unwrap_or_else(|| default_organization(&bytes)),
                    contact: contact.clone().unwrap_or_else(cli_actor),
                    bundle: bundle.clone(),
                    file: bytes,
                    samples: samples.clone(),
                    rollover,
                };
                let submitted =
                    submit(&t, &submission).map_err(|e| in_file(e, file, files.len(), &ids))?;
                ids.extend(list(&submitted, "ids"));
                anchors.extend(list(&submitted, "anchors"));
            }
            json!({"id": ids.first(), "ids": ids, "anchors": anchors})
        }
        (Target::Direct(a), AnchorCommand::List { bundle, state }) => {
            let list: Vec<AnchorJson> = a
                .anchors()?
                .iter()
                .filter(|r| bundle.as_ref().is_none_or(|b| *b == r.bundle))
                .filter(|r| state.as_ref().is_none_or(|s| s == r.state.as_str()))
                .map(AnchorJson::from)
                .collect();
            serde_json::to_value(list).unwrap_or_default()
        }
        (Target::Server { url, token }, AnchorCommand::List { bundle, state }) => {
            let mut query = Vec::new();
            if let Some(b) = bundle {
                query.push(format!("bundle={b}"));
            }
            if let Some(s) = state {
                query.push(format!("state={s}"));
            }
            call(
                &url,
                &token,
                reqwest::Method::GET,
                &format!("/anchors?{}", query.join("&")),
                None,
            )?
        }
        (Target::Direct(a), AnchorCommand::Approve { ids, note }) => match ids.as_slice() {
            [id] => decided(a.approve_anchor(*id, &cli_actor(), &note)?),
            _ => batch_decided(&a.approve_anchors(&ids, &cli_actor(), &note)?),
        },
        (Target::Direct(a), AnchorCommand::Reject { ids, reason }) => match ids.as_slice() {
            [id] => decided(a.reject_anchor(*id, &reason, &cli_actor())?),
            _ => batch_decided(&a.reject_anchors(&ids, &reason, &cli_actor())?),
        },
        (Target::Direct(a), AnchorCommand::Retire { id, note }) => {
            decided(a.retire_anchor(id, &cli_actor(), &note)?)
        }
        (Target::Direct(a), AnchorCommand::Promote { id, to }) => {
            decided(a.promote_anchor(id, &to, &cli_actor())?)
        }
        (Target::Server { url, token }, cmd) => {
            let (path, body) = match cmd {
                AnchorCommand::Approve { ids, note } => match ids.as_slice() {
                    [id] => (format!("/anchors/{id}/approve"), json!({"note": note})),
                    _ => ("/anchors/approve".into(), json!({"ids": ids, "note": note})),
                },
                AnchorCommand::Reject { ids, reason } => match ids.as_slice() {
                    [id] => (format!("/anchors/{id}/reject"), json!({"reason": reason})),
                    _ => (
                        "/anchors/reject".into(),
                        json!({"ids": ids, "reason": reason}),
                    ),
                },
                AnchorCommand::Retire { id, note } => {
                    (format!("/anchors/{id}/retire"), json!({"note": note}))
                }
                AnchorCommand::Promote { id, to } => {
                    (format!("/anchors/{id}/promote"), json!({"to": to}))
                }
                AnchorCommand::Submit { .. } | AnchorCommand::List { .. } => {
                    return Err(Error::InvalidInput("unreachable command".into()))
                }
            };
            call(&url, &token, reqwest::Method::POST, &path, Some(body))?
        }
    };
    emit(out, value.clone(), || anchor_text(&value))
}

fn anchor_text(v: &Value) -> String {
    let line = |a: &Value| {
        format!(
            "#{:<5} {:<14} {:<10} {}  {}",
            a.get("id").unwrap_or(&Value::Null),
            a.get("bundle").and_then(Value::as_str).unwrap_or(""),
            a.get("state").and_then(Value::as_str).unwrap_or(""),
            a.get("fingerprint")
                .and_then(Value::as_str)
                .unwrap_or("")
                .get(..16)
                .unwrap_or(""),
            a.get("subject").and_then(Value::as_str).unwrap_or("")
        )
    };
    let mut lines: Vec<String> = match v {
        Value::Array(list) => list.iter().map(line).collect(),
        _ if v.get("anchors").is_some() => v
            .get("anchors")
            .and_then(Value::as_array)
            .map(|l| l.iter().map(line).collect())
            .unwrap_or_default(),
        _ => vec![line(v.get("anchor").unwrap_or(&Value::Null))],
    };
    let published = match v.get("published") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(p) if !p.is_null() => vec![p],
        _ => Vec::new(),
    };
    for p in published {
        lines.push(format!(
            "published {} version {} ({} anchors, SHA-256 {})",
            p.get("bundle").and_then(Value::as_str).unwrap_or(""),
            p.get("version").unwrap_or(&Value::Null),
            p.get("anchors").unwrap_or(&Value::Null),
            p["sha256"].as_str().unwrap_or("")
        ));
    }
    lines.join("\n")
}

pub fn bundle(config: Config, cmd: BundleCommand, out: Output) -> Result<()> {
    let value = match (target(config)?, cmd) {
        (Target::Direct(a), BundleCommand::List) => {
            serde_json::to_value(a.bundle_summaries()?).unwrap_or_default()
        }
        (Target::Direct(a), BundleCommand::Build { name }) => {
            let built = a.build_bundle(&name, &cli_actor())?;
            json!({"bundle": name, "published": built.published.is_some(), "version": built.current.as_ref().map(|v| v.version), "sha256": built.current.map(|v| v.sha256)})
        }
        (Target::Server { url, token }, BundleCommand::List) => {
            call(&url, &token, reqwest::Method::GET, "/bundles", None)?
        }
        (Target::Server { url, token }, BundleCommand::Build { name }) => call(
            &url,
            &token,
            reqwest::Method::POST,
            &format!("/bundles/{name}/build"),
            None,
        )?,
    };
    emit(out, value.clone(), || match &value {
        Value::Array(list) => list
            .iter()
            .map(|b| {
                format!(
                    "{:<16} {:<6} version {:<4} anchors {:<4} {}",
                    b.get("name").and_then(Value::as_str).unwrap_or(""),
                    if b.get("test").unwrap_or(&Value::Null) == true {
                        "test"
                    } else {
                        ""
                    },
                    b.get("version").unwrap_or(&Value::Null),
                    b.get("anchors").unwrap_or(&Value::Null),
                    b["sha256"].as_str().unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        v if v.get("published").unwrap_or(&Value::Null) == true => format!(
            "published {} version {} (SHA-256 {})",
            v.get("bundle").and_then(Value::as_str).unwrap_or(""),
            v.get("version").unwrap_or(&Value::Null),
            v["sha256"].as_str().unwrap_or("")
        ),
        v => format!(
            "{} unchanged at version {}",
            v.get("bundle").and_then(Value::as_str).unwrap_or(""),
            v.get("version").unwrap_or(&Value::Null)
        ),
    })
}
