//! Pure decisions, no I/O: whether a certificate request may be issued. A refusal is a value
//! listing every failed rule (stable code + sentence), so a registrar can fix a request in one
//! round trip.

pub mod admission;
pub mod issuance;
pub mod profile;

use std::fmt;

use serde::Serialize;

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reason {
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
    /// The request field the rule is about, for forms that show errors beside fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub field: Option<&'static str>,
}

/// Every rule a request failed. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub reasons: Vec<Reason>,
}

impl Denial {
    /// A refusal for one rule.
    pub fn single(code: &'static str, field: &'static str, message: impl Into<String>) -> Denial {
        Denial {
            reasons: vec![Reason {
                code,
                message: message.into(),
                field: Some(field),
            }],
        }
    }

    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}

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
