//! The only code that touches CA private keys: creating and importing the CA hierarchy,
//! unlocking sealed keys, signing end-entity certificates from an approved plan, and signing
//! CRLs. Every certificate is built from our own profile; nothing is copied from a CSR.

use std::fmt;

use ::time::{Duration, OffsetDateTime};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use x509_parser::prelude::*;

use crate::error::{Error, Result};
use crate::keyseal::{self, Passphrase};
pub use crate::model::ca::{CaRecord, CaRole};
use crate::model::{CertUsage, Holder, RevocationReason, Serial};
use crate::policy::profile::{GeneratedKey, KeyKind};
use crate::x509;

// The key algorithms are plain values the configuration names too: they live in `model`.
pub use crate::model::{IssuingKeyAlgorithm, RootKeyAlgorithm};

/// What a new CA hierarchy looks like.
#[derive(Debug, Clone)]
pub struct HierarchyOptions {
    pub organization: String,
    pub root_key: RootKeyAlgorithm,
    pub issuing_key: IssuingKeyAlgorithm,
    pub root_validity_days: u32,
    pub issuing_validity_days: u32,
    pub public_url: String,
}

/// A CA whose key is in memory and ready to sign. Not `Debug`: it holds a private key.
pub struct UnlockedCa {
    pub role: CaRole,
    pub cert_der: Vec<u8>,
    pub subject_key_id: Vec<u8>,
    pub not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for UnlockedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockedCa({})", self.role.as_str())
    }
}

/// Everything about one end-entity certificate except its key.
#[derive(Debug, Clone)]
pub struct EndEntitySpec {
    pub serial: Serial,
    pub holder: Holder,
    pub usage: CertUsage,
    pub organization: Option<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub policy_oids: Vec<String>,
    pub crl_url: String,
    pub ca_issuers_url: String,
}

/// One entry of a CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// 16 bytes from the CSPRNG, positive, with a non-zero first byte so the DER INTEGER is
/// always exactly 16 bytes long.
pub fn random_serial() -> Result<Serial> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Generation("the system random generator failed".into()))?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(Serial::from_bytes(&bytes))
}

fn generation(e: impl fmt::Display) -> Error {
    Error::Generation(e.to_string())
}

fn sign_algorithm_for(kind: KeyKind) -> &'static SignatureAlgorithm {
    match kind {
        KeyKind::Rsa => &rcgen::PKCS_RSA_SHA256,
        KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

/// Generates a fresh key pair of the given kind.
pub fn generate_key(kind: GeneratedKey) -> Result<KeyPair> {
    let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
    match kind {
        GeneratedKey::Rsa2048 => rsa(rcgen::RsaKeySize::_2048),
        GeneratedKey::Rsa3072 => rsa(rcgen::RsaKeySize::_3072),
        GeneratedKey::Rsa4096 => rsa(rcgen::RsaKeySize::_4096),
        GeneratedKey::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
    }
    .map_err(generation)
}

fn ca_name(organization: &str, role: CaRole) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let suffix = match role {
        CaRole::Root => "Direct Root CA",
        CaRole::Issuing => "Direct Issuing CA",
    };
    dn.push(DnType::CommonName, format!("{organization} {suffix}"));
    dn.push(DnType::OrganizationName, organization.to_string());
    dn
}

fn ca_params(
    organization: &str,
    role: CaRole,
    key: &KeyPair,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(organization, role);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?.to_bytes()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(match role {
        CaRole::Root => 1,
        CaRole::Issuing => 0,
    }));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method =
        KeyIdMethod::PreSpecified(x509::key_identifier_of_bits(key.der_bytes()));
    params.use_authority_key_identifier_extension = role == CaRole::Issuing;
    Ok(params)
}

