//! The bundle signer: the key and certificate that sign published bundles (.p7m), issued by
//! the issuing CA under the `bundle-signer` profile, sealed at rest like the CA keys and
//! rotated before it expires. Split from the anchor use cases, which only ask it to sign.

use serde_json::json;
use time::OffsetDateTime;

use crate::audit::AuditDraft;
use crate::authority::Authority;
use crate::bundle;
use crate::error::{Error, Result};
use crate::store::RECORD_VERSION;

/// The bundle signer in memory. Not `Debug`: it holds a private key.
pub struct BundleSigner {
    pub cert_der: Vec<u8>,
    key: rcgen::KeyPair,
}

/// Rotate the signer when less than this remains of its validity.
const SIGNER_ROTATE_DAYS: i64 = 30;

impl Authority {
    /// Unseals the bundle signer, creating (or rotating) it first when absent or near expiry.
    /// Needs the passphrase, so it runs where the CA keys are unlocked.
    pub(in crate::authority) fn ensure_bundle_signer(
        &self,
        passphrase: &crate::keyseal::Passphrase,
    ) -> Result<()> {
        let now = self.now();
        let current = self.store()?.bundle_signer()?;
        let usable = current
            .as_ref()
            .filter(|s| s.not_after - now > time::Duration::days(SIGNER_ROTATE_DAYS));
        let signer = match usable {
            Some(record) => {
                let pkcs8 = crate::keyseal::open(&record.sealed_key, passphrase, "bundle_signer")?;
                BundleSigner {
                    cert_der: record.cert_der.clone(),
                    key: crate::ca::key_from_pkcs8(&pkcs8, &record.cert_der)?,
                }
            }
            None => self.create_bundle_signer(passphrase, now, current.is_some())?,
        };
        *self
            .bundle_signer
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))? = Some(std::sync::Arc::new(signer));
        Ok(())
    }

    fn create_bundle_signer(
        &self,
        passphrase: &crate::keyseal::Passphrase,
        now: OffsetDateTime,
        rotation: bool,
    ) -> Result<BundleSigner> {
        let signers = self.signers()?;
        let profiles = self.profiles();
        let profile = &profiles.bundle_signer;
        let key = crate::ca::generate_key(profile.keys.generate)?;
        let spec = crate::ca::SignerSpec {
            serial: crate::ca::random_serial()?,
            common_name: format!("{} Trust Bundle Signer", self.config.ca.organization),
            organization: self.config.ca.organization.clone(),
            not_before: now,
            not_after: now + time::Duration::days(i64::from(profile.validity_days)),
            crl_url: profile.crl_url(&self.config.public_url, "issuing"),
            ca_issuers_url: profile.ca_issuers_url(&self.config.public_url, "issuing"),
        };
        self.ensure_issuing_ca_valid()?;
        let cert_der = signers.issuing.issue_bundle_signer(&spec, &key)?;
        let summary =
            crate::x509::summarize(&cert_der).map_err(|e| Error::Generation(e.to_string()))?;
        let record = crate::store::SignerRecord {
            record_version: RECORD_VERSION,
            cert_der: cert_der.clone(),
            sealed_key: crate::keyseal::seal(&key.serialize_der(), passphrase, "bundle_signer")?,
            not_after: summary.not_after,
        };
        self.store()?.put_bundle_signer(
            &record,
            now,
            AuditDraft::new(
                "system",
                if rotation { "bundle_signer.rotate" } else { "bundle_signer.issue" },
                spec.serial.to_string(),
                json!({"subject": summary.subject, "not_after": summary.not_after.to_string(), "fingerprint": summary.fingerprint}),
            ),
        )?;
        Ok(BundleSigner { cert_der, key })
    }

    /// The current bundle-signing certificate (DER), if one exists.
    pub fn bundle_signer_cert(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.store()?.bundle_signer()?.map(|s| s.cert_der))
    }

    pub(in crate::authority) fn sign_bundle(
        &self,
        p7b: &[u8],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>> {
        let signer = self
            .bundle_signer
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::CaKey("the bundle signer is locked".into()))?;
        let issuing = self.ca_cert(crate::ca::CaRole::Issuing)?;
        bundle::sign_p7m(p7b, &signer.cert_der, &[&issuing], &signer.key, now)
            .map_err(|e| Error::Generation(format!("signing the bundle: {e}")))
    }
}
