//! Trust bundles end to end through the real binary, judged by other people's code: the
//! anchor lifecycle in the documented CLI forms (on the store directly, and through a running
//! `serve`), refused uploads, the audit trail, deterministic versioned .p7b publication and its
//! changelog, the signed .p7m verified by `openssl cms` against anchorage's root, pyca's
//! strict-DER reader, an XML parser reading the Atom feed, and HTTP caching semantics as a raw
//! HTTP/1.1 client, curl and reqwest see them over plain HTTP and over TLS.
//!
//! Member anchors are made by openssl the way members make them ([`fixtures`]). Every test has
//! its own data directory and a private copy of the shipped bundle declarations
//! (`--bundles-dir`), so the tests are hermetic and run in parallel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anchorage::audit::AuditEntry;
use anchorage::store::Store;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::harness::{Ca, DOMAIN, PASSPHRASE};
use crate::server::{curl, http_with_headers, HttpResponse, Server};
use crate::tools::{free_port, run, run_in, venv_bin};

/// Extensions for the fixtures: member CAs, a non-CA certificate, a TLS server certificate.
const OPENSSL_CNF: &str = r#"
[ req ]
distinguished_name = req_dn
[ req_dn ]

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_end_entity ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash

[ tls_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"#;

/// Member trust anchors: file stem, subject, `openssl req -newkey` arguments.
const MEMBERS: &[(&str, &str, &str)] = &[
    (
        "alpha",
        "/O=Alpha Health HISP/CN=Alpha Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-256",
    ),
    (
        "bravo",
        "/O=Bravo Clinic Network/CN=Bravo Trust Anchor",
        "rsa:2048",
    ),
    (
        "charlie",
        "/O=Charlie HIE/CN=Charlie Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-256",
    ),
    (
        "delta",
        "/O=Delta Direct/CN=Delta Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-384",
    ),
    (
        "echo",
        "/O=Echo Patient Apps/CN=Echo Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-256",
    ),
    (
        "golf",
        "/O=Golf Founding Member/CN=Golf Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-256",
    ),
    (
        "hotel",
        "/O=Hotel Founding Member/CN=Hotel Trust Anchor",
        "ec -pkeyopt ec_paramgen_curve:P-256",
    ),
];

/// The anchors of `trio.p7b` (made by `openssl crl2pkcs7`).
const TRIO: [&str; 3] = ["charlie", "delta", "echo"];

/// Files that are not an anchor, with the reason codes a submission of each must give.
const REFUSALS: &[(&str, &[&str])] = &[
    ("alpha.p12", &["upload_is_pkcs12"]),
    ("alpha.key", &["upload_is_private_key"]),
    ("end-entity.pem", &["not_ca", "no_key_cert_sign"]),
    ("jones.csr", &["upload_is_csr"]),
    ("random.bin", &["upload_unreadable"]),
    ("empty.pem", &["upload_empty"]),
    ("huge.pem", &["upload_too_large"]),
];

/// The admission policy's default `max_upload_bytes`.
const ONE_MIB: usize = 1024 * 1024;

/// Every fixture by file name, made once per test run (the directory is gone afterwards).
fn fixtures() -> &'static HashMap<String, Vec<u8>> {
    static FIXTURES: OnceLock<HashMap<String, Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        make_fixtures(dir.path());
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    })
}

fn make_fixtures(dir: &Path) {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).unwrap();
    // `line` is split on whitespace; a subject, which has spaces, comes separately.
    let openssl = |line: &str, subject: Option<&str>| {
        let mut args: Vec<&str> = line.split_whitespace().collect();
        if let Some(subject) = subject {
            args.extend(["-subj", subject]);
        }
        run_in(dir, "openssl", &args).assert_success(&format!("openssl {line}"));
    };
    let p256 = "ec -pkeyopt ec_paramgen_curve:P-256";
    for (stem, subject, newkey) in MEMBERS {
        openssl(
            &format!(
                "req -x509 -config openssl.cnf -extensions v3_ca -nodes -newkey {newkey} \
                 -keyout {stem}.key -days 3650 -sha256 -out {stem}.pem"
            ),
            Some(subject),
        );
    }
    // alpha's CA with a new key under the same subject: a key rollover.
    openssl(
        &format!(
            "req -x509 -config openssl.cnf -extensions v3_ca -nodes -newkey {p256} \
             -keyout alpha-next.key -days 3650 -sha256 -out alpha-next.pem"
        ),
        Some(MEMBERS[0].1),
    );
    let trio: Vec<u8> = TRIO
        .iter()
        .flat_map(|m| std::fs::read(dir.join(format!("{m}.pem"))).unwrap())
        .collect();
    std::fs::write(dir.join("trio.pem"), trio).unwrap();
    for line in [
        "x509 -in bravo.pem -outform DER -out bravo.cer",
        "x509 -in hotel.pem -outform DER -out hotel.cer",
        "crl2pkcs7 -nocrl -certfile trio.pem -outform DER -out trio.p7b",
        "pkcs12 -export -in alpha.pem -inkey alpha.key -passout pass:fixture -out alpha.p12",
        "rand -out random.bin 4096",
    ] {
        openssl(line, None);
    }
    openssl(
        &format!(
            "req -x509 -config openssl.cnf -extensions v3_end_entity -nodes -newkey {p256} \
             -keyout end-entity.key -days 365 -out end-entity.pem"
        ),
        Some("/O=Alpha Health HISP/CN=jones@direct.alpha.example"),
    );
    openssl(
        &format!(
            "req -new -config openssl.cnf -nodes -newkey {p256} -keyout jones.key -out jones.csr"
        ),
        Some("/CN=jones@direct.alpha.example"),
    );
    std::fs::write(dir.join("empty.pem"), b"").unwrap();
    // A real anchor made one byte too large by trailing blank lines.
    let mut huge = std::fs::read(dir.join("alpha.pem")).unwrap();
    huge.resize(ONE_MIB + 1, b'\n');
    std::fs::write(dir.join("huge.pem"), huge).unwrap();

    // The HTTPS listener's certificate, for 127.0.0.1, from a CA of its own.
    openssl(
        &format!(
            "req -x509 -config openssl.cnf -extensions v3_ca -nodes -newkey {p256} \
             -keyout tls-ca.key -days 30 -out tls-ca.pem"
        ),
        Some("/O=anchorage tests/CN=Test TLS CA"),
    );
    openssl(
        &format!(
            "req -new -config openssl.cnf -nodes -newkey {p256} -keyout tls-server.key \
             -out tls-server.csr"
        ),
        Some("/CN=127.0.0.1"),
    );
    openssl(
        "x509 -req -in tls-server.csr -CA tls-ca.pem -CAkey tls-ca.key -set_serial 0x51 \
         -days 30 -sha256 -extfile openssl.cnf -extensions tls_server -out tls-server.pem",
        None,
    );
}

