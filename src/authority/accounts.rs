//! Account use cases: users, sign-in and sessions, scoped API tokens. Every change and every
//! sign-in attempt is in the audit log with the client address.

use serde_json::json;
use time::Duration;
use zeroize::Zeroizing;

use super::{token_hash, Authority};
use crate::accounts::{self, Principal, Role, Scope, SessionLimits, SessionRecord, UserRecord};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::store::{TokenRecord, RECORD_VERSION};

/// A new user as asked for by the CLI or the admin console.
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub scope: Scope,
}

/// A session as the HTTP layer sees it.
pub struct SignedIn {
    pub user: UserRecord,
    /// The user acting, with the organisation names of its scope.
    pub principal: Principal,
    pub session: SessionRecord,
    /// The store key (hash of the cookie secret).
    pub key: String,
}

/// Activity refreshes a session's expiry at most this often, to keep writes rare.
const TOUCH_EVERY: Duration = Duration::minutes(1);

impl Authority {
    fn managed_names(&self) -> Vec<String> {
        self.config
            .managed_domains
            .iter()
            .map(|d| d.as_str().to_string())
            .collect()
    }

    /// Checks a scope for a role against what exists: managed domains, organisations, bundles.
    pub fn validate_scope(&self, scope: Scope, role: Role) -> Result<Scope> {
        let domains = self.managed_names();
        let organisations: Vec<String> = self
            .store()?
            .organisations()?
            .into_iter()
            .map(|o| o.id)
            .collect();
        let bundles: Vec<String> = self.inventory().bundles.keys().cloned().collect();
        scope.validate(
            role,
            &accounts::Known {
                domains: &domains,
                organisations: &organisations,
                bundles: &bundles,
            },
        )
    }

    /// Fills in the display names of the organisations a principal is limited to.
    fn with_organisation_names(&self, mut principal: Principal) -> Result<Principal> {
        if let accounts::Limit::Only(ids) = &principal.scope.organisations {
            for id in ids {
                if let Some(org) = self.store()?.organisation(id)? {
                    principal.organisation_names.push(org.name);
                }
            }
        }
        Ok(principal)
    }

    /// The principal of a signed-in user.
    pub fn user_principal(&self, user: &UserRecord) -> Result<Principal> {
        self.with_organisation_names(user.principal())
    }

