//! The issuance rules: a raw request from the CLI, the API or the web form becomes either an
//! `Approved` plan (holder, profile, keys, policy OIDs) or a `Denial` naming every failed rule.
//! The only outside fact it needs - who already holds a DNS owner name - is passed in.

use super::profile::{CertProfile, GeneratedKey, Profiles};
use super::{Denial, Reasons};
pub use crate::model::issuance::{Proofing, Subscriber};
use crate::model::{Binding, CertUsage, DirectAddress, HealthDomain, Holder, Usage};
use crate::x509::{self, CsrKey, KeyInfo};

/// Where the subscriber keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// PKCS#10 requests (PEM or DER): one, or two for a pair (signing, encryption).
    Csr {
        signing: Vec<u8>,
        encryption: Option<Vec<u8>>,
    },
    /// The server generates the key(s) and returns them in PKCS#12 files.
    Generate,
}

/// A request as it arrives, before any check.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub address: Option<String>,
    pub domain: Option<String>,
    pub usage: String,
    /// Profile name; derived from the binding when absent.
    pub profile: Option<String>,
    /// Category key of the profile (e.g. `covered-entity`); the profile default when absent.
    pub category: Option<String>,
    pub key: KeySource,
    pub subscriber: Subscriber,
    /// The organisation id the holder belongs to (needed only for a holder's first
    /// certificate; later ones take it from the binding).
    pub organisation: Option<String>,
    pub registrar: String,
    pub proofing: Proofing,
}

/// A key for one certificate of the plan.
#[derive(Debug, Clone)]
pub enum PlannedKey {
    FromCsr(CsrKey),
    Generate(GeneratedKey),
}

#[derive(Debug, Clone)]
pub struct PlannedCert {
    pub usage: CertUsage,
    pub key: PlannedKey,
}

/// A request that passed every rule. Only `policy::issuance::check` makes one.
#[derive(Debug, Clone)]
pub struct Approved {
    pub holder: Holder,
    pub usage: Usage,
    pub profile: CertProfile,
    pub certs: Vec<PlannedCert>,
    pub policy_oids: Vec<String>,
    pub level_of_assurance: String,
    pub category: String,
    pub subscriber: Subscriber,
    pub registrar: String,
    pub proofing: Proofing,
}

/// What the rules need to know about the world.
pub struct Context<'a> {
    pub profiles: &'a Profiles,
    pub managed_domains: &'a [HealthDomain],
    /// Returns the holder already published under a DNS owner name, if any.
    pub owner_of: &'a dyn Fn(&str) -> Option<String>,
    /// Returns the holder a public key (SubjectPublicKeyInfo DER) was certified for, if any.
    pub key_holder_of: &'a dyn Fn(&[u8]) -> Option<String>,
}

/// Checks a request against every rule and returns the plan or all failed rules.
pub fn check(req: &IssueRequest, ctx: &Context<'_>) -> Result<Approved, Denial> {
    let mut r = Reasons::default();
    let holder = check_holder(req, ctx, &mut r);
    let usage = Usage::parse(req.usage.trim());
    if usage.is_none() {
        r.add(
            "usage_unknown",
            "usage",
            format!(
                "usage '{}' is unknown; use dual, signing, encryption or pair",
                req.usage
            ),
        );
    }
    let profile = check_profile(req, holder.as_ref().map(Holder::binding), ctx, &mut r);
    if let (Some(p), Some(u)) = (profile, usage) {
        if !p.usages.contains(&u) {
            r.add(
                "usage_not_allowed",
                "usage",
                format!("profile '{}' does not offer usage '{u}'", p.name),
            );
        }
    }
    let oids = profile.and_then(|p| check_policy_choices(req, p, &mut r));
    check_record(req, &mut r);
    let certs = match (profile, usage) {
        (Some(p), Some(u)) => check_keys(&req.key, u, p, &mut r),
        _ => {
            if let KeySource::Csr {
                signing,
                encryption,
            } = &req.key
            {
                // Still report CSR problems so the caller sees everything at once.
                for (field, csr) in [
                    ("csr", Some(signing)),
                    ("encryption_csr", encryption.as_ref()),
                ] {
                    if let Some(csr) = csr {
                        for e in x509::parse_csr(csr).err().unwrap_or_default() {
                            r.add(e.code, field, e.message);
                        }
                    }
                }
            }
            None
        }
    };
    if let (Some(certs), Some(holder), Some(p)) = (&certs, &holder, profile) {
        check_key_reuse(certs, holder, p, ctx, &mut r);
    }
    r.into_result(|| {
        let (oids, loa, category) = oids?;
        Some(Approved {
            holder: holder?,
            usage: usage?,
            profile: profile?.clone(),
            certs: certs?,
            policy_oids: oids,
            level_of_assurance: loa,
            category,
            subscriber: Subscriber {
                name: req.subscriber.name.trim().to_string(),
                organization: req
                    .subscriber
                    .organization
                    .as_ref()
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty()),
            },
            registrar: req.registrar.clone(),
            proofing: req.proofing.clone(),
        })
    })
}

