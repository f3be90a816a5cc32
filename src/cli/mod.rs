//! The command line: a clap tree of noun-then-verb commands over `authority`, with `-o json`
//! for machines. Secrets (passphrases, PKCS#12 passwords) are read from files or the
//! environment, never taken as argument values. This file holds the root of the tree, the
//! dispatch to one file per flow (each with its own subcommands), and what every command
//! shares: opening the store, the actor name, printing, writing files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::authority::Authority;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::error::{Error, Result};

mod accounts;
mod audit;
mod backup;
mod bundles;
mod ca;
mod certs;
mod discovery;
mod external;
mod lifecycle;
mod organisations;
mod remote;
mod serve;

pub use ca::{CaCommand, CrlCommand};
pub use certs::{CertCommand, IssueArgs, StatusArg};
pub use lifecycle::{ConfigCommand, InitArgs, IssuingKeyArg, RootKeyArg};

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
    Publish(discovery::PublishCommand),
    /// External trust bundles: fetch now, show refresh status.
    #[command(subcommand)]
    Refresh(external::RefreshCommand),
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let out = cli.output;
    let mut config = Config::resolve(cli.config.as_deref(), cli.data_dir.as_deref())?;
    if let Some(dir) = cli.bundles_dir {
        config.bundles_dir = dir;
    }
    match cli.command {
        Command::Init(args) => lifecycle::init(config, args, out, cli.config.is_none()),
        Command::Serve { listen } => serve::serve(config, listen, cli.config.is_none()),
        Command::Config(ConfigCommand::Check) => lifecycle::config_check(&config, out),
        Command::Cert(cmd) => certs::cert(config, cmd, out),
        Command::Ca(cmd) => ca::ca(open(config)?, cmd, out),
        Command::Crl(cmd) => ca::crl(config, cmd, out),
        Command::Token(cmd) => accounts::token(config, cmd, out),
        Command::User(cmd) => accounts::user(config, cmd, out),
        Command::Org(cmd) => organisations::org(config, cmd, out),
        Command::Holder(cmd) => organisations::holder(config, cmd, out),
        Command::Anchor(cmd) => bundles::anchor(config, cmd, out),
        Command::Bundle(cmd) => bundles::bundle(config, cmd, out),
        Command::Publish(cmd) => discovery::publish(config, cmd, out),
        Command::Audit(cmd) => audit::audit(config, cmd, out),
        Command::Refresh(cmd) => external::refresh(config, cmd, out),
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
