//! Issuance benchmarks (requirement 13 of issue 2, items 1 and 2).
//!
//!   cargo bench --bench issuance                 # everything
//!   cargo bench --bench issuance -- csr/         # only the CSR path
//!
//! Groups:
//! - `csr/check`: `policy::issuance::check` through `Authority::approve` (CSR parse, CSR
//!   signature verification, every rule, one owner-index lookup).
//! - `csr/sign`: building and RSA-2048-signing the certificate of an approved plan with
//!   `UnlockedCa::issue`, done the way `Authority::sign_plan` does it (fresh serial with a
//!   store lookup, profile URLs, fingerprint) but without storing anything.
//! - `csr/check_and_sign`: the two together - the "issuance from a CSR in-process, without
//!   durability" figure (target >= 1,000 certificates/s on one core).
//! - `csr/authority_issue_durable`: `Authority::issue` end to end, including the sled
//!   transaction and the flush to disk that precede every acknowledgement.
//! - `keygen/*`: server-generated RSA-2048 keys: `ca::generate_key`, `pkcs12::build`, and
//!   `Authority::issue` with `KeySource::Generate` end to end (target >= 8 PKCS#12/s/core).
//! - `parallel2/*`, `parallel8/*`: the same paths from 2 (or 8) threads at once (criterion's
//!   time is wall time per certificate, so `thrpt` is the combined rate): the in-process
//!   ceiling for the HTTP benchmark's 2 concurrent clients, without HTTP, JSON or the load
//!   generator; with a flush per certificate, no flush, and a group-commit prototype.
//! - `store/*`: `Store::insert_certs` (the issuance transaction: certificate, owner index,
//!   revision, audit entry) with and without the flush that follows it in `Authority::issue`.
//! - `durability/*`: what a flush costs on this disk (raw fdatasync, sled insert + flush).
//!
//! Every figure is single-threaded; criterion's `thrpt` line is certificates (or PKCS#12) per
//! second. Results and the commands used are in ops/BENCHMARKS.md.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use time::OffsetDateTime;

use anchorage::audit::AuditDraft;
use anchorage::authority::{Authority, InitOptions};
use anchorage::ca::{self, CaRole, EndEntitySpec, UnlockedCa};
use anchorage::clock::SystemClock;
use anchorage::config::Config;
use anchorage::keyseal::Passphrase;
use anchorage::model::{DirectAddress, Fingerprint, HealthDomain, Holder};
use anchorage::pkcs12;
use anchorage::policy::issuance::{
    Approved, IssueRequest, KeySource, PlannedKey, Proofing, Subscriber,
};
use anchorage::policy::profile::GeneratedKey;
use anchorage::store::{CertRecord, RECORD_VERSION};

const DOMAIN: &str = "direct.example.com";
const PASSPHRASE: &str = "bench-passphrase-not-secret";

/// A CA in a temporary data directory, unlocked, plus one RSA-2048 CSR.
struct Fixture {
    _dir: tempfile::TempDir,
    authority: Authority,
    issuing: UnlockedCa,
    csr_pem: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // One CSR serves every request here: lift the one-key-per-holder rule (a copy of the
    // shipped profiles), which is not what these benchmarks measure.
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("allow_key_reuse = false", "allow_key_reuse = true");
        std::fs::write(policies.join(path.file_name().unwrap()), text).unwrap();
    }
    let config = Config {
        managed_domains: vec![HealthDomain::parse(DOMAIN).unwrap()],
        data_dir: dir.path().join("data"),
        policies_dir: Some(policies),
        ..Default::default()
    };
    let authority = Authority::open(config, Arc::new(SystemClock)).unwrap();
    // As in `serve`: zone files are rewritten by a background task after issuance, not in the
    // request (the queue is never drained here; `discovery.rs` measures that rewrite).
    let _ = authority.queue_zone_publication();
    let pass = Passphrase::new(PASSPHRASE.into()).unwrap();
    authority
        .init(InitOptions::default(), &pass, "bench")
        .unwrap();
    // The same unlocked issuing CA `Authority` holds (its `Signers` are private).
    let record = authority
        .danger_store()
        .unwrap()
        .ca_record(CaRole::Issuing)
        .unwrap()
        .unwrap();
    let issuing = ca::unlock(&record, &pass).unwrap();
    Fixture {
        _dir: dir,
        authority,
        issuing,
        csr_pem: rsa2048_csr(),
    }
}