/// Creates a root and an issuing CA, returning their records (keys sealed).
pub fn create_hierarchy(
    opts: &HierarchyOptions,
    now: OffsetDateTime,
    passphrase: &Passphrase,
) -> Result<(CaRecord, CaRecord)> {
    let root_key = match opts.root_key {
        RootKeyAlgorithm::Rsa4096 => generate_key(GeneratedKey::Rsa4096)?,
        RootKeyAlgorithm::P384 => {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(generation)?
        }
    };
    let issuing_key = match opts.issuing_key {
        IssuingKeyAlgorithm::Rsa2048 => generate_key(GeneratedKey::Rsa2048)?,
        IssuingKeyAlgorithm::Rsa3072 => generate_key(GeneratedKey::Rsa3072)?,
        IssuingKeyAlgorithm::Rsa4096 => generate_key(GeneratedKey::Rsa4096)?,
        IssuingKeyAlgorithm::P256 => generate_key(GeneratedKey::P256)?,
    };
    let root_after = now + Duration::days(i64::from(opts.root_validity_days));
    let issuing_after =
        (now + Duration::days(i64::from(opts.issuing_validity_days))).min(root_after);
    let root_params = ca_params(&opts.organization, CaRole::Root, &root_key, now, root_after)?;
    let root_cert = root_params.self_signed(&root_key).map_err(generation)?;
    let root_issuer = Issuer::from_params(&root_params, &root_key);

    let mut issuing_params = ca_params(
        &opts.organization,
        CaRole::Issuing,
        &issuing_key,
        now,
        issuing_after,
    )?;
    let base = opts.public_url.trim_end_matches('/');
    issuing_params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("{base}/crl/root.crl")],
    }];
    issuing_params.custom_extensions = vec![aia_extension(&format!("{base}/ca/root.cer"))?];
    let issuing_cert = issuing_params
        .signed_by(&issuing_key, &root_issuer)
        .map_err(generation)?;

    let record = |role: CaRole, der: &[u8], key: &KeyPair| -> Result<CaRecord> {
        Ok(CaRecord {
            record_version: 1,
            role,
            cert_der: der.to_vec(),
            sealed_key: Some(keyseal::seal(
                key.serialized_der(),
                passphrase,
                role.as_str(),
            )?),
            created_at: now,
            origin: "generated".into(),
        })
    };
    Ok((
        record(CaRole::Root, root_cert.der(), &root_key)?,
        record(CaRole::Issuing, issuing_cert.der(), &issuing_key)?,
    ))
}

/// Unlocks a CA: decrypts the key, checks it matches the certificate, and checks that the
/// subject re-encodes to the identical bytes (otherwise issued certificates would not chain).
pub fn unlock(record: &CaRecord, passphrase: &Passphrase) -> Result<UnlockedCa> {
    let role = record.role.as_str();
    let sealed = record.sealed_key.as_ref().ok_or_else(|| {
        Error::CaKey(format!(
            "the {role} CA key is offline (not held by this service)"
        ))
    })?;
    let pkcs8 = keyseal::open(sealed, passphrase, role)?;
    from_parts(record.role, &record.cert_der, &pkcs8)
}

/// Builds a signer from a certificate and a PKCS#8 key after every consistency check.
pub fn from_parts(role: CaRole, cert_der: &[u8], pkcs8: &[u8]) -> Result<UnlockedCa> {
    let name = role.as_str();
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| Error::CaKey(format!("the {name} CA certificate is not valid DER: {e}")))?;
    let info = x509::key_info(cert.public_key());
    let kind = info.kind.ok_or_else(|| {
        Error::CaKey(format!(
            "the {name} CA key type ({}) is not supported",
            info.description
        ))
    })?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
        sign_algorithm_for(kind),
    )
    .map_err(|_| {
        Error::CaKey(format!(
            "the {name} CA private key does not match its certificate"
        ))
    })?;
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err(Error::CaKey(format!(
            "the {name} CA private key does not match its certificate"
        )));
    }
    check_ca_certificate(&cert, name)?;
    let subject_key_id = x509::key_identifier(cert.public_key());
    let issuer = Issuer::from_ca_cert_der(&cert_der.to_vec().into(), key)
        .map_err(|e| Error::CaKey(format!("the {name} CA certificate cannot be used: {e}")))?;
    let ca = UnlockedCa {
        role,
        cert_der: cert_der.to_vec(),
        subject_key_id: x509::subject_key_id(&cert).unwrap_or(subject_key_id),
        not_after: cert.validity().not_after.to_datetime(),
        issuer,
    };
    check_name_round_trip(&ca, cert.subject().as_raw())?;
    Ok(ca)
}

