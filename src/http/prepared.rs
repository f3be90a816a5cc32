//! One downloadable file, ready to send: its body, strong ETag and Last-Modified, and the
//! full header sets of a 200 and of a 304 built once (content type, Cache-Control and the
//! security headers every response carries), so answering a request is a validator check and a
//! header-map copy. Conditional GET (If-None-Match before If-Modified-Since) and HEAD here.

use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

/// Security headers every response carries (see `super::security_headers`), as values.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Only over TLS (RFC 6797 §7.2).
pub const HSTS: (&str, &str) = ("strict-transport-security", "max-age=31536000");

/// Current bundle files change; clients should revalidate (STAs poll daily).
pub const CURRENT_CACHE: &str = "public, max-age=300, must-revalidate";
/// A new CRL follows a revocation within seconds.
pub const CRL_CACHE: &str = "public, max-age=300";
/// CA certificates change only with a new hierarchy.
pub const CA_CACHE: &str = "public, max-age=3600";

/// One file, ready to send.
pub struct Prepared {
    body: Bytes,
    etag: String,
    last_modified: SystemTime,
    /// The headers of a 200: content type, ETag, Last-Modified, Cache-Control, security.
    full: HeaderMap,
    /// The headers of a 304: the same without the content type.
    not_modified: HeaderMap,
}

impl Prepared {
    pub fn new(
        body: impl Into<Bytes>,
        content_type: &'static str,
        cache: &'static str,
        last_modified: SystemTime,
    ) -> Prepared {
        let body = body.into();
        let etag = format!("\"{}\"", crate::model::Fingerprint::of(&body));
        let mut not_modified = HeaderMap::with_capacity(10);
        for (name, value) in SECURITY_HEADERS {
            not_modified.insert(name, HeaderValue::from_static(value));
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            not_modified.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(last_modified)) {
            not_modified.insert(header::LAST_MODIFIED, v);
        }
        not_modified.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        let mut full = not_modified.clone();
        full.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(&body.len().to_string()) {
            full.insert(header::CONTENT_LENGTH, v);
        }
        Prepared {
            body,
            etag,
            last_modified,
            full,
            not_modified,
        }
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn last_modified(&self) -> SystemTime {
        self.last_modified
    }

    /// 304 when the client's validators match (If-None-Match wins over If-Modified-Since).
    pub fn respond(&self, method: &Method, request: &HeaderMap, tls: bool) -> Response<Body> {
        let not_modified = match request.get(header::IF_NONE_MATCH) {
            Some(list) => list.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
                    .any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag)
            }),
            None => request
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|since| {
                    // HTTP dates have whole seconds.
                    let modified =
                        httpdate::parse_http_date(&httpdate::fmt_http_date(self.last_modified))
                            .unwrap_or(self.last_modified);
                    modified <= since
                }),
        };
        let (status, headers, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, &self.not_modified, Body::empty())
        } else if method == Method::HEAD {
            (StatusCode::OK, &self.full, Body::empty())
        } else {
            (StatusCode::OK, &self.full, Body::from(self.body.clone()))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers.clone();
        if tls {
            response
                .headers_mut()
                .insert(HSTS.0, HeaderValue::from_static(HSTS.1));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn a_prepared_file_answers_200_304_and_head_with_the_same_validators() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let file = Prepared::new(b"crl bytes".to_vec(), "application/pkix-crl", CRL_CACHE, at);
        let etag = file
            .full
            .get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let cases: Vec<(&str, Method, HeaderMap, StatusCode, usize)> = vec![
            ("pass/plain", Method::GET, request(&[]), StatusCode::OK, 9),
            ("pass/head", Method::HEAD, request(&[]), StatusCode::OK, 0),
            (
                "pass/inm",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, &etag)]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "pass/inm-weak-in-list",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, &format!("\"x\", W/{etag}"))]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "pass/inm-star",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, "*")]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "fail/inm-other",
                Method::GET,
                request(&[(header::IF_NONE_MATCH, "\"other\"")]),
                StatusCode::OK,
                9,
            ),
            // If-None-Match wins over a matching If-Modified-Since.
            (
                "fail/inm-other-ims-match",
                Method::GET,
                request(&[
                    (header::IF_NONE_MATCH, "\"other\""),
                    (header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(at)),
                ]),
                StatusCode::OK,
                9,
            ),
            (
                "pass/ims-same",
                Method::GET,
                request(&[(header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(at))]),
                StatusCode::NOT_MODIFIED,
                0,
            ),
            (
                "fail/ims-earlier",
                Method::GET,
                request(&[(
                    header::IF_MODIFIED_SINCE,
                    &httpdate::fmt_http_date(at - std::time::Duration::from_secs(1)),
                )]),
                StatusCode::OK,
                9,
            ),
            (
                "fail/ims-garbage",
                Method::GET,
                request(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
                StatusCode::OK,
                9,
            ),
        ];
        for (name, method, headers, status, length) in cases {
            for tls in [false, true] {
                let r = file.respond(&method, &headers, tls);
                assert_eq!(r.status(), status, "{name}");
                let h = r.headers();
                assert_eq!(h.get(header::ETAG).unwrap(), etag.as_str(), "{name}");
                assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), CRL_CACHE, "{name}");
                assert_eq!(
                    h.get(header::LAST_MODIFIED).unwrap(),
                    httpdate::fmt_http_date(at).as_str(),
                    "{name}"
                );
                assert_eq!(
                    h.get("x-content-type-options").unwrap(),
                    "nosniff",
                    "{name}"
                );
                assert_eq!(h.contains_key(HSTS.0), tls, "{name}: HSTS only over TLS");
                if status == StatusCode::OK {
                    assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/pkix-crl");
                    assert_eq!(h.get(header::CONTENT_LENGTH).unwrap(), "9", "{name}");
                }
                let body = futures_body_len(r);
                assert_eq!(body, length, "{name}");
            }
        }
    }

    fn futures_body_len(r: Response<Body>) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(axum::body::to_bytes(r.into_body(), usize::MAX))
            .unwrap()
            .len()
    }
}
