//! The discovery flow at the console, `anchorage publish zone|ldif`: writes the discovery
//! files (DNS CERT zones, the LDAP directory's LDIF) on demand. Issuance, revocation
//! and the sweep of `serve` keep zone files current on their own; these commands are for a
//! first load, a copy elsewhere (`--out`), the LDIF export and its change files. While
//! `serve` holds the store both go through it, so cron jobs run beside the CA.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::remote::{download, running_server};
use super::{emit, open, Output};
use crate::authority::{LdifOutcome, ZoneOutcome};
use crate::config::Config;
use crate::discovery::{writer, ReloadOutcome};
use crate::error::{Error, Result};
use crate::model::HealthDomain;

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
    // The file paths of the LDIF export are this host's, whoever renders it.
    let settings = config.clone();
    let authority = match open(config) {
        // `serve` holds the store: the export comes from it (it publishes zones anyway).
        Err(Error::Locked(dir)) => {
            let Some((url, token)) = running_server(&settings.data_dir) else {
                return Err(Error::Locked(dir));
            };
            return match cmd {
                PublishCommand::Zone { domain, out: file } => {
                    zone_from_server(&url, &token, domain.as_deref(), file.as_deref(), out)
                }
                PublishCommand::Ldif { out: file, since } => {
                    let outcome = ldif_from_server(&settings, &url, &token, since, file)?;
                    report_ldif(&outcome, out)
                }
            };
        }
        other => other?,
    };
    match cmd {
        PublishCommand::Zone { domain, out: file } => {
            let domain = domain
                .map(|d| HealthDomain::parse(&d).map_err(|e| Error::InvalidInput(e.to_string())))
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
            report_ldif(&outcome, out)
        }
    }
}

/// The same report whether this process or the running server rendered the export.
fn report_ldif(outcome: &LdifOutcome, out: Output) -> Result<()> {
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

/// `publish zone` through the running server: it writes the configured files; `--out` gets
/// a copy of the one domain's file.
fn zone_from_server(
    url: &str,
    token: &str,
    domain: Option<&str>,
    file: Option<&Path>,
    out: Output,
) -> Result<()> {
    let path = match domain {
        Some(d) => format!(
            "{url}/api/v1/zones/{}",
            HealthDomain::parse(d).map_err(|e| Error::InvalidInput(e.to_string()))?
        ),
        None if file.is_some() => {
            return Err(Error::InvalidInput(
                "--out writes one zone: name it with --domain".into(),
            ))
        }
        None => format!("{url}/api/v1/zones"),
    };
    let (_, body) = download(url, token, &path, Error::Publish)?;
    match (domain, file) {
        (Some(d), Some(file)) => {
            super::write_file(file, &body, false)?;
            emit(out, json!({"domain": d, "path": file, "via": url}), || {
                format!(
                    "wrote the zone of {d} from the running server to {}",
                    file.display()
                )
            })
        }
        (Some(d), None) => emit(out, json!({"domain": d, "via": url}), || {
            format!("the running server at {url} published the zone of {d}")
        }),
        (None, _) => {
            let zones: Vec<ZoneOutcome> = serde_json::from_slice(&body).unwrap_or_default();
            emit(out, json!({ "zones": zones, "via": url }), || {
                zones.iter().map(zone_line).collect::<Vec<_>>().join("\n")
            })
        }
    }
}

/// `publish ldif` through the running server: it renders the export (and records the view
/// changes); this process writes the file where the stopped path would have.
fn ldif_from_server(
    config: &Config,
    url: &str,
    token: &str,
    since: Option<u64>,
    file: Option<PathBuf>,
) -> Result<LdifOutcome> {
    let query = since.map(|n| format!("?since={n}")).unwrap_or_default();
    let (headers, body) = download(
        url,
        token,
        &format!("{url}/api/v1/directory/ldif{query}"),
        Error::Publish,
    )?;
    let count = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Publish(format!("the server at {url} sent no valid {name}")))
    };
    let revision = count("x-directory-revision")?;
    let entries = usize::try_from(count("x-ldif-entries")?).unwrap_or(usize::MAX);
    let certificates = usize::try_from(count("x-ldif-certificates")?).unwrap_or(usize::MAX);
    let data_dir = &config.data_dir;
    let path = file.unwrap_or_else(|| match since {
        Some(since) => config.publish.ldif_changes_file(data_dir, since, revision),
        None => config.publish.ldif_file(data_dir),
    });
    writer::write_atomic(&path, config.publish.file_mode_bits(), |w| {
        w.write_all(&body)
    })?;
    Ok(LdifOutcome {
        path,
        revision,
        since,
        entries,
        certificates,
    })
}
