//! LDIF (RFC 2849) for Direct LDAP discovery (spec §4): the base entry, one container per
//! health domain, one `inetOrgPerson` per holder with `mail` and `userCertificate;binary`.
//! Values that are not RFC 2849 SAFE-STRINGs are written base64 (`attr:: ...`), lines are
//! folded at 76 columns, and DNs are escaped per RFC 4514.

use std::io::{self, Write};

use base64::Engine;

/// RFC 2849 recommends lines of at most 76 characters.
const LINE: usize = 76;

/// What a holder entry holds.
pub struct HolderEntry<'a> {
    /// `local@domain`, or the bare domain for a domain-bound certificate.
    pub mail: &'a str,
    pub domain: &'a str,
    pub ders: &'a [Vec<u8>],
}

/// RFC 4514 escaping of one attribute value inside a DN.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn container_dn(domain: &str, base_dn: &str) -> String {
    format!("ou={},{base_dn}", dn_value(domain))
}

pub fn holder_dn(mail: &str, domain: &str, base_dn: &str) -> String {
    format!("cn={},{}", dn_value(mail), container_dn(domain, base_dn))
}

/// Writes one `attr: value` line (or `attr:: base64`), folded.
pub fn attribute(w: &mut dyn Write, name: &str, value: &[u8]) -> io::Result<()> {
    if is_safe_string(value) {
        folded(w, &[name.as_bytes(), b": ", value])
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        folded(w, &[name.as_bytes(), b":: ", encoded.as_bytes()])
    }
}

/// RFC 2849 SAFE-STRING, and no trailing space (which some readers strip).
fn is_safe_string(value: &[u8]) -> bool {
    let init_ok = match value.first() {
        None => true,
        Some(b) => !matches!(b, b' ' | b':' | b'<') && is_safe_char(*b),
    };
    init_ok && value.iter().all(|b| is_safe_char(*b)) && value.last() != Some(&b' ')
}

fn is_safe_char(b: u8) -> bool {
    b != 0 && b != b'\n' && b != b'\r' && b < 128
}

/// Writes the concatenated parts as one logical line, folded with a leading space.
fn folded(w: &mut dyn Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut column = 0;
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            if column == LINE {
                w.write_all(b"\n ")?;
                column = 1;
            }
            let take = (LINE - column).min(rest.len());
            let (now, later) = rest.split_at(take);
            w.write_all(now)?;
            column += take;
            rest = later;
        }
    }
    w.write_all(b"\n")
}

/// The base entry; its first RDN type says which object class it is. `change`: as an
/// `add` change record.
pub fn base_entry(w: &mut dyn Write, base_dn: &str, change: bool) -> io::Result<()> {
    attribute(w, "dn", base_dn.as_bytes())?;
    if change {
        attribute(w, "changetype", b"add")?;
    }
    let (kind, value) = base_dn
        .split(',')
        .next()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .unwrap_or_default();
    let classes: &[&str] = match kind.as_str() {
        "dc" => &["top", "dcObject", "organization"],
        "o" => &["top", "organization"],
        _ => &["top", "organizationalUnit"],
    };
    for class in classes {
        attribute(w, "objectClass", class.as_bytes())?;
    }
    match kind.as_str() {
        "dc" => {
            attribute(w, "dc", value.as_bytes())?;
            attribute(w, "o", value.as_bytes())?;
        }
        "o" => attribute(w, "o", value.as_bytes())?,
        _ => attribute(w, "ou", value.as_bytes())?,
    }
    w.write_all(b"\n")
}

/// The container of one health domain's holders.
pub fn container_entry(w: &mut dyn Write, domain: &str, base_dn: &str) -> io::Result<()> {
    attribute(w, "dn", container_dn(domain, base_dn).as_bytes())?;
    attribute(w, "objectClass", b"top")?;
    attribute(w, "objectClass", b"organizationalUnit")?;
    attribute(w, "ou", domain.as_bytes())?;
    w.write_all(b"\n")
}

/// One holder; `changetype: add` when `change` (for ldapmodify).
pub fn holder_entry(
    w: &mut dyn Write,
    entry: &HolderEntry<'_>,
    base_dn: &str,
    change: bool,
) -> io::Result<()> {
    attribute(
        w,
        "dn",
        holder_dn(entry.mail, entry.domain, base_dn).as_bytes(),
    )?;
    if change {
        attribute(w, "changetype", b"add")?;
    }
    for class in ["top", "person", "organizationalPerson", "inetOrgPerson"] {
        attribute(w, "objectClass", class.as_bytes())?;
    }
    let sn = entry
        .mail
        .rsplit_once('@')
        .map_or(entry.mail, |(local, _)| local);
    attribute(w, "cn", entry.mail.as_bytes())?;
    attribute(w, "sn", sn.as_bytes())?;
    attribute(w, "mail", entry.mail.as_bytes())?;
    for der in entry.ders {
        attribute(w, "userCertificate;binary", der)?;
    }
    w.write_all(b"\n")
}

/// A container as an `add` change record.
pub fn container_add(w: &mut dyn Write, domain: &str, base_dn: &str) -> io::Result<()> {
    attribute(w, "dn", container_dn(domain, base_dn).as_bytes())?;
    attribute(w, "changetype", b"add")?;
    attribute(w, "objectClass", b"top")?;
    attribute(w, "objectClass", b"organizationalUnit")?;
    attribute(w, "ou", domain.as_bytes())?;
    w.write_all(b"\n")
}

/// Replaces a holder's certificates.
pub fn holder_modify(w: &mut dyn Write, entry: &HolderEntry<'_>, base_dn: &str) -> io::Result<()> {
    attribute(
        w,
        "dn",
        holder_dn(entry.mail, entry.domain, base_dn).as_bytes(),
    )?;
    attribute(w, "changetype", b"modify")?;
    attribute(w, "replace", b"userCertificate;binary")?;
    for der in entry.ders {
        attribute(w, "userCertificate;binary", der)?;
    }
    w.write_all(b"-\n\n")
}

pub fn delete(w: &mut dyn Write, dn: &str) -> io::Result<()> {
    attribute(w, "dn", dn.as_bytes())?;
    attribute(w, "changetype", b"delete")?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, value: &[u8]) -> String {
        let mut out = Vec::new();
        attribute(&mut out, name, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_safe_or_base64() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("ok/plain", b"jones@d.example", "mail: jones@d.example\n"),
            ("b64/leading-colon", b":x", "mail:: Ong=\n"),
            ("b64/leading-space", b" x", "mail:: IHg=\n"),
            ("b64/trailing-space", b"x ", "mail:: eCA=\n"),
            ("b64/non-ascii", "é".as_bytes(), "mail:: w6k=\n"),
            ("b64/newline", b"a\nb", "mail:: YQpi\n"),
        ];
        for (name, value, want) in cases {
            assert_eq!(line("mail", value), *want, "{name}");
        }
    }

    #[test]
    fn long_lines_fold_at_76() {
        let text = line("userCertificate;binary", &[0xffu8; 300]);
        let lines: Vec<&str> = text.trim_end().split('\n').collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= 76));
        assert!(lines.iter().skip(1).all(|l| l.starts_with(' ')));
        let joined: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
            .collect();
        let b64 = joined.strip_prefix("userCertificate;binary:: ").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            vec![0xffu8; 300]
        );
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(dn_value("a+b=c@d.example"), "a\\+b\\=c@d.example");
        assert_eq!(dn_value("#x"), "\\#x");
        assert_eq!(
            holder_dn("j@d.example", "d.example", "dc=x"),
            "cn=j@d.example,ou=d.example,dc=x"
        );
    }
}
