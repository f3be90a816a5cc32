//! The CA hierarchy at the console: `anchorage ca chain|status|revoke-issuing` and
//! `anchorage crl export`, on the store directly (they need the keys or the CA records, never
//! a running server). The keys are unlocked only when a signature is needed: revoking the
//! issuing CA, or re-signing a stale CRL before export. The runbooks (key ceremony, emergency
//! revocation) use these.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{cli_actor, emit, open, write_file, Output};
use crate::authority::Authority;
use crate::ca::CaRole;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{RevocationReason, Serial};
use crate::x509;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write the CA chain (issuing CA then root) as PEM.
    Chain {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show the CAs, their keys and CRL state.
    Status,
    /// Revoke the issuing CA's certificate (compromise or retirement): the root's CRL names it
    /// at once and this data directory issues nothing more. Needs the root key online and
    /// the service stopped.
    RevokeIssuing {
        /// The issuing CA certificate's serial (from `ca status`), as confirmation.
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason, e.g. ca-compromise, superseded, cessation-of-operation.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Write the current CRL (DER), re-signing it first when stale.
    Export {
        #[arg(long, default_value = "issuing")]
        ca: String,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `anchorage crl export`.
pub(super) fn crl(config: Config, cmd: CrlCommand, out: Output) -> Result<()> {
    let CrlCommand::Export { ca, out: path } = cmd;
    let authority = open(config)?;
    let role = CaRole::parse(&ca)
        .ok_or_else(|| Error::InvalidInput(format!("unknown CA '{ca}'; use issuing or root")))?;
    let crl = authority.current_crl(role)?;
    write_file(&path, &crl.der, false)?;
    emit(
        out,
        json!({"ca": ca, "number": crl.number, "next_update": crl.next_update.to_string(), "path": path}),
        || {
            format!(
                "wrote CRL #{} of the {ca} CA to {}",
                crl.number,
                path.display()
            )
        },
    )
}

pub(super) fn ca(authority: Authority, cmd: CaCommand, out: Output) -> Result<()> {
    match cmd {
        CaCommand::Chain { out: path } => {
            let pem: String = authority
                .ca_chain()?
                .iter()
                .map(|d| x509::to_pem("CERTIFICATE", d))
                .collect();
            match path {
                Some(p) => {
                    write_file(&p, pem.as_bytes(), false)?;
                    emit(out, json!({"path": p}), || {
                        format!("wrote the CA chain (issuing, root) to {}", p.display())
                    })
                }
                None => emit(out, json!({"pem": pem}), || pem.trim_end().to_string()),
            }
        }
        CaCommand::RevokeIssuing { serial, reason } => {
            let serial = Serial::parse(&serial).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let reason =
                RevocationReason::parse(&reason).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let (revocation, crl) = authority.revoke_issuing_ca(&serial, reason, &cli_actor())?;
            emit(
                out,
                json!({"serial": serial, "reason": reason.as_str(), "revoked_at": revocation.revoked_at.to_string(), "crl": "root", "crl_number": crl.number}),
                || {
                    format!(
                        "revoked the issuing CA {serial} ({}); published root CRL #{}. This data \
                         directory issues nothing more: create a new hierarchy \
                         (ops/runbooks/emergency-revocation.md)",
                        reason.as_str(),
                        crl.number
                    )
                },
            )
        }
        CaCommand::Status => {
            let status = authority.ca_status()?;
            emit(
                out,
                serde_json::to_value(&status).unwrap_or_default(),
                || {
                    status
                    .iter()
                    .map(|s| {
                        format!(
                            "{} CA: {}\n  key: {} ({})\n  SHA-256: {}\n  not after: {}\n  CRL: {}",
                            s.role.as_str(), s.subject, s.key, if s.key_online { "online, sealed" } else { "offline" },
                            s.fingerprint, s.not_after,
                            match (s.crl_number, s.crl_next_update) {
                                (Some(n), Some(t)) => format!("#{n}, next update {t}"),
                                _ => "none".into(),
                            }
                        ) + &s.revocation.as_ref().map(|r| format!(
                            "\n  REVOKED by the {} CA on {} ({})",
                            r.ca.as_str(), r.revoked_at, r.reason.as_str()
                        )).unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                },
            )
        }
    }
}