fn check_holder(req: &IssueRequest, ctx: &Context<'_>, r: &mut Reasons) -> Option<Holder> {
    let holder = match (&req.address, &req.domain) {
        (Some(_), Some(_)) => {
            r.add(
                "holder_ambiguous",
                "address",
                "give either an address (address-bound) or a domain (domain-bound), not both",
            );
            return None;
        }
        (None, None) => {
            r.add(
                "holder_missing",
                "address",
                "give the Direct address or the health domain the certificate is for",
            );
            return None;
        }
        (Some(a), None) => match DirectAddress::parse(a) {
            Ok(a) => Holder::Address(a),
            Err(e) => {
                r.add("address_malformed", "address", e);
                return None;
            }
        },
        (None, Some(d)) => match HealthDomain::parse(d) {
            Ok(d) => Holder::Domain(d),
            Err(e) => {
                r.add("domain_malformed", "domain", e);
                return None;
            }
        },
    };
    let field = match holder.binding() {
        Binding::Address => "address",
        Binding::Domain => "domain",
    };
    if !ctx.managed_domains.contains(holder.domain()) {
        let managed: Vec<&str> = ctx.managed_domains.iter().map(|d| d.as_str()).collect();
        r.add(
            "domain_not_managed",
            field,
            format!(
                "'{}' is not a health domain managed by this CA (managed: {})",
                holder.domain(),
                if managed.is_empty() {
                    "none".to_string()
                } else {
                    managed.join(", ")
                }
            ),
        );
    }
    let owner = holder.dns_owner();
    if let Some(existing) = (ctx.owner_of)(&owner) {
        if existing != holder.to_string() {
            r.add(
                "owner_name_collision",
                field,
                format!(
                    "'{holder}' would be published under the DNS owner name '{owner}.', which already belongs to '{existing}'"
                ),
            );
        }
    }
    Some(holder)
}

/// One key, one holder: a key certified for another holder is refused unless the profile
/// allows reuse (a stolen CSR cannot make a second holder's certificate).
fn check_key_reuse(
    certs: &[PlannedCert],
    holder: &Holder,
    p: &CertProfile,
    ctx: &Context<'_>,
    r: &mut Reasons,
) {
    if p.allow_key_reuse {
        return;
    }
    let holder = holder.to_string();
    for (i, planned) in certs.iter().enumerate() {
        if let PlannedKey::FromCsr(csr) = &planned.key {
            if let Some(other) = (ctx.key_holder_of)(&csr.spki_der) {
                if other != holder {
                    r.add(
                        "key_reused",
                        if i == 0 { "csr" } else { "encryption_csr" },
                        format!(
                            "this public key is already certified for '{other}'; each holder \
                             needs its own key pair"
                        ),
                    );
                }
            }
        }
    }
}

fn check_profile<'p>(
    req: &IssueRequest,
    binding: Option<Binding>,
    ctx: &Context<'p>,
    r: &mut Reasons,
) -> Option<&'p CertProfile> {
    match (&req.profile, binding) {
        (Some(name), _) => {
            let Some(p) = ctx.profiles.by_name(name.trim()) else {
                r.add(
                    "profile_unknown",
                    "profile",
                    format!("profile '{name}' is unknown; use 'address' or 'domain'"),
                );
                return None;
            };
            match (p.binding(), binding) {
                (None, _) => {
                    r.add(
                        "profile_not_for_subscribers",
                        "profile",
                        format!("profile '{name}' is reserved for the service itself"),
                    );
                    None
                }
                (Some(pb), Some(b)) if pb != b => {
                    r.add(
                        "profile_binding_mismatch",
                        "profile",
                        format!(
                            "profile '{name}' issues {}-bound certificates, but a {} was given",
                            pb.as_str(),
                            b.as_str()
                        ),
                    );
                    None
                }
                _ => Some(p),
            }
        }
        (None, Some(b)) => Some(ctx.profiles.for_binding(b)),
        (None, None) => None,
    }
}

