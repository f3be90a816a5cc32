//! The command line: a clap tree of noun-then-verb commands over `authority`, with `-o json`
//! for machines. Secrets (passphrases, PKCS#12 passwords) are read from files or the
//! environment, never taken as argument values.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use zeroize::Zeroizing;

use crate::authority::{Authority, CertFilter, CertStatus, CertView, InitOptions, IssueOutcome};
use crate::ca::{CaRole, ImportedCa, IssuingKeyAlgorithm, RootKeyAlgorithm};
use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::http;
use crate::model::{HealthDomain, RevocationReason, Serial};
use crate::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};
use crate::policy::profile::Profiles;
use crate::x509;

mod accounts;
mod audit;
mod backup;
mod bundles;
mod certs;
mod organisations;
mod publish;
mod refresh;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "anchorage",
    version,
    about = "Certificate authority and trust-bundle service for Direct secure messaging"
)]
pub struct Cli {
    /// Data directory (store, generated files); default ./anchorage-data.
    #[arg(long, global = true, env = "ANCHORAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file; default <data-dir>/anchorage.toml when present.
    #[arg(long, global = true, env = "ANCHORAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The trust-bundle inventory directory; default ./bundles.
    #[arg(long, global = true, env = "ANCHORAGE_BUNDLES_DIR")]
    pub bundles_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (or import) the CA hierarchy for a set of managed health domains.
    Init(InitArgs),
    /// Run the HTTP service (creates an evaluation CA on first start when needed).
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Issue, revoke and inspect Direct certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// CA certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Users of the web interface.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Organisations and the domains they may hold identifiers in.
    #[command(subcommand)]
    Org(organisations::OrgCommand),
    /// Which organisation an address or domain belongs to; transfers.
    #[command(subcommand)]
    Holder(organisations::HolderCommand),
    /// The keyed, hash-chained audit log: verify, checkpoint, export.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Member trust anchors: submit, review, publish.
    #[command(subcommand)]
    Anchor(bundles::AnchorCommand),
    /// Trust bundles.
    #[command(subcommand)]
    Bundle(bundles::BundleCommand),
    /// Discovery files: DNS CERT zones and LDIF.
    #[command(subcommand)]
    Publish(publish::PublishCommand),
    /// External trust bundles: fetch now, show refresh status.
    #[command(subcommand)]
    Refresh(refresh::RefreshCommand),
    /// Write a consistent backup of the data directory (through `serve` when it runs).
    Backup {
        /// The backup file to write (0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild a new data directory (--data-dir) from a backup file.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and the certificate profiles without starting.
    Check,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let out = cli.output;
    let mut config = Config::resolve(cli.config.as_deref(), cli.data_dir.as_deref())?;
    if let Some(dir) = cli.bundles_dir {
        config.bundles_dir = dir;
    }
    match cli.command {
        Command::Init(args) => init(config, args, out, cli.config.is_none()),
        Command::Serve { listen } => serve(config, listen, cli.config.is_none()),
        Command::Config(ConfigCommand::Check) => config_check(&config, out),
        Command::Cert(cmd) => match bundles::target(config)? {
            bundles::Target::Direct(authority) => cert(*authority, cmd, out),
            bundles::Target::Server { url, token } => certs::cert_remote(&url, &token, cmd, out),
        },
        Command::Ca(cmd) => ca(open(config)?, cmd, out),
        Command::Crl(CrlCommand::Export { ca, out: path }) => {
            let authority = open(config)?;
            let role = CaRole::parse(&ca).ok_or_else(|| {
                Error::InvalidInput(format!("unknown CA '{ca}'; use issuing or root"))
            })?;
            if authority.crl_is_stale(role)? {
                unlock(&authority)?;
            }
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
        Command::Token(cmd) => accounts::token(config, cmd, out),
        Command::User(cmd) => accounts::user(config, cmd, out),
        Command::Org(cmd) => organisations::org(config, cmd, out),
        Command::Holder(cmd) => organisations::holder(config, cmd, out),
        Command::Anchor(cmd) => bundles::anchor(config, cmd, out),
        Command::Bundle(cmd) => bundles::bundle(config, cmd, out),
        Command::Publish(cmd) => publish::publish(config, cmd, out),
        Command::Audit(cmd) => audit::audit(config, cmd, out),
        Command::Refresh(cmd) => refresh::refresh(config, cmd, out),
        Command::Backup { out: path } => backup::backup(config, &path, out),
        Command::Restore { file } => backup::restore(&file, config.data_dir, out),
    }
}

fn open(config: Config) -> Result<Authority> {
    let authority = Authority::open(config, Arc::new(SystemClock))?;
    if !authority.is_initialised()? {
        return Err(Error::NotInitialised);
    }
    Ok(authority)
}

fn unlock(authority: &Authority) -> Result<()> {
    let (passphrase, source) = authority.passphrase(false)?;
    if let crate::keyseal::PassphraseSource::Evaluation(_) = source {
        tracing::warn!("using the evaluation passphrase file: not for production");
    }
    authority.unlock(&passphrase)
}

fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// Prints JSON or text.
fn emit(out: Output, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let line = match out {
        Output::Json => {
            serde_json::to_string_pretty(&value).map_err(|e| Error::InvalidInput(e.to_string()))?
        }
        Output::Text => text(),
    };
    writeln!(stdout, "{line}").map_err(|e| Error::io("stdout", e))
}

/// Writes a file atomically (temp + rename), 0600 when it holds a secret.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    crate::private_files::write_atomic(path, bytes, secret)
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
    Ok(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

// ---- init / serve --------------------------------------------------------------------

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

fn init(mut config: Config, args: InitArgs, out: Output, write_config: bool) -> Result<()> {
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

fn print_created(
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

fn warn_if_evaluation(source: &crate::keyseal::PassphraseSource) {
    if let crate::keyseal::PassphraseSource::Evaluation(path) = source {
        eprintln!(
            "WARNING: the CA keys are sealed with a random passphrase stored in {} - this is for EVALUATION ONLY.\n         For production set {} or passphrase_file, and keep the passphrase away from the data.",
            path.display(),
            config::PASSPHRASE_ENV
        );
    }
}

fn serve(
    mut config: Config,
    listen: Option<std::net::SocketAddr>,
    write_config: bool,
) -> Result<()> {
    if let Some(addr) = listen {
        config.listen = addr;
        if write_config
            && !config.data_dir.join(config::DATA_DIR_CONFIG).exists()
            && config.public_url == Config::default().public_url
        {
            // The wildcard address is no URL a relying party can fetch, and it would stay in
            // every certificate: an evaluation start on 0.0.0.0 names loopback instead
            // (`config check` refuses a wildcard public_url).
            let mut host = addr;
            if addr.ip().is_unspecified() {
                host.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            config.public_url = format!("http://{host}");
        }
    }
    let up = Authority::bring_up(
        config.clone(),
        Arc::new(SystemClock),
        &cli_actor(),
        write_config,
    )?;
    match &up.created {
        Some((report, source)) => {
            println!(
                "first start: no CA in {}, created an evaluation CA hierarchy",
                config.data_dir.display()
            );
            print_created(Output::Text, &config.data_dir, report, source)?
        }
        None => warn_if_evaluation(&up.passphrase_source),
    }
    for line in &up.notes {
        println!("{line}");
    }
    let authority = up.authority;
    // A first start may have filled in the evaluation domain.
    let config = authority.config().clone();
    let tls_config = config
        .tls
        .as_ref()
        .map(|t| http::tls::server_config(&t.cert_file, &t.key_file))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::io(config.listen.to_string(), e))?;
        let local = listener.local_addr().map_err(|e| Error::io("listener", e))?;
        let tls = match (&config.tls, tls_config) {
            (Some(t), Some(server_config)) => {
                let tcp = tokio::net::TcpListener::bind(t.listen)
                    .await
                    .map_err(|e| Error::io(t.listen.to_string(), e))?;
                Some(http::tls::TlsListener::new(tcp, server_config).map_err(|e| Error::io("TLS listener", e))?)
            }
            _ => None,
        };
        let base = format!("http://{local}");
        let bundle_base = match (&tls, &config.tls) {
            (Some(l), Some(_)) => format!("https://{}", axum::serve::Listener::local_addr(l).map_err(|e| Error::io("TLS listener", e))?),
            _ => base.clone(),
        };
        let mut state = http::AppState::new(Arc::new(authority));
        let control = control_files(&config.data_dir, &base)?;
        state.control_hash = Some(Arc::from(crate::authority::token_hash(&control).as_str()));
        println!("anchorage listening on {base}");
        println!("  data directory:   {}", config.data_dir.display());
        println!("  managed domains:  {}", config.managed_domains.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "));
        println!("  public URL (in certificates): {}", config.public_url);
        println!("  CA certificates:  {base}/ca/root.cer  {base}/ca/issuing.cer  {base}/ca/chain.pem");
        println!("  CRLs:             {base}/crl/root.crl  {base}/crl/issuing.crl");
        println!("  trust bundles:    {bundle_base}/bundles/  {bundle_base}/bundles.json");
        println!("  API:              {base}/api/v1/certificates  (token: anchorage token create --role registrar --domain '*')");
        println!("  health:           {base}/healthz");
        let scheduler = refresh::start_scheduler(&state).await?;
        let result = http::serve(state, listener, tls, shutdown_signal())
            .await
            .map_err(|e| Error::io("http server", e));
        refresh::stop_scheduler(scheduler).await;
        let _ = std::fs::remove_file(config.data_dir.join(bundles::SERVE_FILE));
        let _ = std::fs::remove_file(config.data_dir.join(bundles::CONTROL_TOKEN_FILE));
        result
    })
}

/// Writes where the server listens and a fresh local control token (0600) for the CLI.
fn control_files(data_dir: &Path, base: &str) -> Result<Zeroizing<String>> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Generation("the system random generator failed".into()))?;
    let token = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    write_file(
        &data_dir.join(bundles::CONTROL_TOKEN_FILE),
        token.as_bytes(),
        true,
    )?;
    let serve = json!({"url": base, "pid": std::process::id()});
    write_file(
        &data_dir.join(bundles::SERVE_FILE),
        serve.to_string().as_bytes(),
        false,
    )?;
    Ok(token)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

fn config_check(config: &Config, out: Output) -> Result<()> {
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
    if let Err(e) = crate::inventory::Inventory::load(&config.bundles_dir) {
        problems.push(e.to_string());
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

// ---- cert ----------------------------------------------------------------------------

fn cert(authority: Authority, cmd: CertCommand, out: Output) -> Result<()> {
    match cmd {
        CertCommand::Issue(args) => issue(&authority, *args, out),
        CertCommand::Revoke { serial, reason } => {
            let serial = Serial::parse(&serial).map_err(|e| Error::InvalidInput(e.to_string()))?;
            let reason =
                RevocationReason::parse(&reason).map_err(|e| Error::InvalidInput(e.to_string()))?;
            unlock(&authority)?;
            let revocation = authority.revoke(&serial, reason, &cli_actor())?;
            let crl = authority.publish_crl(CaRole::Issuing)?;
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
            let certs = authority.certs(&filter)?;
            emit(
                out,
                serde_json::to_value(certs.iter().map(list_json).collect::<Vec<_>>())
                    .unwrap_or_default(),
                || {
                    let mut lines = vec![format!(
                        "{:<32}  {:<8}  {:<10}  {:<12}  {:<20}  {}",
                        "SERIAL", "BINDING", "USAGE", "STATUS", "NOT AFTER", "HOLDER"
                    )];
                    for c in &certs {
                        lines.push(format!(
                            "{:<32}  {:<8}  {:<10}  {:<12}  {:<20}  {}",
                            c.record.serial,
                            c.record.holder.binding().as_str(),
                            c.record.usage.as_str(),
                            serde_json::to_value(c.status)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            c.record.not_after.date().to_string(),
                            c.record.holder
                        ));
                    }
                    lines.join("\n")
                },
            )
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

fn list_json(c: &CertView) -> serde_json::Value {
    json!({
        "serial": c.record.serial,
        "holder": c.record.holder.to_string(),
        "binding": c.record.holder.binding().as_str(),
        "usage": c.record.usage.as_str(),
        "status": c.status,
        "not_before": c.record.not_before.to_string(),
        "not_after": c.record.not_after.to_string(),
        "fingerprint": c.record.fingerprint,
        "subscriber": c.record.subscriber,
        "organisation": c.organisation,
        "registrar": c.record.registrar,
    })
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
    // Rules first, so a refused request never needs the passphrase.
    authority.ownership(
        &crate::accounts::Principal::operator(&request.registrar),
        &request,
    )?;
    authority.approve(&request)?;
    let password = args
        .p12_password_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    unlock(authority)?;
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

// ---- ca ------------------------------------------------------------------------------

fn ca(authority: Authority, cmd: CaCommand, out: Output) -> Result<()> {
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
            unlock(&authority)?;
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
