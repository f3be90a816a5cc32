//! `user`, `token` and `audit` commands. Passwords come from a file or the environment, or
//! are generated and printed once; they are never command-line values.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use zeroize::Zeroizing;

use super::{cli_actor, emit, open, Output};
use crate::accounts::{Role, Scope};
use crate::authority::{Authority, NewUser};
use crate::config::Config;
use crate::error::{Error, Result};

/// Environment variable a password can be given in (for scripts).
pub const USER_PASSWORD_ENV: &str = "ANCHORAGE_USER_PASSWORD";

#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// Registrar: a managed domain it may issue for (repeatable; '*' = all).
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Registrar: a subscriber organisation it may issue for (repeatable; none = any).
    #[arg(long = "organisation", alias = "organization")]
    pub organisations: Vec<String>,
    /// Member: a bundle it may submit to (repeatable; '*' = all).
    #[arg(long = "bundle")]
    pub bundles: Vec<String>,
}

impl ScopeArgs {
    fn scope(self) -> Scope {
        Scope {
            domains: self.domains,
            organisations: self.organisations,
            bundles: self.bundles,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user of the web interface.
    Add {
        username: String,
        #[arg(long)]
        role: String,
        /// Full name shown in the interface and the audit log.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// File holding the password; else ANCHORAGE_USER_PASSWORD; else one is generated
        /// and printed once.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List users.
    List,
    /// Set a new password (ends the user's sessions).
    Passwd {
        username: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Disable a user (ends its sessions).
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token (printed once; stored hashed).
    Create {
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Expiry in days (default: 365).
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        /// Without scope options a registrar token may issue for every managed domain and a
        /// member token may submit to every bundle.
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the whole audit log.
    Verify,
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

fn password_from(file: Option<PathBuf>) -> Result<(Zeroizing<String>, bool)> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        return Ok((
            Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string()),
            false,
        ));
    }
    if let Ok(p) = std::env::var(USER_PASSWORD_ENV) {
        return Ok((Zeroizing::new(p), false));
    }
    Ok((Zeroizing::new(crate::accounts::random_secret()?), true))
}

fn user_json(u: &crate::accounts::UserRecord) -> serde_json::Value {
    json!({
        "username": u.username, "name": u.display_name, "role": u.role.as_str(),
        "scope": u.scope, "created_at": u.created_at.to_string(),
        "disabled": u.disabled_at.is_some(),
    })
}

pub fn user(config: Config, cmd: UserCommand, out: Output) -> Result<()> {
    let authority = open(config)?;
    match cmd {
        UserCommand::Add {
            username,
            role,
            name,
            scope,
            password_file,
        } => {
            let (password, generated) = password_from(password_file)?;
            let user = authority.add_user(
                NewUser {
                    username,
                    display_name: name,
                    role: Role::parse(&role)?,
                    scope: scope.scope(),
                },
                &password,
                &cli_actor(),
            )?;
            let mut v = user_json(&user);
            if generated {
                v["password"] = json!(password.as_str());
            }
            emit(out, v, || {
                let mut t = format!("created user {} ({})", user.username, user.role.as_str());
                if generated {
                    t.push_str(&format!("\npassword (shown once): {}", password.as_str()));
                }
                t
            })
        }
        UserCommand::List => {
            let users = authority.users()?;
            emit(
                out,
                json!(users.iter().map(user_json).collect::<Vec<_>>()),
                || {
                    users
                        .iter()
                        .map(|u| {
                            format!(
                                "{:<24} {:<13} {}{}",
                                u.username,
                                u.role.as_str(),
                                scope_text(&u.scope),
                                if u.disabled_at.is_some() {
                                    "  [disabled]"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            )
        }
        UserCommand::Passwd {
            username,
            password_file,
        } => {
            let (password, generated) = password_from(password_file)?;
            authority.set_password(&username, &password, &cli_actor())?;
            let mut v = json!({"username": username, "password_changed": true});
            if generated {
                v["password"] = json!(password.as_str());
            }
            emit(out, v, || {
                if generated {
                    format!(
                        "new password for {username} (shown once): {}",
                        password.as_str()
                    )
                } else {
                    format!("password of {username} changed; its sessions ended")
                }
            })
        }
        UserCommand::Disable { username } => set_disabled(&authority, &username, true, out),
        UserCommand::Enable { username } => set_disabled(&authority, &username, false, out),
    }
}

fn set_disabled(authority: &Authority, username: &str, disabled: bool, out: Output) -> Result<()> {
    let user = authority.set_user_disabled(username, disabled, &cli_actor())?;
    emit(out, user_json(&user), || {
        format!(
            "user {} {}",
            user.username,
            if disabled {
                "disabled; its sessions ended"
            } else {
                "enabled"
            }
        )
    })
}

fn scope_text(s: &Scope) -> String {
    let mut parts = Vec::new();
    if !s.domains.is_empty() {
        parts.push(format!("domains={}", s.domains.join(",")));
    }
    if !s.organisations.is_empty() {
        parts.push(format!("organisations={}", s.organisations.join(",")));
    }
    if !s.bundles.is_empty() {
        parts.push(format!("bundles={}", s.bundles.join(",")));
    }
    parts.join(" ")
}

pub fn token(config: Config, cmd: TokenCommand, out: Output) -> Result<()> {
    let authority = open(config)?;
    match cmd {
        TokenCommand::Create {
            role,
            label,
            valid_days,
            scope,
        } => {
            let role = Role::parse(&role)?;
            let scope = scope.scope();
            let scope = if scope == Scope::default() {
                Scope::widest(role)
            } else {
                scope
            };
            let (secret, record) = authority.create_scoped_token(
                role,
                scope,
                &label,
                Some(valid_days),
                None,
                &cli_actor(),
            )?;
            emit(
                out,
                json!({"token": secret.as_str(), "id": record.id, "role": record.role,
                       "scope": record.scope,
                       "expires_at": record.expires_at.map(|t| t.to_string())}),
                || {
                    format!(
                        "{}\n(token {} for role {}; shown once, stored hashed)",
                        secret.as_str(),
                        record.id,
                        record.role
                    )
                },
            )
        }
        TokenCommand::List => {
            let tokens = authority.tokens()?;
            let now = authority.now();
            let rows: Vec<serde_json::Value> = tokens
                .iter()
                .map(|t| {
                    json!({"id": t.id, "role": t.role, "label": t.label, "scope": t.scope,
                           "owner": t.owner, "created_at": t.created_at.to_string(),
                           "expires_at": t.expires_at.map(|x| x.to_string()),
                           "revoked_at": t.revoked_at.map(|x| x.to_string()),
                           "live": t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)})
                })
                .collect();
            emit(out, json!(rows), || {
                tokens
                    .iter()
                    .map(|t| {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at.is_some_and(|e| e <= now) {
                            "expired"
                        } else {
                            "live"
                        };
                        format!(
                            "{}  {:<13} {:<8} {}  {}",
                            t.id,
                            t.role,
                            state,
                            t.label,
                            scope_text(&t.scope)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TokenCommand::Revoke { id } => {
            let t = authority.revoke_token(&id, &cli_actor())?;
            emit(out, json!({"id": t.id, "revoked": true}), || {
                format!("revoked API token {}", t.id)
            })
        }
    }
}

pub fn audit(config: Config, cmd: AuditCommand, out: Output) -> Result<()> {
    let authority = open(config)?;
    match cmd {
        AuditCommand::Verify => {
            let report = authority.verify_audit()?;
            emit(
                out,
                json!({"ok": true, "entries": report.entries, "head_hash": report.head_hash}),
                || {
                    format!(
                        "audit log intact: {} entries, head {}",
                        report.entries, report.head_hash
                    )
                },
            )
        }
        AuditCommand::Export {
            out: path,
            since,
            actor,
            action,
        } => export(&authority, path, since, actor, action),
    }
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
    for entry in authority.store.audit_entries() {
        let entry = entry?;
        if since.is_some_and(|s| entry.seq <= s)
            || actor
                .as_ref()
                .is_some_and(|a| !entry.actor.contains(a.as_str()))
            || action
                .as_ref()
                .is_some_and(|a| !entry.action.starts_with(a.as_str()))
        {
            continue;
        }
        let line = serde_json::to_string(&entry).map_err(|e| Error::Store(e.to_string()))?;
        writeln!(sink, "{line}").map_err(|e| Error::io("audit export", e))?;
    }
    drop(sink);
    if let Some(p) = path {
        super::write_file(&p, &buf, false)?;
    }
    Ok(())
}
