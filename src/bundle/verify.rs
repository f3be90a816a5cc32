//! Verifying a signed bundle (`.p7m`) read by [`super::read`], for external sources against
//! their pinned signers and for member uploads without pins, doing better than deployed
//! consumers (spec §5): with pins, an unsigned file or a file signed by anyone else is
//! refused (no downgrade); the signature is checked over the signed attributes exactly as
//! received; the signer's validity window and key usage are checked, and its chain when the
//! pin is a CA. `rsaEncryption` as the signatureAlgorithm (what OpenSSL writes) is read as
//! RSA PKCS#1 v1.5 with the SignerInfo's digest algorithm. The signed `signingTime`
//! attribute of the verified SignerInfo is returned, so a copy older than the one accepted
//! last can be refused (rollback protection; the bundle formats read here carry no content
//! sequence number, so the signing time is the only ordering there is).

use const_oid::ObjectIdentifier;
use der::{Decode, Reader, SliceReader};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{
    CONTEXT_0, CONTEXT_0_PRIMITIVE, GENERALIZED_TIME, INTEGER, OCTET_STRING, OID, SEQUENCE, SET,
    UTC_TIME,
};
use super::read::{contents, malformed, ParsedBundle, ReadError, SignedLayer};
pub use crate::model::external::Verification;
use crate::model::Fingerprint;
use crate::x509;

const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const CONTENT_TYPE_ATTR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST_ATTR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SIGNING_TIME_ATTR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
/// Intermediates followed between a signer and a pinned CA.
const MAX_CHAIN: usize = 4;

/// Which check a signed bundle failed; the external flow maps each to its refresh status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VerifyFailure {
    /// The signature does not verify, or its algorithm is not supported.
    BadSignature,
    /// A pinned signer's (or its chain's) certificate is not valid now.
    SignerExpired,
    /// Signed by someone who is neither pinned nor chains to a pinned CA.
    UntrustedSigner,
    /// The signed layer cannot be read.
    Invalid,
    /// Unsigned, although the source pins a signer.
    UnsignedButPinned,
}

/// Why a bundle did not verify: the failed check and a sentence for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct VerifyError {
    pub kind: VerifyFailure,
    pub reason: String,
}

impl VerifyError {
    fn new(kind: VerifyFailure, reason: String) -> VerifyError {
        VerifyError { kind, reason }
    }
}

impl From<ReadError> for VerifyError {
    fn from(e: ReadError) -> Self {
        VerifyError::new(VerifyFailure::Invalid, e.to_string())
    }
}

fn invalid(reason: &str) -> VerifyError {
    VerifyError::new(VerifyFailure::Invalid, reason.to_string())
}

/// The signers a source trusts: certificates (a signer itself, or a CA it must chain to) and
/// SHA-256 fingerprints of signer certificates.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    pub certificates: Vec<Vec<u8>>,
    /// Lower-case hex SHA-256 of pinned certificates (including those in `certificates`).
    pub fingerprints: Vec<String>,
}

impl Pins {
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.fingerprints.is_empty()
    }
}

/// Checks the signature of a signed bundle when nobody pins its signer (a member's upload):
/// a signed bundle whose signature does not verify is refused, an unsigned one passes as
/// unverified. No clock is needed: validity windows are checked for pinned signers only.
pub fn verify_unpinned(bundle: &ParsedBundle) -> Result<Verification, VerifyError> {
    verify(bundle, &Pins::default(), OffsetDateTime::UNIX_EPOCH)
}

/// Checks `bundle` against `pins` at `now`.
pub fn verify(
    bundle: &ParsedBundle,
    pins: &Pins,
    now: OffsetDateTime,
) -> Result<Verification, VerifyError> {
    let Some(signed) = &bundle.signed else {
        if pins.is_empty() {
            return Ok(Verification {
                verified: false,
                signed: false,
                signer: None,
                signer_fingerprint: None,
                signing_time: None,
                note: "unverified: the bundle is unsigned and the source pins no signer".into(),
            });
        }
        return Err(VerifyError::new(
            VerifyFailure::UnsignedButPinned,
            "the bundle is unsigned but the source pins a signer; an unsigned copy is never accepted in place of a signed one".into(),
        ));
    };
    let mut failures = Vec::new();
    for raw in &signed.signer_infos {
        match check_signer_info(raw, signed, pins, now) {
            Ok(v) => return Ok(v),
            Err(f) => failures.push(f),
        }
    }
    // The most telling failure: a pinned signer's broken signature outranks a stranger.
    failures.sort_by_key(|f| f.kind);
    Err(failures
        .into_iter()
        .next()
        .unwrap_or_else(|| invalid("the bundle is signed but has no SignerInfo")))
}

