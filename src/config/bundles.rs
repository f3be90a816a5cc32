//! `[bundles]`: how long published bundle versions stay in the store. Every publish adds a
//! version holding the whole bundle, so without a limit a busy community's store grows with
//! every approval; retention prunes the downloadable files of old versions while their
//! changelog entries (what was added and removed, when, the digest) stay.

use serde::{Deserialize, Serialize};

/// Retention of published bundle versions. A version is pruned when it is BOTH outside the
/// newest `keep_versions` of its bundle AND published more than `keep_days` days ago: either
/// limit alone keeps it. The current version is never pruned. A pruned version's files answer
/// 410 Gone; its changelog and Atom feed entries stay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundlesConfig {
    /// The newest versions of each bundle kept whatever their age (at least 1).
    pub keep_versions: u32,
    /// Versions younger than this many days are kept whatever their number (0 = age keeps
    /// nothing beyond `keep_versions`).
    pub keep_days: u32,
}

impl Default for BundlesConfig {
    fn default() -> Self {
        BundlesConfig {
            keep_versions: 50,
            keep_days: 365,
        }
    }
}

impl BundlesConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.keep_versions == 0 {
            out.push(
                "bundles.keep_versions = 0 would prune the current version; keep at least 1 \
                 (default 50)"
                    .into(),
            );
        }
        if self.keep_days > 100 * 365 {
            out.push(format!(
                "bundles.keep_days = {} is over 100 years; use a smaller number (default 365)",
                self.keep_days
            ));
        }
        out
    }
}