pub(crate) fn fixture(name: &str) -> &'static [u8] {
    fixtures()
        .get(name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// The DER of a member's anchor.
pub(crate) fn anchor_der(member: &str) -> Vec<u8> {
    pem::parse(fixture(&format!("{member}.pem")))
        .unwrap()
        .into_contents()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// A member anchor's SHA-256 fingerprint, as anchorage lists it.
pub(crate) fn fp(member: &str) -> String {
    sha256_hex(&anchor_der(member))
}

/// The DER of the given members in DER order, the order of a SET OF.
fn sorted_ders(members: &[&str]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = members.iter().map(|m| anchor_der(m)).collect();
    v.sort();
    v
}

fn fps(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| fp(m)).collect()
}

/// The actor the CLI records: `cli:<login>`, as the binary derives it from the environment
/// it inherits from this test.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

/// A CA whose bundle inventory is a private copy of the shipped declarations (plus seeds),
/// with every fixture in its working directory.
pub(crate) struct Community {
    pub(crate) ca: Ca,
    /// The `--bundles-dir`, alive as long as the CA.
    bundles: TempDir,
}

/// `seeds`: (bundle, fixture) pairs copied to `<bundles-dir>/<bundle>/anchors/`.
pub(crate) fn community(seeds: &[(&str, &str)]) -> Community {
    let bundles = tempfile::Builder::new()
        .prefix("anchorage-bundles-")
        .tempdir()
        .unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    let mut declared = 0;
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        // The disabled example external sources are not part of these tests' community.
        let external =
            std::fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l.trim() == "[source]"));
        if path.extension().is_some_and(|x| x == "toml") && !external {
            std::fs::copy(&path, bundles.path().join(path.file_name().unwrap())).unwrap();
            declared += 1;
        }
    }
    assert_eq!(
        declared, 4,
        "the shipped inventory declares four local bundles"
    );
    for (bundle, file) in seeds {
        let dir = bundles.path().join(bundle).join("anchors");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), fixture(file)).unwrap();
    }
    let ca = Ca::init_with(
        &[DOMAIN],
        &["--bundles-dir", bundles.path().to_str().unwrap()],
    );
    for (name, bytes) in fixtures() {
        std::fs::write(ca.path(name), bytes).unwrap();
    }
    Community { ca, bundles }
}

fn id_of(v: &Value) -> String {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an id: {v}"))
        .to_string()
}

fn ids(list: &Value) -> BTreeSet<u64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect()
}

/// `anchor submit --bundle BUNDLE FILE`, which must succeed; returns the object printed.
fn submit(ca: &Ca, bundle: &str, file: &str) -> Value {
    ca.json(&["anchor", "submit", "--bundle", bundle, file])
}

/// A refused submission: the reason codes, and an error that is a policy refusal.
fn refusal_codes(ca: &Ca, file: &str) -> Vec<String> {
    let err = ca.json_err(&["anchor", "submit", "--bundle", "provider-test", file]);
    assert_eq!(err["code"], "request_denied", "{file}: {err}");
    err["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no reasons: {err}"))
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

fn history_actions(anchor: &Value) -> Vec<&str> {
    anchor["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn fingerprints_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect()
}

/// The certificates `openssl pkcs7 -inform DER -print_certs` prints, as DER, in its order.
pub(crate) fn openssl_print_certs(p7b: &Path) -> Vec<Vec<u8>> {
    let out = run(
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-print_certs",
            "-in",
            p7b.to_str().unwrap(),
        ],
    );
    out.assert_success("openssl pkcs7 -print_certs");
    let certs: Vec<Vec<u8>> = pem::parse_many(out.stdout.as_bytes())
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE", "{}", out.describe());
            p.into_contents()
        })
        .collect();
    let subjects = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("subject="))
        .count();
    assert_eq!(subjects, certs.len(), "{}", out.describe());
    certs
}

/// pyca/cryptography with warnings as errors (a non-DER SET OF warns): the certificates of a
/// .p7b as hex DER.
const PYCA_READ: &str = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
with open(sys.argv[1], 'rb') as f:
    data = f.read()
print(json.dumps([c.public_bytes(Encoding.DER).hex() for c in pkcs7.load_der_pkcs7_certificates(data)]))
"#;

fn pyca_certificates(dir: &Path, p7b: &Path) -> Vec<Vec<u8>> {
    let script = dir.join("pyca_read.py");
    std::fs::write(&script, PYCA_READ).unwrap();
    let out = run(
        venv_bin("python"),
        &[
            "-W",
            "error",
            script.to_str().unwrap(),
            p7b.to_str().unwrap(),
        ],
    );
    out.assert_success("pyca load_der_pkcs7_certificates");
    let list: Vec<String> = serde_json::from_str(&out.stdout).unwrap();
    list.iter().map(|h| hex::decode(h).unwrap()).collect()
}

/// The Atom feed read by Python's XML parser, reported as JSON; RFC 3339 dates are checked.
const ATOM_READ: &str = r#"
import json, sys
from datetime import datetime
import xml.etree.ElementTree as ET
A = '{http://www.w3.org/2005/Atom}'
feed = ET.parse(sys.argv[1]).getroot()
assert feed.tag == A + 'feed', feed.tag
def when(text):
    return datetime.fromisoformat(text.replace('Z', '+00:00')).isoformat()
report = {
    'title': feed.findtext(A + 'title'),
    'id': feed.findtext(A + 'id'),
    'updated': when(feed.findtext(A + 'updated')),
    'author': feed.findtext(A + 'author/' + A + 'name'),
    'links': [{'rel': l.get('rel'), 'href': l.get('href')} for l in feed.findall(A + 'link')],
    'entries': [{
        'title': e.findtext(A + 'title'),
        'id': e.findtext(A + 'id'),
        'updated': when(e.findtext(A + 'updated')),
        'links': [l.get('href') for l in e.findall(A + 'link')],
        'summary': e.findtext(A + 'summary'),
    } for e in feed.findall(A + 'entry')],
}
print(json.dumps(report))
"#;

