//! Unit tests of anchor admission: policy loading and every rule, table-driven, against
//! certificates made on the spot with rcgen. A file of its own because the fixtures (CAs,
//! intermediates, Direct samples) outweigh the rules they test.

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::Duration;

use super::*;

fn now() -> OffsetDateTime {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// A CA certificate, its parameters and its key (to issue or re-issue with).
struct Ca {
    der: Vec<u8>,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn ca(
    name: &str,
    alg: &'static rcgen::SignatureAlgorithm,
    edit: impl FnOnce(&mut CertificateParams),
) -> Ca {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = ca_params(name);
    edit(&mut params);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { der, params, key }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Member");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now() - Duration::days(1);
    params.not_after = now() + Duration::days(3650);
    params
}

/// A CA issued by `parent` (an intermediate).
fn sub_ca(name: &str, parent: &Ca) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = ca_params(name);
    params.use_authority_key_identifier_extension = true;
    let der = params
        .signed_by(&key, &parent.issuer())
        .unwrap()
        .der()
        .to_vec();
    Ca { der, params, key }
}

/// A Direct end-entity certificate (spec §2) issued by `issuer`.
fn sample(issuer: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "jones@direct.example.com");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::Rfc822Name(
        "jones@direct.example.com".try_into().unwrap(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec!["http://ca.example.com/crl/issuing.crl".into()],
    }];
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        x509::ca_issuers_der("http://ca.example.com/ca/issuing.cer").unwrap(),
    )];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now() - Duration::days(1);
    params.not_after = now() + Duration::days(365);
    edit(&mut params);
    params
        .signed_by(&key, &issuer.issuer())
        .unwrap()
        .der()
        .to_vec()
}

fn codes(result: Result<AnchorFacts, Denial>) -> Vec<&'static str> {
    match result {
        Ok(_) => vec![],
        Err(d) => d.codes(),
    }
}

#[test]
fn embedded_and_repository_policies_load_and_state_every_default() {
    let embedded = AdmissionPolicy::load(None).unwrap();
    assert_eq!(embedded, AdmissionPolicy::default());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    assert_eq!(AdmissionPolicy::load(Some(&dir)).unwrap(), embedded);
    assert_eq!(
        AdmissionPolicy::parse("min_days_remaining = 60", "x.toml")
            .unwrap()
            .min_days_remaining,
        60,
        "a key left out takes its default"
    );
}

#[test]
fn strict_policy_loading() {
    // Keys left out take their defaults, so each case states only what it breaks.
    let cases: &[(&str, &str)] = &[
        ("fail/unknown-key", "check_sample = true"),
        ("fail/rsa-below-2048", "min_rsa_bits = 1024"),
        ("fail/rsa-not-whole-bytes", "min_rsa_bits = 2049"),
        ("fail/rsa-absurd", "min_rsa_bits = 65536"),
        ("fail/no-key-types", "key_types = []"),
        ("fail/unknown-key-type", "key_types = [\"rsa\", \"dsa\"]"),
        ("fail/sha1-allowed", "signature_algorithms = [\"rsa-sha1\"]"),
        ("fail/no-signatures", "signature_algorithms = []"),
        ("fail/days-absurd", "min_days_remaining = 9000"),
        ("fail/no-uploads", "max_upload_bytes = 0"),
        ("fail/wrong-type", "check_samples = \"yes\""),
    ];
    for (name, text) in cases {
        let err = AdmissionPolicy::parse(text, "x.toml").unwrap_err();
        assert_eq!(err.code(), "profile_invalid", "{name}");
        let key = text.split(' ').next().unwrap_or_default();
        let message = err.to_string();
        assert!(
            message.contains("x.toml") && message.contains(key),
            "{name}: {err}"
        );
    }
}