/// A subscriber CSR as a client would send it: RSA-2048, SHA-256, PEM.
fn rsa2048_csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench@direct.example.com");
    let csr = params.serialize_request(&key).unwrap();
    csr.pem().unwrap().into_bytes()
}

fn request(address: &str, key: KeySource) -> IssueRequest {
    IssueRequest {
        address: Some(address.to_string()),
        domain: None,
        usage: "dual".into(),
        profile: None,
        category: None,
        key,
        subscriber: Subscriber {
            name: "Bench".into(),
            organization: None,
        },
        organisation: None,
        registrar: "bench".into(),
        proofing: Proofing {
            method: "in-person".into(),
            level_of_assurance: None,
            evidence_reference: "bench".into(),
        },
    }
}

fn csr_request(f: &Fixture, address: &str) -> IssueRequest {
    request(
        address,
        KeySource::Csr {
            signing: f.csr_pem.clone(),
            encryption: None,
        },
    )
}

/// Mirrors `Authority::sign_plan` for CSR keys, minus the record it hands to the store:
/// fresh serial (CSPRNG + store lookup), spec from the profile, build + sign, fingerprint.
fn sign_approved(f: &Fixture, approved: &Approved) -> Vec<(Vec<u8>, Fingerprint)> {
    let a = &f.authority;
    let now = OffsetDateTime::now_utc();
    let not_after = (now + time::Duration::days(i64::from(approved.profile().validity_days)))
        .min(f.issuing.not_after());
    let public_url = &a.config().public_url;
    let mut out = Vec::with_capacity(approved.certs().len());
    for planned in approved.certs() {
        let serial = ca::random_serial().unwrap();
        assert!(a.danger_store().unwrap().cert(&serial).unwrap().is_none());
        let spec = EndEntitySpec {
            serial,
            holder: approved.holder().clone(),
            usage: planned.usage,
            organization: approved.subscriber().organization.clone(),
            not_before: now,
            not_after,
            policy_oids: approved.policy_oids().to_vec(),
            crl_url: approved.profile().crl_url(public_url, "issuing"),
            ca_issuers_url: approved.profile().ca_issuers_url(public_url, "issuing"),
        };
        let PlannedKey::FromCsr(csr) = &planned.key else {
            panic!("the CSR bench plans CSR keys only");
        };
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der).unwrap();
        let der = f.issuing.issue(&spec, &spki).unwrap();
        let fingerprint = Fingerprint::of(&der);
        out.push((der, fingerprint));
    }
    out
}

fn csr_path(c: &mut Criterion) {
    let f = fixture();
    let req = csr_request(&f, "bench@direct.example.com");
    let approved = f.authority.approve(&req).unwrap();
    assert_eq!(approved.certs().len(), 1, "usage dual is one certificate");

    let mut g = c.benchmark_group("csr");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("check", |b| {
        b.iter(|| black_box(f.authority.approve(black_box(&req)).unwrap()))
    });
    g.bench_function("sign", |b| {
        b.iter(|| black_box(sign_approved(&f, black_box(&approved))))
    });
    g.bench_function("check_and_sign", |b| {
        b.iter(|| {
            let approved = f.authority.approve(black_box(&req)).unwrap();
            black_box(sign_approved(&f, &approved))
        })
    });
    // Durable: one sled transaction (cert, owner index, revision, audit entry) and a flush
    // per certificate. A distinct address per iteration so the owner-index entry of one
    // holder does not grow over the run (see BENCHMARKS.md on that growth).
    let n = AtomicU64::new(0);
    g.bench_function("authority_issue_durable", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let req = csr_request(&f, &format!("bench{i}@{DOMAIN}"));
            black_box(f.authority.issue(&req, None).unwrap())
        })
    });
    g.finish();
}