    /// The principal of a presented API token. A token acts for its owner: when the owner is
    /// disabled or gone, or no longer holds the token's role, it is refused; its scope is the
    /// intersection of its own and its owner's current scope.
    pub fn authenticate(&self, secret: &str) -> Result<Principal> {
        let token = self
            .store()?
            .token_by_hash(&token_hash(secret))?
            .ok_or_else(|| Error::Unauthorised("unknown API token".into()))?;
        if token.revoked_at.is_some() {
            return Err(Error::Unauthorised("the API token was revoked".into()));
        }
        if token.expires_at.is_some_and(|t| t <= self.now()) {
            return Err(Error::Unauthorised("the API token has expired".into()));
        }
        let mut principal = token_principal(&token)?;
        if let Some(owner) = &token.owner {
            let user = match self.store()?.user(owner)? {
                Some(u) if u.disabled_at.is_none() => u,
                Some(_) => {
                    return Err(Error::OwnerDisabled(format!(
                        "the user '{owner}' who created this token is disabled"
                    )))
                }
                None => {
                    return Err(Error::OwnerDisabled(format!(
                        "the user '{owner}' who created this token no longer exists"
                    )))
                }
            };
            if user.role != Role::Admin && user.role != principal.role {
                return Err(Error::OwnerDisabled(format!(
                    "the user '{owner}' who created this {} token is now a {}",
                    principal.role.as_str(),
                    user.role.as_str()
                )));
            }
            principal.scope = principal.scope.intersect(&user.scope.effective(user.role));
        }
        self.with_organisation_names(principal)
    }

    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            idle: Duration::minutes(i64::from(self.config.web.session_idle_minutes)),
            absolute: Duration::hours(i64::from(self.config.web.session_absolute_hours)),
        }
    }

    /// Creates a user with a password (checked and hashed here).
    pub fn add_user(&self, new: NewUser, password: &str, actor: &str) -> Result<UserRecord> {
        accounts::check_username(&new.username)?;
        accounts::check_password(password)?;
        let scope = self.validate_scope(new.scope, new.role)?;
        let now = self.now();
        let user = UserRecord {
            record_version: RECORD_VERSION,
            username: new.username,
            display_name: new.display_name.trim().chars().take(128).collect(),
            role: new.role,
            scope,
            password_hash: accounts::hash_password(password)?,
            created_at: now,
            disabled_at: None,
            password_changed_at: Some(now),
        };
        self.store()?.insert_user(
            &user,
            now,
            AuditDraft::new(
                actor,
                "user.create",
                &user.username,
                json!({"role": user.role.as_str(), "scope": user.scope}),
            ),
        )?;
        Ok(user)
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.store()?.users()
    }

    pub fn user(&self, username: &str) -> Result<UserRecord> {
        self.store()?
            .user(username)?
            .ok_or_else(|| Error::NotFound(format!("no user named '{username}'")))
    }

    /// Sets a new password and ends the user's sessions.
    pub fn set_password(&self, username: &str, password: &str, actor: &str) -> Result<()> {
        accounts::check_password(password)?;
        let mut user = self.user(username)?;
        let now = self.now();
        user.password_hash = accounts::hash_password(password)?;
        user.password_changed_at = Some(now);
        self.store()?.update_user(
            &user,
            now,
            AuditDraft::new(actor, "user.password", username, json!({})),
        )?;
        self.store()?.purge_sessions(now, Some(username))?;
        Ok(())
    }

    /// Changes a user's role and/or scope. Takes effect at once for its sessions and for
    /// every token it created (their scope is intersected with the owner's on each request).
    pub fn edit_user(
        &self,
        username: &str,
        role: Option<Role>,
        scope: Option<Scope>,
        actor: &str,
    ) -> Result<UserRecord> {
        let mut user = self.user(username)?;
        let before = (user.role, user.scope.clone());
        let role = role.unwrap_or(user.role);
        let scope = scope.unwrap_or_else(|| user.scope.clone());
        user.scope = self.validate_scope(scope, role)?;
        user.role = role;
        if (user.role, &user.scope) == (before.0, &before.1) {
            return Ok(user);
        }
        let now = self.now();
        self.store()?.update_user(
            &user,
            now,
            AuditDraft::new(
                actor,
                "user.edit",
                username,
                json!({"before": {"role": before.0.as_str(), "scope": before.1},
                       "after": {"role": user.role.as_str(), "scope": user.scope}}),
            ),
        )?;
        Ok(user)
    }

    /// Disables (or re-enables) a user; disabling ends its sessions at once.
    pub fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: &str,
    ) -> Result<UserRecord> {
        let mut user = self.user(username)?;
        let now = self.now();
        user.disabled_at = disabled.then_some(now);
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.store()?.update_user(
            &user,
            now,
            AuditDraft::new(actor, action, username, json!({})),
        )?;
        if disabled {
            self.store()?.purge_sessions(now, Some(username))?;
        }
        Ok(user)
    }

    /// Checks a password and opens a session. Unknown users cost the same time as wrong
    /// passwords, and both get the same message.
    pub fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<(Zeroizing<String>, SignedIn)> {
        let now = self.now();
        let user = self.store()?.user(username)?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.as_str())
            .unwrap_or_else(|| accounts::dummy_hash());
        let password_ok = accounts::verify_password(hash, password);
        let user = match user {
            Some(u) if password_ok && u.disabled_at.is_none() => u,
            found => {
                let why = match found {
                    None => "unknown user",
                    Some(u) if u.disabled_at.is_some() => "user disabled",
                    Some(_) => "wrong password",
                };
                let shown: String = username
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect();
                self.store()?.audit(
                    now,
                    AuditDraft::new(
                        format!("{shown} (sign-in)"),
                        "user.login_failed",
                        &shown,
                        json!({"from": client, "why": why}),
                    ),
                )?;
                return Err(Error::Unauthorised(
                    "the user name or the password is wrong".into(),
                ));
            }
        };
        let secret = Zeroizing::new(accounts::random_secret()?);
        let limits = self.session_limits();
        let session = SessionRecord {
            record_version: RECORD_VERSION,
            username: user.username.clone(),
            csrf: accounts::random_secret()?,
            client: client.to_string(),
            created_at: now,
            last_seen: now,
            expires_at: (now + limits.idle).min(now + limits.absolute),
        };
        let key = token_hash(&secret);
        let principal = self.user_principal(&user)?;
        self.store()?.put_session(&key, &session)?;
        self.store()?.audit(
            now,
            AuditDraft::new(
                user.principal().actor,
                "user.login",
                &user.username,
                json!({"from": client}),
            ),
        )?;
        Ok((
            secret,
            SignedIn {
                user,
                principal,
                session,
                key,
            },
        ))
    }

    /// The live session for a cookie secret, refreshed on activity.
    pub fn session(&self, secret: &str) -> Result<SignedIn> {
        let key = token_hash(secret);
        let expired = || Error::Unauthorised("the session has ended; sign in again".into());
        let mut session = self.store()?.session(&key)?.ok_or_else(expired)?;
        let now = self.now();
        if session.expires_at <= now {
            self.store()?.delete_session(&key)?;
            return Err(expired());
        }
        let user = match self.store()?.user(&session.username)? {
            Some(u) if u.disabled_at.is_none() => u,
            _ => {
                self.store()?.delete_session(&key)?;
                return Err(expired());
            }
        };
        if now - session.last_seen >= TOUCH_EVERY {
            session.last_seen = now;
            session.expires_at = session.refreshed_expiry(now, self.session_limits());
            self.store()?.put_session(&key, &session)?;
        }
        let principal = self.user_principal(&user)?;
        Ok(SignedIn {
            user,
            principal,
            session,
            key,
        })
    }

    pub fn sign_out(&self, signed_in: &SignedIn, client: &str) -> Result<()> {
        self.store()?.delete_session(&signed_in.key)?;
        self.store()?.audit(
            self.now(),
            AuditDraft::new(
                signed_in.user.principal().actor,
                "user.logout",
                &signed_in.user.username,
                json!({"from": client}),
            ),
        )?;
        Ok(())
    }

    /// Creates an API token limited to a role and a scope; the secret is returned once.
    pub fn create_scoped_token(
        &self,
        role: Role,
        scope: Scope,
        label: &str,
        valid_days: Option<u32>,
        owner: Option<&str>,
        actor: &str,
    ) -> Result<(Zeroizing<String>, TokenRecord)> {
        let scope = self.validate_scope(scope, role)?;
        let secret = Zeroizing::new(format!("anc_{}", accounts::random_secret()?));
        let now = self.now();
        let mut id = [0u8; 6];
        accounts::fill_random(&mut id)?;
        let record = TokenRecord {
            record_version: RECORD_VERSION,
            id: hex::encode(id),
            hash: token_hash(&secret),
            role: role.as_str().to_string(),
            label: label
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
            created_at: now,
            expires_at: valid_days.map(|d| now + Duration::days(i64::from(d))),
            revoked_at: None,
            scope: scope.clone(),
            owner: owner.map(str::to_string),
        };
        self.store()?.put_token(
            &record,
            now,
            AuditDraft::new(
                actor,
                "token.create",
                &record.id,
                json!({"role": role.as_str(), "label": record.label, "scope": scope,
                       "expires_at": record.expires_at.map(|t| t.to_string())}),
            ),
        )?;
        Ok((secret, record))
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut tokens = self.store()?.tokens()?;
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(tokens)
    }

    pub fn revoke_token(&self, id: &str, actor: &str) -> Result<TokenRecord> {
        self.store()?.revoke_token(
            id,
            self.now(),
            AuditDraft::new(actor, "token.revoke", id, json!({})),
        )
    }
}

