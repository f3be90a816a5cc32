//! CA private keys at rest: PKCS#8 sealed with AES-256-GCM under a key derived from the
//! operator's passphrase by Argon2id. The CA role is bound in as associated data so a sealed
//! root key cannot be swapped in as the issuing key.

use std::fmt;

/// The environment variable that may hold the CA passphrase.
pub const PASSPHRASE_ENV: &str = "ANCHORAGE_PASSPHRASE";

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
pub use crate::model::ca::SealedKey;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Argon2id cost: OWASP's 19 MiB / 2 passes, ~30 ms per unlock on this hardware class.
const ARGON_M_KIB: u32 = 19 * 1024;
const ARGON_T: u32 = 2;

/// The operator passphrase. Not `Debug`/`Display`: it must never reach a log.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(text: String) -> Result<Passphrase> {
        let trimmed = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string());
        drop(Zeroizing::new(text));
        if trimmed.chars().count() < 12 {
            return Err(Error::Passphrase(
                "the CA passphrase must be at least 12 characters".into(),
            ));
        }
        Ok(Passphrase(trimmed))
    }

    /// A random passphrase for evaluation set-ups (32 bytes, base64url).
    pub fn random() -> Result<Passphrase> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| Error::Passphrase("the system random generator failed".into()))?;
        Ok(Passphrase(Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedKey(..)")
    }
}

const FORMAT: &str = "anchorage-sealed-pkcs8-v1 (argon2id, aes-256-gcm)";

fn derive(passphrase: &Passphrase, salt: &[u8], m_kib: u32, t: u32) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(m_kib, t, 1, Some(32))
        .map_err(|e| Error::CaKey(format!("argon2 parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), salt, out.as_mut())
        .map_err(|e| Error::CaKey(format!("argon2: {e}")))?;
    Ok(out)
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| Error::CaKey("AES key setup failed".into()))
}

/// Encrypts a PKCS#8 DER key; `role` is authenticated but not secret.
pub fn seal(pkcs8: &[u8], passphrase: &Passphrase, role: &str) -> Result<SealedKey> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|_| rng.fill(&mut nonce))
        .map_err(|_| Error::CaKey("the system random generator failed".into()))?;
    let key = derive(passphrase, &salt, ARGON_M_KIB, ARGON_T)?;
    let mut buf = pkcs8.to_vec();
    aead_key(&key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(role.as_bytes()),
            &mut buf,
        )
        .map_err(|_| Error::CaKey("encrypting the key failed".into()))?;
    Ok(SealedKey {
        format: FORMAT.into(),
        m_kib: ARGON_M_KIB,
        t: ARGON_T,
        salt: B64.encode(salt),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(buf),
    })
}

/// Decrypts; a wrong passphrase and a tampered record give the same error on purpose.
pub fn open(sealed: &SealedKey, passphrase: &Passphrase, role: &str) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.format != FORMAT {
        return Err(Error::CaKey(format!(
            "unknown sealed key format '{}'",
            sealed.format
        )));
    }
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| Error::CaKey(format!("the sealed {role} key has a corrupt {what}")))
    };
    let salt = decode("salt", &sealed.salt)?;
    let nonce: [u8; NONCE_LEN] = decode("nonce", &sealed.nonce)?
        .try_into()
        .map_err(|_| Error::CaKey(format!("the sealed {role} key has a corrupt nonce")))?;
    let mut buf = Zeroizing::new(decode("ciphertext", &sealed.ciphertext)?);
    let key = derive(passphrase, &salt, sealed.m_kib, sealed.t)?;
    let plain_len = aead_key(&key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(role.as_bytes()),
            &mut buf,
        )
        .map_err(|_| {
            Error::Passphrase(format!(
                "cannot decrypt the {role} CA key: wrong passphrase or a damaged key record"
            ))
        })?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let pass = Passphrase::new("correct horse battery staple".into()).unwrap();
        let sealed = seal(b"secret pkcs8", &pass, "root").unwrap();
        assert!(!sealed.ciphertext.contains("secret"));
        assert_eq!(
            open(&sealed, &pass, "root").unwrap().as_slice(),
            b"secret pkcs8"
        );
        let wrong = Passphrase::new("incorrect horse battery".into()).unwrap();
        assert_eq!(
            open(&sealed, &wrong, "root").unwrap_err().code(),
            "passphrase_error"
        );
        assert!(open(&sealed, &pass, "issuing").is_err(), "role is bound");
        assert!(Passphrase::new("short".into()).is_err());
    }
}

/// Where the passphrase came from, for the start-up report (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    Environment,
    File(std::path::PathBuf),
    /// The random evaluation passphrase beside the data.
    Evaluation(std::path::PathBuf),
}

impl fmt::Display for PassphraseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseSource::Environment => {
                write!(f, "environment variable {PASSPHRASE_ENV}")
            }
            PassphraseSource::File(p) => write!(f, "file {}", p.display()),
            PassphraseSource::Evaluation(p) => write!(f, "EVALUATION file {}", p.display()),
        }
    }
}

/// Finds the passphrase: environment, then the configured file, then an existing evaluation
/// file. `None` when there is none anywhere.
pub fn find_passphrase(
    env_value: Option<String>,
    file: Option<&std::path::Path>,
    evaluation_file: &std::path::Path,
) -> Result<Option<(Passphrase, PassphraseSource)>> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        return Ok(Some((
            Passphrase::new(value)?,
            PassphraseSource::Environment,
        )));
    }
    if let Some(path) = file {
        crate::private_files::check(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        return Ok(Some((
            Passphrase::new(text)?,
            PassphraseSource::File(path.to_path_buf()),
        )));
    }
    if evaluation_file.exists() {
        crate::private_files::check(evaluation_file)?;
        let text =
            std::fs::read_to_string(evaluation_file).map_err(|e| Error::io(evaluation_file, e))?;
        return Ok(Some((
            Passphrase::new(text)?,
            PassphraseSource::Evaluation(evaluation_file.to_path_buf()),
        )));
    }
    Ok(None)
}

/// Writes a random evaluation passphrase to a new 0600 file.
pub fn create_evaluation_passphrase(
    path: &std::path::Path,
) -> Result<(Passphrase, PassphraseSource)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pass = Passphrase::random()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(pass.expose().as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok((pass, PassphraseSource::Evaluation(path.to_path_buf())))
}
