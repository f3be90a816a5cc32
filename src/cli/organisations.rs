//! `org` and `holder` commands: organisations, the domains they may hold identifiers in, and
//! which organisation each address or domain belongs to. While `serve` runs they go through
//! its API (`/api/v1/organisations`, `/api/v1/holders`), with the same JSON either way.

use clap::Subcommand;
use serde_json::{json, Value};

use super::remote::{call, target, Target};
use super::{cli_actor, emit, Output};
use crate::accounts::Principal;
use crate::authority::views::OrganisationJson;
use crate::authority::{Authority, OrganisationChange};
use crate::config::Config;
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Add {
        /// Stable id: 2-64 lower-case letters, digits and '-'.
        id: String,
        /// Display name (written into its certificates); the id when absent.
        #[arg(long)]
        name: Option<String>,
        /// A contact (e-mail address, phone, name); repeatable.
        #[arg(long = "contact")]
        contacts: Vec<String>,
        /// Where it may hold identifiers: 'domain' (the whole domain), '*@domain',
        /// 'prefix*@domain' or 'local@domain'; repeatable.
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    /// List organisations.
    List,
    /// Show one organisation and how many holders it has.
    Show { id: String },
    /// Change an organisation: the given options replace the old values.
    Edit {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all contacts.
        #[arg(long = "contact")]
        contacts: Vec<String>,
        /// Replaces all domain entries.
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    /// Disable an organisation: nothing more is issued for its holders.
    Disable { id: String },
    /// Enable a disabled organisation.
    Enable { id: String },
    /// List holders whose certificates named different organisations (or none) before the
    /// upgrade: admins only may use them until settled with `holder transfer`.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum HolderCommand {
    /// Show which organisation an address or domain belongs to.
    Show { holder: String },
    /// List holders and their organisations.
    List {
        /// Only this organisation's holders.
        #[arg(long = "organisation", alias = "organization")]
        organisation: Option<String>,
    },
    /// Move a holder, with all its certificates, to another organisation (or settle an
    /// unresolved one).
    Transfer {
        holder: String,
        /// The organisation id it moves to.
        #[arg(long)]
        to: String,
    },
}

fn org_json(o: &crate::organisations::OrganisationRecord) -> Value {
    serde_json::to_value(OrganisationJson::from(o)).unwrap_or_default()
}

fn org_text(v: &Value) -> String {
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    format!(
        "organisation {} ({}){}\n  domains:  {}\n  contacts: {}",
        v.get("id").and_then(Value::as_str).unwrap_or_default(),
        v.get("name").and_then(Value::as_str).unwrap_or_default(),
        if v.get("disabled") == Some(&json!(true)) {
            " [disabled]"
        } else {
            ""
        },
        list("domains"),
        list("contacts"),
    )
}

fn orgs_text(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(org_text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn change(name: Option<String>, contacts: Vec<String>, domains: Vec<String>, edit: bool) -> Value {
    let mut body = json!({});
    if let Some(n) = name {
        if let Some(map) = body.as_object_mut() {
            map.insert("name".into(), json!(n));
        }
    }
    if !edit || !contacts.is_empty() {
        if let Some(map) = body.as_object_mut() {
            map.insert("contacts".into(), json!(contacts));
        }
    }
    if !edit || !domains.is_empty() {
        if let Some(map) = body.as_object_mut() {
            map.insert("domains".into(), json!(domains));
        }
    }
    body
}

pub fn org(config: Config, cmd: OrgCommand, out: Output) -> Result<()> {
    let v = match target(config)? {
        Target::Server { url, token } => org_remote(&url, &token, cmd)?,
        Target::Direct(authority) => org_direct(&authority, cmd)?,
    };
    emit(out, v.clone(), || {
        if v.is_array()
            && v.as_array()
                .is_some_and(|a| a.first().is_some_and(|x| x.get("holder").is_some()))
        {
            unresolved_text(&v)
        } else if v.is_array() {
            orgs_text(&v)
        } else {
            org_text(&v)
        }
    })
}

fn unresolved_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    format!(
                        "{}  bound to {} for now; its certificates name: {}",
                        h.get("holder").and_then(Value::as_str).unwrap_or_default(),
                        h.get("organisation")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        h.get("names")
                            .and_then(Value::as_array)
                            .map(|n| n
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" | "))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn org_remote(url: &str, token: &str, cmd: OrgCommand) -> Result<Value> {
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    match cmd {
        OrgCommand::Add {
            id,
            name,
            contacts,
            domains,
        } => {
            let mut body = change(name, contacts, domains, false);
            if let Some(map) = body.as_object_mut() {
                map.insert("id".into(), json!(id));
            }
            call(url, token, post, "/organisations", Some(body))
        }
        OrgCommand::List => call(url, token, get, "/organisations", None),
        OrgCommand::Show { id } => call(url, token, get, &format!("/organisations/{id}"), None),
        OrgCommand::Edit {
            id,
            name,
            contacts,
            domains,
        } => call(
            url,
            token,
            post,
            &format!("/organisations/{id}"),
            Some(change(name, contacts, domains, true)),
        ),
        OrgCommand::Disable { id } => call(
            url,
            token,
            post,
            &format!("/organisations/{id}/disable"),
            None,
        ),
        OrgCommand::Enable { id } => call(
            url,
            token,
            post,
            &format!("/organisations/{id}/enable"),
            None,
        ),
        OrgCommand::Check => call(url, token, get, "/holders/unresolved", None),
    }
}

fn org_direct(authority: &Authority, cmd: OrgCommand) -> Result<Value> {
    let me = Principal::operator(&cli_actor());
    let opt = |v: Vec<String>| (!v.is_empty()).then_some(v);
    Ok(match cmd {
        OrgCommand::Add {
            id,
            name,
            contacts,
            domains,
        } => org_json(&authority.add_organisation(
            &me,
            &id,
            OrganisationChange {
                name,
                contacts: Some(contacts),
                domains: Some(domains),
            },
        )?),
        OrgCommand::List => json!(authority
            .organisations()?
            .iter()
            .map(org_json)
            .collect::<Vec<_>>()),
        OrgCommand::Show { id } => org_json(&authority.organisation(&id)?),
        OrgCommand::Edit {
            id,
            name,
            contacts,
            domains,
        } => org_json(&authority.edit_organisation(
            &me,
            &id,
            OrganisationChange {
                name,
                contacts: opt(contacts),
                domains: opt(domains),
            },
        )?),
        OrgCommand::Disable { id } => {
            org_json(&authority.set_organisation_disabled(&me, &id, true)?)
        }
        OrgCommand::Enable { id } => {
            org_json(&authority.set_organisation_disabled(&me, &id, false)?)
        }
        OrgCommand::Check => json!(authority.unresolved_holders(&me)?),
    })
}

pub fn holder(config: Config, cmd: HolderCommand, out: Output) -> Result<()> {
    let v = match target(config)? {
        Target::Server { url, token } => {
            let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
            match cmd {
                HolderCommand::Show { holder } => {
                    call(&url, &token, get, &format!("/holders/{holder}"), None)?
                }
                HolderCommand::List { organisation } => {
                    let q = organisation
                        .map(|o| format!("?organisation={o}"))
                        .unwrap_or_default();
                    call(&url, &token, get, &format!("/holders{q}"), None)?
                }
                HolderCommand::Transfer { holder, to } => call(
                    &url,
                    &token,
                    post,
                    &format!("/holders/{holder}/transfer"),
                    Some(json!({"organisation": to})),
                )?,
            }
        }
        Target::Direct(authority) => {
            let me = Principal::operator(&cli_actor());
            match cmd {
                HolderCommand::Show { holder } => json!(authority.holder_binding(&me, &holder)?),
                HolderCommand::List { organisation } => {
                    json!(authority.holder_bindings(&me, false, organisation.as_deref())?)
                }
                HolderCommand::Transfer { holder, to } => {
                    json!(authority.transfer_holder(&me, &holder, &to)?)
                }
            }
        }
    };
    emit(out, v.clone(), || {
        let one = |b: &Value| {
            format!(
                "{}  -> {}{}",
                b.get("holder").and_then(Value::as_str).unwrap_or_default(),
                b.get("organisation")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                if b.get("conflicting_names").is_some() {
                    "  [unresolved]"
                } else {
                    ""
                }
            )
        };
        match v.as_array() {
            Some(a) => a.iter().map(one).collect::<Vec<_>>().join("\n"),
            None => one(&v),
        }
    })
}
