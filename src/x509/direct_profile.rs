//! The Direct profile lint (spec §2) for end-entity certificates: run on the sample
//! certificates of a member's anchor to show that its CA issues what Direct relying parties
//! accept. A lint, not a parser: it returns every problem as (stable code, sentence).

use x509_parser::prelude::*;

use super::key::key_info;
use super::signature::signature_info;
use crate::model::KeyKind;

/// The longest validity [`direct_profile_problems`] accepts: three calendar years, which span
/// 1096 days when they include a 29 February (anchorage itself issues at most 1095).
pub const DIRECT_MAX_VALIDITY_DAYS: i64 = 1096;

/// Lints an end-entity certificate against the Direct profile (spec §2): exactly one SAN that
/// is the address (rfc822Name) or the domain (dNSName), keyUsage, emailProtection, not a CA,
/// a current validity of at most three years, an http CRL distribution point and caIssuers,
/// SHA-256 or stronger, an RSA-2048+ or P-256 key, CN, key identifiers. Returns every problem as
/// (stable code, sentence); empty means conforming. Used on the sample certificates of a
/// member's anchor, to show that the CA issues what Direct relying parties accept.
pub fn direct_profile_problems(
    der: &[u8],
    now: ::time::OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        _ => {
            out.push(("unreadable", "it is not a DER X.509 certificate".into()));
            return out;
        }
    };
    if cert.version() != X509Version::V3 {
        out.push(("not_v3", "it is not an X.509 v3 certificate".into()));
    }
    if cert.subject().iter_common_name().next().is_none() {
        out.push((
            "subject_cn_missing",
            "its subject has no common name (CN)".into(),
        ));
    }
    lint_subject_alt_name(&cert, &mut out);
    lint_usages(&cert, &mut out);
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before {
        out.push((
            "not_yet_valid",
            format!("it is not valid before {}", not_before.date()),
        ));
    }
    if now > not_after {
        out.push(("expired", format!("it expired on {}", not_after.date())));
    }
    let days = (not_after - not_before).whole_days();
    if days > DIRECT_MAX_VALIDITY_DAYS {
        out.push((
            "validity_too_long",
            format!("it is valid for {days} days; Direct allows at most 3 years ({DIRECT_MAX_VALIDITY_DAYS} days)"),
        ));
    }
    lint_locations(&cert, &mut out);
    let signature = signature_info(&cert.signature_algorithm);
    if signature.algorithm.is_none() {
        out.push((
            "signature_algorithm_weak",
            format!(
                "it is signed with {}; Direct requires SHA-256 or stronger with RSA or ECDSA",
                signature.description
            ),
        ));
    }
    let key = key_info(cert.public_key());
    let key_ok = match key.kind {
        Some(KeyKind::Rsa) => key.bits >= 2048,
        Some(KeyKind::P256) => true,
        _ => false,
    };
    if !key_ok {
        out.push((
            "key_unsupported",
            format!(
                "its key is {}; Direct requires RSA of at least 2048 bits or ECDSA P-256",
                key.description
            ),
        ));
    }
    let has =
        |oid: &x509_parser::oid_registry::Oid<'_>| cert.iter_extensions().any(|e| &e.oid == oid);
    if !has(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        || !has(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
    {
        out.push((
            "key_identifier_missing",
            "it lacks the subjectKeyIdentifier or authorityKeyIdentifier extension".into(),
        ));
    }
    out
}

fn lint_subject_alt_name(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => &san.value.general_names,
        Ok(None) => {
            out.push((
                "san_missing",
                "it has no subjectAltName; Direct requires the address (rfc822Name) or the domain (dNSName)".into(),
            ));
            return;
        }
        Err(_) => {
            out.push((
                "san_malformed",
                "its subjectAltName is malformed or repeated".into(),
            ));
            return;
        }
    };
    let [name] = names.as_slice() else {
        out.push((
            "san_not_single",
            format!(
                "its subjectAltName has {} entries; Direct requires exactly one (the address or the domain)",
                names.len()
            ),
        ));
        return;
    };
    let value = match name {
        GeneralName::RFC822Name(v) | GeneralName::DNSName(v) => *v,
        other => {
            out.push((
                "san_type",
                format!("its subjectAltName entry {other} is neither an rfc822Name nor a dNSName"),
            ));
            return;
        }
    };
    if value.contains('*') {
        out.push((
            "san_wildcard",
            format!("its subjectAltName '{value}' is a wildcard"),
        ));
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        out.push((
            "san_not_lower_case",
            format!("its subjectAltName '{value}' is not lower-case"),
        ));
    }
}

fn lint_usages(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    match cert.key_usage() {
        Ok(Some(ku)) => {
            if !(ku.value.digital_signature() || ku.value.key_encipherment()) {
                out.push((
                    "key_usage_wrong",
                    format!(
                        "its keyUsage ({}) has neither digitalSignature nor keyEncipherment",
                        ku.value
                    ),
                ));
            }
            if !ku.critical {
                out.push((
                    "key_usage_not_critical",
                    "its keyUsage is not marked critical".into(),
                ));
            }
        }
        Ok(None) => out.push(("key_usage_missing", "it has no keyUsage extension".into())),
        Err(_) => out.push((
            "key_usage_missing",
            "its keyUsage is malformed or repeated".into(),
        )),
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.email_protection => {}
        _ => out.push((
            "eku_email_protection_missing",
            "its extKeyUsage does not include emailProtection (1.3.6.1.5.5.7.3.4)".into(),
        )),
    }
    if !matches!(
        cert.basic_constraints(),
        Ok(None)
            | Ok(Some(BasicExtension {
                value: BasicConstraints { ca: false, .. },
                ..
            }))
    ) {
        out.push((
            "is_ca",
            "it is a CA certificate (basicConstraints CA:TRUE), not an end-entity certificate"
                .into(),
        ));
    }
}