struct SignerInfo<'a> {
    issuer: Option<&'a [u8]>,
    serial: Option<&'a [u8]>,
    key_id: Option<&'a [u8]>,
    digest: ObjectIdentifier,
    /// The `[0] IMPLICIT` signed attributes TLV as received.
    signed_attrs: Option<&'a [u8]>,
    signature_algorithm: ObjectIdentifier,
    signature: &'a [u8],
}

fn oid(bytes: &[u8]) -> Result<ObjectIdentifier, VerifyError> {
    ObjectIdentifier::from_bytes(bytes).map_err(|e| invalid(&format!("a bad OID: {e}")))
}

fn algorithm(r: &mut SliceReader<'_>, what: &str) -> Result<ObjectIdentifier, VerifyError> {
    let seq = contents(r, SEQUENCE, what)?;
    let mut a = SliceReader::new(seq).map_err(malformed)?;
    oid(contents(&mut a, OID, what)?)
}

fn read_signer_info(raw: &[u8]) -> Result<SignerInfo<'_>, VerifyError> {
    let mut outer = SliceReader::new(raw).map_err(malformed)?;
    let body = contents(&mut outer, SEQUENCE, "SignerInfo")?;
    let mut r = SliceReader::new(body).map_err(malformed)?;
    contents(&mut r, INTEGER, "SignerInfo version")?;
    let (mut issuer, mut serial, mut key_id) = (None, None, None);
    if r.peek_byte() == Some(CONTEXT_0_PRIMITIVE) {
        key_id = Some(contents(
            &mut r,
            CONTEXT_0_PRIMITIVE,
            "subjectKeyIdentifier",
        )?);
    } else {
        let ias = contents(&mut r, SEQUENCE, "issuerAndSerialNumber")?;
        let mut i = SliceReader::new(ias).map_err(malformed)?;
        issuer = Some(i.tlv_bytes().map_err(malformed)?);
        serial = Some(contents(&mut i, INTEGER, "serialNumber")?);
    }
    let digest = algorithm(&mut r, "digestAlgorithm")?;
    let signed_attrs = if r.peek_byte() == Some(CONTEXT_0) {
        Some(r.tlv_bytes().map_err(malformed)?)
    } else {
        None
    };
    let signature_algorithm = algorithm(&mut r, "signatureAlgorithm")?;
    let signature = contents(&mut r, OCTET_STRING, "signature")?;
    Ok(SignerInfo {
        issuer,
        serial,
        key_id,
        digest,
        signed_attrs,
        signature_algorithm,
        signature,
    })
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    X509Certificate::from_der(der).ok().map(|(_, c)| c)
}

fn identifies(info: &SignerInfo<'_>, cert: &X509Certificate<'_>) -> bool {
    match (info.issuer, info.serial, info.key_id) {
        (Some(issuer), Some(serial), _) => {
            cert.issuer().as_raw() == issuer && cert.raw_serial() == serial
        }
        (_, _, Some(id)) => x509::subject_key_id(cert).as_deref() == Some(id),
        _ => false,
    }
}

fn check_signer_info(
    raw: &[u8],
    signed: &SignedLayer,
    pins: &Pins,
    now: OffsetDateTime,
) -> Result<Verification, VerifyError> {
    let info = read_signer_info(raw)?;
    let candidates = signed.certificates.iter().chain(pins.certificates.iter());
    let signer_der = candidates
        .filter(|der| parse(der).is_some_and(|c| identifies(&info, &c)))
        .map(Vec::as_slice)
        .next()
        .ok_or_else(|| {
            VerifyError::new(
                VerifyFailure::UntrustedSigner,
                "the signer's certificate is neither in the bundle nor pinned".into(),
            )
        })?;
    let signer =
        parse(signer_der).ok_or_else(|| invalid("the signer certificate cannot be parsed"))?;
    let subject = x509::rfc4514(signer.subject().as_raw());
    let fingerprint = Fingerprint::of(signer_der).0;
    let chain = if pins.is_empty() {
        None
    } else {
        Some(trusted_path(&signer, &fingerprint, signed, pins).ok_or_else(|| {
            VerifyError::new(
                VerifyFailure::UntrustedSigner,
                format!("signed by {subject} (SHA-256 {fingerprint}), which is not a pinned signer and does not chain to a pinned CA"),
            )
        })?)
    };
    let signing_time = check_signature(&info, &signer, signed)?;
    let Some(chain) = chain else {
        return Ok(Verification {
            verified: false,
            signed: true,
            signer: Some(subject.clone()),
            signer_fingerprint: Some(fingerprint),
            signing_time,
            note: format!(
                "unverified: signed by {subject}, but the source pins no signer, so anyone could have signed it"
            ),
        });
    };
    for cert in std::iter::once(&signer).chain(chain.iter()) {
        check_validity(cert, now)?;
    }
    check_key_usage(&signer)?;
    Ok(Verification {
        verified: true,
        signed: true,
        signer: Some(subject.clone()),
        signer_fingerprint: Some(fingerprint),
        signing_time,
        note: format!("signed by the pinned signer {subject}"),
    })
}

