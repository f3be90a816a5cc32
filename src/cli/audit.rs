//! `audit` commands: verify the keyed chain (against a checkpoint kept outside, when given),
//! make a checkpoint and write it to a file or POST it to a URL (through the running server
//! when `serve` holds the store), and export the log.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::remote::{call, target, Target};
use super::{cli_actor, emit, open, Output};
use crate::audit::{AuditReport, Checkpoint};
use crate::authority::{checkpoint_destinations, send_checkpoint, write_checkpoint, Authority};
use crate::config::Config;
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain of the whole audit log (keyed entries need the CA passphrase).
    Verify {
        /// A checkpoint from `audit checkpoint`: also fail on any rewrite, truncation or
        /// deletion of the entries it covers.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Write a checkpoint (entry count + head hash + time, MACed with the audit key) to a
    /// file and/or POST it to a URL; default: `[audit]` checkpoint_path / checkpoint_url,
    /// else standard output. Keep it where whoever can write the store cannot.
    Checkpoint {
        /// The file to write (replaced atomically).
        #[arg(long)]
        out: Option<PathBuf>,
        /// An http(s) URL to POST the checkpoint to as JSON.
        #[arg(long)]
        url: Option<String>,
    },
    /// Write the audit log as JSON lines (one entry per line), oldest first.
    Export {
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only entries with a sequence number above this.
        #[arg(long)]
        since: Option<u64>,
        /// Only entries whose actor contains this text.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries whose action starts with this text (e.g. `user.` or `cert.issue`).
        #[arg(long)]
        action: Option<String>,
    },
}

pub fn audit(config: Config, cmd: AuditCommand, out: Output) -> Result<()> {
    match cmd {
        AuditCommand::Verify { checkpoint } => verify(&open(config)?, checkpoint.as_deref(), out),
        AuditCommand::Checkpoint { out: path, url } => {
            let path = path.or_else(|| config.audit.checkpoint_path.clone());
            let url = url.or_else(|| config.audit.checkpoint_url.clone());
            checkpoint(config, path.as_deref(), url.as_deref(), out)
        }
        AuditCommand::Export {
            out: path,
            since,
            actor,
            action,
        } => export(&open(config)?, path, since, actor, action),
    }
}

fn verify(authority: &Authority, checkpoint: Option<&Path>, out: Output) -> Result<()> {
    let evaluation = authority
        .config()
        .data_dir
        .join(crate::config::EVALUATION_PASSPHRASE)
        .exists();
    let report = match checkpoint {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let cp = Checkpoint::parse(&bytes, &path.display().to_string())?;
            authority.verify_audit_since(&cp)?
        }
        None => authority.verify_audit()?,
    };
    let mut value = verify_json(&report);
    if let Some(map) = value.as_object_mut() {
        map.insert("evaluation_passphrase".into(), json!(evaluation));
    }
    emit(out, value, || {
        let mut text = verify_text(&report);
        if evaluation {
            text.push_str(
                "\n  WARNING: the evaluation passphrase is in the data directory: whoever can \
                 read it can open the audit key, so the keying protects nothing here",
            );
        }
        text
    })
}

fn verify_json(report: &AuditReport) -> serde_json::Value {
    json!({
        "ok": true,
        "entries": report.entries,
        "head_hash": report.head_hash,
        "keyed_from": report.keyed_from,
        "key_id": report.key_id,
        "checkpoint": report.checkpoint.as_ref().map(|c| json!({
            "entries": c.entries, "head_hash": c.head_hash, "at": c.at_text(),
        })),
    })
}

fn verify_text(report: &AuditReport) -> String {
    let mut text = format!(
        "audit log intact: {} entries, head {}",
        report.entries, report.head_hash
    );
    match (report.keyed_from, &report.key_id) {
        (Some(1), Some(id)) => text.push_str(&format!("\n  keyed with audit key {id}")),
        (Some(from), Some(id)) => text.push_str(&format!(
            "\n  entries 1..{} are legacy (unkeyed SHA-256); keyed with audit key {id} from entry {from}",
            from - 1
        )),
        _ => text.push_str(
            "\n  WARNING: the log is not keyed (legacy SHA-256 chain): whoever can write the \
             store can rewrite it; run any command with the CA passphrase to key it",
        ),
    }
    if let Some(c) = &report.checkpoint {
        text.push_str(&format!(
            "\n  matches the checkpoint of {} ({} entries): nothing it covers was rewritten, \
             deleted or truncated",
            c.at_text(),
            c.entries
        ));
    }
    text
}

fn checkpoint(config: Config, path: Option<&Path>, url: Option<&str>, out: Output) -> Result<()> {
    let destinations = checkpoint_destinations(path, url);
    let (cp, via) = match target(config)? {
        Target::Direct(authority) => (
            authority.audit_checkpoint(&cli_actor(), &destinations)?,
            "store",
        ),
        Target::Server { url, token } => {
            let value = call(
                &url,
                &token,
                reqwest::Method::POST,
                "/audit/checkpoint",
                Some(json!({"destinations": destinations})),
            )?;
            let cp = serde_json::from_value(value)
                .map_err(|e| Error::Store(format!("the server sent no checkpoint: {e}")))?;
            (cp, "server")
        }
    };
    if let Some(p) = path {
        write_checkpoint(p, &cp)?;
    }
    if let Some(u) = url {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        runtime.block_on(send_checkpoint(u, &cp))?;
    }
    let value = json!({"checkpoint": cp, "destinations": destinations, "via": via});
    if path.is_none() && url.is_none() {
        return emit(out, serde_json::to_value(&cp).unwrap_or_default(), || {
            serde_json::to_string_pretty(&cp).unwrap_or_default()
        });
    }
    emit(out, value, || {
        format!(
            "audit checkpoint: {} entries, head {}, at {} (via the {via}); written to {}",
            cp.entries,
            cp.head_hash,
            cp.at_text(),
            destinations.join(" and ")
        )
    })
}

fn export(
    authority: &Authority,
    path: Option<PathBuf>,
    since: Option<u64>,
    actor: Option<String>,
    action: Option<String>,
) -> Result<()> {
    use std::io::Write;
    let mut buf: Vec<u8> = Vec::new();
    let mut sink: Box<dyn Write> = match &path {
        Some(_) => Box::new(&mut buf),
        None => Box::new(std::io::stdout().lock()),
    };
    authority.each_audit_entry(|entry| {
        if since.is_some_and(|s| entry.seq <= s)
            || actor
                .as_ref()
                .is_some_and(|a| !entry.actor.contains(a.as_str()))
            || action
                .as_ref()
                .is_some_and(|a| !entry.action.starts_with(a.as_str()))
        {
            return Ok(());
        }
        let line = serde_json::to_string(&entry).map_err(|e| Error::Store(e.to_string()))?;
        writeln!(sink, "{line}").map_err(|e| Error::io("audit export", e))
    })?;
    drop(sink);
    if let Some(p) = path {
        super::write_file(&p, &buf, false)?;
    }
    Ok(())
}
