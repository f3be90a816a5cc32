//! Reading browser forms: URL-encoded and multipart (file uploads), with every value
//! length-checked, and the small encoders the pages need.

use std::collections::HashMap;

use axum::extract::Multipart;
use axum::http::StatusCode;

use super::WebError;

/// A submitted form: text fields and uploaded files by field name.
#[derive(Debug, Default)]
pub struct FormData {
    pub text: HashMap<String, String>,
    pub files: HashMap<String, Vec<Vec<u8>>>,
}

impl FormData {
    /// A trimmed text field, empty when absent.
    pub fn get(&self, name: &str) -> String {
        self.text
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }

    /// A text field when not blank.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// An uploaded file when not empty (browsers send an empty part for no file).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .get(name)
            .and_then(|all| all.iter().find(|f| !f.is_empty()))
            .map(Vec::as_slice)
    }

    /// Every non-empty file uploaded under `name` (a multiple file input).
    pub fn all_files(&self, name: &str) -> Vec<Vec<u8>> {
        self.files
            .get(name)
            .map(|all| all.iter().filter(|f| !f.is_empty()).cloned().collect())
            .unwrap_or_default()
    }
}

/// Text fields longer than this are refused (CSRs and PEM pasted into text areas fit).
const MAX_TEXT: usize = 256 * 1024;

fn bad(message: impl Into<String>) -> WebError {
    WebError::status(StatusCode::BAD_REQUEST, message)
}

/// Reads a multipart form; fields named in `file_fields` are kept as bytes.
pub async fn read_multipart(
    mut multipart: Multipart,
    file_fields: &[&str],
) -> Result<FormData, WebError> {
    let mut form = FormData::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(WebError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The upload is larger than this form accepts.",
                ))
            }
            Err(e) => {
                return Err(bad(format!(
                    "The form could not be read: {}",
                    e.body_text()
                )))
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                WebError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The upload is larger than this form accepts.",
                )
            } else {
                bad(format!("The form could not be read: {}", e.body_text()))
            }
        })?;
        if file_fields.contains(&name.as_str()) {
            form.files.entry(name).or_default().push(bytes.to_vec());
        } else {
            if bytes.len() > MAX_TEXT {
                return Err(bad(format!("The field '{name}' is too long.")));
            }
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| bad(format!("The field '{name}' is not text.")))?;
            form.text.insert(name, text);
        }
    }
    Ok(form)
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Only same-site relative paths are followed after sign-in (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}
