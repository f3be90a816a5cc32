//! Organisations and the identifiers they own. A HISP or trust community serves many
//! organisations from one CA; each Direct address or domain (a *holder*) is bound to exactly one
//! of them when its first certificate is issued, and every later certificate operation is
//! decided by that binding, never by text in a request. Organisations also say which health
//! domains (or parts of domains) they may hold identifiers in, so a new binding cannot land in a
//! domain that another organisation owns. Pure data and decisions: the store keeps the records,
//! `authority` asks these functions.

use crate::error::{Error, Result};
pub use crate::model::organisations::{slug, HolderBinding, OrganisationRecord};
use crate::model::{HealthDomain, Holder};

impl OrganisationRecord {
    pub fn claims(&self) -> Vec<Claim> {
        self.domains
            .iter()
            .filter_map(|c| Claim::parse(c).ok())
            .collect()
    }

    /// Whether a new holder may be bound to this organisation.
    pub fn covers(&self, holder: &Holder) -> bool {
        self.claims().iter().any(|c| c.covers(holder))
    }

    /// Whether it owns the whole health domain `domain`.
    pub fn owns_domain(&self, domain: &HealthDomain) -> bool {
        self.claims()
            .iter()
            .any(|c| matches!(c, Claim::Domain(d) if d == domain))
    }

    /// Whether `text` names this organisation (its id or its display name, any case).
    pub fn is_named(&self, text: &str) -> bool {
        let t = text.trim();
        self.id.eq_ignore_ascii_case(t) || self.name.trim().eq_ignore_ascii_case(t)
    }

    pub fn enabled(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// One entry of an organisation's `domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The whole domain: its domain-bound certificate and every address in it.
    Domain(HealthDomain),
    /// Addresses of a domain whose local part is `local`, or starts with `prefix` when the
    /// pattern ends with `*` (`*@domain` is every address, but not the domain itself).
    Addresses {
        domain: HealthDomain,
        local: String,
        prefix: bool,
    },
}

impl Claim {
    pub fn parse(text: &str) -> Result<Claim> {
        let t = text.trim().to_ascii_lowercase();
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "'{}' is not an organisation domain entry: {why} (use 'domain', '*@domain', \
                 'prefix*@domain' or 'local@domain')",
                text.chars().take(128).collect::<String>()
            ))
        };
        match t.rsplit_once('@') {
            None => HealthDomain::parse(&t)
                .map(Claim::Domain)
                .map_err(|e| bad(&e.to_string())),
            Some((local, domain)) => {
                let domain = HealthDomain::parse(domain).map_err(|e| bad(&e.to_string()))?;
                let (local, prefix) = match local.strip_suffix('*') {
                    Some(p) => (p.to_string(), true),
                    None => (local.to_string(), false),
                };
                let local_ok = local.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '\'')
                });
                if !local_ok || local.contains('*') || (!prefix && local.is_empty()) {
                    return Err(bad(
                        "the local part may hold letters, digits and . _ - + ' with one final '*'",
                    ));
                }
                Ok(Claim::Addresses {
                    domain,
                    local,
                    prefix,
                })
            }
        }
    }

    pub fn domain(&self) -> &HealthDomain {
        match self {
            Claim::Domain(d) | Claim::Addresses { domain: d, .. } => d,
        }
    }

    pub fn covers(&self, holder: &Holder) -> bool {
        match (self, holder) {
            (Claim::Domain(d), h) => h.domain() == d,
            (
                Claim::Addresses {
                    domain,
                    local,
                    prefix,
                },
                Holder::Address(a),
            ) => {
                let l = a.local();
                a.domain() == domain
                    && if *prefix {
                        l.starts_with(local.as_str())
                    } else {
                        l == local.as_str()
                    }
            }
            (Claim::Addresses { .. }, Holder::Domain(_)) => false,
        }
    }
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Domain(d) => write!(f, "{d}"),
            Claim::Addresses {
                domain,
                local,
                prefix,
            } => write!(f, "{local}{}@{domain}", if *prefix { "*" } else { "" }),
        }
    }
}

impl HolderBinding {
    pub fn resolved(&self) -> bool {
        self.conflicting_names.is_empty()
    }
}