/// The certificates above the signer up to and including a pinned CA (empty when the signer
/// itself is pinned), or `None` when the signer is not trusted.
fn trusted_path<'a>(
    signer: &X509Certificate<'_>,
    fingerprint: &str,
    signed: &'a SignedLayer,
    pins: &'a Pins,
) -> Option<Vec<X509Certificate<'a>>> {
    if pins.fingerprints.iter().any(|p| p == fingerprint) {
        return Some(Vec::new());
    }
    let pinned: Vec<X509Certificate<'a>> =
        pins.certificates.iter().filter_map(|d| parse(d)).collect();
    let pool: Vec<X509Certificate<'a>> = signed
        .certificates
        .iter()
        .filter_map(|d| parse(d))
        .filter(|c| c.is_ca())
        .collect();
    let mut path: Vec<X509Certificate<'a>> = Vec::new();
    for _ in 0..=MAX_CHAIN {
        let current = path.last().unwrap_or(signer);
        if let Some(ca) = pinned
            .iter()
            .find(|p| p.is_ca() && issued(current, p))
            .cloned()
        {
            path.push(ca);
            return Some(path);
        }
        let next = pool
            .iter()
            .find(|c| issued(current, c) && c.subject() != current.subject())
            .cloned()?;
        path.push(next);
    }
    None
}

fn issued(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && x509::verify_signed_by(cert, issuer.public_key()).is_ok()
}

fn check_validity(cert: &X509Certificate<'_>, now: OffsetDateTime) -> Result<(), VerifyError> {
    let validity = cert.validity();
    let (from, to) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    if now < from || now > to {
        return Err(VerifyError::new(
            VerifyFailure::SignerExpired,
            format!(
                "the signing certificate {} is valid from {from} to {to}, not now",
                x509::rfc4514(cert.subject().as_raw())
            ),
        ));
    }
    Ok(())
}

fn check_key_usage(signer: &X509Certificate<'_>) -> Result<(), VerifyError> {
    match signer.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() && !ku.value.non_repudiation() => {
            Err(VerifyError::new(
                VerifyFailure::UntrustedSigner,
                format!(
                    "the signer {} lacks the digitalSignature key usage",
                    x509::rfc4514(signer.subject().as_raw())
                ),
            ))
        }
        Err(_) => Err(VerifyError::new(
            VerifyFailure::UntrustedSigner,
            "the signer's key usage extension cannot be read".into(),
        )),
        _ => Ok(()),
    }
}

fn bad(reason: &str) -> VerifyError {
    VerifyError::new(VerifyFailure::BadSignature, reason.to_string())
}

/// Checks the signature; returns the signed `signingTime`, if any.
fn check_signature(
    info: &SignerInfo<'_>,
    signer: &X509Certificate<'_>,
    signed: &SignedLayer,
) -> Result<Option<OffsetDateTime>, VerifyError> {
    use aws_lc_rs::digest;
    let algorithm = match info.digest {
        d if d == SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        d if d == SHA256 => &digest::SHA256,
        d if d == SHA384 => &digest::SHA384,
        d if d == SHA512 => &digest::SHA512,
        d => return Err(bad(&format!("the digest algorithm {d} is not supported"))),
    };
    let mut signing_time = None;
    let message: Vec<u8> = match info.signed_attrs {
        Some(attrs) => {
            let content_digest = digest::digest(algorithm, &signed.content);
            signing_time = check_attributes(attrs, content_digest.as_ref(), &signed.content_type)?;
            // RFC 5652 §5.4: the signature covers the attributes with the SET OF tag.
            let mut m = attrs.to_vec();
            if let Some(first) = m.first_mut() {
                *first = SET;
            }
            m
        }
        None => signed.content.clone(),
    };
    let verifier = verification_algorithm(info, signer)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        verifier,
        &signer.public_key().subject_public_key.data,
    )
    .verify(&message, info.signature)
    .map_err(|_| {
        bad(&format!(
            "the signature by {} does not verify (the file was altered or corrupted)",
            x509::rfc4514(signer.subject().as_raw())
        ))
    })?;
    Ok(signing_time)
}

