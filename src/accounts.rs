//! People and what they may do: roles, scopes, user records with argon2id password hashes,
//! browser sessions, and the login throttle. The HTTP layer authenticates; this module decides
//! what an authenticated principal may touch.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
pub use crate::model::accounts::{Role, Scope, SessionRecord, UserRecord};
use crate::model::HealthDomain;
use crate::organisations::HolderBinding;

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Registrar,
        Role::Member,
        Role::DnsOperator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Registrar => "registrar",
            Role::Member => "member",
            Role::DnsOperator => "dns_operator",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown role '{s}'; use one of admin, registrar, member, dns_operator"
                ))
            })
    }
}

/// What exists, for checking that a scope names only real things.
pub struct Known<'a> {
    pub domains: &'a [String],
    pub organisations: &'a [String],
    pub bundles: &'a [String],
}

impl Scope {
    /// Normalises and checks a scope for a role: registrars and members must name what they
    /// may touch (there is no silent `*`), and every name must exist.
    pub fn validate(mut self, role: Role, known: &Known<'_>) -> Result<Scope> {
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        self.domains = norm(&self.domains);
        self.organisations = norm(&self.organisations);
        self.bundles = self
            .bundles
            .iter()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect();
        self.bundles.sort();
        self.bundles.dedup();
        for d in &self.domains {
            if d == "*" {
                continue;
            }
            HealthDomain::parse(d).map_err(|e| Error::InvalidInput(e.to_string()))?;
            if !known.domains.iter().any(|m| m.eq_ignore_ascii_case(d)) {
                return Err(Error::InvalidInput(format!(
                    "'{d}' is not a managed domain of this service ({})",
                    known.domains.join(", ")
                )));
            }
        }
        for o in &self.organisations {
            if !known.organisations.iter().any(|k| k == o) {
                return Err(Error::InvalidInput(format!(
                    "there is no organisation '{o}' (see `anchorage org list`)"
                )));
            }
        }
        for b in &self.bundles {
            if b != "*" && !known.bundles.iter().any(|k| k == b) {
                return Err(Error::InvalidInput(format!(
                    "there is no bundle '{b}' ({})",
                    known.bundles.join(", ")
                )));
            }
        }
        match role {
            Role::Registrar if self.domains.is_empty() && self.organisations.is_empty() => {
                Err(Error::InvalidInput(
                    "a registrar needs an explicit scope: the --domain(s) it may issue for ('*' \
                     for every managed domain) and/or the --organisation(s) it works for"
                        .into(),
                ))
            }
            Role::Member if self.bundles.is_empty() => Err(Error::InvalidInput(
                "a member needs an explicit scope: at least one --bundle it may submit to (or '*')"
                    .into(),
            )),
            _ => Ok(self),
        }
    }

    /// The limits this scope sets for a principal of `role`.
    pub fn effective(&self, role: Role) -> EffectiveScope {
        let listed = |v: &[String]| Limit::Only(v.iter().map(|x| x.to_ascii_lowercase()).collect());
        let starred = |v: &[String]| {
            if v.iter().any(|x| x == "*") {
                Limit::Any
            } else {
                listed(v)
            }
        };
        match role {
            Role::Admin => EffectiveScope {
                domains: Limit::Any,
                organisations: Limit::Any,
                bundles: Limit::Any,
            },
            Role::Registrar => EffectiveScope {
                domains: if self.domains.is_empty() && !self.organisations.is_empty() {
                    Limit::Any
                } else {
                    starred(&self.domains)
                },
                organisations: if self.organisations.is_empty() {
                    Limit::Any
                } else {
                    listed(&self.organisations)
                },
                bundles: Limit::none(),
            },
            Role::Member => EffectiveScope {
                domains: Limit::none(),
                organisations: listed(&self.organisations),
                // Bundle names compare exactly.
                bundles: if self.bundles.iter().any(|b| b == "*") {
                    Limit::Any
                } else {
                    Limit::Only(self.bundles.iter().cloned().collect())
                },
            },
            Role::DnsOperator => EffectiveScope {
                domains: Limit::none(),
                organisations: Limit::none(),
                bundles: Limit::none(),
            },
        }
    }
}

/// A limit on one kind of thing: everything, or only the named ones (lower-case for domains
/// and organisations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    Any,
    Only(BTreeSet<String>),
}