/// Checks an organisation id: 2-64 lower-case letters, digits and '-', starting alphanumeric.
pub fn check_id(id: &str) -> Result<()> {
    let ok = (2..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "organisation id '{}' is not allowed: use 2-64 lower-case letters, digits or '-', \
             starting with a letter or digit",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// Normalises and checks what an organisation may hold: each entry parses, names a managed
/// domain, and no whole-domain claim overlaps another organisation's entries.
pub fn check_domains(
    id: &str,
    domains: &[String],
    managed: &[HealthDomain],
    others: &[OrganisationRecord],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for text in domains {
        let claim = Claim::parse(text)?;
        if !managed.contains(claim.domain()) {
            return Err(Error::InvalidInput(format!(
                "'{}' is not a managed domain of this service ({})",
                claim.domain(),
                managed
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for other in others.iter().filter(|o| o.id != id) {
            for theirs in other.claims() {
                let clash = theirs.domain() == claim.domain()
                    && (matches!(theirs, Claim::Domain(_)) || matches!(claim, Claim::Domain(_)));
                if clash {
                    return Err(Error::Conflict(format!(
                        "'{claim}' overlaps '{theirs}' of organisation '{}': a whole domain \
                         belongs to one organisation only",
                        other.id
                    )));
                }
            }
        }
        let text = claim.to_string();
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out.sort();
    Ok(out)
}

/// Contacts: printable, at most 20 of at most 256 characters.
pub fn check_contacts(contacts: &[String]) -> Result<Vec<String>> {
    if contacts.len() > 20 {
        return Err(Error::InvalidInput(
            "an organisation has at most 20 contacts".into(),
        ));
    }
    contacts
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(|c| {
            if c.len() > 256 || c.chars().any(char::is_control) {
                Err(Error::InvalidInput(
                    "a contact must be at most 256 printable characters".into(),
                ))
            } else {
                Ok(c.to_string())
            }
        })
        .collect()
}

/// Display names: 1-128 printable characters.
pub fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "an organisation needs a display name of 1-128 printable characters".into(),
        ));
    }
    Ok(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(s: &str) -> Holder {
        Holder::parse(s).unwrap()
    }

    #[test]
    fn claims_cover_what_they_say() {
        let cases: [(&str, &str, bool); 9] = [
            ("direct.example.com", "direct.example.com", true),
            ("direct.example.com", "a@direct.example.com", true),
            ("direct.example.com", "a@other.example.org", false),
            ("*@direct.example.com", "a@direct.example.com", true),
            ("*@direct.example.com", "direct.example.com", false),
            (
                "cardio-*@direct.example.com",
                "cardio-jones@direct.example.com",
                true,
            ),
            (
                "cardio-*@direct.example.com",
                "jones@direct.example.com",
                false,
            ),
            ("jones@direct.example.com", "jones@direct.example.com", true),
            (
                "jones@direct.example.com",
                "jonesy@direct.example.com",
                false,
            ),
        ];
        for (claim, h, want) in cases {
            assert_eq!(
                Claim::parse(claim).unwrap().covers(&holder(h)),
                want,
                "{claim} covers {h}"
            );
        }
        for bad in ["", "*", "a*b@x.example", "@x.example", "x@", "not a domain"] {
            assert!(Claim::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn whole_domains_are_exclusive() {
        let managed = vec![HealthDomain::parse("direct.example.com").unwrap()];
        let other = OrganisationRecord {
            record_version: 1,
            id: "a".repeat(2),
            name: "A".into(),
            contacts: vec![],
            domains: vec!["*@direct.example.com".into()],
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            disabled_at: None,
        };
        assert!(check_domains(
            "bb",
            &["*@direct.example.com".into()],
            &managed,
            std::slice::from_ref(&other)
        )
        .is_ok());
        assert!(check_domains(
            "bb",
            &["direct.example.com".into()],
            &managed,
            std::slice::from_ref(&other)
        )
        .is_err());
        assert!(check_domains("bb", &["x@elsewhere.example".into()], &managed, &[]).is_err());
    }

    #[test]
    fn ids_and_slugs() {
        assert!(check_id("good-clinic").is_ok());
        for bad in ["G", "-x", "a b", "Good", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert_eq!(slug("Good Clinic, Inc."), "good-clinic-inc");
        assert_eq!(slug("  "), "org-");
        assert!(check_id(&slug("Ünïcode Care")).is_ok());
    }
}
