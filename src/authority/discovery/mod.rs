//! Discovery publication use cases: the DNS zones (`zones`), the LDAP directory export
//! (`directory`, its view kept current from changes by `view`) and the batching of zone
//! rewrites after changes (`queue`). What they share lives here: which certificates are
//! publishable (valid now, not revoked). Files are streamed to disk certificate by
//! certificate; only the small plan is in memory.

use std::collections::HashSet;

use time::OffsetDateTime;

use super::Authority;
use crate::error::Result;
use crate::model::Serial;
use crate::store::{IndexedCert, Store};

mod directory;
mod published;
mod queue;
mod shards;
mod view;
mod zones;

pub use directory::LdifOutcome;
pub use published::{next_serial, ZoneOutcome};
pub use queue::ZoneQueue;

/// How to tell revoked certificates: one lookup each (a single zone), or a set read once
/// (full runs over every certificate).
pub(super) enum Revoked {
    Lookup,
    Set(HashSet<Vec<u8>>),
}

impl Revoked {
    pub(super) fn contains(&self, store: &crate::store::Store, serial: &Serial) -> Result<bool> {
        match self {
            Revoked::Lookup => store.is_revoked(serial),
            Revoked::Set(set) => Ok(set.contains(&serial.to_bytes())),
        }
    }
}

impl Authority {
    /// The publishable certificates of one domain (valid at `now`, not revoked), in order.
    pub(super) fn publishable<'a>(
        store: &'a Store,
        domain: &str,
        now: OffsetDateTime,
        revoked: &'a Revoked,
    ) -> impl Iterator<Item = Result<IndexedCert>> + 'a {
        store
            .domain_certs(domain)
            .filter_map(move |cert| match cert {
                Ok(cert) if !cert.is_current(now) => None,
                Ok(cert) => match revoked.contains(store, &cert.serial) {
                    Ok(false) => Some(Ok(cert)),
                    Ok(true) => None,
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(e)),
            })
    }
}

pub(super) fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}
