//! The one integration test binary: every module checks anchorage's artifacts with someone
//! else's implementation (openssl, pkilint, real servers), not only with our own parser.
// Measurement and test code reads the clocks (deadlines, timings) and indexes freely.
#![allow(clippy::disallowed_methods, clippy::indexing_slicing)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod admission;
mod anchor_batches;
mod api;
mod audit;
mod audit_anchor;
mod backup;
mod browser;
mod bundle_format;
mod bundles;
mod ca_revocation;
mod connections;
mod crl;
mod discovery;
mod durability;
mod external;
mod full_disk;
mod hardening;
mod harness;
mod issuance;
mod openapi;
mod ownership;
mod paging;
mod private_files;
mod refusals;
mod seeds;
mod server;
mod setup;
mod tools;
mod torture;
mod web;
