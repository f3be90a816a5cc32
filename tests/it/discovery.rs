//! Certificate discovery as a Direct sender performs it, against real servers: the zone files
//! anchorage writes are checked by BIND's `named-checkzone` and NSD's `nsd-checkzone` and
//! served by Knot DNS (queried with `dig` over UDP with EDNS, over TCP, and truncated without
//! EDNS); the LDIF is loaded
//! into OpenLDAP `slapd` (mdb) and searched the way STAs search (spec §4, DCDT H1-H4). The
//! servers run on free 127.0.0.1 ports from temporary directories and are killed on drop.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::time::OffsetDateTime;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use tower::ServiceExt;

use anchorage::authority::{Authority, InitOptions};
use anchorage::clock::Clock;
use anchorage::config::Config;
use anchorage::http::{router, AppState};
use anchorage::keyseal::Passphrase;
use anchorage::model::HealthDomain;
use anchorage::policy::issuance::{IssueRequest, KeySource, Proofing, Subscriber};

use crate::harness::{cert_der, read, Ca, KeyAlg, DOMAIN};
use crate::tools::{free_port, run, run_in, ToolOutput};

const KNOTD: &str = "/usr/sbin/knotd";
const NSD_CHECKZONE: &str = "/usr/sbin/nsd-checkzone";
const KNOTC: &str = "/usr/sbin/knotc";
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPTEST: &str = "/usr/sbin/slaptest";
const BASE_DN: &str = "dc=direct,dc=example";
const ROOT_DN: &str = "cn=admin,dc=direct,dc=example";
const ROOT_PW: &str = "discovery-test";

// ---- helpers ------------------------------------------------------------------------------

/// A child process killed (and reaped) when the test ends, also on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_tool(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: run ops/test.sh (it installs knot, bind9-utils, bind9-dnsutils, slapd, ldap-utils)"
    );
}