/// Returns (policy OIDs, level key, category key).
fn check_policy_choices(
    req: &IssueRequest,
    p: &CertProfile,
    r: &mut Reasons,
) -> Option<(Vec<String>, String, String)> {
    let oids = p.policies.as_ref()?;
    let loa = req
        .proofing
        .level_of_assurance
        .clone()
        .unwrap_or_else(|| oids.default_level_of_assurance.clone());
    let category = req
        .category
        .clone()
        .unwrap_or_else(|| oids.default_category.clone());
    let loa_oid = oids.levels_of_assurance.get(&loa);
    let cat_oid = oids.categories.get(&category);
    if loa_oid.is_none() {
        let known: Vec<&str> = oids
            .levels_of_assurance
            .keys()
            .map(String::as_str)
            .collect();
        r.add(
            "level_of_assurance_unknown",
            "level_of_assurance",
            format!(
                "level of assurance '{loa}' is not offered by profile '{}' ({})",
                p.name,
                known.join(", ")
            ),
        );
    }
    if cat_oid.is_none() {
        let known: Vec<&str> = oids.categories.keys().map(String::as_str).collect();
        r.add(
            "category_unknown",
            "category",
            format!(
                "category '{category}' is not offered by profile '{}' ({})",
                p.name,
                known.join(", ")
            ),
        );
    }
    Some((
        vec![
            oids.certificate_policy.clone(),
            loa_oid?.clone(),
            cat_oid?.clone(),
        ],
        loa,
        category,
    ))
}

fn check_record(req: &IssueRequest, r: &mut Reasons) {
    if req.subscriber.name.trim().is_empty() {
        r.add(
            "subscriber_missing",
            "subscriber_name",
            "the subscriber (organisation or person name) is required",
        );
    }
    if req.registrar.trim().is_empty() {
        r.add(
            "registrar_missing",
            "registrar",
            "the registrar is required",
        );
    }
    if req.proofing.method.trim().is_empty() {
        r.add(
            "proofing_missing",
            "proofing_method",
            "the identity-proofing method is required",
        );
    }
    if req.proofing.evidence_reference.trim().is_empty() {
        r.add(
            "proofing_evidence_missing",
            "evidence_reference",
            "a reference to the identity-proofing evidence is required (no health data)",
        );
    }
    let long = [
        ("subscriber_name", req.subscriber.name.as_str()),
        ("proofing_method", req.proofing.method.as_str()),
        (
            "evidence_reference",
            req.proofing.evidence_reference.as_str(),
        ),
    ];
    for (field, value) in long {
        if value.len() > 256 || value.chars().any(char::is_control) {
            r.add(
                "field_invalid",
                field,
                format!("{field} must be at most 256 printable characters"),
            );
        }
    }
}

fn check_keys(
    key: &KeySource,
    usage: Usage,
    p: &CertProfile,
    r: &mut Reasons,
) -> Option<Vec<PlannedCert>> {
    let wanted = usage.certificate_usages();
    match key {
        KeySource::Generate => Some(
            wanted
                .iter()
                .map(|u| PlannedCert {
                    usage: *u,
                    key: PlannedKey::Generate(p.keys.generate),
                })
                .collect(),
        ),
        KeySource::Csr {
            signing,
            encryption,
        } => {
            let csrs: Vec<(&'static str, &Vec<u8>)> = match (usage, encryption) {
                (Usage::Pair, Some(enc)) => vec![("csr", signing), ("encryption_csr", enc)],
                (Usage::Pair, None) => {
                    r.add(
                        "pair_needs_two_keys",
                        "encryption_csr",
                        "a pair needs two CSRs (signing and encryption) or a server-generated key",
                    );
                    vec![("csr", signing)]
                }
                (_, Some(_)) => {
                    r.add(
                        "encryption_csr_unexpected",
                        "encryption_csr",
                        "a second CSR is only used with usage 'pair'",
                    );
                    vec![("csr", signing)]
                }
                (_, None) => vec![("csr", signing)],
            };
            let mut keys = Vec::new();
            for (field, csr) in csrs {
                match x509::parse_csr(csr) {
                    Ok(k) => {
                        check_key_strength(&k.key, p, field, r);
                        keys.push(k);
                    }
                    Err(problems) => {
                        for e in problems {
                            let message = if e.code == "key_type_unsupported" {
                                format!(
                                    "{}; profile '{}' accepts {}",
                                    e.message,
                                    p.name,
                                    allowed_text(p)
                                )
                            } else {
                                e.message
                            };
                            r.add(e.code, field, message);
                        }
                    }
                }
            }
            if let [a, b] = keys.as_slice() {
                if a.spki_der == b.spki_der {
                    r.add(
                        "pair_same_key",
                        "encryption_csr",
                        "the signing and encryption certificates of a pair need different keys",
                    );
                }
            }
            if keys.len() != wanted.len() {
                return None;
            }
            for (usage, key) in wanted.iter().zip(&keys) {
                check_key_fits_usage(&key.key, *usage, p, r);
            }
            Some(
                wanted
                    .iter()
                    .zip(keys)
                    .map(|(u, k)| PlannedCert {
                        usage: *u,
                        key: PlannedKey::FromCsr(k),
                    })
                    .collect(),
            )
        }
    }
}