/// The plain-http locations relying parties fetch: CRL distribution point and caIssuers.
fn lint_locations(cert: &X509Certificate<'_>, out: &mut Vec<(&'static str, String)>) {
    let is_http = |name: &GeneralName<'_>| matches!(name, GeneralName::URI(uri) if uri.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")));
    let mut crl = false;
    let mut ca_issuers = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                crl |= points.iter().any(|p| {
                    matches!(&p.distribution_point, Some(DistributionPointName::FullName(names)) if names.iter().any(is_http))
                });
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                ca_issuers |= aia.iter().any(|d| {
                    d.access_method
                        == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                        && is_http(&d.access_location)
                });
            }
            _ => {}
        }
    }
    if !crl {
        out.push((
            "crl_distribution_point_missing",
            "it has no http:// URI in cRLDistributionPoints, so relying parties cannot check revocation".into(),
        ));
    }
    if !ca_issuers {
        out.push((
            "ca_issuers_missing",
            "it has no http:// caIssuers URI in authorityInfoAccess, so relying parties cannot fetch the issuer".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::ca_issuers_der;

    /// A Direct end-entity certificate (spec §2), changed by `edit`; self-signed, since the
    /// lint does not look at the issuer.
    fn direct_cert(
        alg: &'static rcgen::SignatureAlgorithm,
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Vec<u8> {
        use rcgen::{
            CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
        };
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "direct.example.com");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName("direct.example.com".try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://ca.example.com/crl/issuing.crl".into()],
        }];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            ca_issuers_der("http://ca.example.com/ca/issuing.cer").unwrap(),
        )];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - ::time::Duration::days(1);
        params.not_after = now + ::time::Duration::days(825);
        edit(&mut params);
        let key = KeyPair::generate_for(alg).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn direct_profile_lint() {
        use rcgen::{BasicConstraints, IsCa, KeyUsagePurpose, SanType};
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let days = ::time::Duration::days;
        let email = |s: &str| SanType::Rfc822Name(s.try_into().unwrap());
        type Edit = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;
        let cases: Vec<(&str, Edit, &[&str])> = vec![
            ("ok/domain", Box::new(|_| {}), &[]),
            (
                "ok/address",
                Box::new(move |p| p.subject_alt_names = vec![email("a@d.example")]),
                &[],
            ),
            (
                "ok/1096-days",
                Box::new(move |p| p.not_after = p.not_before + days(1096)),
                &[],
            ),
            (
                "fail/no-san",
                Box::new(|p| p.subject_alt_names.clear()),
                &["san_missing"],
            ),
            (
                "fail/two-sans",
                Box::new(move |p| p.subject_alt_names.push(email("a@d.example"))),
                &["san_not_single"],
            ),
            (
                "fail/uri-san",
                Box::new(|p| {
                    p.subject_alt_names = vec![SanType::URI("http://x.example".try_into().unwrap())]
                }),
                &["san_type"],
            ),
            (
                "fail/upper-case",
                Box::new(move |p| p.subject_alt_names = vec![email("A@d.example")]),
                &["san_not_lower_case"],
            ),
            (
                "fail/wildcard",
                Box::new(|p| {
                    p.subject_alt_names = vec![SanType::DnsName("*.d.example".try_into().unwrap())]
                }),
                &["san_wildcard"],
            ),
            (
                "fail/no-cn",
                Box::new(|p| p.distinguished_name = rcgen::DistinguishedName::new()),
                &["subject_cn_missing"],
            ),
            (
                "fail/no-key-usage",
                Box::new(|p| p.key_usages.clear()),
                &["key_usage_missing"],
            ),
            (
                "fail/key-usage-cert-sign",
                Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign]),
                &["key_usage_wrong"],
            ),
            (
                "fail/no-eku",
                Box::new(|p| p.extended_key_usages.clear()),
                &["eku_email_protection_missing"],
            ),
            (
                "fail/ca",
                Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
                &["is_ca"],
            ),
            (
                "fail/expired",
                Box::new(move |p| {
                    p.not_before = now - days(400);
                    p.not_after = now - days(1);
                }),
                &["expired"],
            ),
            (
                "fail/not-yet-valid",
                Box::new(move |p| p.not_before = now + days(1)),
                &["not_yet_valid"],
            ),
            (
                "fail/1097-days",
                Box::new(move |p| p.not_after = p.not_before + days(1097)),
                &["validity_too_long"],
            ),
            (
                "fail/https-crl",
                Box::new(|p| {
                    p.crl_distribution_points[0].uris = vec!["https://ca.example.com/x.crl".into()]
                }),
                &["crl_distribution_point_missing"],
            ),
            (
                "fail/no-aia",
                Box::new(|p| p.custom_extensions.clear()),
                &["ca_issuers_missing"],
            ),
            (
                "fail/no-key-identifiers",
                Box::new(|p| p.use_authority_key_identifier_extension = false),
                &["key_identifier_missing"],
            ),
        ];
        for (name, edit, want) in cases {
            let got: Vec<&str> =
                direct_profile_problems(&direct_cert(&rcgen::PKCS_ECDSA_P256_SHA256, edit), now)
                    .into_iter()
                    .map(|(code, _)| code)
                    .collect();
            assert_eq!(got, want, "{name}");
        }
        let p384 = direct_cert(&rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
        assert_eq!(direct_profile_problems(&p384, now)[0].0, "key_unsupported");
        assert_eq!(direct_profile_problems(b"junk", now)[0].0, "unreadable");
    }
}
