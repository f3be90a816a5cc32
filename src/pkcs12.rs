//! Server-generated keys leave the CA only inside a password-protected PKCS#12. The legacy
//! algorithms (3DES key bag, RC2-40 certificate bag, SHA-1 MAC) are what Windows, Java and the
//! Direct reference tools import; OpenSSL 3 reads them with `-legacy`.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rcgen::KeyPair;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Unambiguous characters for passwords people may have to type (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Shortest password accepted from a caller.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A random 24-character password (~139 bits) in groups of four, e.g. `abcd-EFGH-...`.
pub fn generate_password() -> Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 24]);
    SystemRandom::new()
        .fill(raw.as_mut())
        .map_err(|_| Error::Generation("the system random generator failed".into()))?;
    let mut out = Zeroizing::new(String::with_capacity(29));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 256 % 56 != 0 gives a bias below 1.5% per character; irrelevant at 139 bits.
        if let Some(c) = ALPHABET.get(usize::from(*b) % ALPHABET.len()) {
            out.push(char::from(*c));
        }
    }
    Ok(out)
}

/// Checks a caller-supplied password.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::InvalidInput(format!(
            "the PKCS#12 password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "the PKCS#12 password must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Packs the certificate, its key and the CA chain into a legacy PKCS#12.
pub fn build(
    cert_der: &[u8],
    key: &KeyPair,
    chain: &[&[u8]],
    password: &str,
    friendly_name: &str,
) -> Result<Vec<u8>> {
    let key_der = Zeroizing::new(key.serialize_der());
    p12::PFX::new_with_cas(cert_der, &key_der, chain, password, friendly_name)
        .map(|pfx| pfx.to_der())
        .ok_or_else(|| Error::Generation("building the PKCS#12 failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), 29);
        assert_ne!(*a, *b);
        assert!(check_password(&a).is_ok());
        assert!(check_password("short").is_err());
    }
}