/// RFC 8813 forbids keyEncipherment for EC keys, and Direct STAs encrypt with RSA only, so a
/// certificate that encrypts needs an RSA key.
fn check_key_fits_usage(key: &KeyInfo, usage: CertUsage, p: &CertProfile, r: &mut Reasons) {
    let encrypts = matches!(usage, CertUsage::Dual | CertUsage::Encryption);
    // A key type the profile refuses outright is already reported by check_key_strength.
    let allowed_ec = key
        .kind
        .is_some_and(|k| k != super::profile::KeyKind::Rsa && p.keys.allowed.contains(&k));
    if encrypts && allowed_ec {
        let field = if usage == CertUsage::Encryption {
            "encryption_csr"
        } else {
            "csr"
        };
        r.add(
            "key_type_not_for_usage",
            field,
            format!(
                "a {} certificate encrypts, which needs an RSA key; {} keys can sign only (ask for usage 'signing', or a pair with an RSA encryption key)",
                usage.as_str(),
                key.description
            ),
        );
    }
}

fn check_key_strength(key: &KeyInfo, p: &CertProfile, field: &'static str, r: &mut Reasons) {
    let Some(kind) = key.kind.filter(|k| p.keys.allowed.contains(k)) else {
        r.add(
            "key_type_unsupported",
            field,
            format!(
                "the CSR key is {}; profile '{}' accepts {}",
                key.description,
                p.name,
                allowed_text(p)
            ),
        );
        return;
    };
    if kind == super::profile::KeyKind::Rsa {
        let bits = key.bits as u32;
        if bits < p.keys.min_rsa_bits {
            r.add(
                "key_too_weak",
                field,
                format!(
                    "the CSR key is RSA-{bits}; at least RSA-{} is required",
                    p.keys.min_rsa_bits
                ),
            );
        } else if bits > p.keys.max_rsa_bits {
            r.add(
                "key_too_large",
                field,
                format!(
                    "the CSR key is RSA-{bits}; at most RSA-{} is accepted",
                    p.keys.max_rsa_bits
                ),
            );
        }
        if key.rsa_exponent.is_none_or(|e| e < 65537 || e % 2 == 0) {
            r.add(
                "key_exponent_weak",
                field,
                "the RSA public exponent must be odd and at least 65537",
            );
        }
    }
}

