//! Pure decisions, no I/O: whether a certificate request may be issued. A refusal is a value
//! listing every failed rule (stable code + sentence), so a registrar can fix a request in one
//! round trip.

pub mod admission;
pub mod issuance;
pub mod profile;

use std::fmt;

pub use crate::model::denial::{Denial, Reason};

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .map(|r| format!("[{}] {}", r.code, r.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Collects reasons while a request is checked.
#[derive(Debug, Default)]
pub(crate) struct Reasons(Vec<Reason>);

impl Reasons {
    pub(crate) fn add(
        &mut self,
        code: &'static str,
        field: &'static str,
        message: impl Into<String>,
    ) {
        self.0.push(Reason {
            code,
            message: message.into(),
            field: Some(field),
        });
    }

    pub(crate) fn into_result<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Denial> {
        if self.0.is_empty() {
            if let Some(v) = value() {
                return Ok(v);
            }
        }
        let mut reasons = self.0;
        if reasons.is_empty() {
            reasons.push(Reason {
                code: "request_incomplete",
                message: "the request is incomplete".into(),
                field: None,
            });
        }
        Err(Denial { reasons })
    }
}