fn read_atom(dir: &Path, feed: &[u8]) -> Value {
    let (script, file) = (dir.join("atom_read.py"), dir.join("changes.atom"));
    std::fs::write(&script, ATOM_READ).unwrap();
    std::fs::write(&file, feed).unwrap();
    let out = run(
        venv_bin("python"),
        &[
            "-W",
            "error",
            script.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    out.assert_success("python xml.etree on changes.atom");
    serde_json::from_str(&out.stdout).unwrap()
}

/// The audit log, read from the store (the server must not hold it).
fn audit_log(data_dir: &Path) -> Vec<AuditEntry> {
    let store = Store::open(data_dir).unwrap();
    store
        .audit_entries()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn count(entries: &[AuditEntry], action: &str) -> usize {
    entries.iter().filter(|e| e.action == action).count()
}

/// The versions `bundle.publish` entries record for one bundle, in log order.
fn published_versions(entries: &[AuditEntry], bundle: &str) -> Vec<u64> {
    entries
        .iter()
        .filter(|e| e.action == "bundle.publish" && e.target == bundle)
        .map(|e| e.details["version"].as_u64().unwrap())
        .collect()
}

#[test]
fn anchor_lifecycle_through_the_cli() {
    let community = community(&[]);
    let ca = &community.ca;
    let actor = cli_actor();

    // The four shipped declarations; nothing published before anything is approved.
    let bundles = ca.json(&["bundle", "list"]);
    let names: Vec<&str> = bundles
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["patient", "patient-test", "provider", "provider-test"]
    );
    for b in bundles.as_array().unwrap() {
        assert!(b["version"].is_null(), "{b}");
    }
    let test_bundle = &bundles[3];
    assert_eq!(test_bundle["promote_to"], "provider", "{test_bundle}");
    assert_eq!(test_bundle["test"], true, "{test_bundle}");

    // Files that are not anchors: specific reasons, nothing stored, nothing logged.
    let audit_before = ca.json(&["audit", "verify"])["entries"].clone();
    for (file, want) in REFUSALS {
        assert_eq!(refusal_codes(ca, file), *want, "{file}");
    }
    assert_eq!(ca.json(&["anchor", "list"]), json!([]));
    assert_eq!(ca.json(&["audit", "verify"])["entries"], audit_before);
    assert_eq!(ca.json(&["bundle", "list"]), bundles);

    // Submission in each form: PEM, DER .cer, and a .p7b holding three anchors (three ids).
    let alpha_sub = submit(ca, "provider-test", "alpha.pem");
    let alpha = id_of(&alpha_sub["id"]);
    assert_eq!(alpha_sub["ids"], json!([alpha_sub["id"]]));
    let record = &alpha_sub["anchors"][0];
    assert_eq!(record["state"], "pending", "{record}");
    assert_eq!(record["bundle"], "provider-test");
    assert_eq!(record["fingerprint"], fp("alpha"));
    assert_eq!(
        record["subject"],
        "CN=Alpha Trust Anchor,O=Alpha Health HISP"
    );
    assert_eq!(record["organization"], "Alpha Health HISP");
    assert_eq!(record["history"][0]["actor"], actor.as_str());
    assert_eq!(history_actions(record), ["submitted"]);
    let bravo_sub = ca.json(&[
        "anchor",
        "submit",
        "--bundle",
        "provider-test",
        "bravo.cer",
        "--organization",
        "Bravo Clinic Network, Inc.",
        "--contact",
        "pki@bravo.example",
    ]);
    let bravo = id_of(&bravo_sub["id"]);
    assert_eq!(bravo_sub["anchors"][0]["fingerprint"], fp("bravo"));
    assert_eq!(bravo_sub["anchors"][0]["key"], "RSA-2048");
    assert_eq!(bravo_sub["anchors"][0]["contact"], "pki@bravo.example");
    let trio_sub = submit(ca, "provider-test", "trio.p7b");
    assert_eq!(trio_sub["ids"].as_array().unwrap().len(), 3, "{trio_sub}");
    assert_eq!(fingerprints_of(&trio_sub["anchors"]), fps(&TRIO));
    let trio = trio_ids(&trio_sub);
    // A second copy of a pending anchor is a duplicate.
    assert_eq!(refusal_codes(ca, "alpha.pem"), ["duplicate_fingerprint"]);
    let pending = ca.json(&[
        "anchor",
        "list",
        "--bundle",
        "provider-test",
        "--state",
        "pending",
    ]);
    assert_eq!(pending.as_array().unwrap().len(), 5, "{pending}");
    assert_eq!(
        fingerprints_of(&pending),
        fps(&["alpha", "bravo", "charlie", "delta", "echo"])
    );
    assert_eq!(
        ca.json(&["anchor", "list", "--state", "approved"]),
        json!([])
    );

    // Approval publishes at once: pending -> approved -> published, version 1.
    let approved = ca.json(&["anchor", "approve", &alpha]);
    assert_eq!(
        approved["published"]["bundle"], "provider-test",
        "{approved}"
    );
    assert_eq!(approved["published"]["version"], 1, "{approved}");
    assert_eq!(approved["published"]["anchors"], 1, "{approved}");
    assert_eq!(approved["anchor"]["state"], "published", "{approved}");
    assert_eq!(
        history_actions(&approved["anchor"]),
        ["submitted", "approved", "published"]
    );
    for event in approved["anchor"]["history"].as_array().unwrap() {
        assert_eq!(event["actor"], actor.as_str(), "{event}");
    }
    assert_eq!(approved["anchor"]["history"][2]["note"], "in version 1");
    let approved = ca.json(&["anchor", "approve", &bravo]);
    assert_eq!(approved["published"]["version"], 2, "{approved}");
    assert_eq!(approved["published"]["anchors"], 2, "{approved}");

    // Promotion copies into the production bundle, approved there, and publishes it: bravo
    // first, then alpha (the other order than in provider-test).
    let promoted = ca.json(&["anchor", "promote", &bravo, "--to", "provider"]);
    let record = &promoted["anchor"];
    assert_eq!(record["bundle"], "provider", "{promoted}");
    assert_eq!(record["promoted_from"].to_string(), bravo, "{promoted}");
    assert_eq!(record["fingerprint"], fp("bravo"));
    assert_eq!(record["state"], "published");
    assert_eq!(history_actions(record), ["promoted", "published"]);
    assert_ne!(id_of(&record["id"]), bravo);
    assert_eq!(promoted["published"]["version"], 1, "{promoted}");
    let promoted = ca.json(&["anchor", "promote", &alpha, "--to", "provider"]);
    assert_eq!(promoted["published"]["version"], 2, "{promoted}");
    assert_eq!(promoted["published"]["anchors"], 2, "{promoted}");
    // Only to the bundle the test bundle promotes to, and only reviewed anchors.
    let wrong = ca.json_err(&["anchor", "promote", &alpha, "--to", "patient"]);
    assert_eq!(wrong["code"], "invalid_input", "{wrong}");
    let unreviewed = ca.json_err(&["anchor", "promote", &trio["echo"], "--to", "provider"]);
    assert_eq!(unreviewed["code"], "conflict", "{unreviewed}");

    // Rejection with the reviewer's reason; nothing is published.
    let reason = "no evidence of the key ceremony; resubmit with the audit report";
    let rejected = ca.json(&["anchor", "reject", &trio["charlie"], "--reason", reason]);
    assert_eq!(rejected["anchor"]["state"], "rejected", "{rejected}");
    assert!(rejected["published"].is_null(), "{rejected}");
    let last = rejected["anchor"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "rejected");
    assert_eq!(last["note"], reason);
    assert_eq!(last["actor"], actor.as_str());
    let again = ca.json_err(&["anchor", "approve", &trio["charlie"]]);
    assert_eq!(again["code"], "conflict", "{again}");

    for (member, version) in [("delta", 3), ("echo", 4)] {
        let approved = ca.json(&["anchor", "approve", &trio[member]]);
        assert_eq!(approved["published"]["version"], version, "{approved}");
    }

    // A rebuild of an unchanged bundle publishes nothing.
    let build = ca.json(&["bundle", "build", "provider-test"]);
    assert_eq!(build["bundle"], "provider-test", "{build}");
    assert_eq!(build["published"], false, "{build}");
    assert_eq!(build["version"], 4, "{build}");

    // Retirement removes the anchor from the next version.
    let retired = ca.json(&["anchor", "retire", &bravo]);
    assert_eq!(retired["anchor"]["state"], "retired", "{retired}");
    assert_eq!(retired["published"]["version"], 5, "{retired}");
    assert_eq!(retired["published"]["anchors"], 3, "{retired}");
    assert_eq!(
        history_actions(&retired["anchor"]),
        ["submitted", "approved", "published", "retired"]
    );

    let in_state = |state: &str| {
        fingerprints_of(&ca.json(&[
            "anchor",
            "list",
            "--bundle",
            "provider-test",
            "--state",
            state,
        ]))
    };
    assert_eq!(in_state("published"), fps(&["alpha", "delta", "echo"]));
    assert_eq!(in_state("retired"), fps(&["bravo"]));
    assert_eq!(in_state("rejected"), fps(&["charlie"]));
    assert!(in_state("pending").is_empty());
    let production = ca.json(&["anchor", "list", "--bundle", "provider"]);
    assert_eq!(fingerprints_of(&production), fps(&["alpha", "bravo"]));
    let listed = ca.json(&["bundle", "list"]);
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("provider-test")["version"], 5);
    assert_eq!(by_name("provider-test")["anchors"], 3);
    assert_eq!(by_name("provider")["version"], 2);
    assert!(by_name("patient")["version"].is_null());
    assert_eq!(ca.json(&["audit", "verify"])["ok"], true);

    // What the store holds (no process has it open now).
    {
        let store = Store::open(&ca.data_dir()).unwrap();
        let versions = store.bundle_versions("provider-test").unwrap();
        let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        let members = |v: &anchorage::store::BundleVersion| -> BTreeSet<String> {
            v.anchors.iter().map(|a| a.fingerprint.0.clone()).collect()
        };
        let changed = |list: &[anchorage::store::VersionAnchor]| -> BTreeSet<String> {
            list.iter().map(|a| a.fingerprint.0.clone()).collect()
        };
        let expected: [(&[&str], &[&str], &[&str]); 5] = [
            (&["alpha"], &["alpha"], &[]),
            (&["alpha", "bravo"], &["bravo"], &[]),
            (&["alpha", "bravo", "delta"], &["delta"], &[]),
            (&["alpha", "bravo", "delta", "echo"], &["echo"], &[]),
            (&["alpha", "delta", "echo"], &[], &["bravo"]),
        ];
        for (v, (holds, added, removed)) in versions.iter().zip(expected) {
            assert_eq!(members(v), fps(holds), "version {}", v.version);
            assert_eq!(changed(&v.added), fps(added), "version {}", v.version);
            assert_eq!(changed(&v.removed), fps(removed), "version {}", v.version);
            assert_eq!(v.sha256, sha256_hex(&v.p7b), "version {}", v.version);
        }
        // openssl lists exactly the anchors of the version after the retirement, sorted.
        let file = ca.path("provider-test-5.p7b");
        std::fs::write(&file, &versions[4].p7b).unwrap();
        assert_eq!(
            openssl_print_certs(&file),
            sorted_ders(&["alpha", "delta", "echo"])
        );
        // Determinism: the production bundle reached {alpha, bravo} in the other order, in
        // another bundle, at another time, and its .p7b is the same bytes.
        let production = store.bundle_versions("provider").unwrap();
        assert_eq!(production.len(), 2);
        assert_eq!(members(&production[1]), fps(&["alpha", "bravo"]));
        assert_eq!(production[1].p7b, versions[1].p7b);
        assert_ne!(production[0].p7b, versions[1].p7b);
    }

    // Every change is in the audit log, naming who made it.
    let log = audit_log(&ca.data_dir());
    let bundle_entries: Vec<&AuditEntry> = log
        .iter()
        .filter(|e| e.action.starts_with("anchor.") || e.action.starts_with("bundle."))
        .collect();
    for e in &bundle_entries {
        assert_eq!(e.actor, actor, "{} #{}", e.action, e.seq);
    }
    assert_eq!(count(&log, "anchor.submit"), 5);
    assert_eq!(count(&log, "anchor.approve"), 4);
    assert_eq!(count(&log, "anchor.reject"), 1);
    assert_eq!(count(&log, "anchor.retire"), 1);
    assert_eq!(count(&log, "anchor.promote"), 2);
    assert_eq!(published_versions(&log, "provider-test"), [1, 2, 3, 4, 5]);
    assert_eq!(published_versions(&log, "provider"), [1, 2]);
    assert_eq!(
        bundle_entries.len(),
        5 + 4 + 1 + 1 + 2 + 5 + 2,
        "nothing else was logged for bundles"
    );
    let submitted: BTreeSet<String> = log
        .iter()
        .filter(|e| e.action == "anchor.submit")
        .map(|e| e.details["fingerprint"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        submitted,
        fps(&["alpha", "bravo", "charlie", "delta", "echo"])
    );
    let reject = log.iter().find(|e| e.action == "anchor.reject").unwrap();
    assert_eq!(reject.target, format!("anchor {}", trio["charlie"]));
    assert_eq!(reject.details["note"], reason);
    let retire = log.iter().find(|e| e.action == "anchor.retire").unwrap();
    assert_eq!(retire.target, format!("anchor {bravo}"));
    assert_eq!(retire.details["fingerprint"], fp("bravo"));
    let promotions: Vec<(String, &str)> = log
        .iter()
        .filter(|e| e.action == "anchor.promote")
        .map(|e| {
            assert_eq!(e.details["from_bundle"], "provider-test");
            (
                e.details["from"].to_string(),
                e.details["to_bundle"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        promotions,
        [(bravo.clone(), "provider"), (alpha.clone(), "provider")]
    );
}

/// Requirement 8 on the CLI, on the store and forwarded through a running `serve`: alpha's CA
/// with a new key under the same subject is refused (`anchor_same_subject_different_key`,
/// naming the anchor it collides with; nothing stored or logged) until `--rollover` declares
/// the key rollover, and the admitted anchor then says what it would replace.
#[test]
fn a_same_subject_anchor_needs_rollover_on_the_cli_and_through_the_server() {
    let community = community(&[]);
    let ca = &community.ca;
    // Returns the ids of alpha and of its rollover in `bundle`.
    let check = |bundle: &str| -> (u64, u64) {
        let alpha: u64 = id_of(&submit(ca, bundle, "alpha.pem")["id"])
            .parse()
            .unwrap();
        let anchors_before = ca.json(&["anchor", "list"]);
        let err = ca.json_err(&["anchor", "submit", "--bundle", bundle, "alpha-next.pem"]);
        assert_eq!(err["code"], "request_denied", "{bundle}: {err}");
        let reasons = err["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "{bundle}: {err}");
        assert_eq!(reasons[0]["code"], "anchor_same_subject_different_key");
        let message = reasons[0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("anchor #{alpha} of the bundle"))
                && message.contains(&subject_of("alpha"))
                && message.contains("--rollover"),
            "{bundle}: {message}"
        );
        assert_eq!(ca.json(&["anchor", "list"]), anchors_before, "{bundle}");

        let rolled = ca.json(&[
            "anchor",
            "submit",
            "--bundle",
            bundle,
            "alpha-next.pem",
            "--rollover",
        ]);
        let record = &rolled["anchors"][0];
        assert_eq!(
            record["fingerprint"],
            fp("alpha-next"),
            "{bundle}: {rolled}"
        );
        assert_eq!(record["subject"], subject_of("alpha"), "{bundle}: {rolled}");
        assert_eq!(record["rollover_of"], json!([alpha]), "{bundle}: {rolled}");
        assert!(
            record["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains(&format!("replaces anchor #{alpha} "))),
            "{bundle}: {rolled}"
        );
        (alpha, rolled["id"].as_u64().unwrap())
    };
    let on_store = check("provider-test");
    let server = Server::start(&ca.data_dir(), PASSPHRASE);
    let via_server = check("patient-test");
    drop(server);

    // The refusals logged nothing: each bundle's anchor entries are the two submissions, the
    // second carrying the rollover flag and what it replaces.
    let log = audit_log(&ca.data_dir());
    for (bundle, (alpha, rollover)) in [("provider-test", on_store), ("patient-test", via_server)] {
        let entries: Vec<&AuditEntry> = log
            .iter()
            .filter(|e| e.action.starts_with("anchor.") && e.details["bundle"] == bundle)
            .collect();
        let seen: Vec<(&str, String, &Value, &Value)> = entries
            .iter()
            .map(|e| {
                (
                    e.action.as_str(),
                    e.target.clone(),
                    &e.details["rollover"],
                    &e.details["rollover_of"],
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "anchor.submit",
                    format!("anchor {alpha}"),
                    &json!(false),
                    &json!([])
                ),
                (
                    "anchor.submit",
                    format!("anchor {rollover}"),
                    &json!(true),
                    &json!([alpha])
                ),
            ],
            "{bundle}"
        );
    }
}

/// How a test reaches the running server: the raw HTTP/1.1 client on the plain listener, or
/// curl on the HTTPS listener trusting only the test TLS CA.
enum Transport {
    Plain(std::net::SocketAddr),
    Https { base: String, ca: PathBuf },
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Plain(_) => "plain HTTP",
            Transport::Https { .. } => "HTTPS (curl)",
        }
    }

    fn fetch(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        match self {
            Transport::Plain(addr) => http_with_headers(*addr, method, path, headers)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}")),
            Transport::Https { base, ca } => {
                curl(&format!("{base}{path}"), Some(ca), method, headers)
                    .unwrap_or_else(|out| panic!("curl {method} {base}{path}: {}", out.describe()))
            }
        }
    }

    fn get(&self, path: &str) -> HttpResponse {
        let r = self.fetch("GET", path, &[]);
        assert_eq!(
            r.status,
            200,
            "{} GET {path}: {}",
            self.name(),
            String::from_utf8_lossy(&r.body)
        );
        r
    }
}

fn header<'a>(r: &'a HttpResponse, name: &str, what: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("{what}: no {name} header in {:?}", r.headers))
}

/// Content types, strong ETags, Last-Modified, Cache-Control, conditional GET, HEAD and 404s
/// of every published resource, as seen through one transport.
fn check_http_semantics(t: &Transport) {
    const CURRENT: &str = "public, max-age=300, must-revalidate";
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    let resources: &[(&str, &str, &str)] = &[
        (
            "/bundles/provider-test.p7b",
            "application/pkcs7-mime",
            CURRENT,
        ),
        (
            "/bundles/provider-test.p7m",
            "application/pkcs7-mime",
            CURRENT,
        ),
        ("/bundles/provider-test.sha256", "text/plain", CURRENT),
        ("/bundles/provider-test.json", "application/json", CURRENT),
        (
            "/bundles/provider-test/changes.json",
            "application/json",
            CURRENT,
        ),
        (
            "/bundles/provider-test/changes.atom",
            "application/atom+xml",
            CURRENT,
        ),
        (
            "/bundles/provider-test/v/1.p7b",
            "application/pkcs7-mime",
            IMMUTABLE,
        ),
        (
            "/bundles/provider-test/v/5.p7m",
            "application/pkcs7-mime",
            IMMUTABLE,
        ),
        ("/bundles/", "text/html", CURRENT),
        ("/bundles.json", "application/json", CURRENT),
    ];
    let now = std::time::SystemTime::now();
    for (path, content_type, cache) in resources {
        let what = format!("{} GET {path}", t.name());
        let r = t.get(path);
        let ct = header(&r, "content-type", &what);
        assert_eq!(
            ct.split(';').next().unwrap().trim(),
            *content_type,
            "{what}"
        );
        let etag = header(&r, "etag", &what).to_string();
        assert_eq!(
            etag,
            format!("\"{}\"", sha256_hex(&r.body)),
            "{what}: strong ETag"
        );
        assert_eq!(
            header(&r, "content-length", &what),
            r.body.len().to_string(),
            "{what}"
        );
        assert_eq!(header(&r, "cache-control", &what), *cache, "{what}");
        let last_modified = header(&r, "last-modified", &what).to_string();
        let modified = httpdate::parse_http_date(&last_modified)
            .unwrap_or_else(|e| panic!("{what}: Last-Modified {last_modified}: {e}"));
        assert!(
            modified <= now + std::time::Duration::from_secs(2),
            "{what}"
        );

        for validators in [
            vec![("If-None-Match", etag.clone())],
            vec![("If-None-Match", format!("\"0000\", {etag}"))],
            vec![("If-None-Match", "*".to_string())],
            vec![("If-Modified-Since", last_modified.clone())],
        ] {
            let headers: Vec<(&str, &str)> =
                validators.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let not_modified = t.fetch("GET", path, &headers);
            assert_eq!(not_modified.status, 304, "{what} {headers:?}");
            assert!(
                not_modified.body.is_empty(),
                "{what} {headers:?}: 304 with a body"
            );
            assert_eq!(not_modified.header("etag"), Some(etag.as_str()), "{what}");
        }
        for validators in [
            [("If-None-Match", "\"0000\"")],
            [("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        ] {
            let fresh = t.fetch("GET", path, &validators);
            assert_eq!(fresh.status, 200, "{what} {validators:?}");
            assert_eq!(fresh.body, r.body, "{what} {validators:?}");
        }
        // The ETag wins over a date that alone would give 304.
        let changed = t.fetch(
            "GET",
            path,
            &[
                ("If-None-Match", "\"0000\""),
                ("If-Modified-Since", &last_modified),
            ],
        );
        assert_eq!(
            changed.status, 200,
            "{what}: If-None-Match takes precedence"
        );

        let head = t.fetch("HEAD", path, &[]);
        assert_eq!(head.status, 200, "{} HEAD {path}", t.name());
        assert!(head.body.is_empty(), "{} HEAD {path} sent a body", t.name());
        for name in [
            "content-type",
            "etag",
            "last-modified",
            "cache-control",
            "content-length",
        ] {
            assert_eq!(
                head.header(name),
                r.header(name),
                "{} HEAD {path}: {name}",
                t.name()
            );
        }
    }
    for path in [
        "/bundles/no-such-bundle.p7b",
        "/bundles/no-such-bundle.p7m",
        "/bundles/no-such-bundle.sha256",
        "/bundles/no-such-bundle.json",
        "/bundles/no-such-bundle/changes.json",
        "/bundles/no-such-bundle/changes.atom",
        "/bundles/no-such-bundle/v/1.p7b",
        "/bundles/provider-test/v/99.p7b",
        "/bundles/provider-test/v/0.p7b",
        "/bundles/provider-test.pem",
    ] {
        for method in ["GET", "HEAD"] {
            let r = t.fetch(method, path, &[]);
            assert_eq!(r.status, 404, "{} {method} {path}", t.name());
        }
    }
}

/// reqwest (rustls) fetches over TLS trusting only the test CA, gets 304 on conditional
/// requests, and a client trusting another CA fails the handshake.
fn check_with_reqwest(url: &str, tls_ca: &[u8], other_ca: &[u8], want: &[u8]) {
    use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let trusting = |pem: &[u8]| {
            reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(pem).unwrap()])
                .build()
                .unwrap()
        };
        let client = trusting(tls_ca);
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "reqwest GET {url}");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/pkcs7-mime");
        let etag = r.headers()[ETAG].to_str().unwrap().to_string();
        let last_modified = r.headers()[LAST_MODIFIED].to_str().unwrap().to_string();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.as_ref(), want, "reqwest GET {url}: body");
        assert_eq!(etag, format!("\"{}\"", sha256_hex(&body)));
        for (name, value) in [(IF_NONE_MATCH, &etag), (IF_MODIFIED_SINCE, &last_modified)] {
            let r = client
                .get(url)
                .header(name.clone(), value.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 304, "reqwest {name}: {value}");
            assert_eq!(r.headers()[ETAG], etag.as_str());
            assert!(r.bytes().await.unwrap().is_empty());
        }
        let err = trusting(other_ca).get(url).send().await.unwrap_err();
        assert!(err.is_connect(), "not a connection failure: {err:?}");
        let chain = format!("{err:?}");
        assert!(
            chain.contains("UnknownIssuer") || chain.to_lowercase().contains("certificate"),
            "not a certificate failure: {chain}"
        );
    });
}