impl Limit {
    pub fn none() -> Limit {
        Limit::Only(BTreeSet::new())
    }

    pub fn allows(&self, name: &str) -> bool {
        match self {
            Limit::Any => true,
            Limit::Only(set) => set.contains(name) || set.contains(&name.to_ascii_lowercase()),
        }
    }

    pub fn is_any(&self) -> bool {
        matches!(self, Limit::Any)
    }

    /// The one name allowed, when exactly one is.
    pub fn single(&self) -> Option<&str> {
        match self {
            Limit::Only(set) if set.len() == 1 => set.iter().next().map(String::as_str),
            _ => None,
        }
    }

    pub fn intersect(&self, other: &Limit) -> Limit {
        match (self, other) {
            (Limit::Any, x) | (x, Limit::Any) => x.clone(),
            (Limit::Only(a), Limit::Only(b)) => Limit::Only(a.intersection(b).cloned().collect()),
        }
    }
}

/// The limits that decide what a principal may touch: a token's own scope intersected with
/// its owner's current scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveScope {
    pub domains: Limit,
    pub organisations: Limit,
    pub bundles: Limit,
}

impl EffectiveScope {
    pub fn intersect(&self, other: &EffectiveScope) -> EffectiveScope {
        EffectiveScope {
            domains: self.domains.intersect(&other.domains),
            organisations: self.organisations.intersect(&other.organisations),
            bundles: self.bundles.intersect(&other.bundles),
        }
    }
}

/// Who is acting: a user through a browser session, or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub scope: EffectiveScope,
    /// How the principal appears in records and the audit log.
    pub actor: String,
    /// The user name, when a person is behind it.
    pub user: Option<String>,
    /// Stable identity for rate limits and idempotency keys: `user:NAME`, `token:ID`,
    /// `operator`.
    pub id: String,
    /// Display names of the organisations in scope (anchor submissions carry names).
    pub organisation_names: Vec<String>,
}

impl Principal {
    /// The operator at the machine (the CLI with the data directory, or its control token):
    /// unrestricted, like an admin.
    pub fn operator(actor: &str) -> Principal {
        Principal {
            role: Role::Admin,
            scope: Scope::default().effective(Role::Admin),
            actor: actor.to_string(),
            user: None,
            id: "operator".into(),
            organisation_names: Vec::new(),
        }
    }

    /// Admins and registrars issue; others may not.
    pub fn may_issue(&self) -> Result<()> {
        match self.role {
            Role::Admin | Role::Registrar => Ok(()),
            other => Err(Error::Forbidden(format!(
                "the '{}' role may not issue or manage certificates",
                other.as_str()
            ))),
        }
    }

    /// Whether certificates of a holder in `domain`, bound as `binding`, are this principal's
    /// to see and act on. A holder without a settled organisation is for admins only.
    pub fn sees_holder(&self, domain: &str, binding: Option<&HolderBinding>) -> bool {
        self.sees_owned(
            domain,
            binding.map(|b| (b.organisation.as_str(), b.resolved())),
        )
    }

    /// `sees_holder` from the owning organisation's id and whether the binding is settled.
    pub fn sees_owned(&self, domain: &str, owner: Option<(&str, bool)>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Registrar => {
                self.scope.domains.allows(domain)
                    && owner.is_some_and(|(organisation, resolved)| {
                        resolved && self.scope.organisations.allows(organisation)
                    })
            }
            _ => false,
        }
    }

    /// Whether it may issue in `domain` at all (before any binding is known).
    pub fn may_issue_in(&self, domain: &str) -> Result<()> {
        self.may_issue()?;
        if self.scope.domains.allows(domain) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this registrar may not issue for the domain {domain}"
            )))
        }
    }

    pub fn sees_domain(&self, domain: &str) -> bool {
        self.role == Role::Admin
            || (self.role == Role::Registrar && self.scope.domains.allows(domain))
    }

    pub fn may_use_bundle(&self, bundle: &str) -> bool {
        self.role == Role::Admin || self.scope.bundles.allows(bundle)
    }

    /// Whether an anchor submission is this principal's to see: admins see all; a member
    /// sees, in its bundles, what it submitted itself (the same user through the web or its
    /// own tokens, from any address) or what its organisations submitted.
    pub fn sees_anchor(&self, bundle: &str, submitted_by: &str, organization: &str) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        let me = self.actor.split(" from ").next().unwrap_or_default();
        let same = |who: &str| who == me || who.starts_with(&format!("{me} from "));
        let by_user = self
            .user
            .as_ref()
            .is_some_and(|u| submitted_by.starts_with(&format!("{u} (")));
        let org = organization.trim();
        let by_organisation = !org.is_empty()
            && match &self.scope.organisations {
                Limit::Only(ids) => {
                    ids.contains(&org.to_ascii_lowercase())
                        || self
                            .organisation_names
                            .iter()
                            .any(|o| o.trim().eq_ignore_ascii_case(org))
                }
                Limit::Any => false,
            };
        self.may_use_bundle(bundle) && (same(submitted_by) || by_user || by_organisation)
    }
}

