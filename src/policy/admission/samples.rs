//! The rules for the sample end-entity certificates a member may give with an anchor: each
//! must chain to the anchor (directly or through one intermediate among the samples) and follow
//! the Direct profile, which shows that the CA issues what Direct relying parties accept.

use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use super::{parse_certificate, SAMPLES};
use crate::policy::Reasons;
use crate::x509::{self, Unverified};

/// Why a certificate does not chain to the anchor; the text completes "sample N: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotIssuedBy {
    /// The issuer name differs from the anchor's subject (byte for byte).
    #[error("its issuer '{named}' is not the anchor's subject '{subject}'{}", if named == subject { " (the names read alike but are encoded differently)" } else { "" })]
    IssuerName {
        /// The certificate's issuer, RFC 4514 text.
        named: String,
        /// The anchor's subject, RFC 4514 text.
        subject: String,
    },
    /// The issuer name matches but the anchor's key did not sign it.
    #[error("it names the anchor as its issuer, but {0}")]
    Signature(#[source] Unverified),
    /// It names an intermediate among the samples whose key did not sign it.
    #[error("it names the intermediate CA '{issuer}' among the samples as its issuer, but its signature does not verify with that CA's key")]
    IntermediateSignature {
        /// The intermediate's subject, RFC 4514 text.
        issuer: String,
    },
}

pub(super) fn check_samples(
    anchor: &X509Certificate<'_>,
    samples: &[Vec<u8>],
    now: OffsetDateTime,
    r: &mut Reasons,
) {
    let parsed: Vec<Option<X509Certificate<'_>>> =
        samples.iter().map(|der| parse_certificate(der)).collect();
    // A CA among the samples that the anchor issued is an intermediate the end-entity samples
    // may chain through. One level only: an intermediate's intermediate is not followed.
    let intermediates: Vec<&X509Certificate<'_>> = parsed
        .iter()
        .flatten()
        .filter(|c| is_ca(c) && issued_by(c, anchor).is_ok())
        .collect();
    for (i, (der, cert)) in samples.iter().zip(&parsed).enumerate() {
        let n = i + 1;
        let Some(cert) = cert else {
            r.add(
                "sample_unreadable",
                SAMPLES,
                format!("sample {n} is not a DER X.509 certificate"),
            );
            continue;
        };
        if is_ca(cert) {
            if let Err(why) = issued_by(cert, anchor) {
                r.add(
                    "sample_is_ca",
                    SAMPLES,
                    format!(
                        "sample {n} ({}) is a CA certificate, not an end-entity certificate",
                        x509::rfc4514(cert.subject().as_raw())
                    ),
                );
                r.add(
                    "sample_not_issued_by_anchor",
                    SAMPLES,
                    format!("sample {n}: {why}"),
                );
            }
            continue;
        }
        if let Err(why) = chains_to_anchor(cert, anchor, &intermediates) {
            r.add(
                "sample_not_issued_by_anchor",
                SAMPLES,
                format!("sample {n}: {why}"),
            );
        }
        for (code, message) in x509::direct_profile_problems(der, now) {
            r.add(
                "sample_profile",
                SAMPLES,
                format!("sample {n} does not follow the Direct profile: {message} [{code}]"),
            );
        }
    }
}

/// Issuer name byte for byte, then the signature with the issuer's key.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), NotIssuedBy> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(NotIssuedBy::IssuerName {
            named: x509::rfc4514(cert.issuer().as_raw()),
            subject: x509::rfc4514(issuer.subject().as_raw()),
        });
    }
    x509::verify_signed_by(cert, issuer.public_key()).map_err(NotIssuedBy::Signature)
}

fn chains_to_anchor(
    cert: &X509Certificate<'_>,
    anchor: &X509Certificate<'_>,
    intermediates: &[&X509Certificate<'_>],
) -> Result<(), NotIssuedBy> {
    let named: Vec<&&X509Certificate<'_>> = intermediates
        .iter()
        .filter(|c| c.subject().as_raw() == cert.issuer().as_raw())
        .collect();
    if named.is_empty() || cert.issuer().as_raw() == anchor.subject().as_raw() {
        return issued_by(cert, anchor);
    }
    if named
        .iter()
        .any(|c| x509::verify_signed_by(cert, c.public_key()).is_ok())
    {
        Ok(())
    } else {
        Err(NotIssuedBy::IntermediateSignature {
            issuer: x509::rfc4514(cert.issuer().as_raw()),
        })
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}
