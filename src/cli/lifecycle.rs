//! Creating a CA and checking a configuration: `anchorage init` (a new or imported CA
//! hierarchy, one call to `Authority::create`) and `anchorage config check` (validate the
//! configuration, profiles, admission policy and inventory without starting). `serve`, the
//! third command before any other, lives in `serve.rs` and reuses the reports printed here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use zeroize::Zeroizing;

use super::{cli_actor, emit, read_secret_file, Output};
use crate::authority::{Authority, InitOptions};
use crate::ca::{ImportedCa, IssuingKeyAlgorithm, RootKeyAlgorithm};
use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::model::HealthDomain;
use crate::policy::profile::Profiles;

#[derive(Debug, Default, Args)]
pub struct InitArgs {
    /// A health domain this CA issues for (repeatable).
    #[arg(long = "managed-domain")]
    pub managed_domains: Vec<String>,
    /// Public base URL written into CRL distribution points and AIA (http://).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Organisation name in the CA subjects.
    #[arg(long)]
    pub organization: Option<String>,
    #[arg(long, value_enum)]
    pub root_key: Option<RootKeyArg>,
    #[arg(long, value_enum)]
    pub issuing_key: Option<IssuingKeyArg>,
    /// Import an existing root CA certificate (PEM or DER).
    #[arg(long)]
    pub root_cert: Option<PathBuf>,
    /// The root CA's unencrypted PKCS#8 PEM key (omit for an offline root).
    #[arg(long)]
    pub root_key_file: Option<PathBuf>,
    /// Import the root CA from a legacy PKCS#12.
    #[arg(long)]
    pub root_p12: Option<PathBuf>,
    /// Import an existing issuing CA certificate (needs the root certificate).
    #[arg(long)]
    pub issuing_cert: Option<PathBuf>,
    #[arg(long)]
    pub issuing_key_file: Option<PathBuf>,
    #[arg(long)]
    pub issuing_p12: Option<PathBuf>,
    /// File holding the password of the PKCS#12 files being imported.
    #[arg(long)]
    pub p12_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RootKeyArg {
    Rsa4096,
    P384,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssuingKeyArg {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and the certificate profiles without starting.
    Check,
}

fn apply_init_args(config: &mut Config, args: &InitArgs) -> Result<()> {
    if !args.managed_domains.is_empty() {
        config.managed_domains = args
            .managed_domains
            .iter()
            .map(|d| HealthDomain::parse(d).map_err(|e| Error::InvalidInput(e.to_string())))
            .collect::<Result<_>>()?;
        config.managed_domains.sort();
        config.managed_domains.dedup();
    }
    if let Some(url) = &args.public_url {
        config.public_url = url.trim_end_matches('/').to_string();
    }
    if let Some(org) = &args.organization {
        config.ca.organization = org.clone();
    }
    if let Some(k) = args.root_key {
        config.ca.root_key = match k {
            RootKeyArg::Rsa4096 => RootKeyAlgorithm::Rsa4096,
            RootKeyArg::P384 => RootKeyAlgorithm::P384,
        };
    }
    if let Some(k) = args.issuing_key {
        config.ca.issuing_key = match k {
            IssuingKeyArg::Rsa2048 => IssuingKeyAlgorithm::Rsa2048,
            IssuingKeyArg::Rsa3072 => IssuingKeyAlgorithm::Rsa3072,
            IssuingKeyArg::Rsa4096 => IssuingKeyAlgorithm::Rsa4096,
            IssuingKeyArg::P256 => IssuingKeyAlgorithm::P256,
        };
    }
    Ok(())
}

fn import_options(args: &InitArgs) -> Result<InitOptions> {
    let password = args
        .p12_password_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    let load = |cert: &Option<PathBuf>,
                key: &Option<PathBuf>,
                p12: &Option<PathBuf>,
                what: &str|
     -> Result<Option<ImportedCa>> {
        match (cert, p12) {
            (Some(_), Some(_)) => Err(Error::InvalidInput(format!(
                "give the {what} CA as certificate + key files or as a PKCS#12, not both"
            ))),
            (None, Some(p12)) => {
                let pw = password.as_ref().ok_or_else(|| {
                    Error::InvalidInput(
                        "--p12-password-file is required to import a PKCS#12".into(),
                    )
                })?;
                ImportedCa::from_pkcs12(&std::fs::read(p12).map_err(|e| Error::io(p12, e))?, pw)
                    .map(Some)
            }
            (Some(cert), None) => {
                let cert_bytes = std::fs::read(cert).map_err(|e| Error::io(cert, e))?;
                let key_bytes = key
                    .as_ref()
                    .map(|k| {
                        std::fs::read(k)
                            .map(Zeroizing::new)
                            .map_err(|e| Error::io(k, e))
                    })
                    .transpose()?;
                ImportedCa::from_pem(&cert_bytes, key_bytes.as_deref().map(|k| k.as_slice()))
                    .map(Some)
            }
            (None, None) if key.is_some() => Err(Error::InvalidInput(format!(
                "a {what} key was given without its certificate"
            ))),
            (None, None) => Ok(None),
        }
    };
    Ok(InitOptions {
        import_root: load(&args.root_cert, &args.root_key_file, &args.root_p12, "root")?,
        import_issuing: load(
            &args.issuing_cert,
            &args.issuing_key_file,
            &args.issuing_p12,
            "issuing",
        )?,
    })
}

pub(super) fn init(
    mut config: Config,
    args: InitArgs,
    out: Output,
    write_config: bool,
) -> Result<()> {
    apply_init_args(&mut config, &args)?;
    let options = import_options(&args)?;
    let data_dir = config.data_dir.clone();
    let created = Authority::create(
        config,
        Arc::new(SystemClock),
        options,
        &cli_actor(),
        write_config,
    )?;
    print_created(out, &data_dir, &created.report, &created.passphrase_source)
}

pub(super) fn print_created(
    out: Output,
    data_dir: &Path,
    report: &crate::authority::InitReport,
    source: &crate::keyseal::PassphraseSource,
) -> Result<()> {
    warn_if_evaluation(source);
    emit(
        out,
        json!({"initialised": true, "data_dir": data_dir, "passphrase_source": source.to_string(), "ca": report}),
        || {
            format!(
            "initialised {}\n  root CA:    {} ({}), SHA-256 {}\n  issuing CA: {} ({}), SHA-256 {}\n  managed domains: {}\n  public URL: {}\n  CA keys sealed with the passphrase from {}",
            data_dir.display(),
            report.root_subject, report.root_key, report.root_fingerprint,
            report.issuing_subject, report.issuing_key, report.issuing_fingerprint,
            report.managed_domains.join(", "),
            report.public_url,
            source
        )
        },
    )
}

pub(super) fn warn_if_evaluation(source: &crate::keyseal::PassphraseSource) {
    if let crate::keyseal::PassphraseSource::Evaluation(path) = source {
        eprintln!(
            "WARNING: the CA keys are sealed with a random passphrase stored in {} - this is for EVALUATION ONLY.\n         For production set {} or passphrase_file, and keep the passphrase away from the data.",
            path.display(),
            config::PASSPHRASE_ENV
        );
    }
}

pub(super) fn config_check(config: &Config, out: Output) -> Result<()> {
    // Errors refuse the configuration (exit non-zero; values also stop `init`); warnings are
    // reported and do not.
    let mut problems = config.problems();
    if let Err(e) = Profiles::load(config.policies_dir.as_deref()) {
        problems.push(e.to_string());
    }
    if let Err(e) = crate::policy::admission::AdmissionPolicy::load(config.policies_dir.as_deref())
    {
        problems.push(e.to_string());
    }
    match crate::inventory::Inventory::load(&config.bundles_dir) {
        // Every admission policy a declaration names, as `serve` will load them.
        Ok(_) => {
            if let Err(e) = crate::authority::Rules::load(config) {
                if !problems.contains(&e.to_string()) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    let (file_errors, warnings) = config.file_problems();
    problems.extend(file_errors);
    let warning_lines = || {
        warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .collect::<Vec<_>>()
    };
    if problems.is_empty() {
        emit(
            out,
            json!({"ok": true, "problems": [], "warnings": warnings}),
            || {
                let mut lines = warning_lines();
                lines.push("configuration OK".to_string());
                lines.join("\n")
            },
        )
    } else {
        emit(
            out,
            json!({"ok": false, "problems": problems, "warnings": warnings}),
            || {
                let mut lines: Vec<String> =
                    problems.iter().map(|p| format!("problem: {p}")).collect();
                lines.extend(warning_lines());
                lines.join("\n")
            },
        )?;
        Err(Error::Config(format!(
            "{} problem(s) found",
            problems.len()
        )))
    }
}