#[test]
fn admission_rules() {
    let now = now();
    let days = Duration::days;
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let good = ca("Good CA", p256, |_| {});
    let p384 = ca("P-384 CA", &rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
    let rsa = ca("RSA CA", &rcgen::PKCS_RSA_SHA256, |_| {});
    let end_entity = ca("End entity", p256, |p| {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    });
    let no_bc = ca("No basicConstraints", p256, |p| p.is_ca = IsCa::NoCa);
    let no_kcs = ca("No keyCertSign", p256, |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    let no_ku = ca("No keyUsage", p256, |p| p.key_usages = vec![]);
    let expired = ca("Expired", p256, |p| {
        p.not_before = now - days(400);
        p.not_after = now - days(1);
    });
    let future = ca("Future", p256, |p| {
        p.not_before = now + days(1);
        p.not_after = now + days(400);
    });
    let short = ca("Short", p256, |p| p.not_after = now + days(10));
    let ed25519 = ca("Ed25519 CA", &rcgen::PKCS_ED25519, |_| {});
    // The same CA key re-issued under the same subject (new serial and validity).
    let reissued = {
        let mut params = ca_params("Good CA");
        params.serial_number = Some(SerialNumber::from_slice(&[7; 16]));
        params.self_signed(&good.key).unwrap().der().to_vec()
    };
    let good_facts = admit(&good.der, &[], &[], &AdmissionPolicy::default(), now, false).unwrap();
    let in_bundle = vec![ExistingAnchor::from(&good_facts)];

    let other = ca("Other CA", p256, |_| {});
    let impostor = ca("Good CA", p256, |_| {}); // same name, another key
    let intermediate = sub_ca("Intermediate", &good);
    let nested = sub_ca("Nested", &intermediate);

    let good_sample = sample(&good, |_| {});
    let domain_sample = sample(&good, |p| {
        p.subject_alt_names = vec![SanType::DnsName("direct.example.com".try_into().unwrap())]
    });
    let two_sans = sample(&good, |p| {
        p.subject_alt_names
            .push(SanType::DnsName("direct.example.com".try_into().unwrap()))
    });
    let bare = sample(&good, |p| {
        p.crl_distribution_points.clear();
        p.custom_extensions.clear();
        p.extended_key_usages.clear();
    });
    let from_other = sample(&other, |_| {});
    let from_impostor = sample(&impostor, |_| {});
    let via_intermediate = sample(&intermediate, |_| {});
    let via_nested = sample(&nested, |_| {});

    let policy = AdmissionPolicy::default();
    let no_p384 = AdmissionPolicy {
        key_types: vec![KeyKind::Rsa, KeyKind::P256],
        ..AdmissionPolicy::default()
    };
    let rsa_3072 = AdmissionPolicy {
        min_rsa_bits: 3072,
        ..AdmissionPolicy::default()
    };
    let rsa_only_signatures = AdmissionPolicy {
        signature_algorithms: vec![SignatureAlgorithm::RsaSha256],
        ..AdmissionPolicy::default()
    };
    let report_legacy = AdmissionPolicy {
        require_basic_constraints_ca: false,
        require_key_cert_sign: false,
        ..AdmissionPolicy::default()
    };
    let no_samples = AdmissionPolicy {
        check_samples: false,
        ..AdmissionPolicy::default()
    };
    let anchor_cases: &[(&str, &[u8], &AdmissionPolicy, &[&str])] = &[
        ("ok/p256", &good.der, &policy, &[]),
        ("ok/p384", &p384.der, &policy, &[]),
        ("ok/rsa", &rsa.der, &policy, &[]),
        (
            "ok/legacy-report-mode",
            &end_entity.der,
            &report_legacy,
            &[],
        ),
        (
            "fail/not-ca",
            &end_entity.der,
            &policy,
            &["not_ca", "no_key_cert_sign"],
        ),
        (
            "fail/no-basic-constraints",
            &no_bc.der,
            &policy,
            &["not_ca"],
        ),
        (
            "fail/no-key-cert-sign",
            &no_kcs.der,
            &policy,
            &["no_key_cert_sign"],
        ),
        (
            "fail/no-key-usage",
            &no_ku.der,
            &policy,
            &["no_key_cert_sign"],
        ),
        ("fail/expired", &expired.der, &policy, &["expired"]),
        (
            "fail/not-yet-valid",
            &future.der,
            &policy,
            &["not_yet_valid"],
        ),
        (
            "fail/validity-too-short",
            &short.der,
            &policy,
            &["validity_too_short"],
        ),
        (
            "fail/key-type-not-allowed",
            &p384.der,
            &no_p384,
            &["key_type_unsupported"],
        ),
        (
            "fail/ed25519",
            &ed25519.der,
            &policy,
            &["key_type_unsupported", "signature_algorithm_weak"],
        ),
        ("fail/key-too-weak", &rsa.der, &rsa_3072, &["key_too_weak"]),
        (
            "fail/signature-not-allowed",
            &good.der,
            &rsa_only_signatures,
            &["signature_algorithm_weak"],
        ),
        (
            "fail/anchor-unreadable",
            b"junk",
            &policy,
            &["anchor_unreadable"],
        ),
    ];
    for (name, anchor, policy, want) in anchor_cases {
        assert_eq!(
            codes(admit(anchor, &[], &[], policy, now, false)),
            *want,
            "{name}"
        );
    }

    let duplicate_cases: &[(&str, &[u8], &[&str])] = &[
        ("ok/another-anchor", &p384.der, &[]),
        (
            "fail/duplicate-fingerprint",
            &good.der,
            &["duplicate_fingerprint"],
        ),
        (
            "fail/duplicate-subject-key",
            &reissued,
            &["duplicate_subject_key"],
        ),
    ];
    // The same cases against the anchor as stored (id and key known) give the same codes.
    let stored = vec![ExistingAnchor::of_certificate(Some(7), &good.der).unwrap()];
    for (name, anchor, want) in duplicate_cases {
        let got = codes(admit(anchor, &[], &in_bundle, &policy, now, false));
        assert_eq!(got, *want, "{name}");
        let got = codes(admit(anchor, &[], &stored, &policy, now, false));
        assert_eq!(got, *want, "{name} (stored)");
    }

    // The same subject (DER) with another key: refused unless declared as a key rollover,
    // and then the facts name the anchors it replaces. A rollover does not excuse copies.
    let same_subject = "anchor_same_subject_different_key";
    /// Name, anchor, the bundle, rollover declared, codes, the ids it replaces.
    type RolloverCase<'a> = (
        &'a str,
        &'a [u8],
        &'a [ExistingAnchor],
        bool,
        &'a [&'a str],
        &'a [u64],
    );
    let rollover_cases: &[RolloverCase<'_>] = &[
        (
            "fail/same-subject-other-key",
            &impostor.der,
            &stored,
            false,
            &[same_subject],
            &[],
        ),
        (
            "fail/same-subject-other-key-in-upload",
            &impostor.der,
            &in_bundle,
            false,
            &[same_subject],
            &[],
        ),
        ("ok/rollover", &impostor.der, &stored, true, &[], &[7]),
        (
            "ok/rollover-within-upload",
            &impostor.der,
            &in_bundle,
            true,
            &[],
            &[],
        ),
        (
            "ok/rollover-nothing-to-replace",
            &impostor.der,
            &[],
            true,
            &[],
            &[],
        ),
        ("ok/other-subject", &other.der, &stored, false, &[], &[]),
        (
            "fail/rollover-of-same-key",
            &reissued,
            &stored,
            true,
            &["duplicate_subject_key"],
            &[],
        ),
        (
            "fail/rollover-of-copy",
            &good.der,
            &stored,
            true,
            &["duplicate_fingerprint"],
            &[],
        ),
    ];
    for (name, anchor, existing, rollover, want, replaces) in rollover_cases {
        let result = admit(anchor, &[], existing, &policy, now, *rollover);
        if let Ok(facts) = &result {
            assert_eq!(facts.rollover_of, *replaces, "{name}");
        }
        assert_eq!(codes(result), *want, "{name}");
    }
    let denial = admit(&impostor.der, &[], &stored, &policy, now, false).unwrap_err();
    let message = &denial.reasons[0].message;
    assert!(
        message.starts_with("anchor #7 of the bundle")
            && message.contains("'CN=Good CA,O=Member'")
            && message.contains("rollover"),
        "{message}"
    );

    let not_issued = "sample_not_issued_by_anchor";
    type SampleCase<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a str]);
    let sample_cases: &[SampleCase<'_>] = &[
        ("ok/samples", &[&good_sample, &domain_sample], &[]),
        (
            "ok/via-intermediate",
            &[&via_intermediate, &intermediate.der],
            &[],
        ),
        ("ok/intermediate-alone", &[&intermediate.der], &[]),
        ("fail/from-other-ca", &[&from_other], &[not_issued]),
        ("fail/forged-issuer-name", &[&from_impostor], &[not_issued]),
        (
            "fail/without-its-intermediate",
            &[&via_intermediate],
            &[not_issued],
        ),
        (
            "fail/two-levels-down",
            &[&intermediate.der, &nested.der, &via_nested],
            &["sample_is_ca", not_issued, not_issued],
        ),
        (
            "fail/foreign-ca",
            &[&other.der],
            &["sample_is_ca", not_issued],
        ),
        ("fail/two-sans", &[&two_sans], &["sample_profile"]),
        ("fail/bare", &[&bare], &["sample_profile"; 3]),
        ("fail/unreadable", &[b"junk"], &["sample_unreadable"]),
    ];
    for (name, samples, want) in sample_cases {
        let samples: Vec<Vec<u8>> = samples.iter().map(|s| s.to_vec()).collect();
        let got = codes(admit(&good.der, &samples, &[], &policy, now, false));
        assert_eq!(got, *want, "{name}");
        let unchecked = admit(&good.der, &samples, &[], &no_samples, now, false);
        assert!(
            unchecked.is_ok(),
            "{name}: check_samples = false ignores samples"
        );
    }

    // Every failed rule at once.
    let denial = admit(
        &end_entity.der,
        &[from_other.clone(), two_sans.clone()],
        &[],
        &no_p384,
        now,
        false,
    )
    .unwrap_err();
    assert_eq!(
        denial.codes(),
        [
            "not_ca",
            "no_key_cert_sign",
            not_issued,
            not_issued,
            "sample_profile"
        ]
    );
    // Messages number the samples from 1 and carry the lint's code.
    let denial = admit(
        &good.der,
        &[good_sample, two_sans],
        &[],
        &policy,
        now,
        false,
    )
    .unwrap_err();
    assert!(
        denial.reasons[0].message.starts_with("sample 2 ")
            && denial.reasons[0].message.contains("[san_not_single]"),
        "{denial}"
    );
    assert_eq!(denial.reasons[0].field, Some("samples"));
}