fn verification_algorithm(
    info: &SignerInfo<'_>,
    signer: &X509Certificate<'_>,
) -> Result<&'static dyn aws_lc_rs::signature::VerificationAlgorithm, VerifyError> {
    use aws_lc_rs::signature as sig;
    let digest_name = match info.digest {
        d if d == SHA1 => "sha1",
        d if d == SHA256 => "sha256",
        d if d == SHA384 => "sha384",
        _ => "sha512",
    };
    let scheme = match info.signature_algorithm {
        a if a == RSA_ENCRYPTION => ("rsa", digest_name),
        a if a == SHA1_RSA => ("rsa", "sha1"),
        a if a == SHA256_RSA => ("rsa", "sha256"),
        a if a == SHA384_RSA => ("rsa", "sha384"),
        a if a == SHA512_RSA => ("rsa", "sha512"),
        a if a == ECDSA_SHA256 => ("ecdsa", "sha256"),
        a if a == ECDSA_SHA384 => ("ecdsa", "sha384"),
        a if a == ECDSA_SHA512 => ("ecdsa", "sha512"),
        a => {
            return Err(bad(&format!(
                "the signature algorithm {a} is not supported"
            )))
        }
    };
    let curve = signer
        .public_key()
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
        .unwrap_or_default();
    let chosen: Option<&'static dyn sig::VerificationAlgorithm> = match (scheme, curve.as_str()) {
        (("rsa", "sha1"), _) => Some(&sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY),
        (("rsa", "sha256"), _) => Some(&sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY),
        (("rsa", "sha384"), _) => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        (("rsa", "sha512"), _) => Some(&sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY),
        (("ecdsa", "sha256"), P256) => Some(&sig::ECDSA_P256_SHA256_ASN1),
        (("ecdsa", "sha384"), P256) => Some(&sig::ECDSA_P256_SHA384_ASN1),
        (("ecdsa", "sha256"), P384) => Some(&sig::ECDSA_P384_SHA256_ASN1),
        (("ecdsa", "sha384"), P384) => Some(&sig::ECDSA_P384_SHA384_ASN1),
        (("ecdsa", "sha512"), P384) => Some(&sig::ECDSA_P384_SHA512_ASN1),
        _ => None,
    };
    chosen.ok_or_else(|| bad("the signer's key does not fit the signature algorithm"))
}

/// A DER UTCTime or GeneralizedTime.
fn read_time(tlv: &[u8]) -> Result<OffsetDateTime, VerifyError> {
    use der::asn1::{GeneralizedTime, UtcTime};
    let since_epoch = match tlv.first() {
        Some(&UTC_TIME) => UtcTime::from_der(tlv).map(|t| t.to_unix_duration()),
        Some(&GENERALIZED_TIME) => GeneralizedTime::from_der(tlv).map(|t| t.to_unix_duration()),
        _ => return Err(invalid("the signingTime attribute is not a time")),
    }
    .map_err(|e| invalid(&format!("the signingTime attribute cannot be read: {e}")))?;
    let seconds = i64::try_from(since_epoch.as_secs())
        .map_err(|_| invalid("the signingTime attribute is out of range"))?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| invalid("the signingTime attribute is out of range"))
}

/// Checks the content-type and message-digest signed attributes (RFC 5652 §11) and reads
/// the signing-time attribute (UTCTime or GeneralizedTime).
fn check_attributes(
    attrs: &[u8],
    digest: &[u8],
    content_type: &[u8],
) -> Result<Option<OffsetDateTime>, VerifyError> {
    let mut outer = SliceReader::new(attrs).map_err(malformed)?;
    let set = contents(&mut outer, CONTEXT_0, "signedAttrs")?;
    let mut r = SliceReader::new(set).map_err(malformed)?;
    let (mut saw_digest, mut saw_type) = (false, false);
    let mut signing_time = None;
    while !r.is_finished() {
        let attr = contents(&mut r, SEQUENCE, "Attribute")?;
        let mut a = SliceReader::new(attr).map_err(malformed)?;
        let kind = oid(contents(&mut a, OID, "attrType")?)?;
        let values = contents(&mut a, SET, "attrValues")?;
        let mut v = SliceReader::new(values).map_err(malformed)?;
        if kind == MESSAGE_DIGEST_ATTR {
            if contents(&mut v, OCTET_STRING, "messageDigest")? != digest {
                return Err(bad(
                    "the message digest does not match the content (the content was altered)",
                ));
            }
            saw_digest = true;
        } else if kind == CONTENT_TYPE_ATTR {
            if contents(&mut v, OID, "contentType")? != content_type {
                return Err(bad(
                    "the signed content-type attribute does not match the content",
                ));
            }
            saw_type = true;
        } else if kind == SIGNING_TIME_ATTR {
            signing_time = Some(read_time(v.tlv_bytes().map_err(malformed)?)?);
        }
    }
    if saw_digest && saw_type {
        Ok(signing_time)
    } else {
        Err(bad(
            "the signed attributes lack content-type or message-digest",
        ))
    }
}
