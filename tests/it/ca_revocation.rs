//! Revoking the issuing CA (requirement 7 for CA certificates): `ca revoke-issuing` puts the
//! issuing CA's serial on the root's CRL at once, so OpenSSL checking the whole chain against
//! both CRLs rejects a certificate it accepted before; pkilint accepts the root CRL; issuance
//! stops with `issuing_ca_revoked`; a wrong serial or reason changes nothing.

use std::path::Path;

use x509_parser::prelude::*;

use crate::harness::{read, Ca, Chain, KeyAlg};
use crate::tools::{self, run_cmd, ToolOutput};

const DOMAIN: &str = "direct.example.com";

/// `openssl verify -crl_check_all`: every certificate of the chain against its issuer's CRL.
fn verify_whole_chain(ca: &Ca, chain: &Chain, cert: &Path) -> ToolOutput {
    let (_, issuing_crl) = ca.crl("issuing");
    let (_, root_crl) = ca.crl("root");
    let both = ca.path("both-crls.pem");
    let mut pem = std::fs::read_to_string(&issuing_crl).unwrap();
    pem.push_str(&std::fs::read_to_string(&root_crl).unwrap());
    std::fs::write(&both, pem).unwrap();
    let mut cmd = std::process::Command::new("openssl");
    cmd.args([
        "verify",
        "-x509_strict",
        "-purpose",
        "smimesign",
        "-crl_check_all",
    ])
    .arg("-CAfile")
    .arg(&chain.root)
    .arg("-untrusted")
    .arg(&chain.issuing)
    .arg("-CRLfile")
    .arg(&both)
    .arg(cert);
    run_cmd(&mut cmd)
}

fn issuing_serial(ca: &Ca) -> String {
    let status = ca.json(&["ca", "status"]);
    status
        .as_array()
        .and_then(|all| all.iter().find(|s| s["role"] == "issuing"))
        .and_then(|s| s["serial"].as_str())
        .unwrap_or_else(|| panic!("ca status shows no issuing CA serial: {status}"))
        .to_string()
}

/// (serial hex, reason code) of every entry of a DER CRL.
fn crl_entries(der: &Path) -> Vec<(String, Option<u8>)> {
    let bytes = read(der);
    let (_, crl) = CertificateRevocationList::from_der(&bytes).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| {
            let reason = r.reason_code().map(|(_, code)| code.0);
            (hex::encode(r.raw_serial()), reason)
        })
        .collect()
}

#[test]
fn revoking_the_issuing_ca_lists_it_on_the_root_crl_and_stops_issuance() {
    let ca = Ca::init(&[DOMAIN]);
    let chain = ca.chain();
    let csr = ca.csr("before", KeyAlg::Rsa2048);
    let address = format!("before@{DOMAIN}");
    ca.issue_json(&[
        "--address",
        &address,
        "--usage",
        "dual",
        "--csr",
        &csr,
        "--out",
        "before.pem",
    ]);
    let cert = ca.path("before.pem");
    verify_whole_chain(&ca, &chain, &cert).assert_success("openssl verify -crl_check_all before");
    let serial = issuing_serial(&ca);
    let (root_der, _) = ca.crl("root");
    assert!(
        crl_entries(&root_der).is_empty(),
        "the root CRL starts empty"
    );

    // Slips change nothing: a serial that is not the issuing CA's, an unknown reason.
    let before = ca.state();
    let wrong = ca.json_err(&[
        "ca",
        "revoke-issuing",
        "--serial",
        "00ff",
        "--reason",
        "ca-compromise",
    ]);
    assert_eq!(wrong["code"], "invalid_input", "{wrong}");
    assert!(
        wrong["message"].as_str().unwrap().contains(&serial),
        "the refusal names the right serial: {wrong}"
    );
    let bad_reason = ca.json_err(&[
        "ca",
        "revoke-issuing",
        "--serial",
        &serial,
        "--reason",
        "oops",
    ]);
    assert_eq!(bad_reason["code"], "invalid_input", "{bad_reason}");
    assert_eq!(
        ca.state(),
        before,
        "a refused revocation must not change the store"
    );

    let revoked = ca.json(&[
        "ca",
        "revoke-issuing",
        "--serial",
        &serial,
        "--reason",
        "ca-compromise",
    ]);
    assert_eq!(revoked["serial"], serial.as_str(), "{revoked}");
    assert_eq!(revoked["crl"], "root", "{revoked}");

    // The root CRL names the issuing CA with reason cACompromise (2), and pkilint accepts it.
    let (root_der, _) = ca.crl("root");
    assert_eq!(crl_entries(&root_der), vec![(serial.clone(), Some(2))]);
    tools::assert_pkilint_crl_clean(&tools::pkilint_crl(&root_der), "root CRL after revoke");

    // A relying party that checks the whole chain now rejects the certificate: the issuing
    // CA (depth 1) is revoked.
    let out = verify_whole_chain(&ca, &chain, &cert);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !out.status.success() && all.contains("error 23 at 1 depth") && all.contains("revoked"),
        "openssl verify -crl_check_all should fail at depth 1: {}",
        out.describe()
    );

    // ca status shows it; issuance stops; nothing is stored for the refused request.
    let status = ca.json(&["ca", "status"]);
    let issuing = status
        .as_array()
        .and_then(|a| a.iter().find(|s| s["role"] == "issuing"))
        .unwrap();
    assert_eq!(issuing["revocation"]["reason"], "ca-compromise", "{status}");
    let before = ca.state();
    let csr2 = ca.csr("after", KeyAlg::Rsa2048);
    let refused = ca.json_err(&[
        "cert",
        "issue",
        "--address",
        &format!("after@{DOMAIN}"),
        "--usage",
        "dual",
        "--csr",
        &csr2,
        "--out",
        "after.pem",
    ]);
    assert_eq!(refused["code"], "issuing_ca_revoked", "{refused}");
    assert_eq!(
        ca.state(),
        before,
        "a refused issuance must not change the store"
    );
    assert!(!ca.path("after.pem").exists());

    // Once is enough: a second revocation is a conflict.
    let again = ca.json_err(&[
        "ca",
        "revoke-issuing",
        "--serial",
        &serial,
        "--reason",
        "ca-compromise",
    ]);
    assert_eq!(again["code"], "conflict", "{again}");

    // The audit chain holds and records who revoked the CA.
    let export = ca.run(&["audit", "export", "--action", "ca.revoke"]);
    export.assert_success("audit export --action ca.revoke");
    let entries: Vec<serde_json::Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{}", export.stdout);
    assert_eq!(entries[0]["target"], serial.as_str(), "{}", export.stdout);
    assert_eq!(
        entries[0]["details"]["reason"], "ca-compromise",
        "{}",
        export.stdout
    );
}
