//! The certificate flow at the console: `anchorage cert issue|revoke|list|show`, with the
//! subcommands' arguments. On the store directly the commands call `authority` (an issuance
//! unlocks the keys only once the rules have passed); through a running server they go to the
//! API (`certs/remote.rs`). Either way the issued certificates and PKCS#12 files are written
//! by `write_issued`, from the same JSON.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use super::remote::{target, Target};
use super::{cli_actor, emit, read_secret_file, write_file, Output};
use crate::authority::{Authority, CertFilter, CertStatus, CertView, IssueOutcome};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{RevocationReason, Serial};
use crate::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use crate::x509;

mod listing;
mod remote;

use listing::{Columns, ListRow, ListWriter};

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue an address-bound or domain-bound certificate (or a single-use pair).
    Issue(Box<IssueArgs>),
    /// Revoke a certificate by serial.
    Revoke {
        serial: String,
        /// RFC 5280 reason: unspecified, key-compromise, ca-compromise, affiliation-changed,
        /// superseded, cessation-of-operation, privilege-withdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// List certificates.
    List {
        #[arg(long)]
        holder: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long)]
        expiring_within_days: Option<u32>,
        /// Only holders bound to this organisation (id).
        #[arg(long = "organisation", alias = "organization")]
        organisation: Option<String>,
    },
    /// Show one certificate.
    Show {
        serial: String,
        /// Print the PEM instead of the record.
        #[arg(long)]
        pem: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Valid,
    Revoked,
    Expired,
    NotYetValid,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[arg(long, conflicts_with = "domain")]
    pub address: Option<String>,
    #[arg(long)]
    pub domain: Option<String>,
    /// dual, signing, encryption or pair.
    #[arg(long)]
    pub usage: String,
    /// Profile name (default: by binding).
    #[arg(long)]
    pub profile: Option<String>,
    /// Category key of the profile, e.g. covered-entity.
    #[arg(long)]
    pub category: Option<String>,
    /// PKCS#10 request (PEM or DER); for a pair, the signing key's.
    #[arg(long, conflicts_with = "keygen")]
    pub csr: Option<PathBuf>,
    /// The encryption key's CSR of a pair.
    #[arg(long, requires = "csr")]
    pub encryption_csr: Option<PathBuf>,
    /// Generate the key on the server and write it to a PKCS#12.
    #[arg(long)]
    pub keygen: bool,
    /// Where the PKCS#12 goes (pairs: <stem>-signing.p12 and <stem>-encryption.p12).
    #[arg(long, requires = "keygen")]
    pub p12_out: Option<PathBuf>,
    /// File holding the PKCS#12 password; generated and shown once when absent.
    #[arg(long, requires = "keygen")]
    pub p12_password_file: Option<PathBuf>,
    /// Write the certificate(s) here as PEM (signing first); stdout otherwise.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Subscriber (organisation or person) name; default: the address or domain.
    #[arg(long)]
    pub subscriber: Option<String>,
    /// The organisation (id or name) the holder belongs to; needed for a holder's first
    /// certificate unless an organisation owns the whole domain. Later certificates take it
    /// from the holder's binding.
    #[arg(long = "organisation", alias = "organization")]
    pub organisation: Option<String>,
    /// Registrar name; default: cli:<login>.
    #[arg(long)]
    pub registrar: Option<String>,
    /// Identity-proofing method, e.g. in-person, remote-supervised.
    #[arg(long)]
    pub proofing_method: Option<String>,
    /// Level of assurance key of the profile, e.g. loa3.
    #[arg(long)]
    pub level_of_assurance: Option<String>,
    /// Reference to the proofing evidence (no health data).
    #[arg(long)]
    pub evidence: Option<String>,
}

/// `anchorage cert ...`: on the store, or through the server that holds it.
pub(super) fn cert(config: Config, cmd: CertCommand, out: Output) -> Result<()> {
    match target(config)? {
        Target::Direct(authority) => direct(*authority, cmd, out),
        Target::Server { url, token } => remote::cert_remote(&url, &token, cmd, out),
    }
}

