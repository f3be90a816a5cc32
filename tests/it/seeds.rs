//! Seed anchors shipped in the inventory: a seed file that gains an anchor contributes just
//! the new one on the next start, and a seed that no longer passes admission is reported
//! without stopping the service.

use std::path::Path;
use std::sync::Arc;

use anchorage::authority::{Authority, InitOptions};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use anchorage::store::AnchorState;

const PASSPHRASE: &str = "seed-test-passphrase-0123456";

fn ca_cert(name: &str, days: i64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.self_signed(&key).unwrap().der().to_vec()
}

fn open(data: &Path, bundles: &Path) -> Authority {
    let config = Config {
        data_dir: data.to_path_buf(),
        bundles_dir: bundles.to_path_buf(),
        managed_domains: vec![HealthDomain::parse("direct.example.com").unwrap()],
        ..Config::default()
    };
    Authority::open(config, Arc::new(SystemClock)).unwrap()
}

#[test]
fn seed_files_are_read_anchor_by_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bundles) = (dir.path().join("d"), dir.path().join("b"));
    std::fs::create_dir_all(bundles.join("community/anchors")).unwrap();
    std::fs::write(bundles.join("community.toml"), "title = \"Community\"\n").unwrap();
    let (a, b, short) = (
        ca_cert("Seed A", 3650),
        ca_cert("Seed B", 3650),
        ca_cert("Seed Short", 5),
    );
    let seed = bundles.join("community/anchors/members.p7b");
    std::fs::write(
        &seed,
        anchorage::bundle::build_p7b(std::slice::from_ref(&a)),
    )
    .unwrap();
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    {
        let authority = open(&data, &bundles);
        authority
            .init(InitOptions::default(), &pass, "test")
            .unwrap();
        let report = authority.load_seeds().unwrap();
        assert_eq!(report.len(), 1, "{report:?}");
    }
    // The seed file grows by one good anchor and one that expires in 5 days (< 30 required).
    std::fs::write(&seed, anchorage::bundle::build_p7b(&[a, b, short])).unwrap();
    let authority = open(&data, &bundles);
    authority.unlock(&pass).unwrap();
    let report = authority.load_seeds().unwrap();
    assert!(
        report.iter().any(|l| l.contains("seeded CN=Seed B")),
        "{report:?}"
    );
    assert!(
        report
            .iter()
            .any(|l| l.contains("refused") && l.contains("validity_too_short")),
        "{report:?}"
    );
    let anchors = authority
        .danger_store()
        .unwrap()
        .anchors_of("community")
        .unwrap();
    assert_eq!(
        anchors.len(),
        2,
        "Seed A once, Seed B added, the short one refused"
    );
    assert!(anchors.iter().all(|r| r.state == AnchorState::Approved));
    let version = authority
        .rebuild_bundle("community", "test")
        .unwrap()
        .unwrap();
    assert_eq!(version.anchors.len(), 2);
    // A third start changes nothing.
    assert!(authority
        .load_seeds()
        .unwrap()
        .iter()
        .all(|l| l.contains("refused")));
    assert_eq!(
        authority
            .danger_store()
            .unwrap()
            .anchors_of("community")
            .unwrap()
            .len(),
        2
    );
}
