//! The bundle wing: every way anchorage turns trust bundles into bytes and bytes back into
//! anchors, in one place so that a `.p7b` is read the same whoever sent it.
//!
//! - [`write`]: the `.p7b`, its metadata XML and the signed `.p7m` anchorage publishes.
//! - [`read`]: the one DER/BER/PEM reader for foreign bundles, used by member uploads and
//!   external sources alike, plus the strict DER reader for what anchorage wrote itself.
//! - [`verify`]: signature verification of signed bundles against pinned signers.
//! - [`upload`]: what a member uploaded (certificates, bundles, or a key, PKCS#12 or CSR sent
//!   by mistake).
//! - [`der`]: the one hand-written BER/DER walker (also used by `discovery::dns`), kept because
//!   the `der` crate refuses BER.
//!
//! A leaf of the domain: it uses `x509` and `model` only, and returns its own typed errors;
//! the layers above map them to refresh statuses or policy reasons.

pub mod der;
pub mod read;
pub mod upload;
pub mod verify;
pub mod write;

pub use read::{certificates_in, read_bundle, ParsedBundle, ReadError, SignedLayer};
pub use write::{build_p7b, build_p7b_with_metadata, issuer_and_serial, metadata_xml, sign_p7m};

/// The most certificates [`certificates_in`] accepts from one input, and the most anchors a
/// member upload may hold.
pub const MAX_CERTIFICATES: usize = 100_000;

/// Why a bundle could not be read or written. `code()` is stable, like [`crate::Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a well-formed DER PKCS#7/CMS bundle: {0}")]
    Malformed(String),
    #[error(
        "the bundle uses BER indefinite-length encoding (as the Java reference bundler and \
         `openssl cms -stream` write it), which is not supported yet"
    )]
    IndefiniteLength,
    #[error("the CMS content type is {0}, not signedData")]
    NotSignedData(String),
    #[error("PEM input: {0}")]
    Pem(String),
    #[error("the bundle holds more than {limit} certificates")]
    TooManyCertificates { limit: usize },
    #[error("the signer certificate cannot be used: {0}")]
    SignerCertificate(String),
    #[error("the signing key does not belong to the signer certificate")]
    SignerKeyMismatch,
    #[error("unsupported signing key ({0}); RSA with SHA-256 or ECDSA P-256 is required")]
    UnsupportedKey(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("the signing time {0} cannot be encoded")]
    SigningTime(String),
    #[error("invalid bundle metadata: {0}")]
    Metadata(String),
}

impl BundleError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "bundle_malformed",
            BundleError::IndefiniteLength => "bundle_ber_unsupported",
            BundleError::NotSignedData(_) => "bundle_not_signed_data",
            BundleError::Pem(_) => "bundle_pem_invalid",
            BundleError::TooManyCertificates { .. } => "bundle_too_many_certificates",
            BundleError::SignerCertificate(_) => "bundle_signer_certificate_invalid",
            BundleError::SignerKeyMismatch => "bundle_signer_key_mismatch",
            BundleError::UnsupportedKey(_) => "bundle_signer_key_unsupported",
            BundleError::Signing(_) => "bundle_signing_failed",
            BundleError::SigningTime(_) => "bundle_signing_time_invalid",
            BundleError::Metadata(_) => "bundle_metadata_invalid",
        }
    }
}

impl From<BundleError> for crate::Error {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Signing(_) => crate::Error::Generation(e.to_string()),
            _ => crate::Error::InvalidInput(e.to_string()),
        }
    }
}