fn keygen_path(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("keygen");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("generate_key_rsa2048", |b| {
        b.iter(|| black_box(ca::generate_key(GeneratedKey::Rsa2048).unwrap()))
    });
    let key = ca::generate_key(GeneratedKey::Rsa2048).unwrap();
    let cert = f
        .authority
        .issue(&csr_request(&f, &format!("p12@{DOMAIN}")), None)
        .unwrap();
    let cert_der = x509_der(&cert.certs[0].pem);
    let chain = f.authority.ca_chain().unwrap();
    let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let password = pkcs12::generate_password().unwrap();
    g.bench_function("pkcs12_build", |b| {
        b.iter(|| {
            black_box(pkcs12::build(&cert_der, &key, &chain, &password, "bench (dual)").unwrap())
        })
    });
    // End to end as the API does it for `keygen: true`: plan, generate, sign, store + flush,
    // PKCS#12 with a server-generated password.
    let n = AtomicU64::new(0);
    g.bench_function("authority_issue_generate", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let req = request(&format!("keygen{i}@{DOMAIN}"), KeySource::Generate);
            let out = f.authority.issue(&req, None).unwrap();
            assert!(out.certs[0].pkcs12.is_some());
            black_box(out)
        })
    });
    g.finish();
}

/// The record `Authority::issue` stores for certificate `der` of `approved`, for holder `i`.
fn record_for(approved: &Approved, der: &[u8], i: u64) -> CertRecord {
    let holder = Holder::Address(DirectAddress::parse(&format!("store{i}@{DOMAIN}")).unwrap());
    let now = OffsetDateTime::now_utc();
    let PlannedKey::FromCsr(csr) = &approved.certs()[0].key else {
        panic!("CSR plan expected");
    };
    CertRecord {
        record_version: RECORD_VERSION,
        revision: 0,
        serial: ca::random_serial().unwrap(),
        request_id: "0011223344556677".into(),
        dns_owner: holder.dns_owner(),
        holder,
        usage: approved.certs()[0].usage,
        requested_usage: approved.usage(),
        profile: approved.profile().name.clone(),
        level_of_assurance: approved.level_of_assurance().to_string(),
        category: approved.category().to_string(),
        subscriber: approved.subscriber().clone(),
        registrar: approved.registrar().to_string(),
        proofing: approved.proofing().clone(),
        key: csr.key.description.clone(),
        key_origin: "csr".into(),
        not_before: now,
        not_after: now + time::Duration::days(365),
        fingerprint: Fingerprint::of(der),
        issued_at: now,
        der: der.to_vec(),
    }
}

fn store_path(c: &mut Criterion) {
    let f = fixture();
    let approved = f
        .authority
        .approve(&csr_request(&f, &format!("bench@{DOMAIN}")))
        .unwrap();
    let der = sign_approved(&f, &approved).remove(0).0;
    let store = &*f.authority.danger_store().unwrap();
    let draft = |r: &CertRecord| {
        AuditDraft::new(
            "bench",
            "cert.issue",
            r.holder.to_string(),
            serde_json::json!({"serials": [r.serial.to_string()], "usage": "dual",
                "profile": "address", "subscriber": r.subscriber, "proofing": r.proofing,
                "key_origin": "csr"}),
        )
    };
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(10));
    let n = AtomicU64::new(0);
    g.bench_function("insert_certs", |b| {
        b.iter(|| {
            let mut records = [record_for(
                &approved,
                &der,
                n.fetch_add(1, Ordering::Relaxed),
            )];
            let d = draft(&records[0]);
            let write = anchorage::store::IssueWrite::bulk(
                &records[0].holder,
                "bench",
                OffsetDateTime::now_utc(),
            );
            black_box(
                store
                    .insert_certs(&mut records, OffsetDateTime::now_utc(), d, &write)
                    .unwrap(),
            )
        })
    });
    g.bench_function("insert_certs_and_flush", |b| {
        b.iter(|| {
            let mut records = [record_for(
                &approved,
                &der,
                n.fetch_add(1, Ordering::Relaxed),
            )];
            let d = draft(&records[0]);
            let write = anchorage::store::IssueWrite::bulk(
                &records[0].holder,
                "bench",
                OffsetDateTime::now_utc(),
            );
            store
                .insert_certs(&mut records, OffsetDateTime::now_utc(), d, &write)
                .unwrap();
            store.flush().unwrap();
        })
    });
    g.finish();
}

