//! Zone publication after a change: at once (CLI, library use) or batched by `serve`, which
//! queues the domains issuance and revocation touched and rewrites each zone once per burst.
//! A failed publication stays queued, so a zone never misses a change.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::published::ZoneOutcome;
use super::zones::log_outcome;
use crate::authority::Authority;
use crate::model::HealthDomain;

/// Domains waiting for their zone to be rewritten, when `serve` batches publication.
#[derive(Default)]
pub struct ZoneQueue {
    /// `None`: publish at once (CLI, library use).
    domains: Mutex<Option<BTreeSet<HealthDomain>>>,
    notify: Arc<Notify>,
}

impl Authority {
    /// From now on zones changed by issuance or revocation are queued for
    /// [`Authority::publish_queued_zones`] instead of written in the request; the returned
    /// `Notify` fires when a domain is queued. `serve` does this, so a burst of issuances in a
    /// large domain rewrites its zone once, not once per certificate.
    pub fn queue_zone_publication(&self) -> Arc<Notify> {
        if let Ok(mut queue) = self.zone_queue.domains.lock() {
            queue.get_or_insert_with(BTreeSet::new);
        }
        self.zone_queue.notify.clone()
    }

    /// Publishes the queued domains (see [`Authority::queue_zone_publication`]).
    pub fn publish_queued_zones(&self) -> Vec<ZoneOutcome> {
        let domains = match self.zone_queue.domains.lock() {
            Ok(mut queue) => queue.as_mut().map(std::mem::take).unwrap_or_default(),
            Err(_) => BTreeSet::new(),
        };
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for domain in domains {
            match self.publish_now(&domain) {
                Some(outcome) => out.push(outcome),
                None => failed.push(domain),
            }
        }
        // Kept for the next run (a change, the sweep, or the store healing after a full disk),
        // so a zone never misses a change whose publication failed.
        if !failed.is_empty() {
            if let Ok(mut queue) = self.zone_queue.domains.lock() {
                queue.get_or_insert_with(BTreeSet::new).extend(failed);
            }
        }
        out
    }

    /// After an issuance or revocation: republish the affected domain only (now, or queued
    /// in `serve`). Failures are logged, never undo the change that triggered them.
    pub(in crate::authority) fn publish_after_change(&self, domain: &HealthDomain) {
        if let Ok(mut queue) = self.zone_queue.domains.lock() {
            if let Some(queue) = queue.as_mut() {
                queue.insert(domain.clone());
                self.zone_queue.notify.notify_one();
                return;
            }
        }
        self.publish_now(domain);
    }

    fn publish_now(&self, domain: &HealthDomain) -> Option<ZoneOutcome> {
        match self.publish_changes(domain, &std::collections::BTreeSet::new()) {
            Ok(outcome) => {
                log_outcome(&outcome);
                Some(outcome)
            }
            Err(e) => {
                tracing::error!(
                    domain = domain.as_str(), error = %e, code = e.code(),
                    "writing the zone file failed; the previous file is unchanged"
                );
                None
            }
        }
    }
}