#[test]
fn facts_of_an_admitted_anchor() {
    let good = ca("Good CA", &rcgen::PKCS_ECDSA_P384_SHA384, |_| {});
    let facts = admit(
        &good.der,
        &[],
        &[],
        &AdmissionPolicy::default(),
        now(),
        false,
    )
    .unwrap();
    let cert = parse_certificate(&good.der).unwrap();
    assert_eq!(facts.fingerprint, Fingerprint::of(&good.der));
    assert_eq!(facts.subject, "CN=Good CA,O=Member");
    assert_eq!(facts.subject_raw, cert.subject().as_raw());
    assert_eq!(facts.key, "ECDSA P-384");
    assert_eq!(facts.signature_algorithm, "ecdsa-with-SHA384");
    assert_eq!(facts.key_id, x509::subject_key_id(&cert).unwrap());
    // Without an SKI (rcgen writes none without basicConstraints), the RFC 7093 identifier
    // of the key.
    let legacy = AdmissionPolicy {
        require_basic_constraints_ca: false,
        ..AdmissionPolicy::default()
    };
    let no_ski = ca("No SKI", &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
        p.is_ca = IsCa::NoCa
    });
    let cert = parse_certificate(&no_ski.der).unwrap();
    assert_eq!(x509::subject_key_id(&cert), None);
    let no_ski_facts = admit(&no_ski.der, &[], &[], &legacy, now(), false).unwrap();
    assert_eq!(no_ski_facts.key_id, x509::key_identifier(cert.public_key()));
    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["key_id"], hex::encode(&facts.key_id));
    let back: AnchorFacts = serde_json::from_value(json).unwrap();
    assert_eq!(back, facts);
}