fn allowed_text(p: &CertProfile) -> String {
    p.keys
        .allowed
        .iter()
        .map(|k| match k {
            super::profile::KeyKind::Rsa => {
                format!("RSA {}-{}", p.keys.min_rsa_bits, p.keys.max_rsa_bits)
            }
            super::profile::KeyKind::P256 => "ECDSA P-256".to_string(),
            super::profile::KeyKind::P384 => "ECDSA P-384".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["ignored.example".to_string()]).unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    fn request(address: &str, usage: &str, key: KeySource) -> IssueRequest {
        IssueRequest {
            address: Some(address.into()),
            domain: None,
            usage: usage.into(),
            profile: None,
            category: None,
            key,
            subscriber: Subscriber {
                name: "Jones Clinic".into(),
                organization: None,
            },
            organisation: None,
            registrar: "ra".into(),
            proofing: Proofing {
                method: "in-person".into(),
                level_of_assurance: None,
                evidence_reference: "case-1".into(),
            },
        }
    }

    fn run(req: &IssueRequest, taken: Option<(&str, &str)>) -> Result<Approved, Denial> {
        let profiles = Profiles::load(None).unwrap();
        let managed = vec![
            HealthDomain::parse("direct.example.com").unwrap(),
            HealthDomain::parse("b.direct.example.com").unwrap(),
        ];
        let owner_of = move |o: &str| {
            taken
                .filter(|(owner, _)| *owner == o)
                .map(|(_, holder)| holder.to_string())
        };
        check(
            req,
            &Context {
                profiles: &profiles,
                managed_domains: &managed,
                owner_of: &owner_of,
                key_holder_of: &|_| None,
            },
        )
    }

    #[test]
    fn approves_and_plans() {
        let p256 = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ok = run(
            &request(
                "Jones@Direct.Example.com",
                "signing",
                KeySource::Csr {
                    signing: p256.clone(),
                    encryption: None,
                },
            ),
            None,
        )
        .unwrap();
        assert_eq!(ok.holder.to_string(), "jones@direct.example.com");
        assert_eq!(ok.certs.len(), 1);
        assert_eq!(
            ok.policy_oids,
            vec![
                "1.3.6.1.4.1.41179.0.1.3",
                "1.3.6.1.4.1.41179.1.3",
                "1.3.6.1.4.1.41179.2.1"
            ]
        );
        let pair = run(
            &request("a@direct.example.com", "pair", KeySource::Generate),
            None,
        )
        .unwrap();
        let usages: Vec<CertUsage> = pair.certs.iter().map(|c| c.usage).collect();
        assert_eq!(usages, vec![CertUsage::Signing, CertUsage::Encryption]);
        // Renewal for the same holder is not a collision.
        assert!(run(
            &request("a.b@direct.example.com", "dual", KeySource::Generate),
            Some(("a.b.direct.example.com", "a.b@direct.example.com"))
        )
        .is_ok());
    }

    #[test]
    fn refusals_list_every_rule() {
        let p256 = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let p384 = csr(&rcgen::PKCS_ECDSA_P384_SHA384);
        let with_csr = |c: &Vec<u8>| KeySource::Csr {
            signing: c.clone(),
            encryption: None,
        };
        type Case<'a> = (
            &'a str,
            IssueRequest,
            Option<(&'a str, &'a str)>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "fail/malformed-address",
                request("a..b@direct.example.com", "dual", KeySource::Generate),
                None,
                vec!["address_malformed"],
            ),
            (
                "fail/unmanaged",
                request("a@other.example", "dual", KeySource::Generate),
                None,
                vec!["domain_not_managed"],
            ),
            (
                "fail/owner-collision",
                request("a@b.direct.example.com", "dual", KeySource::Generate),
                Some(("a.b.direct.example.com", "a.b@direct.example.com")),
                vec!["owner_name_collision"],
            ),
            (
                "fail/p384",
                request("a@direct.example.com", "dual", with_csr(&p384)),
                None,
                vec!["key_type_unsupported"],
            ),
            (
                "fail/usage",
                request("a@direct.example.com", "both", with_csr(&p256)),
                None,
                vec!["usage_unknown"],
            ),
            (
                "fail/pair-one-csr",
                request("a@direct.example.com", "pair", with_csr(&p256)),
                None,
                vec!["pair_needs_two_keys"],
            ),
            (
                "fail/pair-same-key",
                request(
                    "a@direct.example.com",
                    "pair",
                    KeySource::Csr {
                        signing: p256.clone(),
                        encryption: Some(p256.clone()),
                    },
                ),
                None,
                vec!["pair_same_key", "key_type_not_for_usage"],
            ),
            (
                "fail/many",
                {
                    let mut r = request(
                        "a@other.example",
                        "both",
                        KeySource::Csr {
                            signing: b"junk".to_vec(),
                            encryption: None,
                        },
                    );
                    r.subscriber.name = " ".into();
                    r.proofing.evidence_reference = String::new();
                    r
                },
                None,
                vec![
                    "domain_not_managed",
                    "usage_unknown",
                    "subscriber_missing",
                    "proofing_evidence_missing",
                    "csr_malformed",
                ],
            ),
        ];
        for (name, req, taken, want) in cases {
            let denial = run(&req, taken).expect_err(name);
            assert_eq!(denial.codes(), want, "{name}");
        }
        let mut unknown_profile = request("a@direct.example.com", "dual", KeySource::Generate);
        unknown_profile.profile = Some("nope".into());
        assert_eq!(
            run(&unknown_profile, None).unwrap_err().codes(),
            vec!["profile_unknown"]
        );
        let mut wrong_binding = request("a@direct.example.com", "dual", KeySource::Generate);
        wrong_binding.profile = Some("domain".into());
        assert_eq!(
            run(&wrong_binding, None).unwrap_err().codes(),
            vec!["profile_binding_mismatch"]
        );
        let mut signer = request("a@direct.example.com", "dual", KeySource::Generate);
        signer.profile = Some("bundle-signer".into());
        assert_eq!(
            run(&signer, None).unwrap_err().codes(),
            vec!["profile_not_for_subscribers"]
        );
    }
}