/// Runs `iters` calls of `op` split over `threads` threads; returns the wall time.
fn on_threads(threads: u64, iters: u64, op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (from, to) = (iters * t / threads, iters * (t + 1) / threads);
            s.spawn(move || (from..to).for_each(op));
        }
    });
    start.elapsed()
}

/// A prototype of group commit, built only on the public `Store::flush`: a caller whose
/// transaction has committed takes a ticket; one caller at a time flushes on behalf of every
/// ticket taken before its flush began, the others wait for a flush that covers theirs.
/// (Proposed for `Authority::issue`; see BENCHMARKS.md. Not used by anchorage itself.)
#[derive(Default)]
struct GroupCommit {
    state: Mutex<GroupState>,
    flushed: Condvar,
    flushes: AtomicU64,
}

#[derive(Default)]
struct GroupState {
    tickets: u64,
    durable: u64,
    flushing: bool,
}

impl GroupCommit {
    fn commit(&self, store: &anchorage::store::Store) {
        let mut st = self.state.lock().unwrap();
        st.tickets += 1;
        let mine = st.tickets;
        while st.durable < mine {
            if st.flushing {
                st = self.flushed.wait(st).unwrap();
                continue;
            }
            st.flushing = true;
            let covers = st.tickets;
            drop(st);
            store.flush().unwrap();
            self.flushes.fetch_add(1, Ordering::Relaxed);
            st = self.state.lock().unwrap();
            st.flushing = false;
            st.durable = covers;
            self.flushed.notify_all();
        }
    }
}

/// A prototype of a leaner issuance transaction (a proposal, not anchorage's code), in its
/// own sled database: the certificate record is encoded before the transaction, the owner
/// index keeps the holder under the owner name and one small key per serial (instead of an
/// entry whose serial list grows with every certificate), and inside the transaction only
/// the revision, the uniqueness and owner checks and the audit chain link are done.
struct LeanStore {
    db: sled::Db,
    meta: sled::Tree,
    certs: sled::Tree,
    owners: sled::Tree,
    audit: sled::Tree,
}

impl LeanStore {
    fn open(dir: &std::path::Path) -> LeanStore {
        let db = sled::Config::new()
            .path(dir.join("lean"))
            .mode(sled::Mode::HighThroughput)
            .open()
            .unwrap();
        let tree = |n: &str| db.open_tree(n).unwrap();
        LeanStore {
            meta: tree("meta"),
            certs: tree("certs"),
            owners: tree("owners"),
            audit: tree("audit"),
            db,
        }
    }