/// `chattr +i` on a directory for the guard's lifetime (removed on drop, also on panic).
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Immutable {
        run("chattr", &["+i", dir.to_str().unwrap()])
            .assert_success("chattr +i (the test needs a file system with the immutable flag)");
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Replaces the `[publish]` table of the CA's configuration file.
fn set_publish(ca: &Ca, publish: toml::Value) {
    let path = ca.data_dir().join("anchorage.toml");
    let mut config: toml::Table = toml::from_str(&String::from_utf8(read(&path)).unwrap()).unwrap();
    config.insert("publish".into(), publish);
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
}

fn publish_table(text: &str) -> toml::Value {
    toml::Value::Table(toml::from_str(text).unwrap())
}

/// `publish zone -o json` for the first managed domain; returns (path, serial).
fn publish_zone(ca: &Ca) -> (PathBuf, u64) {
    let out = ca.json(&["publish", "zone", "--domain", DOMAIN]);
    let zone = &out["zones"][0];
    (
        PathBuf::from(zone["path"].as_str().unwrap()),
        zone["serial"].as_u64().unwrap(),
    )
}

/// The zone loads in BIND's and NSD's parsers (Knot serves it in the tests that query it).
fn named_checkzone(origin: &str, file: &Path) {
    run("named-checkzone", &[origin, file.to_str().unwrap()])
        .assert_success(&format!("named-checkzone {origin} {}", file.display()));
    let nsd = run(NSD_CHECKZONE, &[origin, file.to_str().unwrap()]);
    nsd.assert_success(&format!("nsd-checkzone {origin} {}", file.display()));
    assert!(
        nsd.stdout.contains("is ok"),
        "nsd-checkzone did not accept {}: {}",
        file.display(),
        nsd.describe()
    );
}

/// Issues and returns the DER of each certificate written to `out` (signing first).
fn issue(ca: &Ca, args: &[&str], out: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut all = args.to_vec();
    all.extend(["--out", out]);
    let issued = ca.issue_json(&all);
    let serials = issued["serials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let ders = crate::harness::pem_certs(&ca.path(out))
        .iter()
        .map(|p| pem::parse(p).unwrap().into_contents())
        .collect();
    (serials, ders)
}

// ---- Knot and dig ------------------------------------------------------------------------

struct Knot {
    _child: KillOnDrop,
    port: u16,
    socket: PathBuf,
}

impl Knot {
    fn start(dir: &Path, zone: &str, file: &Path) -> Knot {
        require_tool(KNOTD);
        require_tool(KNOTC);
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let port = free_port();
        let socket = dir.join("knot.sock");
        let conf = dir.join("knot.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\n    udp-max-payload: 4096\n\
                 control:\n    listen: {sock}\n\
                 database:\n    storage: {dir}/db\n\
                 log:\n  - target: stderr\n    any: info\n\
                 template:\n  - id: default\n    storage: {dir}\n    semantic-checks: on\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n\
                 zone:\n  - domain: {zone}\n    file: {file}\n",
                dir = dir.display(),
                sock = socket.display(),
                file = file.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("knotd.log")).unwrap();
        let child = Command::new(KNOTD)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start knotd: {e}"));
        let knot = Knot {
            _child: KillOnDrop(child),
            port,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let soa = knot.dig(&["+tcp", "+short", "SOA", zone]);
            if soa.status.success() && !soa.stdout.trim().is_empty() {
                return knot;
            }
            assert!(
                Instant::now() < deadline,
                "knotd did not serve {zone}: {}\n{}",
                soa.describe(),
                String::from_utf8_lossy(&read(&dir.join("knotd.log")))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dig(&self, args: &[&str]) -> ToolOutput {
        let port = self.port.to_string();
        let mut all = vec![
            "@127.0.0.1",
            "-p",
            &port,
            "+norecurse",
            "+time=5",
            "+tries=1",
        ];
        all.extend_from_slice(args);
        run("dig", &all)
    }

    /// The reload command anchorage runs after a change (blocking until Knot has loaded it).
    fn reload_command(&self) -> Vec<String> {
        vec![
            KNOTC.into(),
            "-s".into(),
            self.socket.display().to_string(),
            "-b".into(),
            "zone-reload".into(),
            "{domain}".into(),
        ]
    }
}

/// One CERT record of a dig answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CertAnswer {
    owner: String,
    key_tag: u16,
    algorithm: String,
    der: Vec<u8>,
}

/// The header flags and the CERT records in the ANSWER section of dig's full output.
fn dig_cert_answers(out: &ToolOutput) -> (Vec<String>, Vec<CertAnswer>) {
    out.assert_success("dig");
    let flags = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .unwrap_or_else(|| panic!("no header in dig output:\n{}", out.stdout))
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in out.stdout.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer && (line.trim().is_empty() || line.starts_with(";;")) {
            break;
        }
        if in_answer {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(tokens[3], "CERT", "{line}");
            assert_eq!(tokens[4], "PKIX", "certificate type PKIX: {line}");
            answers.push(CertAnswer {
                owner: tokens[0].to_string(),
                key_tag: tokens[5].parse().unwrap(),
                algorithm: tokens[6].to_string(),
                der: base64::engine::general_purpose::STANDARD
                    .decode(tokens[7..].concat())
                    .unwrap(),
            });
        }
    }
    answers.sort();
    (flags, answers)
}

/// RFC 4034 Appendix B key tag and DNSSEC algorithm of a certificate's key, computed by
/// pyca/cryptography (its own DER parser) and the RFC's arithmetic, not by anchorage.
const KEY_TAG_PY: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
k = x509.load_der_x509_certificate(open(sys.argv[1], 'rb').read()).public_key()
if isinstance(k, rsa.RSAPublicKey):
    n = k.public_numbers()
    e = n.e.to_bytes((n.e.bit_length() + 7) // 8, 'big')
    m = n.n.to_bytes((n.n.bit_length() + 7) // 8, 'big')
    key, alg = (bytes([len(e)]) if len(e) < 256 else b'\0' + len(e).to_bytes(2, 'big')) + e + m, 8
else:
    p = k.public_numbers()
    key, alg = p.x.to_bytes(32, 'big') + p.y.to_bytes(32, 'big'), 13
rdata = bytes([0, 0, 3, alg]) + key
ac = sum(b if i & 1 else b << 8 for i, b in enumerate(rdata))
ac += (ac >> 16) & 0xffff
print(ac & 0xffff, {8: 'RSASHA256', 13: 'ECDSAP256SHA256'}[alg])
"#;

/// Checks the key tag and algorithm of every answer against [`KEY_TAG_PY`].
fn assert_key_tags(dir: &Path, answers: &[CertAnswer]) {
    let script = dir.join("key_tag.py");
    std::fs::write(&script, KEY_TAG_PY).unwrap();
    for (i, answer) in answers.iter().enumerate() {
        let der = dir.join(format!("answer-{i}.der"));
        std::fs::write(&der, &answer.der).unwrap();
        let out = run(
            crate::tools::venv_bin("python"),
            &[script.to_str().unwrap(), der.to_str().unwrap()],
        );
        out.assert_success("key tag by pyca/cryptography");
        assert_eq!(
            out.stdout.trim(),
            format!("{} {}", answer.key_tag, answer.algorithm),
            "key tag and algorithm of {}",
            answer.owner
        );
    }
}

fn ders_of(answers: &[CertAnswer]) -> BTreeSet<Vec<u8>> {
    answers.iter().map(|a| a.der.clone()).collect()
}

fn soa_serial(knot: &Knot) -> u64 {
    let out = knot.dig(&["+tcp", "+short", "SOA", DOMAIN]);
    out.assert_success("dig SOA");
    out.stdout
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

// ---- slapd and ldapsearch -----------------------------------------------------------------

struct Slapd {
    _child: KillOnDrop,
    url: String,
}

fn slapd_conf(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("db")).unwrap();
    let conf = dir.join("slapd.conf");
    std::fs::write(
        &conf,
        format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {dir}/slapd.pid\nargsfile {dir}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nsuffix \"{BASE_DN}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
             directory {dir}/db\nmaxsize 104857600\n\
             index mail eq\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    run(SLAPTEST, &["-u", "-f", conf.to_str().unwrap()]).assert_success("slaptest");
    conf
}

impl Slapd {
    /// Loads `ldif` with slapadd (schema-checked) when given, then serves it.
    fn start(dir: &Path, ldif: Option<&Path>) -> Slapd {
        for tool in [SLAPD, SLAPADD, SLAPTEST] {
            require_tool(tool);
        }
        let conf = slapd_conf(dir);
        if let Some(ldif) = ldif {
            run(
                SLAPADD,
                &["-f", conf.to_str().unwrap(), "-l", ldif.to_str().unwrap()],
            )
            .assert_success("slapadd of the LDIF export");
        }
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}/");
        let log = std::fs::File::create(dir.join("slapd.log")).unwrap();
        let child = Command::new(SLAPD)
            .args(["-d", "0", "-f", conf.to_str().unwrap(), "-h", &url])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start slapd: {e}"));
        let slapd = Slapd {
            _child: KillOnDrop(child),
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = slapd.search("", &["-s", "base", "(objectClass=*)", "namingContexts"]);
            if out.status.success() {
                return slapd;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not answer: {}\n{}",
                out.describe(),
                String::from_utf8_lossy(&read(&dir.join("slapd.log")))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Anonymous `ldapsearch`, as a Direct STA binds.
    fn search(&self, base: &str, args: &[&str]) -> ToolOutput {
        let mut all = vec![
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &self.url,
            "-b",
            base,
        ];
        all.extend_from_slice(args);
        run("ldapsearch", &all)
    }

    /// The `userCertificate;binary` values found by a subtree search with `filter`.
    fn certificates(&self, filter: &str) -> BTreeSet<Vec<u8>> {
        let out = self.search(BASE_DN, &[filter, "userCertificate;binary"]);
        out.assert_success(&format!("ldapsearch {filter}"));
        out.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("userCertificate;binary:: "))
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
            .collect()
    }
}

fn set(ders: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    ders.iter().cloned().collect()
}

// ---- tests --------------------------------------------------------------------------------

/// H1, H2, D14-D16: Knot serves exactly the issued DER for an address-bound and a
/// domain-bound pair over UDP with EDNS and over TCP; without EDNS the answer is truncated
/// and the TCP retry succeeds; SRV records are as configured; a revocation leaves DNS.
#[test]
fn knot_serves_cert_records_over_udp_and_tcp_and_drops_revoked_ones() {
    let ca = Ca::init(&[DOMAIN]);
    set_publish(
        &ca,
        publish_table(
            r#"
mode = "zone"
ttl = 300
[soa]
primary = "ns1.example.net"
hostmaster = "dns-admin@example.net"
nameservers = ["ns1.example.net", "ns2.example.org"]
[[domains."direct.example.com".ldap_srv]]
target = "ldap1.direct.example.com"
port = 389
priority = 10
weight = 60
[[domains."direct.example.com".ldap_srv]]
target = "ldap2.example.org"
port = 3389
priority = 20
weight = 5
"#,
        ),
    );
    let rsa = ca.csr("jones", KeyAlg::Rsa2048);
    let (jones_serials, jones) = issue(
        &ca,
        &[
            "--address",
            "jones@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &rsa,
        ],
        "jones.pem",
    );
    let odd = ca.csr("obrien", KeyAlg::Rsa2048);
    let (_, obrien) = issue(
        &ca,
        &[
            "--address",
            "o'brien+lab@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &odd,
        ],
        "obrien.pem",
    );
    let sign = ca.csr("org-sign", KeyAlg::P256);
    let enc = ca.csr("org-enc", KeyAlg::Rsa2048);
    let (_, org) = issue(
        &ca,
        &[
            "--domain",
            DOMAIN,
            "--usage",
            "pair",
            "--csr",
            &sign,
            "--encryption-csr",
            &enc,
        ],
        "org.pem",
    );
    assert_eq!(org.len(), 2);

    let (zone_file, serial) = publish_zone(&ca);
    named_checkzone(DOMAIN, &zone_file);
    let knot_dir = ca.path("knot");
    let knot = Knot::start(&knot_dir, DOMAIN, &zone_file);
    assert_eq!(soa_serial(&knot), serial);

    // H1 over UDP with EDNS: +ignore would show a truncated answer rather than retry.
    let owner = "jones.direct.example.com.";
    let (flags, udp) = dig_cert_answers(&knot.dig(&["+bufsize=4096", "+ignore", "CERT", owner]));
    assert!(
        !flags.contains(&"tc".to_string()),
        "UDP with EDNS: {flags:?}"
    );
    assert!(flags.contains(&"aa".to_string()));
    assert_eq!(ders_of(&udp), set(&jones), "UDP answer is the issued DER");
    assert_eq!(udp[0].owner, owner);
    assert_eq!(udp[0].algorithm, "RSASHA256");
    let (_, tcp) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", owner]));
    assert_eq!(ders_of(&tcp), set(&jones), "TCP answer is the issued DER");

    // D14: a classic 512-byte UDP query is truncated, and the TCP retry gets the record.
    let (flags, truncated) = dig_cert_answers(&knot.dig(&["+noedns", "+ignore", "CERT", owner]));
    assert!(flags.contains(&"tc".to_string()), "no EDNS: {flags:?}");
    assert!(truncated.is_empty());
    let retried = knot.dig(&["+noedns", "CERT", owner]);
    assert!(
        retried.stdout.contains("retrying in TCP mode"),
        "{}",
        retried.stdout
    );
    assert_eq!(ders_of(&dig_cert_answers(&retried).1), set(&jones));

    // An address whose local part holds atext characters: the owner is written unescaped.
    let (_, odd_answer) =
        dig_cert_answers(&knot.dig(&["+bufsize=4096", "CERT", "o'brien+lab.direct.example.com."]));
    assert_eq!(ders_of(&odd_answer), set(&obrien));

    // H2: the domain-bound pair is one RRset at the apex; the ECDSA half has algorithm 13.
    let (_, apex) = dig_cert_answers(&knot.dig(&["+bufsize=4096", "+ignore", "CERT", DOMAIN]));
    assert_eq!(ders_of(&apex), set(&org), "both halves of the pair");
    let algorithms: BTreeSet<&str> = apex.iter().map(|a| a.algorithm.as_str()).collect();
    assert_eq!(
        algorithms,
        BTreeSet::from(["ECDSAP256SHA256", "RSASHA256"]),
        "{apex:?}"
    );
    assert_key_tags(&knot_dir, &apex);
    assert_key_tags(&knot_dir, &udp);
    let (_, apex_tcp) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", DOMAIN]));
    assert_eq!(ders_of(&apex_tcp), set(&org));

    // D15/D16: the configured LDAP service records.
    let srv = knot.dig(&["+short", "SRV", "_ldap._tcp.direct.example.com"]);
    srv.assert_success("dig SRV");
    let got: BTreeSet<&str> = srv.stdout.lines().map(str::trim).collect();
    assert_eq!(
        got,
        BTreeSet::from([
            "10 60 389 ldap1.direct.example.com.",
            "20 5 3389 ldap2.example.org."
        ])
    );

    // Revocation: anchorage rewrites the zone and runs the reload command itself.
    let mut table: toml::Table =
        toml::from_str(&String::from_utf8(read(&ca.data_dir().join("anchorage.toml"))).unwrap())
            .unwrap();
    let publish = table.get_mut("publish").unwrap().as_table_mut().unwrap();
    publish.insert(
        "reload_command".into(),
        toml::Value::Array(
            knot.reload_command()
                .into_iter()
                .map(toml::Value::String)
                .collect(),
        ),
    );
    std::fs::write(
        ca.data_dir().join("anchorage.toml"),
        toml::to_string(&table).unwrap(),
    )
    .unwrap();
    let revoked = ca.run(&["cert", "revoke", &jones_serials[0]]);
    revoked.assert_success("cert revoke");
    assert!(
        !revoked.stderr.contains("failed"),
        "revocation reported a publication failure: {}",
        revoked.stderr
    );
    named_checkzone(DOMAIN, &zone_file);
    let after = soa_serial(&knot);
    assert!(after > serial, "SOA serial grew: {serial} -> {after}");
    let (_, gone) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", owner]));
    assert!(gone.is_empty(), "the revoked certificate is still served");
    let (_, still) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", DOMAIN]));
    assert_eq!(ders_of(&still), set(&org), "other owners are untouched");
}

/// Fragment mode: records only, loadable through `$INCLUDE`; an unchanged store writes the
/// same bytes with the same serial, and an issuance rewrites only its own domain.
#[test]
fn fragments_include_cleanly_and_only_the_affected_domain_changes() {
    let other = "direct.example.org";
    let ca = Ca::init(&[DOMAIN, other]);
    let csr = ca.csr("jones", KeyAlg::Rsa2048);
    issue(
        &ca,
        &[
            "--address",
            "jones@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &csr,
        ],
        "jones.pem",
    );
    let all = ca.json(&["publish", "zone"]);
    let zones = all["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 2);
    let path_of = |i: usize| PathBuf::from(zones[i]["path"].as_str().unwrap());
    let (org_file, com_file) = if zones[0]["domain"] == other {
        (path_of(0), path_of(1))
    } else {
        (path_of(1), path_of(0))
    };
    assert!(com_file
        .to_str()
        .unwrap()
        .ends_with("direct.example.com.fragment"));

    // The operator's zone includes the fragment.
    let wrapper = ca.path("wrapper.zone");
    std::fs::write(
        &wrapper,
        format!(
            "$TTL 300\n@ IN SOA ns1.example.net. hostmaster.example.net. 1 3600 900 1209600 300\n@ IN NS ns1.example.net.\n$INCLUDE {}\n",
            com_file.display()
        ),
    )
    .unwrap();
    named_checkzone(DOMAIN, &wrapper);
    let text = String::from_utf8(read(&com_file)).unwrap();
    assert!(!text.contains(" SOA "), "a fragment has no SOA");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" IN CERT PKIX "))
            .count(),
        1
    );

    // Unchanged store: identical bytes, same serial, file not rewritten.
    let (com_before, org_before) = (read(&com_file), read(&org_file));
    let org_mtime = std::fs::metadata(&org_file).unwrap().modified().unwrap();
    let (_, serial) = publish_zone(&ca);
    let again = ca.json(&["publish", "zone", "--domain", DOMAIN]);
    assert_eq!(again["zones"][0]["written"], false);
    assert_eq!(again["zones"][0]["serial"].as_u64().unwrap(), serial);
    assert_eq!(read(&com_file), com_before);

    // One more issuance in direct.example.com: its serial grows, the other file stays.
    let csr2 = ca.csr("smith", KeyAlg::Rsa2048);
    issue(
        &ca,
        &[
            "--address",
            "smith@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &csr2,
        ],
        "smith.pem",
    );
    let after = ca.json(&["publish", "zone", "--domain", DOMAIN]);
    assert_eq!(
        after["zones"][0]["written"], false,
        "issuance already wrote it"
    );
    assert!(after["zones"][0]["serial"].as_u64().unwrap() > serial);
    assert_ne!(read(&com_file), com_before);
    assert_eq!(read(&org_file), org_before);
    assert_eq!(
        std::fs::metadata(&org_file).unwrap().modified().unwrap(),
        org_mtime,
        "the other domain's file was not rewritten"
    );
    named_checkzone(DOMAIN, &wrapper);

    // --out writes a copy elsewhere with the same content, over whatever was there.
    std::fs::write(ca.path("copy.fragment"), "stale").unwrap();
    ca.json(&[
        "publish",
        "zone",
        "--domain",
        DOMAIN,
        "--out",
        "copy.fragment",
    ]);
    assert_eq!(read(&ca.path("copy.fragment")), read(&com_file));
}

/// H3, H4 and the change file: slapd loads the export (schema-checked by slapadd), lists the
/// base DN in the rootDSE, answers both STA searches with the issued DER, and `ldapmodify`
/// applies the incremental file (add, modify, delete).
#[test]
fn slapd_loads_the_ldif_and_applies_the_change_file() {
    let ca = Ca::init(&[DOMAIN]);
    let jones_csr = ca.csr("jones", KeyAlg::Rsa2048);
    let (_, jones) = issue(
        &ca,
        &[
            "--address",
            "jones@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &jones_csr,
        ],
        "jones.pem",
    );
    let sign = ca.csr("org-sign", KeyAlg::Rsa2048);
    let enc = ca.csr("org-enc", KeyAlg::Rsa2048);
    let (_, org) = issue(
        &ca,
        &[
            "--domain",
            DOMAIN,
            "--usage",
            "pair",
            "--csr",
            &sign,
            "--encryption-csr",
            &enc,
        ],
        "org.pem",
    );
    let smith_csr = ca.csr("smith", KeyAlg::Rsa2048);
    let (smith_serials, smith) = issue(
        &ca,
        &[
            "--address",
            "smith+ward@direct.example.com",
            "--usage",
            "signing",
            "--csr",
            &smith_csr,
        ],
        "smith.pem",
    );

    let full = ca.json(&["publish", "ldif", "--out", "full.ldif"]);
    let revision = full["revision"].as_u64().unwrap();
    assert_eq!(full["certificates"], 4);
    let ldif_text = String::from_utf8(read(&ca.path("full.ldif"))).unwrap();
    assert!(ldif_text.lines().all(|l| l.len() <= 76), "folded at 76");
    // Deterministic: the same store exports the same bytes.
    ca.json(&["publish", "ldif", "--out", "full2.ldif"]);
    assert_eq!(read(&ca.path("full2.ldif")), read(&ca.path("full.ldif")));

    let slapd = Slapd::start(&ca.path("slapd"), Some(&ca.path("full.ldif")));
    let root = slapd.search("", &["-s", "base", "(objectClass=*)", "namingContexts"]);
    root.assert_success("rootDSE");
    assert!(
        root.stdout
            .lines()
            .any(|l| l.trim() == format!("namingContexts: {BASE_DN}")),
        "{}",
        root.stdout
    );
    // H3: address-bound, both filters.
    assert_eq!(
        slapd.certificates("(mail=jones@direct.example.com)"),
        set(&jones)
    );
    let both = |m: &str| format!("(&(mail={m})(|(userCertificate;binary=*)(userCertificate=*)))");
    assert_eq!(
        slapd.certificates(&both("jones@direct.example.com")),
        set(&jones)
    );
    assert_eq!(
        slapd.certificates(&both("smith+ward@direct.example.com")),
        set(&smith)
    );
    // H4: domain-bound, the bare domain as mail, both halves of the pair.
    assert_eq!(slapd.certificates(&format!("(mail={DOMAIN})")), set(&org));
    assert_eq!(slapd.certificates(&both(DOMAIN)), set(&org));

    // Changes: a new holder (add), a second certificate for jones (modify), smith revoked
    // (delete).
    let new_csr = ca.csr("new", KeyAlg::Rsa2048);
    let (_, newcomer) = issue(
        &ca,
        &[
            "--address",
            "new@direct.example.com",
            "--usage",
            "dual",
            "--csr",
            &new_csr,
        ],
        "new.pem",
    );
    let jones2_csr = ca.csr("jones2", KeyAlg::Rsa2048);
    let (_, jones2) = issue(
        &ca,
        &[
            "--address",
            "jones@direct.example.com",
            "--usage",
            "encryption",
            "--csr",
            &jones2_csr,
        ],
        "jones2.pem",
    );
    ca.json(&["cert", "revoke", &smith_serials[0]]);
    let changes = ca.json(&[
        "publish",
        "ldif",
        "--since",
        &revision.to_string(),
        "--out",
        "changes.ldif",
    ]);
    assert!(changes["revision"].as_u64().unwrap() > revision);
    assert_eq!(changes["entries"], 3, "add + modify + delete");
    let text = String::from_utf8(read(&ca.path("changes.ldif"))).unwrap();
    for kind in ["add", "modify", "delete"] {
        assert!(text.contains(&format!("changetype: {kind}")), "{text}");
    }
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &slapd.url,
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PW,
            "-f",
            ca.path("changes.ldif").to_str().unwrap(),
        ],
    )
    .assert_success("ldapmodify of the change file");
    assert_eq!(
        slapd.certificates("(mail=new@direct.example.com)"),
        set(&newcomer)
    );
    let mut jones_both = set(&jones);
    jones_both.extend(jones2);
    assert_eq!(
        slapd.certificates("(mail=jones@direct.example.com)"),
        jones_both
    );
    assert!(slapd
        .certificates(&both("smith+ward@direct.example.com"))
        .is_empty());
    assert_eq!(slapd.certificates(&both(DOMAIN)), set(&org));

    // Nothing changed since: an empty change file.
    let none = ca.json(&[
        "publish",
        "ldif",
        "--since",
        &changes["revision"].as_u64().unwrap().to_string(),
        "--out",
        "none.ldif",
    ]);
    assert_eq!(none["entries"], 0);
    // From revision 0: the whole directory as add records, into an empty server.
    let zero = ca.json(&["publish", "ldif", "--since", "0", "--out", "zero.ldif"]);
    assert_eq!(zero["certificates"], 5, "{zero}");
    let empty = Slapd::start(&ca.path("slapd-empty"), None);
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &empty.url,
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PW,
            "-f",
            ca.path("zero.ldif").to_str().unwrap(),
        ],
    )
    .assert_success("ldapmodify of the change file from revision 0");
    assert_eq!(
        empty.certificates("(mail=jones@direct.example.com)"),
        jones_both
    );
    assert_eq!(empty.certificates(&both(DOMAIN)), set(&org));
    assert_eq!(
        empty.certificates("(mail=new@direct.example.com)"),
        set(&newcomer)
    );
    assert!(empty
        .certificates(&both("smith+ward@direct.example.com"))
        .is_empty());

    let err = ca.json_err(&["publish", "ldif", "--since", "999999", "--out", "x.ldif"]);
    assert_eq!(err["code"], "invalid_input");
}

/// A failing reload keeps the written file and is reported; a failing write keeps the
/// previous file (and its serial) and is reported.
#[test]
fn failed_reloads_and_writes_keep_files_and_are_reported() {
    let ca = Ca::init(&[DOMAIN]);
    set_publish(
        &ca,
        publish_table(
            r#"
reload_command = ["sh", "-c", "echo reload refused for {domain} >&2; exit 7"]
reload_timeout_secs = 10
"#,
        ),
    );
    let csr = ca.csr("jones", KeyAlg::Rsa2048);
    let issued = ca.run(&[
        "cert",
        "issue",
        "--address",
        "jones@direct.example.com",
        "--usage",
        "dual",
        "--csr",
        &csr,
        "--out",
        "jones.pem",
    ]);
    issued.assert_success("issuance with a failing reload command");
    assert!(
        issued.stderr.contains("reload command failed") && issued.stderr.contains("reload refused"),
        "the failure is reported: {}",
        issued.stderr
    );
    let zone_file = ca
        .data_dir()
        .join("published/dns/direct.example.com.fragment");
    let der = cert_der(&ca.path("jones.pem"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    assert!(String::from_utf8(read(&zone_file)).unwrap().contains(&b64));

    // A config change (TTL) rewrites the zone; the reload fails: reported, file kept.
    set_publish(
        &ca,
        publish_table(
            r#"
ttl = 600
reload_command = ["sh", "-c", "echo reload refused for {domain} >&2; exit 7"]
"#,
        ),
    );
    let err = ca.json_err(&["publish", "zone"]);
    assert_eq!(err["code"], "publish_failed", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains(DOMAIN) && message.contains("reload refused"),
        "{message}"
    );
    let written = read(&zone_file);
    assert!(String::from_utf8(written.clone())
        .unwrap()
        .contains(" 600 IN CERT "));
    let serial_written = String::from_utf8(written.clone())
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();

    // Writes fail (the directory is made immutable: even root cannot create the temporary
    // file): the previous file stays byte for byte and the error names the file.
    set_publish(&ca, publish_table("ttl = 900\n"));
    let publish_dir = zone_file.parent().unwrap().to_path_buf();
    let frozen = Immutable::set(&publish_dir);
    let err = ca.json_err(&["publish", "zone"]);
    assert_eq!(err["code"], "io_error", "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("direct.example.com.fragment"));
    drop(frozen);
    assert_eq!(read(&zone_file), written, "the previous file is intact");
    let leftovers: Vec<_> = std::fs::read_dir(&publish_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // Writable again: the change goes out with a serial above the last one written.
    let ok = ca.json(&["publish", "zone"]);
    assert_eq!(ok["zones"][0]["written"], true);
    let text = String::from_utf8(read(&zone_file)).unwrap();
    assert!(text.contains(" 900 IN CERT "));
    assert_ne!(
        text.lines().nth(1).unwrap(),
        serial_written,
        "serial moved on"
    );
}

/// Names that cannot be published are refused where they enter: the configuration (domain
/// tables, SRV targets) and issuance (local parts with master-file specials).
#[test]
fn unpublishable_names_are_refused_at_config_check_and_issuance() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("anchorage.toml");
    std::fs::write(
        &config,
        r#"
public_url = "http://ca.example.com"
managed_domains = ["direct.example.com"]
[publish.domains."bad_name.example.com"]
ttl = 300
[[publish.domains."direct.example.com".ldap_srv]]
target = "ldap server.example.com"
"#,
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        env!("CARGO_BIN_EXE_anchorage"),
        &[
            "--config",
            config.to_str().unwrap(),
            "-o",
            "json",
            "config",
            "check",
        ],
    );
    assert!(!out.status.success(), "{}", out.describe());
    let problems = out.stdout.clone();
    assert!(
        problems.contains("bad_name.example.com") && problems.contains("not a valid DNS name"),
        "{problems}"
    );
    assert!(problems.contains("ldap server.example.com"), "{problems}");

    let ca = Ca::init(&[DOMAIN]);
    let csr = ca.csr("bad", KeyAlg::Rsa2048);
    for address in [
        "semi;colon@direct.example.com",
        "dollar$@direct.example.com",
        "back\\slash@direct.example.com",
        "*@direct.example.com",
        "a.*@direct.example.com",
    ] {
        let err = ca.json_err(&[
            "cert",
            "issue",
            "--address",
            address,
            "--usage",
            "dual",
            "--csr",
            &csr,
        ]);
        let text = err.to_string();
        assert!(
            text.contains("not allowed") || text.contains("wildcard"),
            "{address}: {text}"
        );
    }
    assert_eq!(ca.json(&["cert", "list"]).as_array().unwrap().len(), 0);
}

// ---- in-process: expiry sweep and the DNS operator's download -------------------------------

struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Vec<u8>, String) {
    let mut request = Request::builder().uri(uri);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, body, content_type)
}

/// Expired certificates leave the zone at the next sweep; only a dns_operator (or admin)
/// token downloads a zone over HTTP.
#[tokio::test]
async fn the_sweep_drops_expired_certificates_and_operators_download_zones() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let config = Config {
        data_dir: dir.path().join("data"),
        managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, clock.clone()).unwrap();
    authority
        .init(
            InitOptions::default(),
            &Passphrase::new("discovery test passphrase (not a secret)".into()).unwrap(),
            "test",
        )
        .unwrap();
    run_in(
        dir.path(),
        "openssl",
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-subj", "/CN=x",
            "-out", "r.csr",
        ],
    )
    .assert_success("openssl req");
    let issued = authority
        .issue(
            &IssueRequest {
                address: Some("jones@direct.example.com".into()),
                domain: None,
                usage: "dual".into(),
                profile: None,
                category: None,
                key: KeySource::Csr {
                    signing: read(&dir.path().join("r.csr")),
                    encryption: None,
                },
                subscriber: Subscriber {
                    name: "Jones".into(),
                    organization: None,
                },
                organisation: None,
                registrar: "test".into(),
                proofing: Proofing {
                    method: "in-person".into(),
                    level_of_assurance: None,
                    evidence_reference: "test".into(),
                },
            },
            None,
        )
        .unwrap();
    let der = pem::parse(&issued.certs[0].pem).unwrap().into_contents();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);

    let (operator, _) = crate::harness::token(&authority, "dns_operator", "dns", Some(30));
    let (registrar, _) = crate::harness::token(&authority, "registrar", "ra", Some(30));
    let authority = Arc::new(authority);
    let app = router(AppState::new(authority.clone()));
    let uri = format!("/api/v1/zones/{DOMAIN}");
    assert_eq!(get(&app, &uri, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, &uri, Some(&registrar)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body, content_type) = get(&app, &uri, Some(&operator)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/dns");
    let zone_file = authority
        .config()
        .publish
        .for_domain(
            &HealthDomain::parse(DOMAIN).unwrap(),
            &authority.config().data_dir,
        )
        .file();
    assert_eq!(body, read(&zone_file), "the download is the published file");
    assert!(String::from_utf8(body).unwrap().contains(&b64));
    assert_eq!(
        get(&app, "/api/v1/zones/other.example.com", Some(&operator))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let serial = authority
        .danger_store()
        .unwrap()
        .zone_state(DOMAIN)
        .unwrap()
        .unwrap()
        .serial;

    // Nothing expired yet: the sweep leaves the file alone.
    let swept = authority.sweep_zones();
    assert!(!swept[0].written);
    // Then, with nothing changed since that complete sweep, the next one does not even scan
    // the store (an idle service must not pull every certificate into memory for nothing)...
    assert!(authority.sweep_zones().is_empty(), "an idle sweep scanned");
    // ...unless a zone file went missing, or (below) a certificate expired.
    std::fs::remove_file(&zone_file).unwrap();
    let swept = authority.sweep_zones();
    assert!(swept[0].written, "a missing zone file is written again");
    assert!(zone_file.exists());
    assert!(authority.sweep_zones().is_empty());
    // Past notAfter (profiles allow at most 3 years): the sweep removes the certificate.
    *clock.0.lock().unwrap() = start + ::time::Duration::days(4 * 365);
    let swept = authority.sweep_zones();
    assert!(swept[0].written && swept[0].changed);
    assert_eq!(swept[0].records, 0);
    assert!(swept[0].serial > serial);
    assert!(!String::from_utf8(read(&zone_file)).unwrap().contains(&b64));
    let fragment = zone_file.clone();
    let wrapper = dir.path().join("wrapper.zone");
    std::fs::write(
        &wrapper,
        format!(
            "$TTL 300\n@ IN SOA ns1.example.net. hostmaster.example.net. 1 3600 900 1209600 300\n@ IN NS ns1.example.net.\n$INCLUDE {}\n",
            fragment.display()
        ),
    )
    .unwrap();
    named_checkzone(DOMAIN, &wrapper);
}

/// `serve` keeps zone files current on its own: it publishes every zone at start and
/// rewrites a domain shortly after an issuance or revocation through the API.
#[test]
fn serve_publishes_at_start_and_after_api_issuance_and_revocation() {
    use crate::server::{cli_json, http, Server, PASSPHRASE};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}", free_port());
    cli_json(
        &data,
        PASSPHRASE,
        &["init", "--managed-domain", DOMAIN, "--public-url", &url],
    );
    let token = cli_json(
        &data,
        PASSPHRASE,
        &["token", "create", "--role", "registrar", "--domain", "*"],
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let zone_file = data.join("published/dns/direct.example.com.fragment");
    assert!(!zone_file.exists());

    let mut server = Server::start(&data, PASSPHRASE);
    let wait_for = |what: &str, check: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&zone_file).unwrap_or_default();
            if check(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what}: zone file is\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("published at start", &|t| t.contains("serial"));

    run_in(
        dir.path(),
        "openssl",
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-subj", "/CN=x",
            "-out", "r.csr",
        ],
    )
    .assert_success("openssl req");
    let csr = String::from_utf8(read(&dir.path().join("r.csr"))).unwrap();
    let body = serde_json::json!({
        "address": "jones@direct.example.com", "usage": "dual", "csr": csr,
        "subscriber": {"name": "Jones"}, "proofing": {"method": "in-person", "evidence_reference": "t"},
    });
    let issued = http(
        server.addr,
        "POST",
        "/api/v1/certificates",
        Some(&token),
        Some(body.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        issued.status,
        201,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let issued = issued.json();
    let pem_text = issued["certificates"][0]["pem"].as_str().unwrap();
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(pem::parse(pem_text).unwrap().contents());
    wait_for("rewritten after issuance", &|t| t.contains(&b64));

    let serial = issued["serial"].as_str().unwrap();
    let revoked = http(
        server.addr,
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(&token),
        Some(br#"{"reason":"key-compromise"}"#),
    )
    .unwrap();
    assert_eq!(
        revoked.status,
        200,
        "{}",
        String::from_utf8_lossy(&revoked.body)
    );
    let current = wait_for("rewritten after revocation", &|t| {
        t.contains("serial") && !t.contains(&b64)
    });

    // The CLI cannot open the store while `serve` runs: `publish zone` goes through it.
    let copy = dir.path().join("copy.fragment");
    let via = cli_json(
        &data,
        PASSPHRASE,
        &[
            "publish",
            "zone",
            "--domain",
            DOMAIN,
            "--out",
            copy.to_str().unwrap(),
        ],
    );
    assert!(via["via"].as_str().unwrap().starts_with("http://"), "{via}");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), current);
    let all = cli_json(&data, PASSPHRASE, &["publish", "zone"]);
    assert_eq!(all["zones"][0]["domain"], DOMAIN, "{all}");
    server.stop();
}

// ---- the LDIF export while `serve` runs ----------------------------------------------------

/// Issues a dual-use certificate for `address` through the API; returns its DER.
fn api_issue(server: &crate::server::Server, dir: &Path, token: &str, address: &str) -> Vec<u8> {
    let key = dir.join(format!("{address}.key"));
    let req = dir.join(format!("{address}.csr"));
    run_in(
        dir,
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-subj",
            "/CN=x",
            "-out",
            req.to_str().unwrap(),
        ],
    )
    .assert_success("openssl req");
    let csr = String::from_utf8(read(&req)).unwrap();
    let body = serde_json::json!({
        "address": address, "usage": "dual", "csr": csr,
        "subscriber": {"name": "Test"}, "proofing": {"method": "in-person", "evidence_reference": "t"},
    });
    let issued = crate::server::http(
        server.addr,
        "POST",
        "/api/v1/certificates",
        Some(token),
        Some(body.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        issued.status,
        201,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let pem_text = issued.json()["certificates"][0]["pem"]
        .as_str()
        .unwrap()
        .to_string();
    pem::parse(pem_text).unwrap().contents().to_vec()
}

/// `GET /api/v1/directory/ldif` as `token`.
fn get_ldif(
    server: &crate::server::Server,
    query: &str,
    token: Option<&str>,
) -> crate::server::HttpResponse {
    crate::server::http(
        server.addr,
        "GET",
        &format!("/api/v1/directory/ldif{query}"),
        token,
        None,
    )
    .unwrap()
}

/// While `serve` holds the store, `publish ldif` (full and `--since`) goes through
/// `GET /api/v1/directory/ldif` with the control token: the file it writes is what the route
/// answers, slapd loads it and `ldapmodify` applies the change file; only DNS operators and
/// admins read the route; and the stopped path writes the same bytes and report.
#[test]
fn publish_ldif_goes_through_the_running_server() {
    use crate::server::{cli_error, cli_json, Server, PASSPHRASE};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("http://127.0.0.1:{}", free_port());
    cli_json(
        &data,
        PASSPHRASE,
        &["init", "--managed-domain", DOMAIN, "--public-url", &url],
    );
    let token = |role: &str| {
        let mut args = vec!["token", "create", "--role", role];
        if role == "registrar" {
            args.extend(["--domain", "*"]);
        }
        cli_json(&data, PASSPHRASE, &args)["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (registrar, operator) = (token("registrar"), token("dns_operator"));
    let mut server = Server::start(&data, PASSPHRASE);
    let jones = api_issue(&server, dir.path(), &registrar, "jones@direct.example.com");

    // Full export through the server, byte for byte what the route answers.
    let full_file = dir.path().join("full.ldif");
    let full = cli_json(
        &data,
        PASSPHRASE,
        &["publish", "ldif", "--out", full_file.to_str().unwrap()],
    );
    assert_eq!(full["certificates"], 1, "{full}");
    assert_eq!(full["since"], serde_json::Value::Null, "{full}");
    assert_eq!(full["path"], full_file.to_str().unwrap(), "{full}");
    let revision = full["revision"].as_u64().unwrap();
    let answer = get_ldif(&server, "", Some(&operator));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(
        answer.header("x-directory-revision"),
        Some(revision.to_string().as_str())
    );
    assert_eq!(answer.body, read(&full_file));
    let slapd = Slapd::start(&dir.path().join("slapd"), Some(&full_file));
    assert_eq!(
        slapd.certificates("(mail=jones@direct.example.com)"),
        set(std::slice::from_ref(&jones))
    );

    // Only DNS operators and admins; no token at all is 401. Both in the JSON error shape.
    let denied = get_ldif(&server, "", Some(&registrar));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["code"], "forbidden");
    let anonymous = get_ldif(&server, "", None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["code"], "unauthorised");

    // `since`: only what changed after the revision taken above.
    let newcomer = api_issue(&server, dir.path(), &registrar, "new@direct.example.com");
    let changes = get_ldif(&server, &format!("?since={revision}"), Some(&operator));
    assert_eq!(
        changes.status,
        200,
        "{}",
        String::from_utf8_lossy(&changes.body)
    );
    let later: u64 = changes
        .header("x-directory-revision")
        .unwrap()
        .parse()
        .unwrap();
    assert!(later > revision, "{later} after {revision}");
    let text = String::from_utf8(changes.body.clone()).unwrap();
    assert!(text.contains("dn: cn=new@direct.example.com,"), "{text}");
    assert!(text.contains("changetype: add"), "{text}");
    assert!(
        !text.contains("jones"),
        "an earlier entry is in the changes:\n{text}"
    );
    assert_eq!(changes.header("x-ldif-entries"), Some("1"));
    // Through the CLI, without --out: the stopped path's default file name.
    let via_cli = cli_json(
        &data,
        PASSPHRASE,
        &["publish", "ldif", "--since", &revision.to_string()],
    );
    assert_eq!(via_cli["revision"], later, "{via_cli}");
    assert_eq!(via_cli["since"], revision, "{via_cli}");
    assert_eq!(via_cli["entries"], 1, "{via_cli}");
    let change_file = data.join(format!(
        "published/directory-changes-{revision}-{later}.ldif"
    ));
    assert_eq!(via_cli["path"], change_file.to_str().unwrap(), "{via_cli}");
    assert_eq!(read(&change_file), changes.body);
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &slapd.url,
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PW,
            "-f",
            change_file.to_str().unwrap(),
        ],
    )
    .assert_success("ldapmodify of the change file from the server");
    assert_eq!(
        slapd.certificates("(mail=new@direct.example.com)"),
        set(&[newcomer])
    );
    assert_eq!(
        slapd.certificates("(mail=jones@direct.example.com)"),
        set(&[jones])
    );

    // A revision the directory has not reached, or not a number: 400 in the JSON shape.
    let ahead = get_ldif(&server, "?since=999999", Some(&operator));
    assert_eq!(ahead.status, 400);
    let ahead = ahead.json();
    assert_eq!(ahead["code"], "invalid_input", "{ahead}");
    assert!(
        ahead["message"].as_str().unwrap().contains("ahead"),
        "{ahead}"
    );
    let garbled = get_ldif(&server, "?since=abc", Some(&operator));
    assert_eq!(garbled.status, 400);
    assert_eq!(garbled.json()["code"], "invalid_input");
    let err = cli_error(&data, PASSPHRASE, &["publish", "ldif", "--since", "999999"]);
    assert_eq!(err["code"], "invalid_input", "{err}");

    // The same export with `serve` stopped: same bytes, same report.
    let served_file = dir.path().join("served.ldif");
    let served = cli_json(
        &data,
        PASSPHRASE,
        &["publish", "ldif", "--out", served_file.to_str().unwrap()],
    );
    server.stop();
    let stopped_file = dir.path().join("stopped.ldif");
    let stopped = cli_json(
        &data,
        PASSPHRASE,
        &["publish", "ldif", "--out", stopped_file.to_str().unwrap()],
    );
    assert_eq!(read(&stopped_file), read(&served_file));
    for field in ["revision", "since", "entries", "certificates"] {
        assert_eq!(
            stopped[field], served[field],
            "{field}: {stopped} vs {served}"
        );
    }
    assert_eq!(served["certificates"], 2, "{served}");
}

// ---- sharded zones ------------------------------------------------------------------------

/// Issues a certificate with a server-generated key for `address` in library use (which
/// publishes the zone before returning); returns (serial, DER).
fn issue_generated(authority: &Authority, address: &str) -> (String, Vec<u8>) {
    let issued = authority
        .issue(
            &IssueRequest {
                address: Some(address.into()),
                domain: None,
                usage: "dual".into(),
                profile: None,
                category: None,
                key: KeySource::Generate,
                subscriber: Subscriber {
                    name: "Shard Test".into(),
                    organization: None,
                },
                organisation: None,
                registrar: "test".into(),
                proofing: Proofing {
                    method: "in-person".into(),
                    level_of_assurance: None,
                    evidence_reference: "test".into(),
                },
            },
            None,
        )
        .unwrap();
    let cert = &issued.certs[0];
    (
        cert.serial.to_string(),
        pem::parse(&cert.pem).unwrap().into_contents(),
    )
}

/// Every file of a zone: the zone file and its shard files, by name.
fn zone_files(zone_file: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    out.insert("zone".to_string(), read(zone_file));
    let dir = PathBuf::from(format!("{}.d", zone_file.display()));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries {
            let path = e.unwrap().path();
            out.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                read(&path),
            );
        }
    }
    out
}

