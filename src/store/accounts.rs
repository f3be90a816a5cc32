//! Account records: users (with their audit entries) and browser sessions. Sessions are
//! keyed by the SHA-256 of the cookie secret, so a copy of the store does not hand out
//! live sessions.

use sled::Transactional;
use time::OffsetDateTime;

use super::{append_audit, decode, encode, tx_error, Store};
use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::model::accounts::{SessionRecord, UserRecord};

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