fn check_ca_certificate(cert: &X509Certificate<'_>, name: &str) -> Result<()> {
    let bc = cert.basic_constraints().ok().flatten();
    if !bc.is_some_and(|b| b.value.ca) {
        return Err(Error::CaKey(format!(
            "the {name} CA certificate lacks basicConstraints CA:TRUE"
        )));
    }
    let ku = cert.key_usage().ok().flatten();
    if !ku.is_some_and(|k| k.value.key_cert_sign() && k.value.crl_sign()) {
        return Err(Error::CaKey(format!(
            "the {name} CA certificate lacks keyUsage keyCertSign and cRLSign"
        )));
    }
    Ok(())
}

/// Signs a throw-away certificate and compares its issuer field with the CA subject bytes.
fn check_name_round_trip(ca: &UnlockedCa, subject_raw: &[u8]) -> Result<()> {
    let probe_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generation)?;
    let mut params = CertificateParams::default();
    params.not_before = OffsetDateTime::UNIX_EPOCH;
    params.not_after = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
    let probe = params
        .signed_by(&probe_key, &ca.issuer)
        .map_err(generation)?;
    let (_, parsed) = X509Certificate::from_der(probe.der()).map_err(generation)?;
    if parsed.issuer().as_raw() != subject_raw {
        return Err(Error::CaKey(format!(
            "the {} CA subject '{}' does not re-encode to the same bytes (repeated attribute types or unusual string types); certificates issued under it would not chain",
            ca.role.as_str(),
            x509::rfc4514(parsed.issuer().as_raw())
        )));
    }
    Ok(())
}

fn aia_extension(url: &str) -> Result<CustomExtension> {
    Ok(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        x509::ca_issuers_der(url).map_err(|e| Error::Generation(e.to_string()))?,
    ))
}

impl UnlockedCa {
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs one Direct end-entity certificate for `public_key`.
    pub fn issue(&self, spec: &EndEntitySpec, public_key: &impl PublicKeyData) -> Result<Vec<u8>> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.holder.to_string());
        if let Some(org) = &spec.organization {
            dn.push(DnType::OrganizationName, org.clone());
        }
        params.distinguished_name = dn;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after.min(self.not_after);
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial.to_bytes()));
        let name = spec.holder.to_string();
        params.subject_alt_names = vec![match &spec.holder {
            Holder::Address(_) => SanType::Rfc822Name(name.try_into().map_err(generation)?),
            Holder::Domain(_) => SanType::DnsName(name.try_into().map_err(generation)?),
        }];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match spec.usage {
            CertUsage::Dual => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            CertUsage::Signing => vec![KeyUsagePurpose::DigitalSignature],
            CertUsage::Encryption => vec![KeyUsagePurpose::KeyEncipherment],
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![spec.crl_url.clone()],
        }];
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(x509::key_identifier_of_bits(public_key.der_bytes()));
        params.use_authority_key_identifier_extension = true;
        let mut extensions = vec![aia_extension(&spec.ca_issuers_url)?];
        if !spec.policy_oids.is_empty() {
            extensions.push(CustomExtension::from_oid_content(
                &[2, 5, 29, 32],
                x509::certificate_policies_der(&spec.policy_oids)
                    .map_err(|e| Error::Generation(e.to_string()))?,
            ));
        }
        params.custom_extensions = extensions;
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(generation)?;
        Ok(cert.der().to_vec())
    }

    /// Signs a v2 CRL with the given number and entries.
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        revoked: &[RevokedEntry],
    ) -> Result<Vec<u8>> {
        let number_bytes = number.to_be_bytes();
        let first = number_bytes.iter().position(|b| *b != 0).unwrap_or(7);
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(number_bytes.get(first..).unwrap_or(&[0])),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial.to_bytes()),
                    revocation_time: r.revoked_at,
                    // RFC 5280 §5.3.1: omit the extension rather than say "unspecified".
                    reason_code: reason_code(r.reason),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::PreSpecified(self.subject_key_id.clone()),
        };
        let crl = params.signed_by(&self.issuer).map_err(generation)?;
        Ok(crl.der().to_vec())
    }
}