/// Appends a `[tls]` table to the data directory's configuration: the test server
/// certificate for 127.0.0.1 on a free port. Returns the HTTPS base URL.
fn configure_tls(ca: &Ca) -> String {
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let table = format!(
        "\n[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = {:?}\nkey_file = {:?}\npublic_url = \"{base}\"\n",
        ca.path("tls-server.pem").to_str().unwrap(),
        ca.path("tls-server.key").to_str().unwrap(),
    );
    let file = ca.data_dir().join("anchorage.toml");
    let mut config = std::fs::read_to_string(&file).unwrap();
    config.push_str(&table);
    std::fs::write(&file, config).unwrap();
    base
}

/// The ids a submission of `trio.p7b` printed, by member.
fn trio_ids(submitted: &Value) -> BTreeMap<String, String> {
    let trio: BTreeMap<String, String> = submitted["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let member = TRIO
                .iter()
                .find(|m| fp(m) == a["fingerprint"].as_str().unwrap())
                .unwrap_or_else(|| panic!("not a trio anchor: {a}"));
            (member.to_string(), id_of(&a["id"]))
        })
        .collect();
    assert_eq!(trio.len(), 3, "{submitted}");
    trio
}

/// What is served, read by others: `openssl pkcs7 -print_certs` and pyca list exactly the
/// members (in DER order); `openssl cms -verify` against anchorage's root (from `/ca/root.cer`)
/// accepts the .p7m of the current and of an older version and yields that version's .p7b
/// bytes, and refuses it against a root that did not sign it.
fn verify_independently(ca: &Ca, plain: &Transport, members: &[&str], versions: &[Vec<u8>]) {
    let dir = ca.dir();
    let p7b = plain.get("/bundles/provider-test.p7b").body;
    assert_eq!(&p7b, versions.last().unwrap());
    let p7b_file = ca.path("served.p7b");
    std::fs::write(&p7b_file, &p7b).unwrap();
    assert_eq!(openssl_print_certs(&p7b_file), sorted_ders(members));
    assert_eq!(pyca_certificates(dir, &p7b_file), sorted_ders(members));

    std::fs::write(ca.path("root.cer"), plain.get("/ca/root.cer").body).unwrap();
    run_in(
        dir,
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "root.cer",
            "-out",
            "anchorage-root.pem",
        ],
    )
    .assert_success("openssl x509 root.cer");
    let cms_verify = |p7m: &[u8], root: &str| {
        std::fs::write(ca.path("served.p7m"), p7m).unwrap();
        let _ = std::fs::remove_file(ca.path("verified.p7b"));
        let args = "cms -verify -binary -inform DER -CAfile ROOT -in served.p7m -out verified.p7b";
        let args: Vec<&str> = args
            .split_whitespace()
            .map(|a| if a == "ROOT" { root } else { a })
            .collect();
        let out = run_in(dir, "openssl", &args);
        let content = std::fs::read(ca.path("verified.p7b")).unwrap_or_default();
        (out, content)
    };
    let current_p7m = plain.get("/bundles/provider-test.p7m").body;
    let (out, content) = cms_verify(&current_p7m, "anchorage-root.pem");
    out.assert_success("openssl cms -verify of the current .p7m");
    assert_eq!(content, p7b, "the signed content is the served .p7b");
    let (out, content) = cms_verify(
        &plain.get("/bundles/provider-test/v/2.p7m").body,
        "anchorage-root.pem",
    );
    out.assert_success("openssl cms -verify of version 2");
    assert_eq!(content, versions[1]);
    let (out, _) = cms_verify(&current_p7m, "tls-ca.pem");
    assert!(
        !out.status.success(),
        "verified against a root that did not sign it"
    );
}

