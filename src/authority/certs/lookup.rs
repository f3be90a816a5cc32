//! Reading issued certificates back: one by serial, or a filtered listing, each with its
//! status at the current time, its revocation and its holder's organisation.

use serde::Serialize;
use time::Duration;

use crate::authority::Authority;
use crate::error::{Error, Result};
use crate::model::Serial;
use crate::store::{CertRecord, Revocation};

use super::OrganisationRef;

/// Status of a certificate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    Valid,
    Revoked,
    Expired,
    NotYetValid,
}

impl CertStatus {
    /// The word the API, the web lists and `cert list` show (the JSON name).
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
            CertStatus::Expired => "expired",
            CertStatus::NotYetValid => "not_yet_valid",
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertView {
    #[serde(flatten)]
    pub record: CertRecord,
    pub binding: crate::model::Binding,
    /// The organisation the holder belongs to (absent only for records without one).
    pub organisation: Option<OrganisationRef>,
    pub status: CertStatus,
    pub revocation: Option<Revocation>,
}

/// A view from its parts, with the status at `now`.
pub(super) fn view_of(
    record: CertRecord,
    revocation: Option<Revocation>,
    organisation: Option<OrganisationRef>,
    now: time::OffsetDateTime,
) -> CertView {
    let status = if revocation.is_some() {
        CertStatus::Revoked
    } else if now > record.not_after {
        CertStatus::Expired
    } else if now < record.not_before {
        CertStatus::NotYetValid
    } else {
        CertStatus::Valid
    };
    CertView {
        binding: record.holder.binding(),
        organisation,
        record,
        status,
        revocation,
    }
}

/// Filters for listings.
#[derive(Debug, Clone, Default)]
pub struct CertFilter {
    /// Text contained in the holder, the subscriber name or organisation, or the serial.
    pub search: Option<String>,
    pub holder: Option<String>,
    pub domain: Option<String>,
    pub status: Option<CertStatus>,
    pub expiring_within_days: Option<u32>,
    /// Only holders bound to this organisation id.
    pub organisation: Option<String>,
}

impl Authority {
    pub fn cert(&self, serial: &Serial) -> Result<CertView> {
        let record = self
            .store()?
            .cert(serial)?
            .ok_or_else(|| Error::NotFound(format!("no certificate with serial {serial}")))?;
        self.view(record)
    }

    pub(super) fn view(&self, record: CertRecord) -> Result<CertView> {
        self.view_with(record, &mut std::collections::HashMap::new())
    }

    /// A view; `names` caches organisation names across the views of one listing.
    pub(super) fn view_with(
        &self,
        record: CertRecord,
        names: &mut std::collections::HashMap<String, String>,
    ) -> Result<CertView> {
        let revocation = self.store()?.revocation(&record.serial)?;
        let organisation = self.organisation_ref(&record.holder.to_string(), names)?;
        Ok(view_of(record, revocation, organisation, self.now()))
    }

    pub fn certs(&self, filter: &CertFilter) -> Result<Vec<CertView>> {
        let now = self.now();
        let holder = filter
            .holder
            .as_ref()
            .map(|h| h.trim().to_ascii_lowercase());
        let domain = filter
            .domain
            .as_ref()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase());
        let search = filter
            .search
            .as_ref()
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        let mut out = Vec::new();
        let mut names = std::collections::HashMap::new();
        for record in self.store()?.certs() {
            let record = record?;
            if holder
                .as_ref()
                .is_some_and(|h| *h != record.holder.to_string())
            {
                continue;
            }
            if domain
                .as_ref()
                .is_some_and(|d| d != record.holder.domain().as_str())
            {
                continue;
            }
            if filter
                .expiring_within_days
                .is_some_and(|days| record.not_after > now + Duration::days(i64::from(days)))
            {
                continue;
            }
            if search.as_ref().is_some_and(|q| !matches_search(&record, q)) {
                continue;
            }
            let view = self.view_with(record, &mut names)?;
            if filter.status.is_some_and(|s| s != view.status) {
                continue;
            }
            if filter.organisation.as_ref().is_some_and(|o| {
                view.organisation
                    .as_ref()
                    .is_none_or(|v| !v.id.eq_ignore_ascii_case(o.trim()))
            }) {
                continue;
            }
            out.push(view);
        }
        out.sort_by(|a, b| {
            (a.record.holder.to_string(), a.record.issued_at)
                .cmp(&(b.record.holder.to_string(), b.record.issued_at))
        });
        Ok(out)
    }
}

pub(super) fn matches_search(record: &CertRecord, q: &str) -> bool {
    record.holder.to_string().contains(q)
        || record.serial.as_str().eq_ignore_ascii_case(q)
        || record.subscriber.name.to_lowercase().contains(q)
        || record
            .subscriber
            .organization
            .as_ref()
            .is_some_and(|o| o.to_lowercase().contains(q))
}
