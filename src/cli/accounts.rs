//! `user` and `token` commands. Passwords come from a file or the environment, or
//! are generated and printed once; they are never command-line values.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::remote::{call, target, Target};
use super::{cli_actor, emit, Output};
use crate::accounts::{Role, Scope};
use crate::authority::views::{TokenJson, UserJson};
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
    /// Registrar: an organisation id it works for (repeatable; none = any organisation in its
    /// domains). Member: an organisation whose anchor submissions it also sees.
    #[arg(long = "organisation", alias = "organization")]
    pub organisations: Vec<String>,
    /// Member: a bundle it may submit to (repeatable; '*' = all).
    #[arg(long = "bundle")]
    pub bundles: Vec<String>,
}

impl ScopeArgs {
    fn given(&self) -> bool {
        !(self.domains.is_empty() && self.organisations.is_empty() && self.bundles.is_empty())
    }

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
    /// Change a user's role and/or scope (the scope options replace the whole scope). Takes
    /// effect at once for its sessions and every token it created.
    Edit {
        username: String,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Disable a user (ends its sessions; its tokens stop working).
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
        /// A registrar token needs --domain (or '*') and/or --organisation, a member token
        /// --bundle (or '*'): there is no implicit scope.
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token by id.
    Revoke { id: String },
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

/// The same JSON the API answers with (`GET /api/v1/users/{name}`).
fn user_json(u: &crate::accounts::UserRecord) -> Value {
    serde_json::to_value(UserJson::from(u)).unwrap_or_default()
}

pub fn user(config: Config, cmd: UserCommand, out: Output) -> Result<()> {
    match target(config)? {
        Target::Direct(authority) => user_direct(&authority, cmd, out),
        Target::Server { url, token } => user_remote(&url, &token, cmd, out),
    }
}

fn user_text(v: &Value) -> String {
    let mut t = format!(
        "user {} ({}){}",
        v.get("username")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        v.get("role").and_then(Value::as_str).unwrap_or_default(),
        if v.get("disabled") == Some(&json!(true)) {
            " [disabled]"
        } else {
            ""
        }
    );
    if let Some(p) = v.get("password").and_then(Value::as_str) {
        t.push_str(&format!("\npassword (shown once): {p}"));
    }
    t
}

fn users_text(v: &Value) -> String {
    v.as_array()
        .map(|users| {
            users
                .iter()
                .map(|u| {
                    let scope: Scope =
                        serde_json::from_value(u.get("scope").unwrap_or(&Value::Null).clone())
                            .unwrap_or_default();
                    format!(
                        "{:<24} {:<13} {}{}",
                        u.get("username")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        u.get("role").and_then(Value::as_str).unwrap_or_default(),
                        scope_text(&scope),
                        if u.get("disabled") == Some(&json!(true)) {
                            "  [disabled]"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// While `serve` holds the store, the same commands go through its API.
fn user_remote(url: &str, token: &str, cmd: UserCommand, out: Output) -> Result<()> {
    let post = reqwest::Method::POST;
    match cmd {
        UserCommand::Add {
            username,
            role,
            name,
            scope,
            password_file,
        } => {
            let (password, generated) = password_from(password_file)?;
            let mut body =
                json!({"username": username, "name": name, "role": role, "scope": scope.scope()});
            if !generated {
                if let Some(map) = body.as_object_mut() {
                    map.insert("password".into(), json!(password.as_str()));
                }
            }
            let v = call(url, token, post, "/users", Some(body))?;
            emit(out, v.clone(), || user_text(&v))
        }
        UserCommand::List => {
            let v = call(url, token, reqwest::Method::GET, "/users", None)?;
            emit(out, v.clone(), || users_text(&v))
        }
        UserCommand::Passwd {
            username,
            password_file,
        } => {
            let (password, generated) = password_from(password_file)?;
            let body = (!generated)
                .then(|| json!({"password": password.as_str()}))
                .unwrap_or(json!({}));
            let v = call(
                url,
                token,
                post,
                &format!("/users/{username}/password"),
                Some(body),
            )?;
            emit(out, v.clone(), || {
                match v.get("password").and_then(Value::as_str) {
                    Some(p) => format!("new password for {username} (shown once): {p}"),
                    None => format!("password of {username} changed; its sessions ended"),
                }
            })
        }
        UserCommand::Edit {
            username,
            role,
            scope,
        } => {
            let mut body = json!({});
            if let Some(role) = role {
                if let Some(map) = body.as_object_mut() {
                    map.insert("role".into(), json!(role));
                }
            }
            if scope.given() {
                if let Some(map) = body.as_object_mut() {
                    map.insert("scope".into(), json!(scope.scope()));
                }
            }
            let v = call(url, token, post, &format!("/users/{username}"), Some(body))?;
            emit(out, v.clone(), || user_text(&v))
        }
        UserCommand::Disable { username } => {
            let v = call(
                url,
                token,
                post,
                &format!("/users/{username}/disable"),
                None,
            )?;
            emit(out, v.clone(), || user_text(&v))
        }
        UserCommand::Enable { username } => {
            let v = call(url, token, post, &format!("/users/{username}/enable"), None)?;
            emit(out, v.clone(), || user_text(&v))
        }
    }
}

fn user_direct(authority: &Authority, cmd: UserCommand, out: Output) -> Result<()> {
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
                if let Some(map) = v.as_object_mut() {
                    map.insert("password".into(), json!(password.as_str()));
                }
            }
            emit(out, v.clone(), || user_text(&v))
        }
        UserCommand::List => {
            let mut users = authority.users()?;
            users.sort_by(|a, b| a.username.cmp(&b.username));
            let v = json!(users.iter().map(user_json).collect::<Vec<_>>());
            emit(out, v.clone(), || users_text(&v))
        }
        UserCommand::Passwd {
            username,
            password_file,
        } => {
            let (password, generated) = password_from(password_file)?;
            authority.set_password(&username, &password, &cli_actor())?;
            let mut v = json!({"username": username, "password_changed": true});
            if generated {
                if let Some(map) = v.as_object_mut() {
                    map.insert("password".into(), json!(password.as_str()));
                }
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
        UserCommand::Edit {
            username,
            role,
            scope,
        } => {
            let role = role.as_deref().map(Role::parse).transpose()?;
            let scope = scope.given().then(|| scope.scope());
            let user = authority.edit_user(&username, role, scope, &cli_actor())?;
            let v = user_json(&user);
            emit(out, v.clone(), || user_text(&v))
        }
        UserCommand::Disable { username } => set_disabled(authority, &username, true, out),
        UserCommand::Enable { username } => set_disabled(authority, &username, false, out),
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
    match target(config)? {
        Target::Direct(authority) => token_direct(&authority, cmd, out),
        Target::Server { url, token } => token_remote(&url, &token, cmd, out),
    }
}

fn token_created_text(v: &Value) -> String {
    format!(
        "{}\n(token {} for role {}; shown once, stored hashed)",
        v.get("token").and_then(Value::as_str).unwrap_or_default(),
        v.get("id").and_then(Value::as_str).unwrap_or_default(),
        v.get("role").and_then(Value::as_str).unwrap_or_default()
    )
}

fn tokens_text(v: &Value) -> String {
    v.as_array()
        .map(|tokens| {
            tokens
                .iter()
                .map(|t| {
                    let scope: Scope =
                        serde_json::from_value(t.get("scope").unwrap_or(&Value::Null).clone())
                            .unwrap_or_default();
                    format!(
                        "{}  {:<13} {:<8} {}  {}",
                        t.get("id").and_then(Value::as_str).unwrap_or_default(),
                        t.get("role").and_then(Value::as_str).unwrap_or_default(),
                        t.get("state").and_then(Value::as_str).unwrap_or_default(),
                        t.get("label").and_then(Value::as_str).unwrap_or_default(),
                        scope_text(&scope)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn token_remote(url: &str, token: &str, cmd: TokenCommand, out: Output) -> Result<()> {
    let post = reqwest::Method::POST;
    match cmd {
        TokenCommand::Create {
            role,
            label,
            valid_days,
            scope,
        } => {
            Role::parse(&role)?;
            let body = json!({"role": role, "label": label, "valid_days": valid_days,
                              "scope": scope.scope()});
            let v = call(url, token, post, "/tokens", Some(body))?;
            emit(out, v.clone(), || token_created_text(&v))
        }
        TokenCommand::List => {
            let v = call(url, token, reqwest::Method::GET, "/tokens", None)?;
            emit(out, v.clone(), || tokens_text(&v))
        }
        TokenCommand::Revoke { id } => {
            let v = call(url, token, post, &format!("/tokens/{id}/revoke"), None)?;
            emit(
                out,
                json!({"id": v.get("id").unwrap_or(&Value::Null), "revoked": true}),
                || format!("revoked API token {id}"),
            )
        }
    }
}

fn token_direct(authority: &Authority, cmd: TokenCommand, out: Output) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            role,
            label,
            valid_days,
            scope,
        } => {
            let role = Role::parse(&role)?;
            let (secret, record) = authority.create_scoped_token(
                role,
                scope.scope(),
                &label,
                Some(valid_days),
                None,
                &cli_actor(),
            )?;
            let v = json!({"token": secret.as_str(), "id": record.id, "role": record.role,
                           "scope": record.scope,
                           "expires_at": record.expires_at.map(crate::model::rfc3339)});
            emit(out, v.clone(), || token_created_text(&v))
        }
        TokenCommand::List => {
            let now = authority.now();
            let rows: Vec<Value> = authority
                .tokens()?
                .iter()
                // The same JSON as `GET /api/v1/tokens`.
                .map(|t| serde_json::to_value(TokenJson::with_state(t, now)).unwrap_or_default())
                .collect();
            let v = json!(rows);
            emit(out, v.clone(), || tokens_text(&v))
        }
        TokenCommand::Revoke { id } => {
            let t = authority.revoke_token(&id, &cli_actor())?;
            emit(out, json!({"id": t.id, "revoked": true}), || {
                format!("revoked API token {}", t.id)
            })
        }
    }
}