    fn insert(&self, record: &CertRecord, draft: &AuditDraft) {
        use sled::transaction::ConflictableTransactionError as E;
        use sled::Transactional;
        let body = serde_json::to_vec(record).unwrap();
        let serial = record.serial.to_bytes();
        let holder = record.holder.to_string();
        let owner = record.dns_owner.as_bytes();
        let mut owner_serial = owner.to_vec();
        owner_serial.push(0);
        owner_serial.extend_from_slice(&serial);
        let now = OffsetDateTime::now_utc();
        (&self.certs, &self.owners, &self.meta, &self.audit)
            .transaction(|(certs, owners, meta, audit)| {
                let revision = meta
                    .get(b"revision")?
                    .map_or(0, |b| u64::from_be_bytes(b.as_ref().try_into().unwrap()))
                    + 1;
                meta.insert(b"revision", &revision.to_be_bytes())?;
                if certs.get(&serial)?.is_some() {
                    return Err(E::Abort("serial in use"));
                }
                match owners.get(owner)? {
                    Some(h) if h.as_ref() != holder.as_bytes() => {
                        return Err(E::Abort("owner collision"))
                    }
                    Some(_) => {}
                    None => {
                        owners.insert(owner, holder.as_bytes())?;
                    }
                }
                owners.insert(owner_serial.as_slice(), &[])?;
                // revision in front of the pre-encoded record
                let mut value = revision.to_be_bytes().to_vec();
                value.extend_from_slice(&body);
                certs.insert(serial.as_slice(), value)?;
                let head: Option<anchorage::audit::AuditHead> = meta
                    .get(b"audit_head")?
                    .map(|b| serde_json::from_slice(&b).unwrap());
                // Unkeyed: one HMAC instead of one SHA-256 per entry does not move this bound.
                let entry =
                    anchorage::audit::AuditEntry::chain(head.as_ref(), now, draft.clone(), None)
                        .unwrap();
                audit.insert(
                    &entry.seq.to_be_bytes(),
                    serde_json::to_vec(&entry).unwrap(),
                )?;
                meta.insert(b"audit_head", serde_json::to_vec(&entry.head()).unwrap())?;
                Ok(())
            })
            .unwrap();
    }
}

fn parallel_path(c: &mut Criterion) {
    let f = fixture();
    let req = csr_request(&f, &format!("bench@{DOMAIN}"));
    let n = AtomicU64::new(0);
    let store = &*f.authority.danger_store().unwrap();
    // approve + sign + the issuance transaction, as `Authority::issue` does before its flush.
    let issue_without_flush = || {
        let approved = f.authority.approve(&req).unwrap();
        let der = sign_approved(&f, &approved).remove(0).0;
        let mut records = [record_for(
            &approved,
            &der,
            n.fetch_add(1, Ordering::Relaxed),
        )];
        let d = AuditDraft::new("bench", "cert.issue", "x", serde_json::json!({}));
        let write = anchorage::store::IssueWrite::bulk(
            &records[0].holder,
            "bench",
            OffsetDateTime::now_utc(),
        );
        black_box(store.insert_certs(&mut records, OffsetDateTime::now_utc(), d, &write)).unwrap();
    };
    for threads in [2u64, 8] {
        let mut g = c.benchmark_group(format!("parallel{threads}"));
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(10));
        if threads == 2 {
            g.bench_function("check_and_sign", |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|_| {
                        let approved = f.authority.approve(&req).unwrap();
                        black_box(sign_approved(&f, &approved));
                    })
                })
            });
            // The ceiling for any flush strategy: no flush at all.
            g.bench_function("check_sign_store_no_flush", |b| {
                b.iter_custom(|iters| on_threads(threads, iters, &|_| issue_without_flush()))
            });
        }
        // Today: every request flushes (sled coalesces only what overlaps by chance).
        g.bench_function("check_sign_store_flush_each", |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|_| {
                    issue_without_flush();
                    store.flush().unwrap();
                })
            })
        });
        if threads == 2 {
            let lean = LeanStore::open(f._dir.path());
            let lean_issue = || {
                let approved = f.authority.approve(&req).unwrap();
                let der = sign_approved(&f, &approved).remove(0).0;
                let record = record_for(&approved, &der, n.fetch_add(1, Ordering::Relaxed));
                let d = AuditDraft::new("bench", "cert.issue", "x", serde_json::json!({}));
                lean.insert(&record, &d);
            };
            g.bench_function("check_sign_lean_store_no_flush", |b| {
                b.iter_custom(|iters| on_threads(threads, iters, &|_| lean_issue()))
            });
            g.bench_function("check_sign_lean_store_flush_each", |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, &|_| {
                        lean_issue();
                        lean.db.flush().unwrap();
                    })
                })
            });
        }
        let group = GroupCommit::default();
        g.bench_function("check_sign_store_group_commit", |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|_| {
                    issue_without_flush();
                    group.commit(store);
                })
            })
        });
        let (tickets, flushes) = (
            group.state.lock().unwrap().tickets,
            group.flushes.load(Ordering::Relaxed),
        );
        if flushes > 0 {
            eprintln!(
                "parallel{threads}/group_commit: {tickets} commits in {flushes} flushes ({:.2} per flush)",
                tickets as f64 / flushes as f64
            );
        }
        g.bench_function("authority_issue_durable", |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|_| {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    let req = csr_request(&f, &format!("par{i}@{DOMAIN}"));
                    black_box(f.authority.issue(&req, None).unwrap());
                })
            })
        });
        g.finish();
    }
}