fn reason_code(reason: RevocationReason) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(R::KeyCompromise),
        RevocationReason::CaCompromise => Some(R::CaCompromise),
        RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
        RevocationReason::Superseded => Some(R::Superseded),
        RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
        RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
    }
}

/// Reads a certificate and a PKCS#8 key for import, from PEM files or a legacy PKCS#12.
pub struct ImportedCa {
    pub cert_der: Vec<u8>,
    pub pkcs8: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl ImportedCa {
    pub fn from_pem(cert: &[u8], key: Option<&[u8]>) -> Result<ImportedCa> {
        let certs = x509::certificates_from_pem_or_der(cert)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let cert_der = certs
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidInput("no certificate given".into()))?;
        let pkcs8 = match key {
            None => None,
            Some(k) => {
                let block = ::pem::parse(k)
                    .map_err(|e| Error::InvalidInput(format!("the key file is not PEM: {e}")))?;
                if block.tag() != "PRIVATE KEY" {
                    return Err(Error::InvalidInput(format!(
                        "the key file holds '{}'; give an unencrypted PKCS#8 'PRIVATE KEY' (openssl pkcs8 -topk8 -nocrypt) or a PKCS#12",
                        block.tag()
                    )));
                }
                Some(zeroize::Zeroizing::new(block.into_contents()))
            }
        };
        Ok(ImportedCa { cert_der, pkcs8 })
    }

    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<ImportedCa> {
        let pfx = p12::PFX::parse(der).map_err(|_| {
            Error::InvalidInput(
                "the file is not a PKCS#12 (or uses an unsupported encoding)".into(),
            )
        })?;
        if !pfx.verify_mac(password) {
            return Err(Error::InvalidInput(
                "the PKCS#12 password is wrong (or the file uses PBES2/AES: re-export it with `openssl pkcs12 -export -legacy`)".into(),
            ));
        }
        let keys = pfx
            .key_bags(password)
            .map_err(|_| Error::InvalidInput("cannot decrypt the PKCS#12 key bag".into()))?;
        let certs = pfx.cert_x509_bags(password).map_err(|_| {
            Error::InvalidInput("cannot decrypt the PKCS#12 certificate bag".into())
        })?;
        let key = keys
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidInput("the PKCS#12 holds no private key".into()))?;
        // The CA certificate is the one whose public key matches the key.
        let key_pair = KeyPair::try_from(key.as_slice()).map_err(|_| {
            Error::InvalidInput("the PKCS#12 key is not a usable PKCS#8 key".into())
        })?;
        let spki = key_pair.subject_public_key_info();
        let cert_der = certs
            .into_iter()
            .find(|c| {
                X509Certificate::from_der(c)
                    .is_ok_and(|(_, p)| p.public_key().raw == spki.as_slice())
            })
            .ok_or_else(|| {
                Error::InvalidInput("the PKCS#12 holds no certificate matching its key".into())
            })?;
        Ok(ImportedCa {
            cert_der,
            pkcs8: Some(zeroize::Zeroizing::new(key)),
        })
    }
}