/// A zone above `publish.shard_above` is written as shard files the zone file `$INCLUDE`s
/// (BIND, NSD and Knot load it); a revocation rewrites only its shard and the zone file; the
/// incremental result is byte for byte what a full rebuild writes; downloads and `--out` get
/// the zone as one file; below the threshold the zone is one file again.
#[test]
fn sharded_zones_change_incrementally_and_match_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let mut config = Config {
        data_dir: dir.path().join("data"),
        managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
        ..Config::default()
    };
    config.publish.mode = anchorage::config::ZoneMode::Zone;
    config.publish.ttl = 300;
    config.publish.shard_above = 3;
    config.publish.shards = 4;
    let authority = Authority::open(config, clock.clone()).unwrap();
    authority
        .init(
            InitOptions::default(),
            &Passphrase::new("discovery test passphrase (not a secret)".into()).unwrap(),
            "test",
        )
        .unwrap();
    let domain = HealthDomain::parse(DOMAIN).unwrap();
    let zone_file = authority
        .config()
        .publish
        .for_domain(&domain, &authority.config().data_dir)
        .file();
    let shard_dir = PathBuf::from(format!("{}.d", zone_file.display()));
    let mut issued = Vec::new();
    for name in ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"] {
        issued.push(issue_generated(&authority, &format!("{name}@{DOMAIN}")));
        if issued.len() == 3 {
            assert!(
                zone_file.exists() && !shard_dir.exists(),
                "3 records: one file"
            );
        }
    }
    // The zone file includes the shard index, which includes the 4 shards; absolute paths.
    let text = String::from_utf8(read(&zone_file)).unwrap();
    let includes = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("$INCLUDE "))
            .map(String::from)
            .collect()
    };
    let index = includes(&text);
    assert_eq!(
        index,
        [format!("{}/index.zone", shard_dir.display())],
        "{text}"
    );
    let index_text = String::from_utf8(read(Path::new(&index[0]))).unwrap();
    let shard_paths = includes(&index_text);
    assert_eq!(shard_paths.len(), 4, "{index_text}");
    assert!(shard_paths.iter().all(|p| Path::new(p).is_absolute()));
    assert!(!text.contains(" IN CERT "), "records are in the shards");
    let files = zone_files(&zone_file);
    assert_eq!(files.len(), 6, "{:?}", files.keys());
    let records = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .values()
            .map(|f| {
                String::from_utf8_lossy(f)
                    .lines()
                    .filter(|l| l.contains(" IN CERT PKIX "))
                    .count()
            })
            .sum::<usize>()
    };
    assert_eq!(records(&files), 8);
    named_checkzone(DOMAIN, &zone_file);
    let serial = authority
        .danger_store()
        .unwrap()
        .zone_state(DOMAIN)
        .unwrap()
        .unwrap()
        .serial;

    // A revocation: its shard and the zone file (the serial) change, no other shard.
    let (revoked_serial, revoked_der) = issued[2].clone();
    authority
        .revoke(
            &anchorage::model::Serial::parse(&revoked_serial).unwrap(),
            anchorage::model::RevocationReason::KeyCompromise,
            "test",
        )
        .unwrap();
    let after = zone_files(&zone_file);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| files.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed.len(), 2, "the zone file and one shard: {changed:?}");
    assert!(changed.contains(&&"zone".to_string()));
    assert_eq!(records(&after), 7);
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    assert!(!after
        .values()
        .any(|f| String::from_utf8_lossy(f).contains(&b64(&revoked_der))));
    let state = authority
        .danger_store()
        .unwrap()
        .zone_state(DOMAIN)
        .unwrap()
        .unwrap();
    assert!(state.serial > serial);
    assert_eq!(state.records, 7);

    // A full rebuild (every file gone) writes exactly the same bytes.
    std::fs::remove_dir_all(&shard_dir).unwrap();
    std::fs::remove_file(&zone_file).unwrap();
    let full = authority.publish_zones(Some(&domain), None).unwrap();
    assert!(full[0].written && !full[0].changed);
    assert_eq!(zone_files(&zone_file), after, "full rebuild == incremental");

    // Knot loads the zone through its $INCLUDEs and serves the records.
    let knot = Knot::start(&dir.path().join("knot"), DOMAIN, &zone_file);
    assert_eq!(soa_serial(&knot), u64::from(state.serial));
    let (_, served) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", &format!("ann.{DOMAIN}.")]));
    assert_eq!(ders_of(&served), set(&[issued[0].1.clone()]));
    let (_, gone) = dig_cert_answers(&knot.dig(&["+tcp", "CERT", &format!("cy.{DOMAIN}.")]));
    assert!(gone.is_empty(), "the revoked certificate is served");

    // The download and `--out` are the zone as one file, the same bytes.
    let (_, download) = authority.zone_text(&domain).unwrap();
    let download = String::from_utf8(download).unwrap();
    assert!(!download.contains("$INCLUDE"));
    assert_eq!(
        download
            .lines()
            .filter(|l| l.contains(" IN CERT PKIX "))
            .count(),
        7
    );
    let copy = dir.path().join("copy.zone");
    authority.publish_zones(Some(&domain), Some(&copy)).unwrap();
    assert_eq!(read(&copy), download.as_bytes());
    named_checkzone(DOMAIN, &copy);

    // An issuance through the incremental path, then its full rebuild: identical again.
    issue_generated(&authority, &format!("ivy@{DOMAIN}"));
    let incremental = zone_files(&zone_file);
    assert_eq!(records(&incremental), 8);
    std::fs::remove_dir_all(&shard_dir).unwrap();
    authority.publish_zones(Some(&domain), None).unwrap();
    assert_eq!(zone_files(&zone_file), incremental);
    named_checkzone(DOMAIN, &zone_file);

    // Past every notAfter, the sweep (driven by the time index) empties the zone, which is
    // one file again.
    assert!(
        !authority.sweep_zones().is_empty(),
        "the first sweep checks every zone"
    );
    assert!(
        authority.sweep_zones().is_empty(),
        "an idle sweep does nothing"
    );
    *clock.0.lock().unwrap() = start + ::time::Duration::days(4 * 365);
    let swept = authority.sweep_zones();
    assert_eq!(swept.len(), 1);
    assert!(swept[0].written && swept[0].changed);
    assert_eq!(swept[0].records, 0);
    assert!(!shard_dir.exists(), "the shard directory is gone");
    assert!(!String::from_utf8(read(&zone_file))
        .unwrap()
        .contains("$INCLUDE"));
    named_checkzone(DOMAIN, &zone_file);
}