fn durability(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("durability");
    g.measurement_time(Duration::from_secs(10));
    // The disk's floor: append 4 KiB and fdatasync.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("fsync-probe"))
        .unwrap();
    let block = vec![0x5au8; 4096];
    g.bench_function("write_4k_fdatasync", |b| {
        b.iter(|| {
            file.write_all(&block).unwrap();
            file.sync_data().unwrap();
        })
    });
    // sled as the store opens it: one ~3 KB record (the size of a stored CertRecord), flush.
    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let value = vec![0x42u8; 3000];
    let n = AtomicU64::new(0);
    g.bench_function("sled_insert_3k_flush", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            db.insert(i.to_be_bytes(), value.as_slice()).unwrap();
            db.flush().unwrap();
        })
    });
    g.bench_function("sled_insert_3k_no_flush", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            db.insert(i.to_be_bytes(), value.as_slice()).unwrap();
        })
    });
    // What one issuance's writes cost in sled without a transaction: random 16-byte keys
    // (serials) with small index values or a ~1.5 KB record, an append-style key, an
    // overwrite of one counter, and whether a Batch is cheaper per insert (it is not).
    let t2 = db.open_tree("small").unwrap();
    g.bench_function("sled_insert_small_random_no_flush", |b| {
        b.iter(|| {
            let k = anchorage::ca::random_serial().unwrap().to_bytes();
            t2.insert(k, &[1u8; 8]).unwrap();
        })
    });
    let t4 = db.open_tree("mid").unwrap();
    let mid = vec![0x42u8; 1500];
    g.bench_function("sled_insert_1500_random_no_flush", |b| {
        b.iter(|| {
            let k = anchorage::ca::random_serial().unwrap().to_bytes();
            t4.insert(k, mid.as_slice()).unwrap();
        })
    });
    let t5 = db.open_tree("seq500").unwrap();
    let small500 = vec![0x42u8; 500];
    g.bench_function("sled_insert_500_seq_no_flush", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            t5.insert(i.to_be_bytes(), small500.as_slice()).unwrap();
        })
    });
    let t6 = db.open_tree("meta").unwrap();
    g.bench_function("sled_overwrite_same_key_no_flush", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            t6.insert(b"revision", &i.to_be_bytes()).unwrap();
        })
    });
    let t7 = db.open_tree("batch").unwrap();
    g.bench_function("sled_batch32_1500_random_no_flush", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..32 {
                let k = anchorage::ca::random_serial().unwrap().to_bytes();
                batch.insert(k, mid.as_slice());
            }
            t7.apply_batch(batch).unwrap();
        })
    });
    let t8 = db.open_tree("batchsmall").unwrap();
    g.bench_function("sled_batch32_small_random_no_flush", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..32 {
                let k = anchorage::ca::random_serial().unwrap().to_bytes();
                batch.insert(k, &[1u8; 8]);
            }
            t8.apply_batch(batch).unwrap();
        })
    });
    let t3 = db.open_tree("big").unwrap();
    g.bench_function("sled_insert_3k_random_no_flush", |b| {
        b.iter(|| {
            let k = anchorage::ca::random_serial().unwrap().to_bytes();
            t3.insert(k, value.as_slice()).unwrap();
        })
    });
    g.finish();
}

fn x509_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

criterion_group!(
    benches,
    csr_path,
    keygen_path,
    parallel_path,
    store_path,
    durability
);
criterion_main!(benches);