impl UserRecord {
    /// The user acting, before organisation names are filled in (see `Authority`).
    pub fn principal(&self) -> Principal {
        Principal {
            role: self.role,
            scope: self.scope.effective(self.role),
            actor: format!("{} ({})", self.username, self.role.as_str()),
            user: Some(self.username.clone()),
            id: format!("user:{}", self.username),
            organisation_names: Vec::new(),
        }
    }
}

/// Session lifetimes: idle and absolute.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

impl SessionRecord {
    /// When the session ends, given activity now.
    pub fn refreshed_expiry(&self, now: OffsetDateTime, limits: SessionLimits) -> OffsetDateTime {
        (now + limits.idle).min(self.created_at + limits.absolute)
    }
}

/// Checks a user name: lower-case letters, digits, `.`, `_`, `-`, 2 to 64 characters.
pub fn check_username(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if (2..=64).contains(&name.len()) && ok_chars {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "user name '{}' is not allowed: use 2-64 lower-case letters, digits, '.', '_' or '-'",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// Length is what makes a password strong; there is no composition rule (NIST SP 800-63B).
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < 12 {
        return Err(Error::InvalidInput(
            "the password must have at least 12 characters".into(),
        ));
    }
    if n > 1024 {
        return Err(Error::InvalidInput(
            "the password must have at most 1024 characters".into(),
        ));
    }
    Ok(())
}

/// OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::Generation(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Generation(format!("password salt: {e}")))?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Generation(format!("password hashing: {e}")))?
        .to_string())
}

/// Constant-time in the hash comparison; the cost is the same for a wrong password.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash to verify against when the user does not exist, so that an unknown user name
/// costs as much time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("anchorage-no-such-user").unwrap_or_default())
}

/// Fills `buf` from the operating system's generator.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Generation("the system random generator failed".into()))
}

/// A URL-safe random secret of 256 bits (session ids, CSRF tokens).
pub fn random_secret() -> Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Failed sign-ins per account and per client address. After `free` failures the next
/// attempt waits `base * 2^(extra failures)` up to `max`; a success clears the account.
pub struct Throttle {
    free: u32,
    base: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, (u32, OffsetDateTime)>>,
}

