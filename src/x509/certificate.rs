//! Certificates as anchorage reads them: the summary that records and listings show, PEM and
//! DER input split into certificates, PEM output, and the identifiers looked up in indexes.
//! The other modules judge certificates; this one only reads them.

use serde::Serialize;
use x509_parser::prelude::*;

use super::key::{key_info, spki_hash, KeyInfo};
use super::name::rfc4514;
use crate::model::Fingerprint;

/// Why bytes could not be read as certificates. The text is what callers show (and tests
/// check), so each variant keeps the sentence anchorage has always used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The bytes do not parse as one DER certificate.
    #[error("not a DER certificate: {0}")]
    NotDer(#[source] x509_parser::nom::Err<X509Error>),
    /// The input starts like PEM but cannot be read as PEM.
    #[error("unreadable PEM: {0}")]
    Pem(#[source] ::pem::PemError),
    /// The PEM is readable but has no `CERTIFICATE` block.
    #[error("the PEM holds no CERTIFICATE block")]
    NoCertificateInPem,
}

/// The fields of an issued certificate that records and listings show.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub serial: String,
    /// RFC 4514 text ([`rfc4514`]), as is `issuer`.
    pub subject: String,
    pub issuer: String,
    pub not_before: ::time::OffsetDateTime,
    pub not_after: ::time::OffsetDateTime,
    pub fingerprint: Fingerprint,
    pub key: KeyInfo,
    pub subject_key_id: Option<String>,
    /// SHA-256 of the SubjectPublicKeyInfo DER: the key's fingerprint, stable across
    /// re-issued certificates of the same key.
    pub key_fingerprint: Fingerprint,
}

/// Reads the fields of [`CertSummary`] from a DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, CertificateError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(CertificateError::NotDer)?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(hex::encode(id.0)),
            _ => None,
        });
    Ok(CertSummary {
        serial: hex::encode(cert.raw_serial()),
        subject: rfc4514(cert.subject().as_raw()),
        issuer: rfc4514(cert.issuer().as_raw()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        fingerprint: Fingerprint::of(der),
        key: key_info(cert.public_key()),
        subject_key_id: ski,
        key_fingerprint: Fingerprint::of(cert.public_key().raw),
    })
}

/// Splits a PEM bundle or a single DER certificate into DER certificates.
pub fn certificates_from_pem_or_der(input: &[u8]) -> Result<Vec<Vec<u8>>, CertificateError> {
    let trimmed = input.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        let blocks = ::pem::parse_many(trimmed).map_err(CertificateError::Pem)?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        if certs.is_empty() {
            return Err(CertificateError::NoCertificateInPem);
        }
        Ok(certs)
    } else {
        // DER as given: trimming would cut a final signature byte that happens to be 0x20.
        X509Certificate::from_der(input).map_err(CertificateError::NotDer)?;
        Ok(vec![input.to_vec()])
    }
}

/// PEM text of one DER object with LF line endings (`tag`: `CERTIFICATE`, `X509 CRL`...).
pub fn to_pem(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(tag, der.to_vec()),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// The subjectKeyIdentifier of a certificate, when it has one.
pub fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_sha256(cert_der: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(CertificateError::NotDer)?;
    Ok(spki_hash(cert.public_key().raw))
}
