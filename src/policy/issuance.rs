//! The issuance rules: a raw request from the CLI, the API or the web form becomes either an
//! `Approved` plan (holder, profile, keys, policy OIDs) or a `Denial` naming every failed rule.
//! The only outside fact it needs - who already holds a DNS owner name - is passed in.
//! The key rules (CSRs, generated keys, strength, reuse) are in `keys`.

use super::profile::{CertProfile, GeneratedKey, Profiles};
use super::{Denial, Reasons};
pub use crate::model::issuance::{Proofing, Subscriber};
use crate::model::{Binding, CertUsage, DirectAddress, HealthDomain, Holder, Usage};
use crate::x509::{self, CsrKey};

mod keys;

use keys::{check_key_reuse, check_keys};

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

/// A request that passed every rule. Only `policy::issuance::check` makes one: the fields are
/// private, so the CA can only be handed a plan the rules approved.
#[derive(Debug, Clone)]
pub struct Approved {
    holder: Holder,
    usage: Usage,
    profile: CertProfile,
    certs: Vec<PlannedCert>,
    policy_oids: Vec<String>,
    level_of_assurance: String,
    category: String,
    subscriber: Subscriber,
    registrar: String,
    proofing: Proofing,
}

impl Approved {
    pub fn holder(&self) -> &Holder {
        &self.holder
    }
    /// What the registrar asked for (a pair plans two certificates).
    pub fn usage(&self) -> Usage {
        self.usage
    }
    pub fn profile(&self) -> &CertProfile {
        &self.profile
    }
    /// One planned certificate per usage, each with its key.
    pub fn certs(&self) -> &[PlannedCert] {
        &self.certs
    }
    pub fn policy_oids(&self) -> &[String] {
        &self.policy_oids
    }
    pub fn level_of_assurance(&self) -> &str {
        &self.level_of_assurance
    }
    pub fn category(&self) -> &str {
        &self.category
    }
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }
    pub fn registrar(&self) -> &str {
        &self.registrar
    }
    pub fn proofing(&self) -> &Proofing {
        &self.proofing
    }

    /// The plan with the subject's organisation set to the holder's owning organisation, as
    /// its record says (decided by ownership, after the rules).
    pub fn for_organisation(mut self, name: &str) -> Approved {
        self.subscriber.organization = Some(name.to_string());
        self
    }
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
                r.add("address_malformed", "address", e.to_string());
                return None;
            }
        },
        (None, Some(d)) => match HealthDomain::parse(d) {
            Ok(d) => Holder::Domain(d),
            Err(e) => {
                r.add("domain_malformed", "domain", e.to_string());
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