/// Generates an issuing CA key and certificate under an unlocked (imported) root.
/// Returns the certificate DER and the PKCS#8 key DER.
pub fn create_issuing_under(
    root: &UnlockedCa,
    opts: &HierarchyOptions,
    now: OffsetDateTime,
) -> Result<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)> {
    let key = match opts.issuing_key {
        IssuingKeyAlgorithm::Rsa2048 => generate_key(GeneratedKey::Rsa2048)?,
        IssuingKeyAlgorithm::Rsa3072 => generate_key(GeneratedKey::Rsa3072)?,
        IssuingKeyAlgorithm::Rsa4096 => generate_key(GeneratedKey::Rsa4096)?,
        IssuingKeyAlgorithm::P256 => generate_key(GeneratedKey::P256)?,
    };
    let not_after =
        (now + Duration::days(i64::from(opts.issuing_validity_days))).min(root.not_after);
    let mut params = ca_params(&opts.organization, CaRole::Issuing, &key, now, not_after)?;
    let base = opts.public_url.trim_end_matches('/');
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("{base}/crl/root.crl")],
    }];
    params.custom_extensions = vec![aia_extension(&format!("{base}/ca/root.cer"))?];
    let cert = params.signed_by(&key, &root.issuer).map_err(generation)?;
    Ok((
        cert.der().to_vec(),
        zeroize::Zeroizing::new(key.serialize_der()),
    ))
}

/// Checks that `child` names `parent` as issuer (byte-identical) and verifies its signature.
pub fn check_issued_by(child_der: &[u8], parent_der: &[u8]) -> Result<()> {
    let (_, child) = X509Certificate::from_der(child_der)
        .map_err(|e| Error::CaKey(format!("the issuing CA certificate is not valid DER: {e}")))?;
    let (_, parent) = X509Certificate::from_der(parent_der)
        .map_err(|e| Error::CaKey(format!("the root CA certificate is not valid DER: {e}")))?;
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return Err(Error::CaKey(format!(
            "the issuing CA's issuer '{}' is not the root '{}' byte for byte",
            x509::rfc4514(child.issuer().as_raw()),
            x509::rfc4514(parent.subject().as_raw())
        )));
    }
    child
        .verify_signature(Some(parent.public_key()))
        .map_err(|_| {
            Error::CaKey("the issuing CA certificate is not signed by the root key".into())
        })
}

/// Everything about the bundle-signing certificate except its key.
#[derive(Debug, Clone)]
pub struct SignerSpec {
    pub serial: Serial,
    pub common_name: String,
    pub organization: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub crl_url: String,
    pub ca_issuers_url: String,
}

impl UnlockedCa {
    /// Signs the certificate that signs trust bundles (.p7m). digitalSignature and the
    /// emailProtection EKU, because relying parties check CMS signers with S/MIME rules
    /// (`openssl cms -verify` defaults). No SAN: it names no mailbox or host.
    pub fn issue_bundle_signer(&self, spec: &SignerSpec, key: &KeyPair) -> Result<Vec<u8>> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.clone());
        dn.push(DnType::OrganizationName, spec.organization.clone());
        params.distinguished_name = dn;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after.min(self.not_after);
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial.to_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![spec.crl_url.clone()],
        }];
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(x509::key_identifier_of_bits(key.der_bytes()));
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = vec![aia_extension(&spec.ca_issuers_url)?];
        let cert = params.signed_by(key, &self.issuer).map_err(generation)?;
        Ok(cert.der().to_vec())
    }
}

/// Loads a PKCS#8 key for signing with the algorithm its kind implies.
pub fn key_from_pkcs8(pkcs8: &[u8], cert_der: &[u8]) -> Result<KeyPair> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| Error::CaKey(format!("signer certificate: {e}")))?;
    let kind = x509::key_info(cert.public_key())
        .kind
        .ok_or_else(|| Error::CaKey("unsupported signer key type".into()))?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
        sign_algorithm_for(kind),
    )
    .map_err(|_| Error::CaKey("the signer key does not match its certificate".into()))?;
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err(Error::CaKey(
            "the signer key does not match its certificate".into(),
        ));
    }
    Ok(key)
}
