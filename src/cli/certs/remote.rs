//! `cert` commands through a running server: while `serve` holds the store (with its control
//! token), or against any anchorage named by `ANCHORAGE_URL` with a registrar's own
//! `ANCHORAGE_TOKEN`. They call `/api/v1/certificates`, so the server applies the caller's
//! scope exactly as for any API client: a certificate outside it is "not found".

use base64::Engine;
use serde_json::{json, Value};

use super::{write_issued, CertCommand, Columns, IssueArgs, ListRow, ListWriter, StatusArg};
use crate::cli::remote::{call, Pager};
use crate::cli::{cli_actor, emit, read_secret_file, Output};
use crate::error::{Error, Result};

/// The page the listing asks for: each page is parsed whole (its DER skipped), so a page of
/// 2,000 keeps the client small while a 1M listing takes 500 round trips.
const PAGE: usize = 2_000;

pub(super) fn cert_remote(url: &str, token: &str, cmd: CertCommand, out: Output) -> Result<()> {
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    match cmd {
        CertCommand::Issue(args) => issue_remote(url, token, *args, out),
        CertCommand::Revoke { serial, reason } => {
            let v = call(
                url,
                token,
                post,
                &format!("/certificates/{}/revoke", enc(&serial)),
                Some(json!({"reason": reason})),
            )?;
            emit(out, v.clone(), || {
                format!(
                    "revoked {} ({}); the server publishes the next CRL within seconds",
                    v.get("serial").and_then(Value::as_str).unwrap_or_default(),
                    v.get("reason").and_then(Value::as_str).unwrap_or_default()
                )
            })
        }
        CertCommand::List {
            holder,
            domain,
            status,
            expiring_within_days,
            organisation,
        } => {
            let mut query = Vec::new();
            for (k, v) in [
                ("holder", holder),
                ("domain", domain),
                ("organisation", organisation),
                (
                    "expiring_within_days",
                    expiring_within_days.map(|d| d.to_string()),
                ),
                (
                    "status",
                    status.map(|s| {
                        match s {
                            StatusArg::Valid => "valid",
                            StatusArg::Revoked => "revoked",
                            StatusArg::Expired => "expired",
                            StatusArg::NotYetValid => "not_yet_valid",
                        }
                        .to_string()
                    }),
                ),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(&v)));
                }
            }
            // Page by page with the cursor; each entry is written as it arrives.
            let mut writer = ListWriter::start(std::io::stdout().lock(), out)?;
            let pager = Pager::new(url, token)?;
            let mut after: Option<String> = None;
            loop {
                let mut path = format!("/certificates?limit={PAGE}");
                if let Some(cursor) = &after {
                    path.push_str(&format!("&after={}", enc(cursor)));
                }
                if !query.is_empty() {
                    path.push('&');
                    path.push_str(&query.join("&"));
                }
                let (page, link) = pager.page::<RemoteRow>(&path)?;
                for row in &page {
                    writer.entry(row)?;
                }
                match link.as_deref().and_then(next_cursor) {
                    Some(cursor) => after = Some(cursor),
                    None => break,
                }
            }
            writer.finish().map(|_| ())
        }
        CertCommand::Show { serial, pem } => {
            let v = call(
                url,
                token,
                get,
                &format!("/certificates/{}", enc(&serial)),
                None,
            )?;
            if pem {
                print!(
                    "{}",
                    v.get("pem").and_then(Value::as_str).unwrap_or_default()
                );
                return Ok(());
            }
            emit(out, v.clone(), || {
                format!(
                    "serial:        {}\nholder:        {} ({}-bound)\norganisation:  {} ({})\nusage:         {}\nstatus:        {}\nvalidity:      {} .. {}\nSHA-256:       {}\n{}",
                    v.get("serial").and_then(Value::as_str).unwrap_or_default(),
                    v.get("holder").and_then(Value::as_str).unwrap_or_default(),
                    v.get("binding").and_then(Value::as_str).unwrap_or_default(),
                    v.pointer("/organisation/id").unwrap_or(&Value::Null).as_str().unwrap_or("-"),
                    v.pointer("/organisation/name").unwrap_or(&Value::Null).as_str().unwrap_or_default(),
                    v.get("usage").and_then(Value::as_str).unwrap_or_default(),
                    v.get("status").and_then(Value::as_str).unwrap_or_default(),
                    v.get("not_before").and_then(Value::as_str).unwrap_or_default(),
                    v.get("not_after").and_then(Value::as_str).unwrap_or_default(),
                    v.get("fingerprint").and_then(Value::as_str).unwrap_or_default(),
                    v.get("pem").and_then(Value::as_str).unwrap_or_default().trim_end()
                )
            })
        }
    }
}

