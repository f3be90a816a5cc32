//! Account records: users (with their audit entries), browser sessions and API tokens.
//! Sessions are keyed by the SHA-256 of the cookie secret and tokens by the SHA-256 of theirs,
//! so a copy of the store does not hand out live credentials.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::{append_audit, decode, encode, tx_error, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::accounts::{SessionRecord, UserRecord};

/// An API token; only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub record_version: u32,
    pub id: String,
    pub hash: String,
    pub role: String,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// What a registrar or member token may touch (issue scoping); empty for admin tokens.
    #[serde(default)]
    pub scope: crate::model::accounts::Scope,
    /// The user who created the token, when created by a signed-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl TokenRecord {
    /// `live`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "live"
        }
    }
}

impl Store {
    /// Creates a user; refuses an existing name.
    pub fn insert_user(
        &self,
        user: &UserRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(user)?;
        let created = (&self.users, &self.meta, &self.audit)
            .transaction(|(users, meta, audit)| {
                if users.get(user.username.as_bytes())?.is_some() {
                    return Ok(false);
                }
                users.insert(user.username.as_bytes(), bytes.clone())?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if !created {
            return Err(Error::Conflict(format!(
                "a user named '{}' already exists",
                user.username
            )));
        }
        self.flush()
    }

    /// Replaces an existing user record (password, scope, disabling), with its audit entry.
    pub fn update_user(
        &self,
        user: &UserRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(user)?;
        (&self.users, &self.meta, &self.audit)
            .transaction(|(users, meta, audit)| {
                users.insert(user.username.as_bytes(), bytes.clone())?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    pub fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        self.users
            .get(username.as_bytes())?
            .map(|b| decode(&b, "user"))
            .transpose()
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.users
            .iter()
            .values()
            .map(|v| decode(&v?, "user"))
            .collect()
    }

    pub fn put_session(&self, key: &str, session: &SessionRecord) -> Result<()> {
        self.sessions.insert(key.as_bytes(), encode(session)?)?;
        Ok(())
    }

    pub fn session(&self, key: &str) -> Result<Option<SessionRecord>> {
        self.sessions
            .get(key.as_bytes())?
            .map(|b| decode(&b, "session"))
            .transpose()
    }

    pub fn delete_session(&self, key: &str) -> Result<()> {
        self.sessions.remove(key.as_bytes())?;
        Ok(())
    }

    /// Removes expired sessions and every session of `username` when given.
    pub fn purge_sessions(&self, now: OffsetDateTime, username: Option<&str>) -> Result<usize> {
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (key, value) = item?;
            let session: SessionRecord = decode(&value, "session")?;
            if session.expires_at <= now || username == Some(session.username.as_str()) {
                self.sessions.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Store {
    pub fn put_token(
        &self,
        token: &TokenRecord,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<()> {
        let bytes = encode(token)?;
        (&self.tokens, &self.meta, &self.audit)
            .transaction(|(tokens, meta, audit)| {
                tokens.insert(token.hash.as_bytes(), bytes.clone())?;
                append_audit(&self.keying, meta, audit, at, draft.clone())?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.tokens
            .get(hash.as_bytes())?
            .map(|b| decode(&b, "token"))
            .transpose()
    }

    /// Marks a token revoked (by id), with its audit entry. Revoking twice is a no-op error.
    pub fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        draft: AuditDraft,
    ) -> Result<TokenRecord> {
        let found = self
            .tokens()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::NotFound(format!("no API token with id {id}")))?;
        if found.revoked_at.is_some() {
            return Err(Error::Conflict(format!(
                "API token {id} is already revoked"
            )));
        }
        let mut revoked = found;
        revoked.revoked_at = Some(at);
        self.put_token(&revoked, at, draft)?;
        Ok(revoked)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.tokens
            .iter()
            .values()
            .map(|v| decode(&v?, "token"))
            .collect()
    }
}