// ---- incremental LDIF change files ---------------------------------------------------------

/// Every entry slapd holds under the base DN, each as its sorted lines, in order: two
/// servers with the same content give the same dump whatever order they were loaded in.
fn directory_dump(slapd: &Slapd) -> Vec<Vec<String>> {
    let out = slapd.search(BASE_DN, &["(objectClass=*)", "*"]);
    out.assert_success("ldapsearch of the whole directory");
    let mut entries: Vec<Vec<String>> = out
        .stdout
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines: Vec<String> = e.lines().map(String::from).collect();
            lines.sort();
            lines
        })
        .collect();
    entries.sort();
    entries
}

fn ldapmodify(slapd: &Slapd, file: &Path) {
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &slapd.url,
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PW,
            "-f",
            file.to_str().unwrap(),
        ],
    )
    .assert_success(&format!("ldapmodify -f {}", file.display()));
}

/// The directory view behind `publish ldif --since` is kept from the changes alone
/// (issuances and revocations, whether their zone was published or is still queued, and
/// expiries from the time index), not from a walk of every certificate; what it records is
/// what a full walk records: a full export afterwards finds nothing new (same revision) and
/// the change file cut again is byte for byte the same. slapd loaded with the old export and
/// given the change file holds exactly what slapd loaded with the new full export holds.
#[test]
fn ldif_change_files_are_incremental_and_match_a_full_export() {
    let dir = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let config = Config {
        data_dir: dir.path().join("data"),
        managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
        ..Config::default()
    };
    let authority = Authority::open(config, clock.clone()).unwrap();
    authority
        .init(
            InitOptions::default(),
            &Passphrase::new("discovery test passphrase (not a secret)".into()).unwrap(),
            "test",
        )
        .unwrap();
    let mut issued = Vec::new();
    for name in ["ann", "bob", "cy"] {
        issued.push(issue_generated(&authority, &format!("{name}@{DOMAIN}")));
    }
    let first_file = dir.path().join("first.ldif");
    let first = authority.publish_ldif(Some(&first_file)).unwrap();
    assert_eq!(first.certificates, 3);

    // Changes: a new holder (add), a second certificate for ann (modify), bob revoked
    // (delete): their zone is published at once, which notes them for the view.
    issue_generated(&authority, &format!("dee@{DOMAIN}"));
    issue_generated(&authority, &format!("ann@{DOMAIN}"));
    let serial = |i: usize| anchorage::model::Serial::parse(&issued[i].0).unwrap();
    authority
        .revoke(
            &serial(1),
            anchorage::model::RevocationReason::KeyCompromise,
            "test",
        )
        .unwrap();
    let store = authority.danger_store().unwrap();
    assert_eq!(store.pending_view_holders(usize::MAX).unwrap().len(), 3);
    // Then one whose zone publication is still queued (its change is pending in the store).
    authority.queue_zone_publication();
    issue_generated(&authority, &format!("eve@{DOMAIN}"));

    let changes_file = dir.path().join("changes.ldif");
    let changes = authority
        .publish_ldif_changes(first.revision, Some(&changes_file))
        .unwrap();
    assert!(changes.revision > first.revision);
    assert_eq!(
        changes.entries, 4,
        "dee and eve added, ann modified, bob deleted"
    );
    let text = String::from_utf8(read(&changes_file)).unwrap();
    for (kind, n) in [("add", 2), ("modify", 1), ("delete", 1)] {
        assert_eq!(
            text.matches(&format!("changetype: {kind}\n")).count(),
            n,
            "{kind}: {text}"
        );
    }
    assert!(
        store.pending_view_holders(usize::MAX).unwrap().is_empty(),
        "what the view shows is forgotten"
    );

    // A full export walks every certificate: it finds nothing the incremental sync missed.
    let full_file = dir.path().join("full.ldif");
    let full = authority.publish_ldif(Some(&full_file)).unwrap();
    assert_eq!(
        full.revision, changes.revision,
        "the full walk changed the view"
    );
    assert_eq!(full.certificates, 5);
    let again_file = dir.path().join("again.ldif");
    authority
        .publish_ldif_changes(first.revision, Some(&again_file))
        .unwrap();
    assert_eq!(
        read(&again_file),
        read(&changes_file),
        "the same change file"
    );

    let incremental = Slapd::start(&dir.path().join("slapd-a"), Some(&first_file));
    ldapmodify(&incremental, &changes_file);
    let whole = Slapd::start(&dir.path().join("slapd-b"), Some(&full_file));
    let dump = directory_dump(&whole);
    assert_eq!(dump.len(), 2 + 4, "base, container and 4 holders: {dump:?}");
    assert_eq!(directory_dump(&incremental), dump);

    // Past every notAfter: the time index tells the view every holder left, without a walk.
    authority.publish_queued_zones();
    *clock.0.lock().unwrap() = start + ::time::Duration::days(4 * 365);
    let expired_file = dir.path().join("expired.ldif");
    let expired = authority
        .publish_ldif_changes(full.revision, Some(&expired_file))
        .unwrap();
    assert_eq!(expired.entries, 4, "4 deletes");
    ldapmodify(&incremental, &expired_file);
    assert_eq!(directory_dump(&incremental).len(), 2, "base and container");
    let after = authority
        .publish_ldif(Some(&dir.path().join("after.ldif")))
        .unwrap();
    assert_eq!(after.revision, expired.revision);
    assert_eq!(after.certificates, 0);
}