fn direct(authority: Authority, cmd: CertCommand, out: Output) -> Result<()> {
    match cmd {
        CertCommand::Issue(args) => issue(&authority, *args, out),
        CertCommand::Revoke { serial, reason } => {
            let serial = Serial::parse(&serial).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let reason =
                RevocationReason::parse(&reason).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let (revocation, crl) = authority.revoke_and_publish(&serial, reason, &cli_actor())?;
            emit(
                out,
                json!({"serial": serial, "reason": reason.as_str(), "revoked_at": revocation.revoked_at.to_string(), "crl_number": crl.number}),
                || {
                    format!(
                        "revoked {serial} ({}); published CRL #{}",
                        reason.as_str(),
                        crl.number
                    )
                },
            )
        }
        CertCommand::List {
            holder,
            domain,
            status,
            expiring_within_days,
            organisation,
        } => {
            let filter = CertFilter {
                search: None,
                holder,
                domain,
                status: status.map(|s| match s {
                    StatusArg::Valid => CertStatus::Valid,
                    StatusArg::Revoked => CertStatus::Revoked,
                    StatusArg::Expired => CertStatus::Expired,
                    StatusArg::NotYetValid => CertStatus::NotYetValid,
                }),
                expiring_within_days,
                organisation,
            };
            let mut writer = ListWriter::start(std::io::stdout().lock(), out)?;
            authority.each_cert(&filter, |view| writer.entry(&LocalRow::of(&view)))?;
            writer.finish().map(|_| ())
        }
        CertCommand::Show { serial, pem } => {
            let serial = Serial::parse(&serial).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let view = authority.cert(&serial)?;
            let pem_text = x509::to_pem("CERTIFICATE", &view.record.der);
            if pem {
                print!("{pem_text}");
                return Ok(());
            }
            let mut value = serde_json::to_value(&view).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("pem".into(), json!(pem_text));
            }
            emit(out, value, || {
                let r = &view.record;
                format!(
                    "serial:        {}\nholder:        {} ({}-bound)\norganisation:  {}\nusage:         {}\nstatus:        {:?}\nprofile:       {} ({}, {})\nsubscriber:    {}{}\nregistrar:     {}\nproofing:      {} / evidence {}\nkey:           {} ({})\nvalidity:      {} .. {}\nSHA-256:       {}\n{}",
                    r.serial, r.holder, r.holder.binding().as_str(),
                    view.organisation.as_ref().map(|o| format!("{} ({}){}", o.id, o.name, if o.unresolved { " [unresolved: see org check]" } else { "" })).unwrap_or_else(|| "-".into()),
                    r.usage.as_str(), view.status,
                    r.profile, r.level_of_assurance, r.category,
                    r.subscriber.name, r.subscriber.organization.as_ref().map(|o| format!(" ({o})")).unwrap_or_default(),
                    r.registrar, r.proofing.method, r.proofing.evidence_reference,
                    r.key, r.key_origin, r.not_before, r.not_after, r.fingerprint, pem_text.trim_end()
                )
            })
        }
    }
}

/// A `cert list` row on the store, serialised from the view's fields (alphabetical, as the
/// JSON object this replaced printed them; the nested objects' fields already are).
#[derive(Serialize)]
struct LocalRow<'a> {
    binding: &'static str,
    fingerprint: &'a crate::model::Fingerprint,
    holder: String,
    not_after: String,
    not_before: String,
    organisation: &'a Option<crate::authority::OrganisationRef>,
    registrar: &'a str,
    serial: &'a Serial,
    status: CertStatus,
    subscriber: &'a Subscriber,
    usage: &'static str,
}

impl<'a> LocalRow<'a> {
    fn of(c: &'a CertView) -> LocalRow<'a> {
        LocalRow {
            binding: c.record.holder.binding().as_str(),
            fingerprint: &c.record.fingerprint,
            holder: c.record.holder.to_string(),
            not_after: c.record.not_after.to_string(),
            not_before: c.record.not_before.to_string(),
            organisation: &c.organisation,
            registrar: &c.record.registrar,
            serial: &c.record.serial,
            status: c.status,
            subscriber: &c.record.subscriber,
            usage: c.record.usage.as_str(),
        }
    }
}

impl ListRow for LocalRow<'_> {
    fn columns(&self) -> Columns {
        Columns {
            serial: self.serial.to_string(),
            binding: self.binding.to_string(),
            usage: self.usage.to_string(),
            status: self.status.as_str().to_string(),
            not_after: self.not_after.clone(),
            organisation: self
                .organisation
                .as_ref()
                .map_or_else(|| "-".to_string(), |o| o.id.clone()),
            holder: self.holder.clone(),
        }
    }
}