/// Every version downloadable with the bytes it had when current, and the changelog as JSON
/// and as an Atom feed (read by Python's XML parser). `changes[n - 1]`: the members added and
/// removed by version n.
fn check_history(
    ca: &Ca,
    plain: &Transport,
    https_base: &str,
    versions: &[Vec<u8>],
    changes: &[(&[&str], &[&str])],
) {
    assert_eq!(versions.len(), changes.len());
    let last = versions.len();
    for (i, bytes) in versions.iter().enumerate() {
        let r = plain.get(&format!("/bundles/provider-test/v/{}.p7b", i + 1));
        assert_eq!(&r.body, bytes, "version {}", i + 1);
    }
    let beyond = format!("/bundles/provider-test/v/{}.p7b", last + 1);
    assert_eq!(plain.fetch("GET", &beyond, &[]).status, 404);

    let log = plain.get("/bundles/provider-test/changes.json").json();
    assert_eq!(log["name"], "provider-test");
    let entries = log["versions"].as_array().unwrap();
    let numbers: Vec<usize> = entries
        .iter()
        .map(|v| v["version"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        numbers,
        (1..=last).rev().collect::<Vec<_>>(),
        "newest first"
    );
    for entry in entries {
        let n = entry["version"].as_u64().unwrap() as usize;
        let (added, removed) = changes[n - 1];
        assert_eq!(entry["sha256"], sha256_hex(&versions[n - 1]), "version {n}");
        assert_eq!(fingerprints_of(&entry["added"]), fps(added), "version {n}");
        assert_eq!(
            fingerprints_of(&entry["removed"]),
            fps(removed),
            "version {n}"
        );
        let url = format!("{https_base}/bundles/provider-test/v/{n}.p7b");
        assert_eq!(entry["p7b"], url, "version {n}");
    }

    let feed = read_atom(
        ca.dir(),
        &plain.get("/bundles/provider-test/changes.atom").body,
    );
    assert_eq!(
        feed["title"], "provider-test trust bundle changes",
        "{feed}"
    );
    assert_eq!(feed["author"], "anchorage");
    let self_link = json!({
        "rel": "self",
        "href": format!("{https_base}/bundles/provider-test/changes.atom"),
    });
    assert!(
        feed["links"].as_array().unwrap().contains(&self_link),
        "{feed}"
    );
    let feed_entries = feed["entries"].as_array().unwrap();
    assert_eq!(feed_entries.len(), last, "one entry per version: {feed}");
    let entry_ids: BTreeSet<&str> = feed_entries
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(entry_ids.len(), last, "entry ids are unique");
    for (entry, n) in feed_entries.iter().zip((1..=last).rev()) {
        let what = format!("entry of version {n}: {entry}");
        assert_eq!(
            entry["title"],
            format!("provider-test version {n}"),
            "{what}"
        );
        let url = format!("{https_base}/bundles/provider-test/v/{n}.p7b");
        assert_eq!(entry["links"], json!([url]), "{what}");
        let summary = entry["summary"].as_str().unwrap();
        assert!(summary.contains(&sha256_hex(&versions[n - 1])), "{what}");
        let (added, removed) = changes[n - 1];
        for (verb, members) in [("Added", added), ("Removed", removed)] {
            assert_eq!(
                summary.matches(&format!("{verb}: ")).count(),
                members.len(),
                "{what}"
            );
            for m in members {
                assert!(
                    summary.contains(&format!("{verb}: {} ({})", subject_of(m), fp(m))),
                    "{what}"
                );
            }
        }
    }
}

/// A member's anchor subject as anchorage prints it: RFC 4514, the RDNs of the openssl
/// `-subj` last-first (the fixtures' names need no escaping).
fn subject_of(member: &str) -> String {
    let (_, subject, _) = MEMBERS.iter().find(|(m, _, _)| *m == member).unwrap();
    subject
        .trim_start_matches('/')
        .rsplit('/')
        .collect::<Vec<_>>()
        .join(",")
}

/// curl and reqwest over TLS: the bytes of the plain listener, 304 when repeated with the
/// ETag, and no connection for a client that does not trust the test CA.
fn check_tls_clients(ca: &Ca, https_base: &str, want: &[u8]) {
    let url = format!("{https_base}/bundles/provider.p7b");
    let tls_ca = ca.path("tls-ca.pem");
    let first = curl(&url, Some(&tls_ca), "GET", &[]).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body, want);
    let etag = header(&first, "etag", "curl").to_string();
    let again = curl(&url, Some(&tls_ca), "GET", &[("If-None-Match", &etag)]).unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // anchorage's own root, and the system store: neither issued the server certificate.
    for wrong in [Some(ca.path("anchorage-root.pem")), None] {
        let refused = curl(&url, wrong.as_deref(), "GET", &[]).unwrap_err();
        assert_eq!(
            refused.status.code(),
            Some(60),
            "curl should fail verification: {}",
            refused.describe()
        );
    }
    check_with_reqwest(
        &url,
        fixture("tls-ca.pem"),
        &std::fs::read(ca.path("anchorage-root.pem")).unwrap(),
        want,
    );
}