/// How a token acts.
pub fn token_principal(token: &TokenRecord) -> Result<Principal> {
    let role = Role::parse(&token.role)?;
    let label = if token.label.is_empty() {
        "token"
    } else {
        &token.label
    };
    Ok(Principal {
        role,
        scope: token.scope.effective(role),
        actor: format!("{label} ({} token {})", token.role, token.id),
        user: token.owner.clone(),
        id: format!("token:{}", token.id),
        organisation_names: Vec::new(),
    })
}

/// Audit entries newest first, filtered (actor and target contain, action starts with), at
/// most `limit`; the second value is the `before` for the next older page.
pub fn audit_page(
    authority: &Authority,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<crate::audit::AuditEntry>, Option<u64>)> {
    let (actor, action, target) = (
        actor.trim().to_lowercase(),
        action.trim(),
        target.trim().to_lowercase(),
    );
    let mut out: Vec<crate::audit::AuditEntry> = Vec::new();
    for entry in authority.store()?.audit_entries_rev() {
        let entry = entry?;
        if before.is_some_and(|b| entry.seq >= b) {
            continue;
        }
        if (!actor.is_empty() && !entry.actor.to_lowercase().contains(&actor))
            || (!action.is_empty() && !entry.action.starts_with(action))
            || (!target.is_empty() && !entry.target.to_lowercase().contains(&target))
        {
            continue;
        }
        if out.len() == limit {
            let older = out.last().map(|e| e.seq);
            return Ok((out, older));
        }
        out.push(entry);
    }
    Ok((out, None))
}