fn issue(authority: &Authority, args: IssueArgs, out: Output) -> Result<()> {
    let key = match (&args.csr, args.keygen) {
        (Some(csr), false) => KeySource::Csr {
            signing: std::fs::read(csr).map_err(|e| Error::io(csr, e))?,
            encryption: args
                .encryption_csr
                .as_ref()
                .map(|p| std::fs::read(p).map_err(|e| Error::io(p, e)))
                .transpose()?,
        },
        (None, true) => {
            if args.p12_out.is_none() {
                return Err(Error::InvalidInput(
                    "--keygen needs --p12-out FILE for the PKCS#12".into(),
                ));
            }
            KeySource::Generate
        }
        _ => return Err(Error::InvalidInput("give --csr FILE or --keygen".into())),
    };
    let holder = args
        .address
        .clone()
        .or(args.domain.clone())
        .unwrap_or_default();
    let defaulted_proofing = args.proofing_method.is_none() || args.evidence.is_none();
    let request = IssueRequest {
        address: args.address.clone(),
        domain: args.domain.clone(),
        usage: args.usage.clone(),
        profile: args.profile.clone(),
        category: args.category.clone(),
        key,
        subscriber: Subscriber {
            name: args
                .subscriber
                .clone()
                .unwrap_or_else(|| holder.trim().to_ascii_lowercase()),
            organization: None,
        },
        organisation: args.organisation.clone(),
        registrar: args.registrar.clone().unwrap_or_else(cli_actor),
        proofing: Proofing {
            method: args
                .proofing_method
                .clone()
                .unwrap_or_else(|| "operator-attested".into()),
            level_of_assurance: args.level_of_assurance.clone(),
            evidence_reference: args
                .evidence
                .clone()
                .unwrap_or_else(|| format!("{} at the CA console", cli_actor())),
        },
    };
    let password = args
        .p12_password_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    // The rules run first inside: a refused request never needs the passphrase.
    let outcome = authority.issue(&request, password)?;
    if defaulted_proofing {
        eprintln!(
            "note: no --proofing-method/--evidence given; recorded as operator-attested by {}",
            request.registrar
        );
    }
    write_issue_outputs(&args, &outcome, out)
}

fn p12_paths(base: &Path, count: usize) -> Vec<PathBuf> {
    if count == 1 {
        return vec![base.to_path_buf()];
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let dir = base.parent().unwrap_or(Path::new(""));
    ["signing", "encryption"]
        .iter()
        .map(|u| dir.join(format!("{stem}-{u}.p12")))
        .collect()
}

fn write_issue_outputs(args: &IssueArgs, outcome: &IssueOutcome, out: Output) -> Result<()> {
    let certs: Vec<serde_json::Value> = outcome
        .certs
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    let pkcs12: Vec<Vec<u8>> = outcome
        .certs
        .iter()
        .filter_map(|c| c.pkcs12.clone())
        .collect();
    let password = outcome.generated_password.as_ref().map(|p| p.as_str());
    write_issued(args, &certs, &pkcs12, password, out)
}

/// Writes what an issuance returned (on the store or through the server, the same JSON): the
/// certificates as PEM to `--out`, each PKCS#12 to its file (0600), and the summary.
fn write_issued(
    args: &IssueArgs,
    certs: &[serde_json::Value],
    pkcs12: &[Vec<u8>],
    password: Option<&str>,
    out: Output,
) -> Result<()> {
    let text = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    let pem: String = certs.iter().map(|c| text(c, "pem")).collect();
    let mut p12_files = Vec::new();
    if let Some(base) = &args.p12_out {
        for (path, bytes) in p12_paths(base, pkcs12.len()).into_iter().zip(pkcs12) {
            write_file(&path, bytes, true)?;
            p12_files.push(path);
        }
    }
    if let Some(path) = &args.out {
        write_file(path, pem.as_bytes(), false)?;
    }
    let serials: Vec<serde_json::Value> = certs
        .iter()
        .map(|c| c.get("serial").unwrap_or(&serde_json::Value::Null).clone())
        .collect();
    let value = json!({
        "serial": serials.first(),
        "serials": serials,
        "certificates": certs,
        "out": args.out,
        "p12_files": p12_files,
        "p12_password": password,
    });
    emit(out, value, || {
        let mut lines: Vec<String> = certs
            .iter()
            .map(|c| {
                let not_after = text(c, "not_after");
                format!(
                    "issued {} certificate {} for {} (valid until {})",
                    text(c, "usage"),
                    text(c, "serial"),
                    text(c, "holder"),
                    not_after.get(..10).unwrap_or(&not_after)
                )
            })
            .collect();
        match &args.out {
            Some(p) => lines.push(format!("certificate(s) written to {}", p.display())),
            None => lines.push(pem.trim_end().to_string()),
        }
        for p in &p12_files {
            lines.push(format!(
                "PKCS#12 written to {} (legacy encryption: `openssl pkcs12 -legacy` reads it)",
                p.display()
            ));
        }
        if let Some(pw) = password {
            lines.push(format!("PKCS#12 password (shown once, not stored): {pw}"));
        }
        lines.join("\n")
    })
}
