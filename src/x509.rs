//! Read-only views of X.509 objects: key inspection, RFC 7093 key identifiers, CSR
//! proof-of-possession, summaries for records, and the DER of the two extensions rcgen cannot
//! write (certificatePolicies, authorityInfoAccess), and names as RFC 4514 text ([`rfc4514`]).
//! No signing happens here.
//!
//! One file per seam, each re-exported here so callers keep writing `x509::summarize`:
//! `key` (what a public key is), `csr` (PKCS#10 requests), `certificate` (summaries,
//! PEM/DER input), `signature` (algorithm names and signed-by checks, the chain link),
//! `direct_profile` (the Direct end-entity lint), `extensions` (extension DER for issuing)
//! and `name` (RFC 4514 text).

mod certificate;
mod csr;
mod direct_profile;
mod extensions;
mod key;
mod name;
mod signature;

pub use certificate::{
    certificates_from_pem_or_der, spki_sha256, subject_key_id, summarize, to_pem, CertSummary,
    CertificateError,
};
pub use csr::{parse_csr, CsrKey, CsrProblem};
pub use direct_profile::{direct_profile_problems, DIRECT_MAX_VALIDITY_DAYS};
pub use extensions::{ca_issuers_der, certificate_policies_der, ExtensionError};
pub use key::{key_identifier, key_identifier_of_bits, key_info, spki_hash, KeyInfo};
pub use name::rfc4514;
pub use signature::{
    signature_info, verify_signed_by, SignatureAlgorithm, SignatureInfo, Unverified,
};
