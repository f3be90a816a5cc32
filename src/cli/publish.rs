//! `anchorage publish zone|ldif`: writes the discovery files on demand. Issuance, revocation
//! and the sweep of `serve` keep zone files current on their own; these commands are for a
//! first load, a copy elsewhere (`--out`), the LDIF export and its change files.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{emit, open, Output};
use crate::authority::ZoneOutcome;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::publish::ReloadOutcome;

#[derive(Debug, Subcommand)]
pub enum PublishCommand {
    /// Write DNS CERT zone files (every managed domain, or one).
    Zone {
        /// Only this health domain.
        #[arg(long)]
        domain: Option<String>,
        /// Write here instead of the configured file (needs --domain; no reload).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the LDIF export, or with --since a change file for ldapmodify.
    Ldif {
        /// Write here instead of the configured file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory revision the target directory holds (printed by the previous export).
        #[arg(long)]
        since: Option<u64>,
    },
}

pub fn publish(config: Config, cmd: PublishCommand, out: Output) -> Result<()> {
    let authority = open(config)?;
    match cmd {
        PublishCommand::Zone { domain, out: file } => {
            let domain = domain
                .map(|d| HealthDomain::parse(&d).map_err(Error::InvalidInput))
                .transpose()?;
            let zones = authority.publish_zones(domain.as_ref(), file.as_deref())?;
            let failed: Vec<String> = zones
                .iter()
                .filter_map(|z| match &z.reload {
                    ReloadOutcome::Failed { message } => Some(format!(
                        "{} (serial {}, written to {}): {message}",
                        z.domain,
                        z.serial,
                        z.path.display()
                    )),
                    _ => None,
                })
                .collect();
            // One report either way: a failed reload is the command's error, naming the
            // files that were written and kept.
            if !failed.is_empty() {
                return Err(Error::Publish(format!(
                    "zone files were written but the reload command failed for {}",
                    failed.join("; ")
                )));
            }
            emit(out, json!({ "zones": zones }), || {
                zones.iter().map(zone_line).collect::<Vec<_>>().join("\n")
            })
        }
        PublishCommand::Ldif { out: file, since } => {
            let outcome = match since {
                Some(since) => authority.publish_ldif_changes(since, file.as_deref())?,
                None => authority.publish_ldif(file.as_deref())?,
            };
            emit(out, json!(outcome), || match outcome.since {
                Some(since) => format!(
                    "wrote {} change record(s) from directory revision {since} to {} into {}",
                    outcome.entries,
                    outcome.revision,
                    outcome.path.display()
                ),
                None => format!(
                    "wrote {} entries ({} certificates), directory revision {}, to {}",
                    outcome.entries,
                    outcome.certificates,
                    outcome.revision,
                    outcome.path.display()
                ),
            })
        }
    }
}

fn zone_line(z: &ZoneOutcome) -> String {
    let what = if z.written { "wrote" } else { "unchanged" };
    let reload = match &z.reload {
        ReloadOutcome::NotConfigured => String::new(),
        ReloadOutcome::Ok => ", reloaded".into(),
        ReloadOutcome::Failed { message } => format!(", RELOAD FAILED: {message}"),
    };
    format!(
        "{what} {} ({} mode, serial {}, {} CERT records){reload}",
        z.path.display(),
        z.mode,
        z.serial,
        z.records
    )
}
