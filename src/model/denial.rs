//! A refusal as a value: every rule a request failed, each with a stable code and a sentence.
//! Policies make them; the error type and the store carry them.

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
