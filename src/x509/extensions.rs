//! The DER of the two extensions rcgen cannot write itself (certificatePolicies and
//! authorityInfoAccess), built with x509-cert. Only the CA (and test fixtures) need them, when
//! issuing; nothing here reads certificates.

use der::Encode;

/// Why an extension value could not be encoded; the text is the one `ca` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// A configured policy OID is not a valid object identifier.
    #[error("policy OID '{oid}': {source}")]
    PolicyOid {
        oid: String,
        #[source]
        source: const_oid::Error,
    },
    /// A configured caIssuers URL is not an IA5String.
    #[error("caIssuers URL '{url}': {source}")]
    CaIssuersUrl {
        url: String,
        #[source]
        source: der::Error,
    },
    /// The DER encoder refused the value (`extension` names it).
    #[error("encoding {extension}: {source}")]
    Encoding {
        extension: &'static str,
        #[source]
        source: der::Error,
    },
}

/// DER of a certificatePolicies extension value listing `oids` (no qualifiers).
pub fn certificate_policies_der(oids: &[String]) -> Result<Vec<u8>, ExtensionError> {
    use x509_cert::ext::pkix::{certpolicy::PolicyInformation, CertificatePolicies};
    let infos = oids
        .iter()
        .map(|o| {
            Ok(PolicyInformation {
                policy_identifier: const_oid::ObjectIdentifier::new(o).map_err(|source| {
                    ExtensionError::PolicyOid {
                        oid: o.clone(),
                        source,
                    }
                })?,
                policy_qualifiers: None,
            })
        })
        .collect::<Result<Vec<_>, ExtensionError>>()?;
    CertificatePolicies(infos)
        .to_der()
        .map_err(|source| ExtensionError::Encoding {
            extension: "certificatePolicies",
            source,
        })
}

/// DER of an authorityInfoAccess extension value with one caIssuers URI.
pub fn ca_issuers_der(url: &str) -> Result<Vec<u8>, ExtensionError> {
    use x509_cert::ext::pkix::{name::GeneralName, AccessDescription, AuthorityInfoAccessSyntax};
    let uri = der::asn1::Ia5String::new(url).map_err(|source| ExtensionError::CaIssuersUrl {
        url: url.to_string(),
        source,
    })?;
    AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_CA_ISSUERS,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }])
    .to_der()
    .map_err(|source| ExtensionError::Encoding {
        extension: "authorityInfoAccess",
        source,
    })
}