/// The full life of provider-test behind one server with an HTTPS listener: changes made with
/// the CLI while `serve` runs, published without a restart; then everything served is checked.
#[test]
fn bundles_are_published_over_http_and_https() {
    let community = community(&[]);
    let ca = &community.ca;
    let data_dir = ca.data_dir();
    let https_base = configure_tls(ca);
    let mut server = Server::start(&data_dir, PASSPHRASE);
    let plain = Transport::Plain(server.addr);
    let https = Transport::Https {
        base: https_base.clone(),
        ca: ca.path("tls-ca.pem"),
    };
    let token = data_dir.join("control-token");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the control token is private");

    // At start every declared bundle is published, empty, as version 1.
    let index = plain.get("/bundles.json").json();
    let listed: Vec<(&str, u64)> = index["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("patient", 1),
            ("patient-test", 1),
            ("provider", 1),
            ("provider-test", 1)
        ]
    );
    let status = |t: &Transport| t.get("/bundles/provider-test.json").json();
    let current = |t: &Transport| t.get("/bundles/provider-test.p7b").body;
    // The .p7b of every version as it was served when current: versions[n - 1].
    let mut versions = vec![current(&plain)];

    // The CLI acts through the running server, which publishes without a restart.
    let alpha = id_of(&submit(ca, "provider-test", "alpha.pem")["id"]);
    let pending = ca.json(&[
        "anchor",
        "list",
        "--bundle",
        "provider-test",
        "--state",
        "pending",
    ]);
    assert_eq!(ids(&pending), BTreeSet::from([alpha.parse().unwrap()]));
    assert_eq!(status(&plain)["version"], 1);
    let approved = ca.json(&["anchor", "approve", &alpha]);
    assert_eq!(approved["published"]["version"], 2, "{approved}");
    assert_eq!(approved["anchor"]["state"], "published", "{approved}");
    let now_served = status(&plain);
    assert_eq!(now_served["version"], 2, "{now_served}");
    assert_eq!(now_served["name"], "provider-test");
    assert_eq!(now_served["signed"], true);
    let listed_anchor = &now_served["anchors"][0];
    assert_eq!(listed_anchor["fingerprint"], fp("alpha"), "{now_served}");
    assert_eq!(listed_anchor["subject"], subject_of("alpha"));
    assert!(
        ::time::OffsetDateTime::parse(
            listed_anchor["not_after"].as_str().unwrap(),
            &::time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{now_served}"
    );
    assert_eq!(now_served["sha256"], sha256_hex(&current(&plain)));
    assert_eq!(
        status(&https),
        now_served,
        "both listeners serve the same version"
    );
    versions.push(current(&plain));

    let trio = trio_ids(&submit(ca, "provider-test", "trio.p7b"));
    for (member, version) in [("charlie", 3), ("delta", 4)] {
        let approved = ca.json(&["anchor", "approve", &trio[member]]);
        assert_eq!(approved["published"]["version"], version, "{approved}");
        versions.push(current(&plain));
    }
    let reason = "the evidence has expired";
    let rejected = ca.json(&["anchor", "reject", &trio["echo"], "--reason", reason]);
    assert_eq!(rejected["anchor"]["state"], "rejected", "{rejected}");
    assert_eq!(rejected["anchor"]["history"][1]["note"], reason);
    let retired = ca.json(&["anchor", "retire", &alpha]);
    assert_eq!(retired["published"]["version"], 5, "{retired}");
    versions.push(current(&plain));
    // alpha comes back: version 6 has the membership of version 4, and the same bytes.
    let alpha_again = id_of(&submit(ca, "provider-test", "alpha.pem")["id"]);
    assert_ne!(alpha_again, alpha);
    let approved = ca.json(&["anchor", "approve", &alpha_again]);
    assert_eq!(approved["published"]["version"], 6, "{approved}");
    versions.push(current(&plain));
    assert_eq!(versions[5], versions[3], "same membership, same .p7b");
    assert_ne!(versions[4], versions[3]);

    // An unchanged rebuild, through the server, publishes nothing and moves nothing.
    let etag = header(&plain.get("/bundles/provider-test.p7b"), "etag", "p7b").to_string();
    let build = ca.json(&["bundle", "build", "provider-test"]);
    assert_eq!(build["published"], false, "{build}");
    assert_eq!(build["version"], 6, "{build}");
    assert_eq!(status(&plain)["version"], 6);
    assert_eq!(
        header(&plain.get("/bundles/provider-test.p7b"), "etag", "p7b"),
        etag
    );

    // Refused uploads through the server: the same reasons as on the store, nothing stored.
    let before = ca.json(&["anchor", "list"]);
    for (file, want) in REFUSALS {
        assert_eq!(refusal_codes(ca, file), *want, "{file} through the server");
    }
    assert_eq!(ca.json(&["anchor", "list"]), before);

    // Promotion through the server publishes the production bundle.
    let promoted = ca.json(&["anchor", "promote", &trio["charlie"], "--to", "provider"]);
    assert_eq!(promoted["published"]["version"], 2, "{promoted}");
    let provider_p7b = plain.get("/bundles/provider.p7b").body;
    let provider_file = ca.path("provider.p7b");
    std::fs::write(&provider_file, &provider_p7b).unwrap();
    assert_eq!(
        openssl_print_certs(&provider_file),
        sorted_ders(&["charlie"])
    );
    let bundles_list = ca.json(&["bundle", "list"]);
    let provider_test = bundles_list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "provider-test")
        .unwrap();
    assert_eq!(provider_test["version"], 6, "{bundles_list}");

    verify_independently(ca, &plain, &["alpha", "charlie", "delta"], &versions);
    check_history(
        ca,
        &plain,
        &https_base,
        &versions,
        &[
            (&[], &[]),
            (&["alpha"], &[]),
            (&["charlie"], &[]),
            (&["delta"], &[]),
            (&[], &["alpha"]),
            (&["alpha"], &[]),
        ],
    );

    // The .sha256 file is a sha256sum line for the .p7b.
    let p7b = current(&plain);
    let sums = plain.get("/bundles/provider-test.sha256").body;
    assert_eq!(
        String::from_utf8(sums.clone()).unwrap(),
        format!("{}  provider-test.p7b\n", sha256_hex(&p7b))
    );
    let check = tempfile::tempdir().unwrap();
    std::fs::write(check.path().join("provider-test.p7b"), &p7b).unwrap();
    std::fs::write(check.path().join("provider-test.sha256"), &sums).unwrap();
    let out = run_in(
        check.path(),
        "sha256sum",
        &["--check", "--strict", "provider-test.sha256"],
    );
    out.assert_success("sha256sum --check");
    assert_eq!(out.stdout.trim(), "provider-test.p7b: OK");

    // The index pages list every bundle.
    let html = String::from_utf8(plain.get("/bundles/").body).unwrap();
    for name in [
        "provider-test.p7b",
        "provider-test.p7m",
        "provider.p7b",
        "patient.p7b",
        "patient-test.p7b",
    ] {
        assert!(
            html.contains(&format!("href=\"{name}\"")),
            "/bundles/ lacks {name}"
        );
    }
    let index = plain.get("/bundles.json").json();
    let entry = index["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "provider-test")
        .unwrap();
    assert_eq!(entry["version"], 6);
    assert_eq!(entry["sha256"], sha256_hex(&p7b));
    assert_eq!(
        entry["p7b"],
        format!("{https_base}/bundles/provider-test.p7b")
    );

    // HTTP semantics over plain HTTP and over HTTPS, then real TLS clients.
    check_http_semantics(&plain);
    check_http_semantics(&https);
    check_tls_clients(ca, &https_base, &provider_p7b);
    // CRLs and CA certificates stay on plain HTTP.
    assert!(!plain.get("/crl/issuing.crl").body.is_empty());

    // A graceful stop; then the audit log names who did what, through the server.
    assert!(server.stop().success(), "{}", server.output());
    assert!(!data_dir.join("serve.json").exists());
    assert!(!token.exists());
    let log = audit_log(&data_dir);
    let through_server = format!("{} (admin token control)", cli_actor());
    for e in log.iter().filter(|e| e.action.starts_with("anchor.")) {
        assert_eq!(e.actor, through_server, "{} #{}", e.action, e.seq);
    }
    let publications: Vec<(&str, &str, u64)> = log
        .iter()
        .filter(|e| e.action == "bundle.publish")
        .map(|e| {
            (
                e.target.as_str(),
                e.actor.as_str(),
                e.details["version"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = vec![
        ("patient", "system", 1),
        ("patient-test", "system", 1),
        ("provider", "system", 1),
        ("provider-test", "system", 1),
    ];
    for v in 2..=6 {
        want.push(("provider-test", through_server.as_str(), v));
    }
    want.push(("provider", through_server.as_str(), 2));
    assert_eq!(publications, want);
    assert_eq!(count(&log, "anchor.submit"), 5);
    assert_eq!(count(&log, "anchor.approve"), 4);
    assert_eq!(count(&log, "anchor.reject"), 1);
    assert_eq!(count(&log, "anchor.retire"), 1);
    assert_eq!(count(&log, "anchor.promote"), 1);
}

#[test]
fn seed_anchors_are_published_at_start_and_only_once() {
    let community = community(&[
        ("provider-test", "golf.pem"),
        ("provider-test", "hotel.cer"),
    ]);
    let ca = &community.ca;
    let data_dir = ca.data_dir();
    let seeds = community.bundles.path().join("provider-test/anchors");
    std::fs::write(seeds.join("README.txt"), "not an anchor: ignored\n").unwrap();

    let mut server = Server::start(&data_dir, PASSPHRASE);
    let plain = Transport::Plain(server.addr);
    let status = plain.get("/bundles/provider-test.json").json();
    assert_eq!(status["version"], 1, "{status}");
    assert_eq!(fingerprints_of(&status["anchors"]), fps(&["golf", "hotel"]));
    let p7b = plain.get("/bundles/provider-test.p7b").body;
    let file = ca.path("seeded.p7b");
    std::fs::write(&file, &p7b).unwrap();
    assert_eq!(openssl_print_certs(&file), sorted_ders(&["golf", "hotel"]));
    let changes = plain.get("/bundles/provider-test/changes.json").json();
    assert_eq!(
        changes["versions"].as_array().unwrap().len(),
        1,
        "{changes}"
    );
    assert_eq!(
        fingerprints_of(&changes["versions"][0]["added"]),
        fps(&["golf", "hotel"])
    );
    let provider = plain.get("/bundles/provider.json").json();
    assert_eq!(provider["version"], 1);
    assert_eq!(provider["anchors"], json!([]));
    let etag = header(&plain.get("/bundles/provider-test.p7b"), "etag", "p7b").to_string();
    assert!(server.stop().success(), "{}", server.output());

    // A restart finds the seeds in the bundle already: nothing new is published.
    let mut server = Server::start(&data_dir, PASSPHRASE);
    let plain = Transport::Plain(server.addr);
    let again = plain.get("/bundles/provider-test.json").json();
    assert_eq!(again["version"], 1, "{again}");
    assert_eq!(again["sha256"], status["sha256"]);
    assert_eq!(
        header(&plain.get("/bundles/provider-test.p7b"), "etag", "p7b"),
        etag
    );
    assert_eq!(
        plain.get("/bundles/provider-test/changes.json").json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        !server.stdout().contains("published bundle"),
        "{}",
        server.output()
    );

    // An operator retires a seed; a restart does not bring it back.
    let listed = ca.json(&["anchor", "list", "--bundle", "provider-test"]);
    let hotel = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["fingerprint"] == fp("hotel"))
        .unwrap_or_else(|| panic!("hotel not listed: {listed}"));
    assert_eq!(hotel["state"], "published", "{hotel}");
    assert_eq!(hotel["organization"], "seed", "{hotel}");
    let retired = ca.json(&["anchor", "retire", &id_of(&hotel["id"])]);
    assert_eq!(retired["published"]["version"], 2, "{retired}");
    assert!(server.stop().success(), "{}", server.output());
    let mut server = Server::start(&data_dir, PASSPHRASE);
    let plain = Transport::Plain(server.addr);
    let after = plain.get("/bundles/provider-test.json").json();
    assert_eq!(
        after["version"], 2,
        "a retired seed was published again: {after}"
    );
    assert_eq!(fingerprints_of(&after["anchors"]), fps(&["golf"]));
    assert!(server.stop().success(), "{}", server.output());

    let log = audit_log(&data_dir);
    let seeded: Vec<&AuditEntry> = log.iter().filter(|e| e.action == "anchor.submit").collect();
    assert_eq!(seeded.len(), 2, "each seed is submitted once");
    for e in &seeded {
        assert!(e.actor.starts_with("seed:"), "{}", e.actor);
        assert!(e.actor.contains("provider-test/anchors/"), "{}", e.actor);
    }
    assert_eq!(published_versions(&log, "provider-test"), [1, 2]);
}
