//! Seed anchors: the anchors committed under `bundles/<name>/anchors/`, loaded into their
//! bundles at start as if a member had submitted them and an administrator approved them.

use super::Submission;
use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::model::Fingerprint;
use crate::policy::admission;

impl Authority {
    /// Loads seed anchors shipped in `bundles/<name>/anchors/` that the bundle does not hold
    /// yet: admitted by the same policy, approved by "seed", then the bundle is rebuilt.
    /// A seed the bundle has held in any state stays as it is: an operator's retirement (or
    /// rejection) of a seed anchor survives restarts.
    pub fn load_seeds(&self) -> Result<Vec<String>> {
        let mut report = Vec::new();
        let inventory = self.inventory();
        for (name, declared) in &inventory.bundles {
            // Any state counts: a retired or rejected seed must not come back on restart.
            let mut known: Vec<Fingerprint> = self
                .store()?
                .anchors_of(name)?
                .into_iter()
                .map(|a| a.fingerprint)
                .collect();
            for seed in &declared.seeds {
                let certs = admission::read_anchor_upload(&seed.bytes, usize::MAX)
                    .map_err(|d| Error::Config(format!("seed {}: {d}", seed.path.display())))?;
                let actor = format!("seed:{}", seed.path.display());
                // One certificate at a time, so an anchor added to a seed .p7b is picked up.
                for der in certs {
                    let fingerprint = Fingerprint::of(&der);
                    if known.contains(&fingerprint) {
                        continue;
                    }
                    known.push(fingerprint.clone());
                    let submission = Submission {
                        bundle: name.clone(),
                        file: der,
                        samples: Vec::new(),
                        organization: "seed".into(),
                        contact: seed.path.display().to_string(),
                        rollover: false,
                    };
                    match self.submit_anchor(&submission, &actor) {
                        Ok(records) => {
                            // Approved only: `bring_up` publishes every bundle once after.
                            for r in records {
                                self.approve_pending(
                                    r.id,
                                    &actor,
                                    "seed anchor from the inventory",
                                )?;
                                report.push(format!(
                                    "{name}: seeded {} ({})",
                                    r.subject, r.fingerprint
                                ));
                            }
                        }
                        // A seed that no longer passes admission (expired, say) is reported,
                        // not fatal: the bundle keeps what it has.
                        Err(Error::Denied(d)) => {
                            tracing::warn!(bundle = %name, seed = %seed.path.display(), %fingerprint, reasons = %d, "seed anchor refused");
                            report.push(format!(
                                "{name}: seed {fingerprint} in {} refused: {d}",
                                seed.path.display()
                            ));
                        }
                        Err(e) => {
                            return Err(Error::Config(format!("seed {}: {e}", seed.path.display())))
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}