impl Throttle {
    pub fn new(free: u32, base: Duration, max: Duration) -> Throttle {
        Throttle {
            free,
            base,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// When the next attempt for any of `keys` is allowed, if that is in the future.
    pub fn blocked_until(&self, keys: &[String], now: OffsetDateTime) -> Option<OffsetDateTime> {
        let entries = self.entries.lock().ok()?;
        keys.iter()
            .filter_map(|k| entries.get(k))
            .filter_map(|(failures, last)| self.delay(*failures).map(|d| *last + d))
            .filter(|until| *until > now)
            .max()
    }

    pub fn fail(&self, keys: &[String], now: OffsetDateTime) {
        if let Ok(mut entries) = self.entries.lock() {
            // Forget stale entries so the map cannot grow without bound.
            let horizon = self.max * 4;
            entries.retain(|_, (_, last)| now - *last < horizon);
            for k in keys {
                let e = entries.entry(k.clone()).or_insert((0, now));
                e.0 = e.0.saturating_add(1);
                e.1 = now;
            }
        }
    }

    pub fn succeed(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    fn delay(&self, failures: u32) -> Option<Duration> {
        let extra = failures.checked_sub(self.free)?;
        let factor = 2i32.saturating_pow(extra.min(20));
        Some((self.base * factor).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip_and_wrong_password() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery!"));
        assert!(!verify_password(dummy_hash(), "anything at all"));
    }

    #[test]
    fn registrar_scope_limits_domains_and_organisations() {
        let known = Known {
            domains: &["direct.example.com".into(), "other.example.org".into()],
            organisations: &["good-clinic".into(), "bad-clinic".into()],
            bundles: &["provider".into()],
        };
        let scope = Scope {
            domains: vec!["Direct.Example.com".into()],
            organisations: vec!["Good-Clinic".into()],
            bundles: vec![],
        }
        .validate(Role::Registrar, &known)
        .unwrap();
        let p = Principal {
            scope: scope.effective(Role::Registrar),
            ..Principal::operator("r")
        };
        let p = Principal {
            role: Role::Registrar,
            ..p
        };
        let binding = |org: &str| HolderBinding {
            record_version: 1,
            holder: "a@direct.example.com".into(),
            organisation: org.into(),
            bound_at: OffsetDateTime::UNIX_EPOCH,
            bound_by: "t".into(),
            conflicting_names: vec![],
        };
        assert!(p.sees_holder("direct.example.com", Some(&binding("good-clinic"))));
        assert!(!p.sees_holder("direct.example.com", Some(&binding("bad-clinic"))));
        assert!(!p.sees_holder("other.example.org", Some(&binding("good-clinic"))));
        assert!(!p.sees_holder("direct.example.com", None));
        let mut unresolved = binding("good-clinic");
        unresolved.conflicting_names = vec!["Good Clinic".into(), "Bad Clinic".into()];
        assert!(!p.sees_holder("direct.example.com", Some(&unresolved)));
        assert!(Principal::operator("x").sees_holder("direct.example.com", Some(&unresolved)));
        assert!(p.may_issue_in("other.example.org").is_err());
        // No silent '*', and names must exist.
        assert!(Scope::default().validate(Role::Registrar, &known).is_err());
        assert!(Scope::default().validate(Role::Member, &known).is_err());
        for bad in [
            Scope {
                domains: vec!["elsewhere.example.org".into()],
                ..Scope::default()
            },
            Scope {
                organisations: vec!["no-such-org".into()],
                ..Scope::default()
            },
            Scope {
                domains: vec!["*".into()],
                bundles: vec!["nope".into()],
                ..Scope::default()
            },
        ] {
            assert!(bad.validate(Role::Registrar, &known).is_err());
        }
        // Organisations only: every domain, but only their holders.
        let orgs_only = Scope {
            organisations: vec!["good-clinic".into()],
            ..Scope::default()
        }
        .validate(Role::Registrar, &known)
        .unwrap()
        .effective(Role::Registrar);
        assert!(orgs_only.domains.is_any());
        // Intersection of a token's scope with its owner's.
        let token = Scope {
            domains: vec!["*".into()],
            ..Scope::default()
        }
        .effective(Role::Registrar);
        let owner = Scope {
            domains: vec!["other.example.org".into()],
            organisations: vec!["bad-clinic".into()],
            ..Scope::default()
        }
        .effective(Role::Registrar);
        let both = token.intersect(&owner);
        assert!(
            both.domains.allows("other.example.org") && !both.domains.allows("direct.example.com")
        );
        assert_eq!(both.organisations.single(), Some("bad-clinic"));
        let disjoint =
            Limit::Only(["a".to_string()].into()).intersect(&Limit::Only(["b".to_string()].into()));
        assert!(!disjoint.allows("a") && !disjoint.allows("b"));
    }

    #[test]
    fn throttle_blocks_after_free_failures_and_doubles() {
        let t = Throttle::new(3, Duration::seconds(10), Duration::seconds(300));
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        let keys = vec!["user:a".to_string(), "client:1.2.3.4".to_string()];
        for _ in 0..3 {
            assert!(t.blocked_until(&keys, now).is_none());
            t.fail(&keys, now);
        }
        assert_eq!(
            t.blocked_until(&keys, now),
            Some(now + Duration::seconds(10))
        );
        t.fail(&keys, now);
        assert_eq!(
            t.blocked_until(&keys, now),
            Some(now + Duration::seconds(20))
        );
        assert!(t
            .blocked_until(&keys, now + Duration::seconds(21))
            .is_none());
        t.succeed("user:a");
        // The client address stays throttled after a success on the account.
        assert!(t.blocked_until(&keys, now).is_some());
        assert!(t.blocked_until(&keys[..1], now).is_none());
    }
}
