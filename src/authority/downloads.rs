//! What relying parties download without signing in, as plain data: the CRLs and the CA
//! certificates at the URLs written into every certificate (CDP, AIA caIssuers); the bundles'
//! versions are read through `bundles`. The HTTP layer keeps all of them in memory, ready to
//! send, and rebuilds them only when this process publishes a bundle version, a CRL or a CA
//! hierarchy ([`Authority::publication_generation`] moves), so serving one costs no store read.

use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::Authority;
use crate::error::Result;
use crate::model::ca::CaRole;
use crate::store::CrlRecord;

/// The public files of the hierarchy at one moment.
pub struct PublicFiles {
    /// The stored CRL of each CA that has one.
    pub crls: Vec<CrlRecord>,
    /// Each CA's certificate (DER) and when the hierarchy was written.
    pub ca_certs: Vec<(CaRole, Vec<u8>, OffsetDateTime)>,
}

impl Authority {
    /// Moves whenever this process publishes a bundle version, a CRL or the CA hierarchy. Read
    /// it before reading what is published and compare later to know whether that is current.
    pub fn publication_generation(&self) -> u64 {
        self.publications.load(Ordering::Acquire)
    }

    pub(super) fn published(&self) {
        self.publications.fetch_add(1, Ordering::AcqRel);
    }

    /// The CRLs and CA certificates as stored (issuing first), without re-signing anything.
    /// Before `init` there are none.
    pub fn public_files(&self) -> Result<PublicFiles> {
        let store = self.store()?;
        let mut files = PublicFiles {
            crls: Vec::new(),
            ca_certs: Vec::new(),
        };
        for role in [CaRole::Issuing, CaRole::Root] {
            if let Some(crl) = store.crl(role)? {
                files.crls.push(crl);
            }
            if let Some(ca) = store.ca_record(role)? {
                files.ca_certs.push((role, ca.cert_der, ca.created_at));
            }
        }
        Ok(files)
    }
}