/// The columns `cert list -o json` prints on the store directly, taken from an API entry as
/// they are (alphabetical, as on the store); a missing one is null.
#[derive(Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
struct RemoteRow {
    binding: Value,
    fingerprint: Value,
    holder: Value,
    not_after: Value,
    not_before: Value,
    organisation: Value,
    registrar: Value,
    serial: Value,
    status: Value,
    subscriber: Value,
    usage: Value,
}

impl ListRow for RemoteRow {
    fn columns(&self) -> Columns {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Columns {
            serial: s(&self.serial),
            binding: s(&self.binding),
            usage: s(&self.usage),
            status: s(&self.status),
            not_after: s(&self.not_after),
            organisation: self
                .organisation
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
            holder: s(&self.holder),
        }
    }
}

/// The `after` cursor of a `Link: <...>; rel="next"` header.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',')
        .find(|l| l.contains("rel=\"next\""))?
        .split(['?', '&', '>'])
        .find_map(|part| part.strip_prefix("after="))
        .map(|c| {
            percent_encoding::percent_decode_str(c)
                .decode_utf8_lossy()
                .into_owned()
        })
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn read_text(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(match String::from_utf8(bytes.clone()) {
        Ok(text) if text.contains("-----BEGIN") => text,
        _ => base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

fn issue_remote(url: &str, token: &str, args: IssueArgs, out: Output) -> Result<()> {
    let holder = args
        .address
        .clone()
        .or(args.domain.clone())
        .unwrap_or_default();
    let mut body = json!({
        "address": args.address, "domain": args.domain, "usage": args.usage,
        "profile": args.profile, "category": args.category,
        "subscriber": {"name": args.subscriber.clone().unwrap_or_else(|| holder.trim().to_ascii_lowercase())},
        "organisation": args.organisation,
        "proofing": {
            "method": args.proofing_method.clone().unwrap_or_else(|| "operator-attested".into()),
            "level_of_assurance": args.level_of_assurance,
            "evidence_reference": args.evidence.clone().unwrap_or_else(|| format!("{} at the CA console", cli_actor())),
        },
    });
    match (&args.csr, args.keygen) {
        (Some(csr), false) => {
            if let Some(map) = body.as_object_mut() {
                map.insert("csr".into(), json!(read_text(csr)?));
            }
            if let Some(enc) = &args.encryption_csr {
                if let Some(map) = body.as_object_mut() {
                    map.insert("encryption_csr".into(), json!(read_text(enc)?));
                }
            }
        }
        (None, true) => {
            if args.p12_out.is_none() {
                return Err(Error::InvalidInput(
                    "--keygen needs --p12-out FILE for the PKCS#12".into(),
                ));
            }
            if let Some(map) = body.as_object_mut() {
                map.insert("keygen".into(), json!(true));
            }
            if let Some(p) = &args.p12_password_file {
                let password = read_secret_file(p)?;
                if let Some(map) = body.as_object_mut() {
                    map.insert("p12_password".into(), json!(password.as_str()));
                }
            }
        }
        _ => return Err(Error::InvalidInput("give --csr FILE or --keygen".into())),
    }
    let v = call(
        url,
        token,
        reqwest::Method::POST,
        "/certificates",
        Some(body),
    )?;
    let certs = v
        .get("certificates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pkcs12 = v
        .get("pkcs12")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            base64::engine::general_purpose::STANDARD
                .decode(
                    f.get("pkcs12_base64")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
                .map_err(|e| Error::Store(format!("the server sent an unreadable PKCS#12: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let password = v.get("p12_password").and_then(Value::as_str);
    write_issued(&args, &certs, &pkcs12, password, out)
}

#[cfg(test)]
mod tests {
    use super::next_cursor;

    #[test]
    fn the_next_cursor_comes_from_the_link_rel_next() {
        for (name, link, want) in [
            (
                "ok/cursor",
                "</api/v1/certificates?limit=2000&after=MDFhYg&status=valid>; rel=\"next\"",
                Some("MDFhYg"),
            ),
            (
                "ok/cursor-last",
                "</api/v1/certificates?limit=2&after=MDFhYg>; rel=\"next\"",
                Some("MDFhYg"),
            ),
            (
                "fail/offset-link",
                "</api/v1/certificates?limit=2&offset=4>; rel=\"next\"",
                None,
            ),
            (
                "fail/not-next",
                "</api/v1/certificates?after=MDFhYg>; rel=\"prev\"",
                None,
            ),
        ] {
            assert_eq!(next_cursor(link).as_deref(), want, "{name}");
        }
    }
}
