//! What one zone publication produces, shared by the whole-zone path (`zones`) and the
//! sharded path (`shards`): the outcome reported to the caller, the job whose state is
//! persisted once the file is durable, and the SOA serial rule. A leaf of its own so the two
//! paths depend on it and not on each other.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::DomainSettings;
use crate::discovery::ReloadOutcome;
use crate::store::ZoneState;

/// What publishing one zone did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZoneOutcome {
    pub domain: String,
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub mode: String,
    pub serial: u32,
    pub records: usize,
    /// The content differs from the last published one (the serial moved).
    pub changed: bool,
    /// The file was (re)written.
    pub written: bool,
    pub reload: ReloadOutcome,
}

/// A written (or unchanged) zone, with the state to persist once the file is durable.
pub(in crate::authority::discovery) struct ZoneJob {
    pub(in crate::authority::discovery) outcome: ZoneOutcome,
    pub(in crate::authority::discovery) state: Option<ZoneState>,
    pub(in crate::authority::discovery) settings: DomainSettings,
    /// Store revision read before planning: the pending changes up to it are in the file.
    pub(in crate::authority::discovery) upto: u64,
}

/// The next SOA serial: date-based (YYYYMMDDnn) while that grows, else last + 1, so it never
/// goes back and allows any number of changes a day.
pub fn next_serial(last: Option<u32>, now: OffsetDateTime) -> u32 {
    let date = u32::try_from(now.year()).unwrap_or(0) * 1_000_000
        + u32::from(u8::from(now.month())) * 10_000
        + u32::from(now.day()) * 100;
    match last {
        Some(last) => date.max(last.wrapping_add(1)),
        None => date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn serials_only_grow() {
        let day = datetime!(2026-11-21 08:00 UTC);
        assert_eq!(next_serial(None, day), 2026112100);
        assert_eq!(next_serial(Some(2026112100), day), 2026112101);
        assert_eq!(next_serial(Some(2026112199), day), 2026112200);
        assert_eq!(
            next_serial(Some(2026112105), datetime!(2026-11-22 00:00 UTC)),
            2026112200
        );
        assert_eq!(
            next_serial(Some(2026112300), datetime!(2026-11-22 00:00 UTC)),
            2026112301,
            "a clock set back never lowers the serial"
        );
    }
}
